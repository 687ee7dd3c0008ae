"""The `extract` stage: a corpus into a feature store.

Two passes. Pass 1 (a process pool) reads each utterance's audio, computes MFCC +
deltas and frame targets, and appends them to shards in corpus order, accumulating
per-speaker sums. Pass 2 normalises the shards in place (per-speaker or per-utterance
mean/variance), then the train-split statistics are written. All of it happens in a
temporary folder beside the output, renamed into place only when complete.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import random
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import ConfigBase, read_json, write_json_atomic
from .corpus import SILENCE, Corpus, Utterance, read_corpus, read_label_list, read_label_map
from .errors import UserError
from .features import STATES_PER_PHONE, MfccConfig, frame_targets, load_audio, mfcc_with_deltas
from .progress import console, progress_bar
from .store import SPLITS, StoreWriter, shard_name

CMVN_MODES = ("speaker", "utterance", "none")


@dataclass
class ExtractConfig(ConfigBase):
    """Settings of `asr-init extract` (see `asr-init extract --help`)."""

    sample_rate: int = 16000
    cmvn: str = "speaker"
    dev_fraction: float = 0.1
    test_fraction: float = 0.1
    dev_speakers: list[str] = field(default_factory=list)
    test_speakers: list[str] = field(default_factory=list)
    seed: int = 0
    phones: str | None = None  # a label list: labels outside it are an error
    phone_map: str | None = None  # a folding map "from to": labels outside it are an error
    ctm: str | None = None
    tier: str = "phones"
    include_sa: bool = False
    silence: str = SILENCE
    skip_bad: bool = False
    shard_frames: int = 200_000
    jobs: int = 2

    def validate(self) -> None:
        self._check(self.sample_rate >= 8000, "sample_rate", "must be at least 8000 Hz")
        self._check(self.cmvn in CMVN_MODES, "cmvn", f"must be one of {', '.join(CMVN_MODES)}")
        self._check(0 <= self.dev_fraction < 1, "dev_fraction", "must be in [0, 1)")
        self._check(0 <= self.test_fraction < 1, "test_fraction", "must be in [0, 1)")
        self._check(self.dev_fraction + self.test_fraction < 1, "test_fraction", "dev + test fractions must leave speakers for training")
        self._check(self.shard_frames > 0, "shard_frames", "must be positive")
        self._check(self.jobs >= 1, "jobs", "must be at least 1")
        overlap = set(self.dev_speakers) & set(self.test_speakers)
        self._check(not overlap, "dev_speakers", f"speaker(s) {', '.join(sorted(overlap))} also in test_speakers")

    def mfcc(self) -> MfccConfig:
        return MfccConfig(sample_rate=self.sample_rate)


def assign_splits(corpus: Corpus, config: ExtractConfig) -> dict[str, str | None]:
    """Speaker -> split. Explicit lists win, then the layout's own split, then fractions.

    With fractions, speakers are shuffled with the seed; dev and test get
    round(fraction * speakers) each, at least one when the fraction is positive.
    """
    speakers = sorted({u.speaker for u in corpus.utterances})
    if config.dev_speakers or config.test_speakers:
        for spk in config.dev_speakers + config.test_speakers:
            if spk not in speakers:
                raise UserError(f"speaker {spk} has no utterances in the corpus (known: {', '.join(speakers[:10])}{' ...' if len(speakers) > 10 else ''})")
        return {s: "dev" if s in config.dev_speakers else "test" if s in config.test_speakers else "train" for s in speakers}
    if corpus.layout == "timit":
        return {u.speaker: u.split for u in corpus.utterances}
    order = speakers[:]
    random.Random(config.seed).shuffle(order)

    def count(fraction: float) -> int:
        return 0 if fraction == 0 else max(1, round(fraction * len(order)))

    n_test, n_dev = count(config.test_fraction), count(config.dev_fraction)
    if n_test + n_dev >= len(order):
        raise UserError(f"the corpus has {len(order)} speakers, too few for {n_dev} dev + {n_test} test speakers and a train set; lower --dev-fraction/--test-fraction")
    split = {s: "test" for s in order[:n_test]}
    split.update({s: "dev" for s in order[n_test:n_test + n_dev]})
    split.update({s: "train" for s in order[n_test + n_dev:]})
    return split


def fold_labels(corpus: Corpus, map_path: Path) -> Corpus:
    """Rewrite every segment label through a folding map; a label outside it is an error."""
    mapping = read_label_map(map_path)
    utterances = []
    for utt in corpus.utterances:
        segs = []
        for seg in utt.segments:
            if seg.label not in mapping:
                raise UserError(f"{utt.source}: utterance {utt.id} has label {seg.label!r}, which is not in the folding map {map_path}")
            segs.append(dataclasses.replace(seg, label=mapping[seg.label]))
        utterances.append(dataclasses.replace(utt, segments=tuple(segs)))
    labels = tuple(dict.fromkeys(mapping.values()))
    return dataclasses.replace(corpus, utterances=utterances, labels=labels if corpus.labels is None else corpus.labels)


def label_inventory(corpus: Corpus, splits: dict[str, str | None], config: ExtractConfig) -> list[str]:
    """The label set: a given list, the layout's (or folding map's) own, or the labels of the training alignments."""
    fixed = read_label_list(Path(config.phones)) if config.phones else corpus.labels
    if fixed is not None:
        allowed = set(fixed)
        for utt in corpus.utterances:
            for seg in utt.segments:
                if seg.label not in allowed:
                    source = config.phones or "the layout's phone set"
                    raise UserError(f"{utt.source}: utterance {utt.id} has label {seg.label!r}, which is not in {source}")
        labels = list(fixed)
    else:
        train_labels = {s.label for u in corpus.utterances if splits.get(u.speaker) == "train" for s in u.segments}
        for utt in corpus.utterances:
            for seg in utt.segments:
                if seg.label not in train_labels and splits.get(utt.speaker) is not None and seg.label != config.silence:
                    raise UserError(f"{utt.source}: utterance {utt.id} ({splits[utt.speaker]}) has label {seg.label!r}, which never occurs in the training alignments")
        labels = sorted(train_labels)
    if config.silence not in labels:
        labels.append(config.silence)
    return labels


# Worker state, set once per process by _init_worker.
_W: dict = {}


def _init_worker(mfcc: MfccConfig, label_ids: dict[str, int], silence: str, per_utt_cmvn: bool,
                 one_thread: bool = True) -> None:
    if one_thread:
        # One BLAS thread per worker: the pool already uses every core, and oversubscribed
        # BLAS threads made extraction 1.8x slower on 2 cores.
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    _W.update(mfcc=mfcc, label_ids=label_ids, silence=silence, per_utt_cmvn=per_utt_cmvn)


@contextmanager
def _mapper(jobs: int, initargs: tuple):
    """A map over utterances: a process pool, or in this process for jobs=1."""
    if jobs == 1:
        _init_worker(*initargs, one_thread=False)
        yield map
        return
    with ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=initargs) as pool:
        yield functools.partial(pool.map, chunksize=8)


def _process(utt: Utterance):
    """Worker: (features, phones, states, duration) for one utterance, or the error text."""
    try:
        audio = load_audio(utt, _W["mfcc"].sample_rate)
        feats = mfcc_with_deltas(audio, _W["mfcc"])
        if _W["per_utt_cmvn"]:
            feats = (feats - feats.mean(0)) / np.sqrt(feats.var(0) + 1e-8)
        phones, states = frame_targets(utt.segments, len(feats), _W["mfcc"].hop_ms / 1000, _W["label_ids"], _W["silence"])
        return feats.astype(np.float32), phones, states, len(audio) / _W["mfcc"].sample_rate
    except UserError as exc:
        return str(exc)


def _merge_repeats(labels: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    for lab in labels:
        if not out or out[-1] != lab:
            out.append(lab)
    return tuple(out)


def _normalise_by_speaker(path: Path, writer: StoreWriter, sums: dict[str, np.ndarray]) -> None:
    """Pass 2: apply per-speaker mean/variance normalisation to the shards in place."""
    stats = {}
    for spk, acc in sums.items():
        n, s, ss = acc[0, 0], acc[1], acc[2]
        mean = s / n
        stats[spk] = (mean, np.sqrt(np.maximum(ss / n - mean**2, 1e-8)))
    for shard in sorted({r.shard for r in writer.records}):
        feats = np.load(path / shard_name("feats", shard), mmap_mode="r+")
        for rec in (r for r in writer.records if r.shard == shard):
            mean, std = stats[rec.speaker]
            block = feats[rec.offset:rec.offset + rec.frames]
            block[:] = ((block - mean) / std).astype(np.float32)
        feats.flush()
        del feats


def _global_stats(path: Path, writer: StoreWriter, dim: int) -> dict:
    """Per-dimension mean/std over the train split (float64 accumulation), one read per shard."""
    n, s, ss = 0, np.zeros(dim), np.zeros(dim)
    for shard in sorted({r.shard for r in writer.records}):
        feats = np.load(path / shard_name("feats", shard), mmap_mode="r")
        for rec in (r for r in writer.records if r.shard == shard and r.split == "train"):
            x = feats[rec.offset:rec.offset + rec.frames].astype(np.float64)
            n += len(x)
            s += x.sum(0)
            ss += (x**2).sum(0)
        del feats
    if n == 0:
        raise UserError("no training frames were extracted; check the split settings and --skip-bad report")
    mean = s / n
    return {"mean": mean.tolist(), "std": np.sqrt(np.maximum(ss / n - mean**2, 1e-8)).tolist(), "train_frames": n}


def extract(corpus_path: Path, out_dir: Path, config: ExtractConfig, force: bool = False) -> dict:
    """Extract `corpus_path` into a feature store at `out_dir`; returns the summary.

    An existing complete store made with the same corpus and config is left as it is
    (the stage is done); a different one is replaced only with `force`.
    """
    config.validate()
    corpus_path, out_dir = Path(corpus_path).resolve(), Path(out_dir)
    settings = {"corpus": str(corpus_path), "extract": config.to_dict(), "mfcc": config.mfcc().__dict__}
    if out_dir.exists():
        done = (out_dir / "summary.json").exists() and (out_dir / "config.json").exists()
        if done and not force and read_json(out_dir / "config.json") == settings:
            console.print(f"[green]{out_dir} is already complete with these settings; nothing to do (use --force to redo)")
            return read_json(out_dir / "summary.json")
        if not force:
            why = "was made with other settings" if done else "is not a complete feature store"
            raise UserError(f"output {out_dir} already exists and {why}; use --force to replace it or choose another --out")

    corpus = read_corpus(corpus_path, ctm=Path(config.ctm) if config.ctm else None, tier=config.tier, include_sa=config.include_sa)
    if not corpus.utterances:
        raise UserError(f"corpus {corpus_path} has no utterances")
    if config.phone_map:
        corpus = fold_labels(corpus, Path(config.phone_map))
    splits = assign_splits(corpus, config)
    labels = label_inventory(corpus, splits, config)
    label_ids = {lab: i for i, lab in enumerate(labels)}
    utterances = [u for u in corpus.utterances if splits.get(u.speaker) is not None]
    mfcc = config.mfcc()

    tmp = out_dir.with_name(f"{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        writer = StoreWriter(tmp, config.shard_frames)
        sums: dict[str, np.ndarray] = {}
        problems: list[str] = []
        t0 = time.perf_counter()
        initargs = (mfcc, label_ids, config.silence, config.cmvn == "utterance")
        with _mapper(config.jobs, initargs) as mapper, progress_bar() as bar:
            task = bar.add_task("extracting", total=len(utterances), unit="utt")
            for utt, result in zip(utterances, mapper(_process, utterances)):
                bar.advance(task)
                if isinstance(result, str):
                    if not config.skip_bad:
                        raise UserError(result + " (use --skip-bad to skip such utterances and report them)")
                    problems.append(result)
                    console.print(f"[yellow]skipped: {result}")
                    continue
                feats, phones, states, duration = result
                transcript = _merge_repeats([s.label for s in utt.segments])
                writer.add(utt.id, utt.speaker, splits[utt.speaker], duration, feats, phones, states, transcript)
                acc = sums.setdefault(utt.speaker, np.zeros((3, mfcc.dim)))
                acc[0] += len(feats)
                acc[1] += feats.sum(0, dtype=np.float64)
                acc[2] += (feats.astype(np.float64) ** 2).sum(0)
        writer.close()
        if not writer.records:
            raise UserError(f"no utterance of {corpus_path} could be extracted")
        if config.cmvn == "speaker":
            _normalise_by_speaker(tmp, writer, sums)
        stats = _global_stats(tmp, writer, mfcc.dim)
        elapsed = time.perf_counter() - t0

        (tmp / "phones.txt").write_text("".join(f"{i} {lab}\n" for i, lab in enumerate(labels)))
        (tmp / "states.txt").write_text("".join(
            f"{i * STATES_PER_PHONE + k} {lab}_{k}\n" for i, lab in enumerate(labels) for k in range(STATES_PER_PHONE)
        ))
        write_json_atomic(tmp / "config.json", settings)
        write_json_atomic(tmp / "stats.json", stats)
        summary = _summary(writer, corpus.layout, problems, elapsed)
        write_json_atomic(tmp / "summary.json", summary)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _summary(writer: StoreWriter, layout: str, problems: list[str], elapsed: float) -> dict:
    per_split = {}
    for split in SPLITS:
        recs = [r for r in writer.records if r.split == split]
        per_split[split] = {
            "utterances": len(recs), "speakers": len({r.speaker for r in recs}),
            "frames": sum(r.frames for r in recs), "hours": sum(r.duration for r in recs) / 3600,
        }
    hours = sum(r.duration for r in writer.records) / 3600
    return {
        "layout": layout, "splits": per_split, "utterances": len(writer.records), "hours": hours,
        "skipped": problems, "seconds": elapsed, "x_real_time": hours * 3600 / max(elapsed, 1e-9),
    }


def summary_table(summary: dict):
    """A rich table of a store summary."""
    from rich.table import Table

    table = Table(title=f"feature store ({summary['layout']} corpus)")
    for col in ("split", "speakers", "utterances", "hours", "frames"):
        table.add_column(col, justify="right")
    for split, s in summary["splits"].items():
        table.add_row(split, str(s["speakers"]), str(s["utterances"]), f"{s['hours']:.3f}", f"{s['frames']:,}")
    return table
