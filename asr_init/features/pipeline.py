"""The input pipeline shared by pre-training, fine-tuning and evaluation.

Frames are normalised to N(0, 1) per dimension with the store's train statistics and
spliced +-K frames within their utterance (edge frames repeated), giving
(2K + 1) * 39 inputs, frame-major: [x(t-K), ..., x(t), ..., x(t+K)]. With `squash`
(a Bernoulli first RBM layer) the inputs are passed through the logistic function so
that they are probabilities in (0, 1).

Training reads frames through a `FrameBuffer`: utterances in a seeded random order
are packed into a buffer of at most `buffer_frames` unspliced frames, the buffer is
shuffled at frame level, and mini-batches are spliced on the fly by index arithmetic
clipped to each frame's utterance (one gather per batch with row indices computed once
per buffer). Memory is bounded by the buffer, not the corpus (Kaldi nnet1 does the same
with its randomiser buffer); on a GPU the next buffer is read in the background while
the current one is used. On several processes every one reads the same buffers in the
same order and keeps its rows of every mini-batch (`Batch`): one path for any number of
processes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from asr_init.config import LIMITS, as_typed
from asr_init.errors import UserError
from asr_init.features.config import ExtractConfig
from asr_init.features.frontend import FeatureConfig, kaldi_line
from asr_init.features.store import FeatureStore, UttRecord


def _describe(name: str, value) -> str:
    """'sample rate 16000 Hz' for a feature setting named in an error message."""
    if name in ("sample_rate", "low_freq", "high_freq"):
        return f"{name.replace('_', ' ')} {value:g} Hz"
    return f"{name.replace('_', ' ')} {value}"


def _as_option(name: str, value) -> str | None:
    """The `extract` option that sets feature setting `name` to `value` ('--high-freq 8000', '--norm-vars'):
    ExtractConfig's field of that name (`kind` is its `features`); None where extract has none."""
    field = "features" if name == "kind" else name
    if field not in {f.name for f in dataclasses.fields(ExtractConfig)}:
        return None
    value = int(value) if isinstance(value, float) and value.is_integer() else value
    return as_typed(ExtractConfig(**{field: value}), field)


def _extract_advice(settings: list[tuple[str, object]]) -> str:
    """How to extract a store with these (feature setting, value)s: extract's options where it has
    them, the others as lines of a --mfcc-config file; where neither sets one, the model's settings."""
    options = [_as_option(name, value) for name, value in settings]
    lines = [kaldi_line(name, value) for (name, value), option in zip(settings, options) if option is None]
    if None in lines:
        return "extract the corpus with the model's feature settings"
    given = [" ".join(o for o in options if o)] if any(options) else []
    if lines:
        given.append(f"the line{'s' * (len(lines) > 1)} {' and '.join(lines)} in its --mfcc-config file")
    return "extract the corpus with " + ", and with ".join(given)


NORM_LIMIT = 2.0**60
"""Normalisation asr-init takes: means within +-NORM_LIMIT, standard deviations from 1 / NORM_LIMIT to
NORM_LIMIT (about 8.7e-19 to 1.2e18). Any frame value of magnitude up to NORM_LIMIT is then normalised
to at most 2 * NORM_LIMIT**2 = 2**121, a finite float32 (those end at 2**128); Kaldi's cmvn-to-nnet
floors variances at 1e-10, standard deviations at 1e-5."""


def check_splice(splice: int, what: str) -> None:
    """Refuse a splice context that a file (not --splice, which the config checks) records beyond
    LIMITS: a few bytes that say +-40000 frames would ask for gigabytes per mini-batch."""
    if not 0 <= splice <= LIMITS["splice"]:
        raise UserError(
            f"{what} splices {splice} frames either side; asr-init splices 0 to {LIMITS['splice']} (--splice)"
        )


