"""Training on several processes (torchrun, gloo on the CPU): the same numbers as one process.

One module-scoped fixture runs every two-process job in one pair of spawned processes
(starting them costs seconds); the tests compare the outputs with one-process runs.
"""

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from asr_init.features.pipeline import FeaturePipeline, FrameBuffer, batch_rows
from asr_init.features.store import FeatureStore
from asr_init.io import load_checkpoint, read_csv
from asr_init.training.distributed import run_local
from asr_init.training.finetune import FinetuneConfig, finetune
from asr_init.training.interrupts import Interrupted
from asr_init.training.pretrain import PretrainConfig, pretrain

# A Gaussian layer and a Bernoulli layer (saturation guard on), and two fine-tuning epochs.
PRETRAIN = dict(layers=2, hidden=32, epochs=1, epochs_gauss=2, batch_size=64, report_every=500, stats_frames=300)
FINETUNE = dict(layers=2, hidden=32, splice=1, batch_size=32, max_epochs=2, lr=0.004, momentum=0.5, stats_frames=200)
PRETRAIN_CUT, FINETUNE_CUT = 50, 45  # mini-batches before the simulated signal: inside layer 1 / epoch 2


def _jobs(tiny_store: str, blob_store: str, root: str) -> None:
    """What each of the two processes runs (module level: spawned processes import it)."""
    root = Path(root)
    pretrain(Path(tiny_store), PretrainConfig(**PRETRAIN), root / "pt")
    finetune(Path(blob_store), FinetuneConfig(**FINETUNE), root / "ft")
    with pytest.raises(Interrupted):
        pretrain(Path(tiny_store), PretrainConfig(**PRETRAIN), root / "pt-cut", interrupt_after=PRETRAIN_CUT)
    pretrain(Path(tiny_store), PretrainConfig(**PRETRAIN), root / "pt-cut", resume=True)
    with pytest.raises(Interrupted):
        finetune(Path(blob_store), FinetuneConfig(**FINETUNE), root / "ft-cut", interrupt_after=FINETUNE_CUT)
    # The GPU paths, run here on the CPU: the device-decided CD step (bf16) with its statistics
    # summed by a collective, and fine-tuning's sums kept on the device, interrupted and resumed.
    pretrain(Path(tiny_store), PretrainConfig(**PRETRAIN, precision="bf16"), root / "pt-bf16")
    import asr_init.training.finetune as finetune_module

    finetune_module.decides_on_device = lambda device: True
    finetune_module.SYNC_EVERY = 7
    with pytest.raises(Interrupted):
        finetune(Path(blob_store), FinetuneConfig(**FINETUNE), root / "ft-dev", interrupt_after=FINETUNE_CUT)
    finetune(Path(blob_store), FinetuneConfig(**FINETUNE), root / "ft-dev", resume=True)


@pytest.fixture(scope="module")
def runs(tiny_store, blob_store, tmp_path_factory) -> Path:
    """Two-process runs under root/{pt, ft, pt-cut, ft-cut} and one-process runs under root/one."""
    root = tmp_path_factory.mktemp("ddp")
    run_local(2, _jobs, str(tiny_store), str(blob_store), str(root), threads=1)
    pretrain(tiny_store, PretrainConfig(**PRETRAIN), root / "one" / "pt")
    finetune(blob_store, FinetuneConfig(**FINETUNE), root / "one" / "ft")
    pretrain(tiny_store, PretrainConfig(**PRETRAIN, precision="bf16"), root / "one" / "pt-bf16")
    return root


def _assert_same_dbn(a: Path, b: Path) -> None:
    la, lb = load_checkpoint(a / "dbn.pt")["layers"], load_checkpoint(b / "dbn.pt")["layers"]
    assert len(la) == len(lb) == 2
    for x, y in zip(la, lb):
        torch.testing.assert_close(x["W"], y["W"], rtol=0, atol=1e-5)
        torch.testing.assert_close(x["b"], y["b"], rtol=0, atol=1e-5)
        assert not torch.equal(x["W"], torch.zeros_like(x["W"]))


def _assert_same_model(a: Path, b: Path) -> None:
    sa, sb = load_checkpoint(a / "model.pt")["state_dict"], load_checkpoint(b / "model.pt")["state_dict"]
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=1e-5)


def _recon_rows(folder: Path) -> list[tuple]:
    return [(r["layer"], r["epoch"], r["frames"], r["kind"], r["guard"]) for r in read_csv(folder / "recon.csv")]


