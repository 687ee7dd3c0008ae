"""The feature store: the directory written by `extract` and read by every later stage.

Layout::

    STORE/
      manifest.jsonl        one JSON object per utterance: id, speaker, split, frames,
                            shard, offset, duration (s), transcript (phone labels)
      shards/feats-NNNNN.npy   (frames, dim) float32, normalised features
      shards/phones-NNNNN.npy  (frames,) int16 phone ids
      shards/states-NNNNN.npy  (frames,) int16 HMM-state ids (3 * phone + position)
      phones.txt            "id label" per line; states.txt: "id label_position"
      config.json           the corpus, the extraction config as given, the resolved feature
                            settings ("features": kind, sample rate, mel bands, ...) and the
                            versions/environment record; "targets", where present, lists the
                            target kinds the store holds (default: states, phones)
      stats.json            per-dimension mean and std over the train split, frame counts
      summary.json          utterances, hours and frames per split; the sample rate, how many
                            utterances were resampled, each mel band's level

A store made by `asr-init import-kaldi` (features/kaldi.py) holds Kaldi's own frames and
other target kinds: "pdfs" (tied HMM states of Kaldi's tree, `ali-to-pdf`) and/or "phones"
(`ali-to-phones --per-frame`), each with its shards (`pdfs-NNNNN.npy`, int32) and its
inventory (`pdfs.txt`), and no "states". Every kind is read through `targets(kind, rec)`
and `labels(kind)`.

Shards are memory-mapped (`np.load(mmap_mode="r")`), so reading a store costs memory
for the frames in use, not for the whole corpus.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr_init.config import SPLITS
from asr_init.errors import UserError
from asr_init.features.frontend import FeatureConfig, cmvn_stats
from asr_init.io import check_regular_file, digest, naming_file, read_json, read_text, unique, write_json_atomic
from asr_init.kaldi_io import fields

# The layout version `extract` writes into config.json ("format_version"); a store without
# one was written before versions were recorded and has this layout. A reader refuses any
# other version instead of misreading it.
STORE_FORMAT_VERSION = 1
# Frame target kinds a store may hold: asr-init's HMM states (3 per phone) and phones (extract),
# Kaldi's pdf ids and phone ids (import-kaldi).
TARGET_KINDS = ("states", "phones", "pdfs")
DEFAULT_TARGETS = ("states", "phones")  # what a store without a "targets" record holds


@dataclass(frozen=True)
class UttRecord:
    """One manifest line: where an utterance's frames are in the shards."""

    id: str
    speaker: str
    split: str
    frames: int
    shard: int
    offset: int
    duration: float
    transcript: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps(self.__dict__ | {"transcript": " ".join(self.transcript)})

    @classmethod
    def from_json(cls, line: str) -> UttRecord:
        d = json.loads(line)
        d["transcript"] = tuple(fields(d["transcript"]))
        return cls(**d)


def shard_name(kind: str, index: int) -> str:
    return f"shards/{kind}-{index:05d}.npy"