@dataclass(frozen=True)
class FeaturePipeline:
    """Splice context and normalisation statistics: enough to turn store frames into inputs.

    `feature_config` holds the settings the store's frames were computed with (sample rate, mel
    filterbank, ...): a model applies only to frames computed the same way. None for
    models trained before stores recorded them, or on stores made without `extract`.
    """

    splice: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    squash: bool = False
    feature_config: FeatureConfig | None = None

    @classmethod
    def from_store(cls, store: FeatureStore, splice: int, squash: bool = False) -> FeaturePipeline:
        if splice < 0:
            raise UserError(f"invalid splice {splice}: must be >= 0")
        return cls(splice, tuple(map(float, store.mean)), tuple(map(float, store.std)), squash, store.feature_config)

    @property
    def base_dim(self) -> int:
        return len(self.mean)

    @property
    def dim(self) -> int:
        return self.base_dim * (2 * self.splice + 1)

    def to_dict(self) -> dict:
        return {
            "splice": self.splice,
            "mean": list(self.mean),
            "std": list(self.std),
            "squash": self.squash,
            "features": None if self.feature_config is None else self.feature_config.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> FeaturePipeline:
        """The pipeline a model or DBN file records; a splice beyond LIMITS, or normalisation statistics
        beyond NORM_LIMIT (not finite, a standard deviation not positive: an edited or damaged file),
        are a UserError."""
        check_splice(int(d["splice"]), "its feature pipeline")
        features = FeatureConfig.from_dict(d["features"]) if d.get("features") else None
        mean, std = tuple(map(float, d["mean"])), tuple(map(float, d["std"]))
        lo, hi = 1 / NORM_LIMIT, NORM_LIMIT
        bad = [i for i, (m, s) in enumerate(zip(mean, std)) if not (abs(m) <= hi and lo <= s <= hi)]
        if bad or len(mean) != len(std):
            at = bad[0] if bad else min(len(mean), len(std))
            raise UserError(
                f"its feature pipeline's normalisation gives dimension {at} a mean of "
                f"{mean[at] if at < len(mean) else 'none'} and a standard deviation of "
                f"{std[at] if at < len(std) else 'none'}; frames cannot be normalised with them (asr-init takes "
                f"means within +-{hi:.2g} and standard deviations from {lo:.2g} to {hi:.2g})"
            )
        return cls(int(d["splice"]), mean, std, bool(d.get("squash", False)), features)

    def check_store(self, store: FeatureStore, where: str) -> None:
        """Raise if `store`'s frames do not fit this pipeline: computed at another sample rate
        or with other feature settings (checked where both sides record them), or of
        another dimension. Every stage that applies a model to a store calls this."""
        if self.feature_config is not None and store.feature_config is not None:
            diffs = self.feature_config.differences(store.feature_config)
            if diffs:
                ours = ", ".join(_describe(name, a) for name, a, _ in diffs)
                theirs = ", ".join(_describe(name, b) for name, _, b in diffs)
                fix = _extract_advice([(name, a) for name, a, _ in diffs])
                raise UserError(
                    f"{where} was trained on features with {ours}, but store {store.path} has {theirs}; "
                    f"{fix} to use this model on it"
                )
        if store.dim != self.base_dim:
            raise UserError(
                f"{where} expects {self.base_dim}-dim frames (splice {self.splice} -> {self.dim} inputs) "
                f"but store {store.path} has {store.dim}-dim frames"
            )

    def normalise(self, feats: np.ndarray) -> np.ndarray:
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        out = np.empty(np.shape(feats), np.float32)  # row-major, whatever the input's layout:
        np.subtract(feats, mean, out=out, casting="unsafe")  # frames are gathered by row
        out /= std
        return out

    def utterance(self, feats: np.ndarray, idx: torch.Tensor | None = None) -> torch.Tensor:
        """(frames, base_dim) store frames -> (frames, dim) spliced, normalised inputs (of the
        frames `idx` only, where given)."""
        x = torch.from_numpy(self.normalise(feats))
        idx = torch.arange(len(x)) if idx is None else idx
        lo, hi = torch.zeros_like(idx), torch.full_like(idx, len(x) - 1)
        return self.finish(splice_frames(x, idx, lo, hi, self.splice))

    def finish(self, spliced: torch.Tensor) -> torch.Tensor:
        """The last step on spliced inputs: the logistic squash, if any (in place)."""
        return spliced.sigmoid_() if self.squash else spliced


def splice_rows(idx: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, k: int) -> torch.Tensor:
    """Rows idx-K..idx+K of each frame, clipped to its [lo, hi] -> (B, 2K+1) int64."""
    offsets = torch.arange(-k, k + 1, device=idx.device)
    return (idx[:, None] + offsets[None, :]).clamp(min=lo[:, None], max=hi[:, None])


def splice_frames(x: torch.Tensor, idx: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, k: int) -> torch.Tensor:
    """Gather frames idx-K..idx+K of `x` (N, d), clipped to [lo, hi] per frame -> (B, (2K+1) d)."""
    rows = splice_rows(idx, lo, hi, k)
    return x.index_select(0, rows.view(-1)).view(len(idx), -1)  # index_select: 3x faster than x[rows]


class Batch(NamedTuple):
    """One mini-batch as this process sees it: its rows of the global mini-batch.

    On one process the rows are the whole batch (`start` 0, `size` = len(inputs)); on
    several, process r has rows [start, start + len(inputs)) of a global batch of `size`
    frames (see `batch_rows`).
    """

    inputs: torch.Tensor  # (rows, dim) float32
    targets: torch.Tensor | None  # (rows,) int64 state or phone ids
    start: int
    size: int


def batch_rows(size: int, rank: int, world: int) -> tuple[int, int]:
    """Process `rank`'s rows [start, end) of a global mini-batch of `size` rows split over
    `world` processes: contiguous parts that differ in length by at most one row."""
    return rank * size // world, (rank + 1) * size // world


class FrameBuffer:
    """Seeded frame-level shuffling of a split through a bounded buffer.

    Iterating yields `Batch`es on `device`: inputs (B, dim) float32, targets (B,) int64
    (ids of the store's target kind `targets`, or None). The order depends only on the seed and epoch, so a run
    can be resumed at any batch.

    Per buffer the clipped splice rows of every frame in shuffled order are computed once,
    on the device, so that a mini-batch is one gather. With `prefetch` (None: on for a CUDA
    device, off for the CPU, where the compute already uses every core) a background thread
    reads the next buffer while the current one is used (on CUDA: copies its raw frames
    from pinned memory on a side stream and normalises them on the GPU): at most two
    buffers are then resident. The batches are the same, bit for bit, with prefetch on or
    off. With `world` > 1 processes, process `rank` keeps its rows of every global batch
    (`batch_rows`).
    """

    def __init__(
        self,
        store: FeatureStore,
        records: list[UttRecord],
        pipeline: FeaturePipeline,
        batch_size: int,
        buffer_frames: int = 500_000,
        targets: str | None = None,
        device: str | torch.device = "cpu",
        rank: int = 0,
        world: int = 1,
        prefetch: bool | None = None,
    ):
        if not records:
            raise UserError(f"store {store.path} has no utterances in the requested split")
        self.store, self.records, self.pipeline = store, records, pipeline
        self.batch_size, self.buffer_frames = batch_size, max(buffer_frames, batch_size)
        self.targets, self.device = targets, torch.device(device)
        self.rank, self.world = rank, world
        self.prefetch = self.device.type == "cuda" if prefetch is None else bool(prefetch)
        self.num_frames = sum(r.frames for r in records)

    def _buffers(self, rng: np.random.Generator) -> Iterator[list[UttRecord]]:
        order = rng.permutation(len(self.records))
        chunk, size = [], 0
        for i in order:
            chunk.append(self.records[i])
            size += self.records[i].frames
            if size >= self.buffer_frames:
                yield chunk
                chunk, size = [], 0
        if chunk:
            yield chunk

    def _read(self, chunk: list[UttRecord], normalise: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A buffer on the host: frames (frames, base_dim) float32, normalised unless told
        not to, and targets (frames,) int64 or None, utterance after utterance in the buffer's order."""
        feats = np.concatenate([self.store.features(r) for r in chunk])
        y = None
        if self.targets is not None:
            y = torch.from_numpy(np.concatenate([self.store.targets(self.targets, r) for r in chunk]).astype(np.int64))
        self.store.release()  # unmap the shards: resident memory stays bounded by the buffer
        return torch.from_numpy(self.pipeline.normalise(feats) if normalise else feats), y

    def _plan(self, chunks: list[list[UttRecord]], max_frames: int | None, skip: int) -> list[tuple[int, int] | None]:
        """Per buffer, from the manifest alone: (frames that go into batches, leading batches
        skipped), or None where none of its batches is yielded (all skipped, or past `max_frames`)."""
        limit = self.num_frames if max_frames is None else min(max_frames, self.num_frames)
        plan, seen, index = [], 0, 0
        for chunk in chunks:
            used = max(0, min(sum(r.frames for r in chunk), limit - seen))
            count = -(-used // self.batch_size)
            plan.append((used, max(0, skip - index)) if count and index + count > skip else None)
            seen, index = seen + used, index + count
        return plan

    def batches(self, seed: int, epoch: int, max_frames: int | None = None, skip: int = 0) -> Iterator[Batch]:
        """Mini-batches of one epoch; `skip` drops the first batches (for resuming): buffers
        with no batch left to yield are not read."""
        rng = np.random.default_rng([seed, epoch])
        chunks = list(self._buffers(rng))  # the utterance order is the first draw
        plan = self._plan(chunks, max_frames, skip)
        wanted = [c for c, p in enumerate(plan) if p is not None]
        loader = _BufferLoader(self, [chunks[c] for c in wanted], self.prefetch)
        try:
            for c in range(wanted[-1] + 1 if wanted else 0):
                # Every buffer's permutation is drawn, in order, in this thread: frame counts
                # come from the manifest, so the draws do not wait for (or depend on) the reads.
                perm = rng.permutation(sum(r.frames for r in chunks[c]))
                if plan[c] is not None:
                    used, skipped = plan[c]
                    yield from self._buffer_batches(loader.next(), chunks[c], perm[:used], skipped)
        finally:
            loader.close()

    def _buffer_batches(
        self, data: tuple[torch.Tensor, torch.Tensor | None], chunk: list[UttRecord], perm: np.ndarray, skip: int
    ) -> Iterator[Batch]:
        """This process's rows of the batches of one buffer: frames `perm` in that order, after
        the first `skip` batches. Its frames (x) and targets (y) on the device are let go when
        the last batch is made."""
        x, y = data
        idx = torch.from_numpy(perm).to(self.device)
        rows = self._splice_rows(chunk, idx)
        size = self.batch_size
        for b in range(skip * size, len(idx), size):
            n = min(size, len(idx) - b)
            start, end = batch_rows(n, self.rank, self.world)
            mine = slice(b + start, b + end)
            inputs = x.index_select(0, rows[mine].reshape(-1)).view(end - start, self.pipeline.dim)
            targets = y.index_select(0, idx[mine]) if y is not None else None
            yield Batch(self.pipeline.finish(inputs), targets, start, n)

    def _splice_rows(self, chunk: list[UttRecord], idx: torch.Tensor) -> torch.Tensor:
        """(len(idx), 2K+1) int64 on the device: the buffer rows of the context of frames `idx`,
        in that order, clipped to each frame's utterance (`splice_rows`)."""
        lengths = torch.tensor([r.frames for r in chunk], device=self.device)
        starts = torch.cumsum(lengths, 0) - lengths
        frames = sum(r.frames for r in chunk)  # output_size: no wait for the device to count them
        lo = torch.repeat_interleave(starts, lengths, output_size=frames).index_select(0, idx)
        hi = torch.repeat_interleave(starts + lengths - 1, lengths, output_size=frames).index_select(0, idx)
        return splice_rows(idx, lo, hi, self.pipeline.splice)


class _BufferLoader:
    """The buffers of one epoch on the device, in order: read when asked for or, with
    `prefetch`, each one read by a background thread while the one before it is used.

    The thread is the only reader of the store while it runs (a FeatureStore's memory maps
    are not shared between threads); `close` joins it. A read's exception (a damaged shard)
    is raised again in the caller of `next`. On CUDA the thread copies the buffer's raw frames
    from pinned memory on a side stream and normalises them there; `next` makes the caller's
    stream wait for that work."""

    def __init__(self, buffer: FrameBuffer, chunks: list[list[UttRecord]], prefetch: bool):
        self._buffer, self._chunks, self._device = buffer, iter(chunks), buffer.device
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="asr-init-prefetch") if prefetch else None
        self._stream = None
        if prefetch and self._device.type == "cuda":
            if self._device.index is None:  # "cuda" is the caller's current device, not the thread's
                self._device = torch.device("cuda", torch.cuda.current_device())
            self._stream = torch.cuda.Stream(self._device)
            pipe = buffer.pipeline  # normalised on the GPU: the same float32 operations as normalise()
            self._mean = torch.tensor(pipe.mean, dtype=torch.float32, device=self._device)
            self._std = torch.tensor(pipe.std, dtype=torch.float32, device=self._device)
        self._pending = self._submit()

    def _submit(self) -> Future | None:
        if self._pool is None:
            return None
        chunk = next(self._chunks, None)
        return None if chunk is None else self._pool.submit(self._load, chunk)

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next buffer's frames (frames, base_dim) and targets (frames,) or None, on the device."""
        if self._pool is None:
            return self._on_device(*self._buffer._read(next(self._chunks)))
        x, y, ready = self._pending.result()  # the thread's exception, if any, is raised here
        self._pending = self._submit()
        if ready is not None:
            stream = torch.cuda.current_stream(self._device)
            stream.wait_event(ready)
            for t in (x, y):
                if t is not None:
                    t.record_stream(stream)  # its memory is not reused before this stream is done with it
        return x, y

    def _load(self, chunk: list[UttRecord]) -> tuple[torch.Tensor, torch.Tensor | None, torch.cuda.Event | None]:
        """In the thread: read one buffer and move it to the device (with the event that marks
        the copy done on CUDA)."""
        if self._stream is None:
            return *self._on_device(*self._buffer._read(chunk)), None
        x, y = self._buffer._read(chunk, normalise=False)
        with torch.cuda.device(self._device), torch.cuda.stream(self._stream):
            x = x.pin_memory().to(self._device, non_blocking=True).sub_(self._mean).div_(self._std)
            y = y.pin_memory().to(self._device, non_blocking=True) if y is not None else None
            ready = torch.cuda.Event()
            ready.record(self._stream)
        ready.synchronize()  # the pinned host copies outlive the transfer; this thread alone waits
        return x, y, ready

    def _on_device(self, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        return x.to(self._device), (y.to(self._device) if y is not None else None)

    def close(self) -> None:
        """Stop reading ahead and join the thread (after the read in progress, if any)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def sample_frames(store: FeatureStore, pipeline: FeaturePipeline, split: str, num: int, seed: int) -> torch.Tensor:
    """Up to `num` spliced, normalised frames drawn at random from `split` -> (num, dim)."""
    records = store.split(split)
    if not records:
        raise UserError(f"store {store.path} has no {split} utterances")
    rng = np.random.default_rng(seed)
    total = sum(r.frames for r in records)
    chosen = np.sort(rng.choice(total, size=min(num, total), replace=False))
    out, start = [], 0
    for rec in records:
        sel = chosen[(chosen >= start) & (chosen < start + rec.frames)] - start
        if len(sel):
            out.append(pipeline.utterance(store.features(rec), torch.from_numpy(sel)))
        start += rec.frames
    store.release()
    return torch.cat(out)