def test_pretraining_on_two_processes_equals_one(runs):
    """Layer 1 Gaussian, layer 2 Bernoulli with the saturation guard: the same weights, the
    same log rows (frames are counted globally) and reconstruction errors."""
    _assert_same_dbn(runs / "pt", runs / "one" / "pt")
    assert _recon_rows(runs / "pt") == _recon_rows(runs / "one" / "pt")
    two, one = read_csv(runs / "pt" / "recon.csv"), read_csv(runs / "one" / "pt" / "recon.csv")
    for a, b in zip(two, one):
        for key in ("recon_error", "train_recon", "dev_recon"):
            if b[key]:
                assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-4), (key, a, b)
    summary = load_checkpoint(runs / "pt" / "rbm1.pt")
    assert summary["position"]["frames"] == load_checkpoint(runs / "one" / "pt" / "rbm1.pt")["position"]["frames"]


def test_device_decided_pretraining_on_two_processes_equals_one(runs):
    """bf16 pre-training runs the device-decided step: on two processes its statistics are
    summed by one collective per step; the same log rows and, to bf16 rounding of the
    partial products, the same weights as one process."""
    assert _recon_rows(runs / "pt-bf16") == _recon_rows(runs / "one" / "pt-bf16")
    la = load_checkpoint(runs / "pt-bf16" / "dbn.pt")["layers"]
    lb = load_checkpoint(runs / "one" / "pt-bf16" / "dbn.pt")["layers"]
    for x, y in zip(la, lb, strict=True):
        torch.testing.assert_close(x["W"], y["W"], rtol=0, atol=2e-3)
    two, one = read_csv(runs / "pt-bf16" / "recon.csv"), read_csv(runs / "one" / "pt-bf16" / "recon.csv")
    for a, b in zip(two, one):
        if b["recon_error"]:
            assert float(a["recon_error"]) == pytest.approx(float(b["recon_error"]), rel=1e-3)


def test_device_sums_on_two_processes_resumed_equal_one_process(runs):
    """Fine-tuning's sums kept on the device on two processes, interrupted and resumed: the
    train loss and accuracy are the global batches' (not counted once per process)."""
    two, one = read_csv(runs / "ft-dev" / "train.csv"), read_csv(runs / "one" / "ft" / "train.csv")
    assert [(r["epoch"], r["lr"], r["accepted"]) for r in two] == [(r["epoch"], r["lr"], r["accepted"]) for r in one]
    for a, b in zip(two, one):
        if b["train_loss"]:
            assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=1e-5)
            assert float(a["train_acc"]) == pytest.approx(float(b["train_acc"]), abs=1e-9)
            assert float(a["grad_norm_1"]) == pytest.approx(float(b["grad_norm_1"]), rel=1e-4)


def test_finetuning_on_two_processes_equals_one(runs):
    """DDP with summed gradients and the dev loss summed over the processes' utterances:
    the same weights, and newbob took the same decisions on the same dev figures."""
    _assert_same_model(runs / "ft", runs / "one" / "ft")
    two, one = read_csv(runs / "ft" / "train.csv"), read_csv(runs / "one" / "ft" / "train.csv")
    assert [(r["epoch"], r["lr"], r["accepted"]) for r in two] == [(r["epoch"], r["lr"], r["accepted"]) for r in one]
    for a, b in zip(two, one):
        assert float(a["dev_loss"]) == pytest.approx(float(b["dev_loss"]), rel=1e-5)
        assert float(a["dev_acc"]) == pytest.approx(float(b["dev_acc"]), abs=1e-9)
        if b["train_loss"]:
            assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=1e-5)
            assert float(a["train_acc"]) == pytest.approx(float(b["train_acc"]), abs=1e-9)