class FeatureStore:
    """Read access to a feature store (memory-mapped shards)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.records = self._read_manifest()
        self._ends = _shard_ends(self.records, self.path / "manifest.jsonl")
        self.config = self._read_config()
        # The feature settings (rate, filterbank) the frames were computed with; None for a
        # store written by other means, whose frames can then be checked on dimension only.
        record = "features" if "features" in self.config else "mfcc"
        try:
            self.feature_config = FeatureConfig.from_store_config(self.config)
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise UserError(
                f"{self.path / 'config.json'} has a corrupt \"{record}\" record ({exc}); re-run 'asr-init extract'"
            ) from None
        self.mean, self.std = self._read_stats()
        kinds = self.config.get("targets", DEFAULT_TARGETS)
        if not kinds or any(k not in TARGET_KINDS for k in kinds):
            raise UserError(
                f"{self.path / 'config.json'} lists target kinds {kinds!r}; "
                f"each must be one of {', '.join(TARGET_KINDS)}"
            )
        self.target_kinds: tuple[str, ...] = tuple(kinds)
        self._labels = {kind: _read_symbols(self.path / f"{kind}.txt") for kind in self.target_kinds}
        self.phones: list[str] = self._labels.get("phones", [])
        self.states: list[str] = self._labels.get("states", [])
        self.dim = int(self.mean.shape[0])
        if self.feature_config is not None and self.feature_config.dim != self.dim:
            raise UserError(
                f"{self.path / 'config.json'} describes {self.feature_config.dim}-dim frames "
                f"({self.feature_config.kind}), but {self.path / 'stats.json'} and the shards hold "
                f"{self.dim}-dim frames: the file was edited or the store is damaged; re-run 'asr-init extract'"
            )
        self._shards: dict[tuple[str, int], np.ndarray] = {}

    def _read_manifest(self) -> list[UttRecord]:
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"feature store {self.path} is a file, not a folder; give the folder 'asr-init extract' "
                            "or 'import-kaldi' wrote")  # fmt: skip
        if not self.path.is_dir():
            raise UserError(f"feature store {self.path} does not exist (run 'asr-init extract' first)")
        manifest = self.path / "manifest.jsonl"
        if not (self.path / "summary.json").exists() or not manifest.exists():
            raise UserError(
                f"{self.path} is not a complete feature store (no summary.json/manifest.jsonl); "
                "re-run 'asr-init extract'"
            )
        try:
            lines = [(n, ln) for n, ln in enumerate(read_text(manifest).splitlines(), 1) if ln.strip()]
            records = [UttRecord.from_json(ln) for _, ln in lines]
        except (json.JSONDecodeError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            raise UserError(f"{manifest} is corrupt ({str(exc)[:200]})") from None
        for (n, _), r in zip(lines, records):  # names are keys and file names: text, not JSON's other values
            if not all(isinstance(v, str) for v in (r.id, r.speaker, r.split)):
                raise UserError(f"{manifest}:{n} is corrupt (an utterance's id, speaker and split are strings)")
        if not records:
            raise UserError(f"feature store {self.path} is empty (no utterances in {manifest})")
        unique([(r.id, f"{manifest}:{n}", r) for (n, _), r in zip(lines, records)], "utterance")
        return records

    def _read_config(self) -> dict:
        config_path = self.path / "config.json"
        config = read_json(config_path)
        if not isinstance(config, dict):
            raise UserError(f"{config_path} is corrupt (not a JSON object); re-run 'asr-init extract'")
        version = config.get("format_version", STORE_FORMAT_VERSION)
        if version != STORE_FORMAT_VERSION:
            raise UserError(
                f"{config_path} has format_version {version!r}, but this asr-init reads feature stores of format "
                f"version {STORE_FORMAT_VERSION}; extract the corpus again with this asr-init, or use the one "
                "that wrote the store"
            )
        return config

    def _read_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """The global mean and std of the frames (dim,), from stats.json."""
        stats_path = self.path / "stats.json"
        stats = read_json(stats_path)
        try:
            mean = np.asarray(stats["mean"], dtype=np.float32)
            std = np.asarray(stats["std"], dtype=np.float32)
        except (TypeError, KeyError, ValueError) as exc:
            raise UserError(
                f"{stats_path} is corrupt (no numeric mean/std: {exc}); re-run 'asr-init extract'"
            ) from None
        if mean.ndim != 1 or mean.shape != std.shape or not len(mean):
            raise UserError(
                f"{stats_path} is corrupt (mean of shape {mean.shape}, std of shape {std.shape}); "
                "re-run 'asr-init extract'"
            )
        bad = np.flatnonzero(~np.isfinite(mean) | ~np.isfinite(std) | (std <= 0))
        if len(bad):
            raise UserError(
                f"{stats_path} gives dimension {bad[0]} a mean of {mean[bad[0]]:g} and a standard deviation of "
                f"{std[bad[0]]:g}; frames cannot be normalised with them: the store is damaged, {self._remake()}"
            )
        return mean, std

    def split(self, name: str) -> list[UttRecord]:
        """The utterances of one split, in manifest order."""
        return [r for r in self.records if r.split == name]

    def num_frames(self, split: str) -> int:
        return sum(r.frames for r in self.split(split))

    def _shard(self, kind: str, index: int) -> np.ndarray:
        key = (kind, index)
        if key not in self._shards:
            path = self.path / shard_name(kind, index)
            check_regular_file(path, "shard", self._damaged())  # np.load would block on a FIFO
            try:
                shard = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise UserError(f"cannot read shard {path} ({exc}); {self._damaged()}") from None
            self._check_shard(kind, index, path, shard)
            self._shards[key] = shard
        return self._shards[key]

    def _remake(self) -> str:
        return f"re-make it with 'asr-init {'import-kaldi' if 'kaldi' in self.config else 'extract'} --force'"

    def _damaged(self) -> str:
        """The advice for a shard that does not fit the manifest read at the start."""
        return f"the store is damaged, or was replaced while this run read it; {self._remake()} and run again"

    def _check_shard(self, kind: str, index: int, path: Path, shard: np.ndarray) -> None:
        """Raise if a shard's shape does not fit the store: (frames, dim) features or (frames,)
        targets, with every frame the manifest places in it."""
        want = f"(frames, {self.dim})" if kind == "feats" else "(frames,)"
        kinds = "f" if kind == "feats" else "iu"  # float features, integer targets
        if not isinstance(shard, np.ndarray) or shard.dtype.kind not in kinds:
            what = f"values of type {shard.dtype}" if isinstance(shard, np.ndarray) else "no single array"
            raise UserError(f"cannot read shard {path} (it holds {what}); {self._damaged()}")
        if shard.ndim != (2 if kind == "feats" else 1) or (kind == "feats" and shard.shape[1] != self.dim):
            raise UserError(
                f"shard {path} has shape {shard.shape}, but the store's frames are {want} (stats.json, "
                f"config.json); {self._damaged()}"
            )
        end, rec = self._ends.get(index, (0, None))
        if len(shard) < end:
            raise UserError(
                f"{self.path / 'manifest.jsonl'}: utterance {rec.id} takes frames {rec.offset} to "
                f"{rec.offset + rec.frames} of shard {path}, which has {len(shard)} frames; {self._damaged()}"
            )

    def release(self) -> None:
        """Drop the shard memory maps (their pages stop counting as this process's memory)."""
        self._shards.clear()

    def features(self, rec: UttRecord) -> np.ndarray:
        """(frames, dim) float32 view of one utterance's features; NaN or infinite values are an
        error naming the utterance (training would otherwise blame its learning rate)."""
        feats = self._shard("feats", rec.shard)[rec.offset : rec.offset + rec.frames]
        if not np.isfinite(feats.sum()) and not np.isfinite(feats).all():
            frame = int(np.flatnonzero(~np.isfinite(feats).all(1))[0])
            raise UserError(
                f"store {self.path}: utterance {rec.id} has NaN or infinite features (frame {frame}); the store is "
                f"damaged, {self._remake()}"
            )
        return feats

    def _check_kind(self, kind: str) -> None:
        if kind not in self.target_kinds:
            made_by = "import-kaldi" if "kaldi" in self.config else "extract"
            raise UserError(
                f"store {self.path} has no {kind} targets (this {made_by} store holds "
                f"{', '.join(self.target_kinds)}); choose --targets {self.target_kinds[0]}"
            )

    def labels(self, kind: str) -> list[str]:
        """The inventory of one target kind: label of class id i at index i."""
        self._check_kind(kind)
        return self._labels[kind]

    def targets(self, kind: str, rec: UttRecord) -> np.ndarray:
        """(frames,) class ids of one target kind for one utterance; an id outside the
        inventory (KIND.txt) is an error naming the utterance."""
        self._check_kind(kind)
        ids = self._shard(kind, rec.shard)[rec.offset : rec.offset + rec.frames]
        if len(ids) and (ids.min() < 0 or ids.max() >= len(self._labels[kind])):
            bad = int(ids.min()) if ids.min() < 0 else int(ids.max())
            raise UserError(
                f"store {self.path}: utterance {rec.id} has {kind} id {bad}, outside {kind}.txt (ids 0 to "
                f"{len(self._labels[kind]) - 1}); {self._damaged()}"
            )
        return ids

    def class_counts(self, kind: str, split: str, floor: float = 0.0) -> np.ndarray:
        """(classes,) float64 frames per class of target kind `kind` in `split`; a class that has
        frames counts at least `floor` (the priors' --prior-floor), one that has none stays 0, as in
        Kaldi's class-frame-counts (a class no frame was trained on is never decoded)."""
        counts = np.zeros(len(self.labels(kind)))
        for rec in self.split(split):
            counts += np.bincount(np.asarray(self.targets(kind, rec), dtype=np.int64), minlength=len(counts))
        self.release()
        return np.where(counts > 0, np.maximum(counts, floor), 0.0)


def _shard_ends(records: list[UttRecord], manifest: Path) -> dict[int, tuple[int, UttRecord]]:
    """Per shard: the end of the last frame the manifest places in it, and that utterance.
    A record whose shard, offset or frame count is not a non-negative integer is an error."""
    ends: dict[int, tuple[int, UttRecord]] = {}
    for rec in records:
        fields = (rec.shard, rec.offset, rec.frames)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in fields) or rec.frames < 1:
            raise UserError(
                f"{manifest}: utterance {rec.id} has shard {rec.shard!r}, offset {rec.offset!r}, frames "
                f"{rec.frames!r}; each must be an integer, at least 0 (at least 1 frame); the store is damaged, "
                "re-make it"
            )
        end = rec.offset + rec.frames
        if end > ends.get(rec.shard, (-1, None))[0]:
            ends[rec.shard] = (end, rec)
    return ends


