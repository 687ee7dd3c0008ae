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
                            settings ("mfcc": sample rate, mel filterbank edges, ...) and the
                            versions/environment record
      stats.json            per-dimension mean and std over the train split, frame counts
      summary.json          utterances, hours and frames per split; the sample rate, how many
                            utterances were resampled, each mel band's level

Shards are memory-mapped (`np.load(mmap_mode="r")`), so reading a store costs memory
for the frames in use, not for the whole corpus.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr_init.errors import UserError
from asr_init.features.mfcc import MfccConfig
from asr_init.io import digest, read_json

SPLITS = ("train", "dev", "test")


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
        d = dict(self.__dict__)
        d["transcript"] = " ".join(self.transcript)
        return json.dumps(d)

    @classmethod
    def from_json(cls, line: str) -> UttRecord:
        d = json.loads(line)
        d["transcript"] = tuple(d["transcript"].split())
        return cls(**d)


def shard_name(kind: str, index: int) -> str:
    return f"shards/{kind}-{index:05d}.npy"


class FeatureStore:
    """Read access to a feature store (memory-mapped shards)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise UserError(f"feature store {self.path} does not exist (run 'asr-init extract' first)")
        manifest = self.path / "manifest.jsonl"
        if not (self.path / "summary.json").exists() or not manifest.exists():
            raise UserError(
                f"{self.path} is not a complete feature store (no summary.json/manifest.jsonl); "
                "re-run 'asr-init extract'"
            )
        try:
            self.records = [UttRecord.from_json(ln) for ln in manifest.read_text().splitlines() if ln.strip()]
        except (json.JSONDecodeError, TypeError, KeyError) as exc:
            raise UserError(f"{manifest} is corrupt ({exc})") from None
        if not self.records:
            raise UserError(f"feature store {self.path} is empty (no utterances in {manifest})")
        self.config = read_json(self.path / "config.json")
        # The feature settings (rate, filterbank) the frames were computed with; None for a
        # store written by other means, whose frames can then be checked on dimension only.
        try:
            self.feature_config = MfccConfig.from_dict(self.config["mfcc"]) if "mfcc" in self.config else None
        except (TypeError, KeyError) as exc:
            raise UserError(
                f"{self.path / 'config.json'} has a corrupt \"mfcc\" record ({exc}); re-run 'asr-init extract'"
            ) from None
        stats = read_json(self.path / "stats.json")
        self.mean = np.asarray(stats["mean"], dtype=np.float32)
        self.std = np.asarray(stats["std"], dtype=np.float32)
        self.phones = _read_symbols(self.path / "phones.txt")
        self.states = _read_symbols(self.path / "states.txt")
        self.dim = int(self.mean.shape[0])
        self._shards: dict[tuple[str, int], np.ndarray] = {}

    def split(self, name: str) -> list[UttRecord]:
        """The utterances of one split, in manifest order."""
        return [r for r in self.records if r.split == name]

    def num_frames(self, split: str) -> int:
        return sum(r.frames for r in self.split(split))

    def _shard(self, kind: str, index: int) -> np.ndarray:
        key = (kind, index)
        if key not in self._shards:
            path = self.path / shard_name(kind, index)
            try:
                self._shards[key] = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise UserError(
                    f"cannot read shard {path} ({exc}); the store is damaged, re-run 'asr-init extract'"
                ) from None
        return self._shards[key]

    def release(self) -> None:
        """Drop the shard memory maps (their pages stop counting as this process's memory)."""
        self._shards.clear()

    def gather(self, kind: str, shards: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Row rows[i] of shard shards[i] of `kind` ("feats", "phones" or "states") as out[i],
        copied from the memory maps: only these rows are read."""
        maps = {int(s): self._shard(kind, int(s)) for s in np.unique(shards)}
        if not maps:
            return np.empty((0, self.dim), np.float32) if kind == "feats" else np.empty(0, np.int16)
        first = next(iter(maps.values()))
        out = np.empty((len(rows), *first.shape[1:]), first.dtype)
        for shard, mapped in maps.items():
            mine = shards == shard
            out[mine] = mapped[rows[mine]]
        return out

    def features(self, rec: UttRecord) -> np.ndarray:
        """(frames, dim) float32 view of one utterance's features."""
        return self._shard("feats", rec.shard)[rec.offset : rec.offset + rec.frames]

    def phone_targets(self, rec: UttRecord) -> np.ndarray:
        return self._shard("phones", rec.shard)[rec.offset : rec.offset + rec.frames]

    def state_targets(self, rec: UttRecord) -> np.ndarray:
        return self._shard("states", rec.shard)[rec.offset : rec.offset + rec.frames]


def _read_symbols(path: Path) -> list[str]:
    try:
        rows = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    except OSError:
        raise UserError(f"{path} is missing; the store is incomplete") from None
    return [r[1] for r in sorted(rows, key=lambda r: int(r[0]))]


class StoreWriter:
    """Appends utterances to shards of about `shard_frames` frames each."""

    def __init__(self, path: Path, shard_frames: int):
        self.path = Path(path)
        (self.path / "shards").mkdir(parents=True, exist_ok=True)
        self.shard_frames = shard_frames
        self.records: list[UttRecord] = []
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending_frames = 0
        self._shard = 0

    def add(
        self,
        utt_id: str,
        speaker: str,
        split: str,
        duration: float,
        feats: np.ndarray,
        phones: np.ndarray,
        states: np.ndarray,
        transcript: tuple[str, ...],
    ) -> UttRecord:
        rec = UttRecord(utt_id, speaker, split, len(feats), self._shard, self._pending_frames, duration, transcript)
        self.records.append(rec)
        self._pending.append((feats, phones, states))
        self._pending_frames += len(feats)
        if self._pending_frames >= self.shard_frames:
            self._flush()
        return rec

    def _flush(self) -> None:
        if not self._pending:
            return
        for k, kind in enumerate(("feats", "phones", "states")):
            np.save(self.path / shard_name(kind, self._shard), np.concatenate([p[k] for p in self._pending]))
        self._pending, self._pending_frames = [], 0
        self._shard += 1

    def close(self) -> None:
        self._flush()
        with open(self.path / "manifest.jsonl", "w") as fh:
            for rec in self.records:
                fh.write(rec.to_json() + "\n")


STORE_METADATA = ("config.json", "manifest.jsonl", "stats.json", "phones.txt", "states.txt")


def store_identity(path: Path) -> str:
    """A store's identity: a digest of its config, manifest, normalisation statistics and
    label lists. Re-extracting with other settings or data changes it (the statistics are
    sums over every frame), so a later stage can tell that its input is no longer the same."""
    return digest([Path(path) / name for name in STORE_METADATA])