def test_interrupted_two_process_runs_resume_on_two_or_one(runs, blob_store):
    """Pre-training stopped mid-layer and resumed on two processes, fine-tuning stopped in
    epoch 2 and resumed on one: both end where the uninterrupted one-process run ends."""
    _assert_same_dbn(runs / "pt-cut", runs / "one" / "pt")
    assert _recon_rows(runs / "pt-cut") == _recon_rows(runs / "one" / "pt")
    ckpt = load_checkpoint(runs / "ft-cut" / "checkpoint.pt")
    per_epoch = -(-FeatureStore(blob_store).num_frames("train") // FINETUNE["batch_size"])
    assert ckpt["position"]["epoch"] == 2 and ckpt["position"]["batch"] == FINETUNE_CUT - per_epoch
    finetune(blob_store, FinetuneConfig(**FINETUNE), runs / "ft-cut", resume=True)
    _assert_same_model(runs / "ft-cut", runs / "one" / "ft")


def test_batch_rows_split_every_batch_into_contiguous_parts():
    for size in (1, 2, 7, 64, 65):
        parts = [batch_rows(size, r, 3) for r in range(3)]
        assert parts[0][0] == 0 and parts[-1][1] == size
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
        assert max(e - s for s, e in parts) - min(e - s for s, e in parts) <= 1


def test_frame_buffer_parts_are_the_rows_of_the_whole_batches(tiny_store, monkeypatch):
    """Three processes' batches, put together, are one process's batches, bit for bit; a
    process reads its rows (with their context) and never a whole utterance."""
    store = FeatureStore(tiny_store)
    pipe = FeaturePipeline.from_store(store, splice=2)
    recs = store.split("train")
    args = dict(batch_size=50, buffer_frames=600, targets="states")
    whole = list(FrameBuffer(store, recs, pipe, **args).batches(seed=3, epoch=2, max_frames=1234, skip=4))
    read: list[int] = []
    gather = FeatureStore.gather

    def counted(self, kind, shards, rows):
        read.append(len(rows))
        return gather(self, kind, shards, rows)

    monkeypatch.setattr(FeatureStore, "gather", counted)
    monkeypatch.setattr(FeatureStore, "features", lambda *a: pytest.fail("a process read a whole utterance"))
    parts = [
        list(FrameBuffer(store, recs, pipe, **args, rank=r, world=3).batches(seed=3, epoch=2, max_frames=1234, skip=4))
        for r in range(3)
    ]
    assert len(whole) > 10 and all(len(p) == len(whole) for p in parts)
    assert any(b.size < 50 for b in whole)  # short batches at the ends of buffers are split too
    for i, batch in enumerate(whole):
        mine = [p[i] for p in parts]
        assert [(b.start, b.size) for b in mine] == [
            (s, batch.size) for s, _ in map(batch_rows, [batch.size] * 3, (0, 1, 2), [3] * 3)
        ]
        assert torch.equal(torch.cat([b.inputs for b in mine]), batch.inputs)
        assert torch.equal(torch.cat([b.targets for b in mine]), batch.targets)
    rows = sum(len(b.inputs) for p in parts for b in p)
    assert rows == sum(b.size for b in whole) and sum(read) == rows * (2 * 2 + 1) + rows  # inputs with context, targets


def test_sigterm_to_torchrun_checkpoints_and_resumes_on_one_process(tiny_store, tmp_path):
    """`torchrun --nproc-per-node 2 --no-python asr-init pretrain ...`, then SIGTERM to torchrun:
    it forwards the signal, both workers stop after the same batch, rank 0 writes the
    checkpoint and prints the message once; one process then finishes the run, with the
    weights of an uninterrupted one-process run."""
    out = tmp_path / "pt"
    cfg = PretrainConfig(layers=1, hidden=16, epochs_gauss=6, batch_size=32, max_frames=640)
    asr_init = str(Path(sys.executable).parent / "asr-init")
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "--no-python"]
    args += [asr_init, "pretrain", str(tiny_store), "--out", str(out), "--layers", "1", "--hidden", "16"]
    args += ["--epochs-gauss", "6", "--batch-size", "32", "--max-frames", "640"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (out / "rbm1.partial.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)  # the first epoch has ended: the workers are training
    assert (out / "rbm1.partial.pt").exists(), proc.communicate()[0] if proc.poll() is not None else "no checkpoint"
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=90)
    text = " ".join(output.split())
    assert text.count("continue with --resume") == 1, output  # rank 0 alone prints
    assert "2 processes share every batch of 32 frames" in text
    state = load_checkpoint(out / "rbm1.partial.pt")
    assert 0 < state["position"]["epoch"] <= 6 and not state["finished"], state["position"]
    assert not (out / "dbn.pt").exists()
    pretrain(tiny_store, cfg, out, resume=True)
    pretrain(tiny_store, cfg, tmp_path / "one")
    w, w1 = (
        load_checkpoint(out / "dbn.pt")["layers"][0]["W"],
        load_checkpoint(tmp_path / "one" / "dbn.pt")["layers"][0]["W"],
    )
    torch.testing.assert_close(w, w1, rtol=0, atol=1e-5)
    assert np.isfinite(w.numpy()).all()