def _read_symbols(path: Path) -> list[str]:
    try:
        rows = [row for row in map(fields, read_text(path).split("\n")) if row]  # labels hold no ASCII space
    except OSError:
        raise UserError(f"{path} is missing; the store is incomplete") from None
    try:
        return [r[1] for r in sorted(rows, key=lambda r: int(r[0]))]
    except (ValueError, IndexError):
        raise UserError(f"{path} is corrupt (lines must be 'id label'); re-run 'asr-init extract'") from None


class StoreWriter:
    """Appends utterances to shards of about `shard_frames` frames each.

    `targets` names the target kinds every utterance brings (one shard file per kind)."""

    def __init__(self, path: Path, shard_frames: int, targets: tuple[str, ...] = DEFAULT_TARGETS):
        self.path = Path(path)
        (self.path / "shards").mkdir(parents=True, exist_ok=True)
        self.shard_frames = shard_frames
        self.kinds = ("feats", *targets)
        self.records: list[UttRecord] = []
        self._pending: list[tuple[np.ndarray, ...]] = []
        self._pending_frames = 0
        self._shard = 0

    def add(self, utt_id: str, speaker: str, split: str, duration: float, feats: np.ndarray, phones: np.ndarray,
            states: np.ndarray, transcript: tuple[str, ...]) -> UttRecord:  # fmt: skip
        """Add an utterance of an extract store (phone and state targets)."""
        targets = {"phones": phones, "states": states}
        return self.add_utterance(utt_id, speaker, split, duration, feats, targets, transcript)

    def add_utterance(self, utt_id: str, speaker: str, split: str, duration: float, feats: np.ndarray,
                      targets: dict[str, np.ndarray], transcript: tuple[str, ...]) -> UttRecord:  # fmt: skip
        """Add an utterance: (frames, dim) features and (frames,) ids of every target kind."""
        rec = UttRecord(utt_id, speaker, split, len(feats), self._shard, self._pending_frames, duration, transcript)
        self.records.append(rec)
        self._pending.append((feats, *(targets[kind] for kind in self.kinds[1:])))
        self._pending_frames += len(feats)
        if self._pending_frames >= self.shard_frames:
            self._flush()
        return rec

    def _flush(self) -> None:
        if not self._pending:
            return
        for k, kind in enumerate(self.kinds):
            path = self.path / shard_name(kind, self._shard)
            parts = [np.ascontiguousarray(p[k]) for p in self._pending]
            header = {"descr": np.lib.format.dtype_to_descr(parts[0].dtype), "fortran_order": False,
                      "shape": (self._pending_frames, *parts[0].shape[1:])}  # fmt: skip
            try:  # the parts one after another, without a copy of them all
                with open(path, "wb") as fh:
                    np.lib.format.write_array_header_1_0(fh, header)
                    for part in parts:
                        fh.write(memoryview(part).cast("B"))
            except OSError as exc:  # a full disk: the error names the shard
                raise naming_file(exc, path) from None
        self._pending, self._pending_frames = [], 0
        self._shard += 1

    def close(self) -> None:
        self._flush()
        path = self.path / "manifest.jsonl"
        try:
            with open(path, "w") as fh:
                for rec in self.records:
                    fh.write(rec.to_json() + "\n")
        except OSError as exc:
            raise naming_file(exc, path) from None


