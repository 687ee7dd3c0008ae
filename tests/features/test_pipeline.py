"""FrameBuffer on one process: one gather per batch and the next buffer read ahead, with
the batches of the straightforward pipeline, bit for bit."""

import re
import threading

import numpy as np
import pytest
import torch

from asr_init.errors import UserError
from asr_init.features.pipeline import Batch, FeaturePipeline, FrameBuffer
from asr_init.features.store import FeatureStore

ARGS = dict(batch_size=64, buffer_frames=300)  # about 1300 train frames: several buffers an epoch


def _reference_batches(buf: FrameBuffer, seed: int, epoch: int, max_frames=None, skip: int = 0):
    """The single-process pipeline as it was before buffers were read ahead: every buffer read
    and moved to the device when the one before is used up, every batch spliced on its own."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(buf.records))
    chunks, chunk, size = [], [], 0
    for i in order:
        chunk.append(buf.records[i])
        size += buf.records[i].frames
        if size >= buf.buffer_frames:
            chunks.append(chunk)
            chunk, size = [], 0
    if chunk:
        chunks.append(chunk)
    limit = buf.num_frames if max_frames is None else min(max_frames, buf.num_frames)
    seen, index, k = 0, 0, buf.pipeline.splice
    for chunk in chunks:
        x = torch.from_numpy(buf.pipeline.normalise(np.concatenate([buf.store.features(r) for r in chunk])))
        lengths = torch.tensor([r.frames for r in chunk])
        starts = torch.cumsum(lengths, 0) - lengths
        lo, hi = torch.repeat_interleave(starts, lengths), torch.repeat_interleave(starts + lengths - 1, lengths)
        y = None
        if buf.targets is not None:
            y = torch.from_numpy(np.concatenate([buf.store.targets(buf.targets, r) for r in chunk]).astype(np.int64))
        perm = torch.from_numpy(rng.permutation(len(x)))
        for b in range(0, len(perm), buf.batch_size):
            if seen >= limit:
                return
            idx = perm[b : b + buf.batch_size][: limit - seen]
            seen += len(idx)
            index += 1
            if index <= skip:
                continue
            rows = (idx[:, None] + torch.arange(-k, k + 1)[None, :]).clamp(min=lo[idx][:, None], max=hi[idx][:, None])
            inputs = buf.pipeline.finish(x.index_select(0, rows.view(-1)).view(len(idx), -1))
            yield Batch(inputs, y.index_select(0, idx) if y is not None else None, 0, len(idx))


def _buffer(blob_store, splice=5, squash=False, **kw) -> FrameBuffer:
    store = FeatureStore(blob_store)
    pipe = FeaturePipeline.from_store(store, splice=splice, squash=squash)
    return FrameBuffer(store, store.split("train"), pipe, **(ARGS | kw))


def _assert_same(got: list[Batch], want: list[Batch]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert torch.equal(g.inputs, w.inputs)
        assert (g.targets is None and w.targets is None) or torch.equal(g.targets, w.targets)
        assert (g.start, g.size) == (w.start, w.size)


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("asr-init-prefetch")]


@pytest.mark.parametrize("prefetch", [False, True])
@pytest.mark.parametrize(
    "splice, targets, squash, skip, max_frames",
    [
        (5, "states", False, 0, None),
        (0, None, False, 3, None),
        (5, "phones", True, 7, 900),  # skips the whole first buffer, stops inside a batch
        (5, "states", False, 0, 700),
        (0, "states", True, 10_000, None),  # resumed past the end: nothing
    ],
)
def test_frame_buffer_batches_equal_the_reference(blob_store, prefetch, splice, targets, squash, skip, max_frames):
    buf = _buffer(blob_store, splice, squash, targets=targets, prefetch=prefetch)
    assert len(list(buf._buffers(np.random.default_rng(0)))) >= 4
    for seed, epoch in [(0, 1), (7, 3)]:
        want = list(_reference_batches(buf, seed, epoch, max_frames, skip))
        got = list(buf.batches(seed, epoch, max_frames=max_frames, skip=skip))
        _assert_same(got, want)
        if skip < 100:
            assert len(got) > 5 and got[0].inputs.shape[1] == 39 * (2 * splice + 1)
            assert any(b.size < 64 for b in got)  # short batches at the ends of buffers
    assert not _prefetch_threads()


def test_prefetch_is_on_for_cuda_only(blob_store):
    assert _buffer(blob_store).prefetch is False
    assert _buffer(blob_store, prefetch=True).prefetch is True
    assert _buffer(blob_store, device="cuda").prefetch is True  # nothing is put on the device before an epoch


def test_prefetch_thread_is_the_stores_only_reader(blob_store, monkeypatch):
    buf = _buffer(blob_store, targets="states", prefetch=True)
    readers: set[str] = set()
    for name in ("features", "targets", "release"):
        method = getattr(buf.store, name)

        def traced(*a, method=method):
            readers.add(threading.current_thread().name)
            return method(*a)

        monkeypatch.setattr(buf.store, name, traced)
    assert len(list(buf.batches(0, 1))) > 5
    assert len(readers) == 1 and next(iter(readers)).startswith("asr-init-prefetch")


@pytest.mark.parametrize("prefetch", [False, True])
def test_an_epoch_left_early_leaves_no_thread(blob_store, prefetch):
    buf = _buffer(blob_store, prefetch=prefetch)
    before = set(threading.enumerate())
    gen = buf.batches(0, 1)
    for i, _ in enumerate(gen):
        if i == 1:
            break
    assert len(_prefetch_threads()) == int(prefetch)  # reading the second buffer, or done with it
    gen.close()
    assert set(threading.enumerate()) <= before
    for _ in zip(range(2), buf.batches(0, 2)):  # dropped unfinished: closed when collected
        pass
    assert set(threading.enumerate()) <= before


@pytest.mark.parametrize("prefetch", [False, True])
def test_a_read_error_in_the_prefetch_thread_reaches_the_consumer(blob_store, monkeypatch, prefetch):
    buf = _buffer(blob_store, prefetch=prefetch)
    second = {r.id for r in list(buf._buffers(np.random.default_rng([0, 1])))[1]}
    features = buf.store.features

    def damaged(rec):
        if rec.id in second:
            raise UserError(f"cannot read shard for {rec.id}; the store is damaged")
        return features(rec)

    monkeypatch.setattr(buf.store, "features", damaged)
    got = []
    with pytest.raises(UserError, match="the store is damaged"):
        for batch in buf.batches(0, 1):
            got.append(batch)
    assert got and sum(b.size for b in got) < buf.num_frames  # the first buffer's batches came first
    assert not _prefetch_threads()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("prefetch", [False, True])
def test_cuda_batches_equal_cpu_batches(blob_store, prefetch):
    cpu = _buffer(blob_store, 5, True, targets="states", prefetch=False)
    gpu = _buffer(blob_store, 5, True, targets="states", prefetch=prefetch, device="cuda")
    got = [Batch(b.inputs.cpu(), b.targets.cpu(), b.start, b.size) for b in gpu.batches(3, 2, max_frames=1000, skip=2)]
    _assert_same(got, list(cpu.batches(3, 2, max_frames=1000, skip=2)))


@pytest.mark.parametrize(
    "changes, advice",
    [
        (dict(window="hamming", cepstral_lifter=20.0, norm_vars=True),
         "--norm-vars, and with the lines --window-type=hamming and --cepstral-lifter=20.0 in its --mfcc-config file"),
        (dict(norm_vars=True, cmvn="utterance", high_freq=7000.0), "--high-freq 7000 --cmvn utterance --norm-vars"),
        (dict(raw_energy=False, use_energy=False), "--no-use-energy, and with the line --raw-energy=false in its "),
        (dict(delta_order=1), "the model's feature settings"),
    ],
)  # fmt: skip
def test_a_store_of_other_features_is_refused_with_extracts_own_options(tiny_store, tmp_path, changes, advice):
    """A model's features that differ from a store's: the advice names the options extract has
    (--norm-vars and --cmvn got the generic advice) and puts the settings only a Kaldi feature config
    sets in its --mfcc-config file, as lines it reads (it advised --window-type, an option extract lacks)."""
    import dataclasses

    from asr_init.features.frontend import read_kaldi_conf

    store = FeatureStore(tiny_store)
    model = dataclasses.replace(store.feature_config, **changes)
    pipeline = dataclasses.replace(FeaturePipeline.from_store(store, 0), feature_config=model)
    with pytest.raises(UserError, match=r"; extract the corpus with (.*) to use this model on it$") as caught:
        pipeline.check_store(store, "model m")
    assert str(caught.value).split("; extract the corpus with ")[1].startswith(advice)
    lines = [w for w in str(caught.value).split() if w.startswith("--") and "=" in w]
    (tmp_path / "mfcc.conf").write_text("\n".join(lines) + "\n")
    assert read_kaldi_conf(tmp_path / "mfcc.conf") == {
        k: v for k, v in changes.items() if k in ("window", "cepstral_lifter", "raw_energy")
    }


@pytest.mark.parametrize(
    "mean, std, said",
    [
        (0.0, 7.1362384635298e44, "dimension 1 a mean of 0.0 and a standard deviation of 7.1362384635298e+44"),
        (0.0, 1e-30, "dimension 1 a mean of 0.0 and a standard deviation of 1e-30"),
        (-3e38, 1.0, "dimension 1 a mean of -3e+38 and a standard deviation of 1.0"),
    ],
)
def test_a_recorded_normalisation_beyond_the_limits_is_refused(mean, std, said):
    """A model trained before feature transforms were range-checked may record a standard deviation
    of 7e44 (inf as float32: every input 0) or 1e-30 (inputs beyond float32): refused when read,
    where the bounds themselves are taken."""
    edge = {"splice": 1, "mean": [2.0**60, -(2.0**60)], "std": [2.0**-60, 2.0**60]}
    assert FeaturePipeline.from_dict(edge).std == (2.0**-60, 2.0**60)
    with pytest.raises(UserError, match=re.escape(said) + r"; frames cannot be normalised with them \(asr-init takes"):
        FeaturePipeline.from_dict({"splice": 1, "mean": [0.0, mean], "std": [1.0, std]})