STORE_METADATA = ("config.json", "manifest.jsonl", "stats.json") + tuple(f"{kind}.txt" for kind in TARGET_KINDS)


def store_identity(path: Path) -> str:
    """A store's identity: a digest of its config, manifest, normalisation statistics and
    label lists. Re-extracting with other settings or data changes it (the statistics are
    sums over every frame), so a later stage can tell that its input is no longer the same."""
    return digest([Path(path) / name for name in STORE_METADATA])


def store_summary(records: list[UttRecord], layout: str, skipped: list[str], elapsed: float) -> dict:
    """The summary.json record every store has: its layout, per split its utterances, speakers, frames
    and hours, then the utterances, hours, the utterances skipped and the seconds taken."""
    splits = {}
    for split in SPLITS:
        recs = [r for r in records if r.split == split]
        splits[split] = {
            "utterances": len(recs),
            "speakers": len({r.speaker for r in recs}),
            "frames": sum(r.frames for r in recs),
            "hours": sum(r.duration for r in recs) / 3600,
        }
    return {
        "layout": layout,
        "splits": splits,
        "utterances": len(records),
        "hours": sum(r.duration for r in records) / 3600,
        "skipped": skipped,
        "seconds": elapsed,
    }


def write_metadata(path: Path, labels: dict[str, list[str]], config: dict, stats: dict, summary: dict,
                   versions: dict) -> dict:  # fmt: skip
    """The label lists (KIND.txt: "id label" per line), config.json, stats.json and summary.json
    of the store at `path`, config and summary with the `versions` record; returns the summary."""
    for kind, names in labels.items():
        (path / f"{kind}.txt").write_text("".join(f"{i} {name}\n" for i, name in enumerate(names)))
    write_json_atomic(path / "config.json", config | {"versions": versions})
    write_json_atomic(path / "stats.json", stats)
    summary = summary | {"versions": versions}
    write_json_atomic(path / "summary.json", summary)
    return summary


class FrameMoments:
    """Per-dimension mean and standard deviation over blocks of frames (stats.json), accumulated
    in float64 as cmvn_stats sums them."""

    def __init__(self):
        self.total = 0.0

    def add(self, frames: np.ndarray) -> None:
        self.total = self.total + cmvn_stats(frames)

    def result(self) -> dict:
        n = int(self.total[0, -1]) if np.ndim(self.total) else 0
        if n == 0:
            raise UserError("no training frames were extracted; check the split settings and --skip-bad report")
        mean = self.total[0, :-1] / n
        std = np.sqrt(np.maximum(self.total[1, :-1] / n - mean**2, 1e-8))
        return {"mean": mean.tolist(), "std": std.tolist(), "train_frames": n}
