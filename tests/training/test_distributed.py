"""Where the paths meet: target kinds x processes x read interval x interruption.

Every cell trains on tiny stores with 1 or 2 processes (torchrun's set-up, gloo on the CPU),
reading the steps' figures every step (the CPU's path) or every 5 steps (the GPU's), straight
through, interrupted and resumed, or interrupted and resumed on the other path; every cell
must give the one-process, every-step, uninterrupted run (1e-5) and read the targets asked
for. The two-process cells run in one spawned pair of processes (starting them costs seconds).
"""

import json
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as tdist
from conftest import slowed_cli, write_tiny_model

from asr_init.errors import UserError
from asr_init.features.pipeline import FeaturePipeline, FrameBuffer, batch_rows
from asr_init.features.store import FeatureStore
from asr_init.io import load_checkpoint, read_csv
from asr_init.training.distributed import run_local
from asr_init.training.finetune import FinetuneConfig, finetune
from asr_init.training.interrupts import Interrupted
from asr_init.training.loop import Strategy
from asr_init.training.pretrain import PretrainConfig, pretrain

PRETRAIN = dict(layers=2, hidden=16, epochs=1, epochs_gauss=2, batch_size=64, report_every=500, stats_frames=200)
FINETUNE = dict(layers=2, hidden=16, splice=1, batch_size=32, max_epochs=2, lr=0.004, momentum=0.5, stats_frames=100)
TARGETS = [("blob", "states"), ("blob", "phones"), ("pdfs", "pdfs"), ("pdfs+phones", "pdfs")]
PATHS = {"every step": Strategy(), "every 5": Strategy(read_every=5)}
MODES = ("whole", "resumed", "resumed on the other path")


def _cut(stage: str, store: Path) -> int:
    """Mini-batches before the simulated signal: inside layer 1, or half way through epoch 2."""
    per_epoch = -(-FeatureStore(store).num_frames("train") // FINETUNE["batch_size"])
    return 30 if stage == "pretrain" else per_epoch + per_epoch // 2


def _train(stage: str, store: Path, config, out: Path, path: str, mode: str) -> None:
    run = pretrain if stage == "pretrain" else finetune
    if mode != "whole":
        with pytest.raises(Interrupted):
            run(store, config, out, interrupt_after=_cut(stage, store), strategy=PATHS[path])
        path = [p for p in PATHS if p != path][0] if mode == "resumed on the other path" else path
    run(store, config, out, resume=mode != "whole", strategy=PATHS[path])


def _cells(stores: dict, root: str, world: int) -> None:
    """Every cell of `world` processes (module level: spawned processes import it)."""
    for path in PATHS:
        for mode in MODES:
            out = Path(root) / f"pt-{world}-{path}-{mode}"
            _train("pretrain", Path(stores["blob"]), PretrainConfig(**PRETRAIN), out, path, mode)
            for store, targets in TARGETS:
                out = Path(root) / f"ft-{store}-{targets}-{world}-{path}-{mode}"
                _train("finetune", Path(stores[store]), FinetuneConfig(**FINETUNE, targets=targets), out, path, mode)
    if world == 2:  # stopped here, resumed on one process by a test
        with pytest.raises(Interrupted):
            finetune(Path(stores["blob"]), FinetuneConfig(**FINETUNE, targets="states"), Path(root) / "ft-cut-2",
                     interrupt_after=_cut("finetune", Path(stores["blob"])), strategy=PATHS["every 5"])  # fmt: skip


@pytest.fixture(scope="module")
def cells(blob_store, kaldi_stores, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cells")
    stores = {"blob": str(blob_store), **{k: str(v) for k, v in kaldi_stores.items()}}
    run_local(2, _cells, stores, str(root), 2, threads=1)
    _cells(stores, str(root), 1)
    return root


def _same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-5)
        assert bool(a[k].abs().sum() > 0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("world", [1, 2])
def test_pretraining_cell_equals_one_process_every_step(cells, world, path, mode):
    """Layer 1 Gaussian, layer 2 Bernoulli with the saturation guard: the same weights and
    log rows (frames counted globally) as one process reading every step."""
    got, want = cells / f"pt-{world}-{path}-{mode}", cells / "pt-1-every step-whole"
    la, lb = load_checkpoint(got / "dbn.pt")["layers"], load_checkpoint(want / "dbn.pt")["layers"]
    for x, y in zip(la, lb, strict=True):
        _same_tensors(x, y)
    rows = [(r["layer"], r["epoch"], r["frames"], r["kind"], r["guard"]) for r in read_csv(got / "recon.csv")]
    assert rows == [(r["layer"], r["epoch"], r["frames"], r["kind"], r["guard"]) for r in read_csv(want / "recon.csv")]
    for a, b in zip(read_csv(got / "recon.csv"), read_csv(want / "recon.csv")):
        if b["recon_error"]:
            assert float(a["recon_error"]) == pytest.approx(float(b["recon_error"]), rel=1e-4)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("store, targets", TARGETS)
def test_finetuning_cell_equals_one_process_every_step(cells, store, targets, world, path, mode, blob_store,
                                                       kaldi_stores):  # fmt: skip
    """The same weights, the same newbob decisions on the same dev figures, the same train
    sums, and an output layer over the targets asked for."""
    got = cells / f"ft-{store}-{targets}-{world}-{path}-{mode}"
    want = cells / f"ft-{store}-{targets}-1-every step-whole"
    a, b = load_checkpoint(got / "model.pt"), load_checkpoint(want / "model.pt")
    _same_tensors(a["state_dict"], b["state_dict"])
    labels = FeatureStore({"blob": blob_store, **kaldi_stores}[store]).labels(targets)
    assert a["meta"]["targets"] == targets and a["meta"]["outputs"] == labels
    assert a["state_dict"]["output.weight"].shape[0] == len(labels)
    two, one = read_csv(got / "train.csv"), read_csv(want / "train.csv")
    assert [(r["epoch"], r["lr"], r["accepted"]) for r in two] == [(r["epoch"], r["lr"], r["accepted"]) for r in one]
    for x, y in zip(two, one):
        for key in ("dev_loss", "train_loss", "train_acc", "grad_norm_1"):
            if y[key]:
                assert float(x[key]) == pytest.approx(float(y[key]), rel=1e-5, abs=1e-9), key


def test_two_processes_interrupted_resume_on_one(cells, blob_store):
    """Checkpoints hold global positions: a two-process run stopped in epoch 2 ends on one
    process where the one-process run ends."""
    cut = cells / "ft-cut-2"
    assert load_checkpoint(cut / "checkpoint.pt")["position"]["epoch"] == 2
    finetune(blob_store, FinetuneConfig(**FINETUNE, targets="states"), cut, resume=True)
    want = load_checkpoint(cells / "ft-blob-states-1-every step-whole" / "model.pt")["state_dict"]
    _same_tensors(load_checkpoint(cut / "model.pt")["state_dict"], want)


def test_batch_rows_split_every_batch_into_contiguous_parts():
    for size in (1, 2, 7, 64, 65):
        parts = [batch_rows(size, r, 3) for r in range(3)]
        assert parts[0][0] == 0 and parts[-1][1] == size
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
        assert max(e - s for s, e in parts) - min(e - s for s, e in parts) <= 1


@pytest.mark.parametrize("targets", ["states", "phones"])
def test_frame_buffer_parts_are_the_rows_of_the_whole_batches(tiny_store, targets):
    """Three processes' batches, put together, are one process's batches, bit for bit, with
    the targets of the kind asked for."""
    store = FeatureStore(tiny_store)
    pipe = FeaturePipeline.from_store(store, splice=2)
    recs = store.split("train")
    args = dict(batch_size=50, buffer_frames=600, targets=targets)
    whole = list(FrameBuffer(store, recs, pipe, **args).batches(seed=3, epoch=2, max_frames=1234, skip=4))
    parts = [
        list(FrameBuffer(store, recs, pipe, **args, rank=r, world=3).batches(seed=3, epoch=2, max_frames=1234, skip=4))
        for r in range(3)
    ]
    assert len(whole) > 10 and all(len(p) == len(whole) for p in parts)
    assert any(b.size < 50 for b in whole)  # short batches at the ends of buffers are split too
    for i, batch in enumerate(whole):
        mine = [p[i] for p in parts]
        assert [(b.start, b.size) for b in mine] == [(batch_rows(batch.size, r, 3)[0], batch.size) for r in range(3)]
        assert torch.equal(torch.cat([b.inputs for b in mine]), batch.inputs)
        assert torch.equal(torch.cat([b.targets for b in mine]), batch.targets)
    ids = np.concatenate([store.targets(targets, r) for r in recs])
    assert set(torch.cat([b.targets for b in whole]).tolist()) <= set(ids.tolist())


# `asr-init` with each pre-training batch slowed down, so that a signal sent after the first
# epoch's checkpoint reaches the workers while they train (six epochs of 20 batches take 2.4 s
# more, not a fraction of a second); the workers inherit nothing else.
SLOW_PRETRAIN = slowed_cli("asr_init.training.pretrain:_LayerTrainer.step", 0.02)


def test_sigterm_to_torchrun_checkpoints_and_resumes_on_one_process(tiny_store, tmp_path):
    """`torchrun --nproc-per-node 2 asr-init pretrain ...`, then SIGTERM to torchrun:
    it forwards the signal, both workers stop after the same batch, rank 0 writes the
    checkpoint and prints the message once; one process then finishes the run, with the
    weights of an uninterrupted one-process run."""
    out = tmp_path / "pt"
    cfg = PretrainConfig(layers=1, hidden=16, epochs_gauss=6, batch_size=32, max_frames=640)
    slow = tmp_path / "slow_pretrain.py"  # asr-init with every batch 20 ms longer: the signal lands mid-run
    slow.write_text(SLOW_PRETRAIN)
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(slow)]
    args += ["pretrain", str(tiny_store), "--out", str(out), "--layers", "1", "--hidden", "16"]
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
    w, w1 = (load_checkpoint(p / "dbn.pt")["layers"][0]["W"] for p in (out, tmp_path / "one"))
    torch.testing.assert_close(w, w1, rtol=0, atol=1e-5)
    assert np.isfinite(w.numpy()).all()


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
TORCHRUN += ["-m", "asr_init.cli"]


def _error_lines(args: list[str]) -> list[str]:
    """The `error:` lines of `torchrun --nproc-per-node 2 asr-init ARGS`, which must fail."""
    proc = subprocess.run(TORCHRUN + args, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0, proc.stderr[-3000:]
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def test_torchrun_prints_an_error_found_before_the_processes_meet_once(blob_store, tmp_path):
    """A bad option is found by every process before the process group exists; each printed
    the line (the processes after the first are quiet only once the group exists)."""
    lines = _error_lines(["finetune", str(blob_store), "--out", str(tmp_path / "ft"), "--batch-size", "0"])
    assert lines == ["error: invalid --batch-size 0: must be at least 1"]
    assert not (tmp_path / "ft").exists()
    # refused by the option parser, before the command runs: each process printed it
    lines = _error_lines(["finetune", str(blob_store), "--out", str(tmp_path / "ft"), "--bogus", "1"])
    assert len(lines) == 1 and lines[0].startswith("error: no such option: --bogus"), lines


def test_torchrun_refuses_a_command_whose_work_the_processes_would_not_share(blob_store, tmp_path):
    """`torchrun ... asr-init evaluate` ran the whole evaluation in each process: one wrote the
    results, the other met its lock and failed. Only the commands that share their work run."""
    model = write_tiny_model(blob_store, tmp_path / "model")
    lines = _error_lines(["evaluate", str(blob_store), "--model", str(model)])
    assert lines == [
        "error: asr-init evaluate does not share its work among processes (WORLD_SIZE is 2): run it without torchrun"
    ]
    assert not (model / "eval-test").exists()


def test_every_process_of_a_machine_refuses_more_processes_than_gpus(monkeypatch):
    """torchrun --nproc-per-node 2 on a machine with one GPU: the first process (which prints)
    refuses too, rather than only the second, whose line no one sees, while the first waits."""
    import asr_init.training.distributed as distributed_module

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(tdist, "init_process_group", lambda **kw: pytest.fail("joined the process group"))
    with pytest.raises(UserError, match=r"^torchrun started 2 processes on this machine but it has only 1 visible"):
        distributed_module.distributed("cuda")


def test_torchrun_fine_tuning_and_pruning_print_once_and_write_once(blob_store, tmp_path):
    """`torchrun --nproc-per-node 2 asr-init finetune ...`, then `... prune ...` of its model: the
    result (stdout) comes from rank 0 alone, as the messages do; both processes fine-tune each
    sparsity, rank 0 alone evaluates and writes (the second process once met the first's lock)."""
    args = ["finetune", str(blob_store), "--out", str(tmp_path / "dense"), "--layers", "1", "--hidden", "8",
            "--splice", "0", "--max-epochs", "1"]  # fmt: skip
    proc = subprocess.run(TORCHRUN + args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("best epoch 1") == 1, proc.stdout
    args = ["prune", str(tmp_path / "dense"), "--out", str(tmp_path / "pruned"), "--sparsity", "0.5"]
    args += ["--max-epochs", "1"]
    proc = subprocess.run(TORCHRUN + args, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "pruned" / "prune.json").read_text())
    assert [r["sparsity"] for r in summary["rows"]] == [0.0, 0.5]
    assert json.loads((tmp_path / "pruned" / "sparsity-0.5" / "finetune.json").read_text())["processes"] == 2
    assert proc.stdout.count("pruning ") == 1, proc.stdout


def _ddp_in_a_cycle_then_leave() -> None:
    import weakref

    from torch.nn.parallel import DistributedDataParallel

    from asr_init.training import distributed as d

    d.distributed("cpu")
    holder = types.SimpleNamespace()
    holder.me, holder.net = holder, DistributedDataParallel(torch.nn.Linear(4, 3))
    holder.net(torch.randn(5, 4)).sum().backward()
    alive = weakref.ref(holder.net)
    del holder
    d._leave_group()  # what the process does at exit
    assert alive() is None and not tdist.is_initialized()


def test_the_process_group_is_left_after_the_ddp_wrappers_are_freed():
    """A finished torchrun fine-tune aborted at exit about one run in four ("terminate called without
    an active exception", exit code 1): the group was destroyed while a DDP wrapper held in a reference
    cycle was still alive, and freed after it. The exit handler frees such wrappers first."""
    run_local(2, _ddp_in_a_cycle_then_leave, threads=1)


@pytest.mark.parametrize("targets", ["pdfs", "phones"])
def test_every_process_reads_the_target_kind_asked_for(kaldi_stores, targets):
    """On a store with pdf and phone alignments, the rows of two processes together are one
    process's batch, and their targets are that kind's ids frame for frame (the reader once
    took phone shards for every kind but states)."""
    store = FeatureStore(kaldi_stores["pdfs+phones"])
    records = store.split("train")
    pipeline = FeaturePipeline.from_store(store, splice=1)

    def epoch(rank: int, world: int) -> list:
        buffer = FrameBuffer(store, records, pipeline, 32, buffer_frames=64, targets=targets, rank=rank, world=world)
        return [(b.inputs, b.targets) for b in buffer.batches(seed=3, epoch=1)]

    one, parts = epoch(0, 1), [epoch(r, 2) for r in range(2)]
    for (x, y), (x0, y0), (x1, y1) in zip(one, *parts, strict=True):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
    # Each frame's spliced centre identifies it: its target must be the store's id of that kind.
    by_frame = {}
    for rec in records:
        feats, ids = pipeline.normalise(store.features(rec)), store.targets(targets, rec)
        by_frame.update({row.tobytes(): int(t) for row, t in zip(feats.astype(np.float32), ids)})
    base = pipeline.base_dim
    centre = slice(base * pipeline.splice, base * (pipeline.splice + 1))
    got = [(x[i, centre].numpy().tobytes(), int(y[i])) for x, y in one for i in range(len(y))]
    assert len(got) == store.num_frames("train") and all(by_frame[key] == t for key, t in got)
    other = [int(t) for r in records for t in store.targets("phones" if targets == "pdfs" else "pdfs", r)]
    assert sorted(t for _, t in got) != sorted(other)  # the two kinds differ on this store: the check can fail


def test_one_process_on_cuda_n_makes_it_the_current_device(monkeypatch):
    """--device cuda:1 without torchrun: the process's current CUDA device becomes cuda:1, on
    which cuda_graphs records its captures and makes its streams (else on cuda:0, where the
    step's kernels do not run: an empty graph and a fallback to eager steps)."""
    import asr_init.training.distributed as distributed_module

    chosen = []
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    dist = distributed_module.distributed("cuda:1")
    assert dist.device == torch.device("cuda", 1) and chosen == [torch.device("cuda", 1)]
    chosen.clear()
    distributed_module.distributed("cpu")
    assert chosen == []


def _cut_on_two(store: str, root: str) -> None:
    """A pre-training and a fine-tuning run of 2 processes, each interrupted (module level: spawned processes
    import it)."""
    with pytest.raises(Interrupted):
        pretrain(Path(store), PretrainConfig(**PRETRAIN), Path(root) / "pt", interrupt_after=_cut("pretrain", store))
    with pytest.raises(Interrupted):
        finetune(Path(store), FinetuneConfig(**FINETUNE), Path(root) / "ft", interrupt_after=_cut("finetune", store))


def test_a_run_resumed_on_another_process_count_records_the_count_of_each_segment(blob_store, tmp_path, capsys):
    """Two processes interrupted, one resuming: pretrain.json and finetune.json keep `processes` (the
    last count) and record where each count began (`processes_by_segment`); a resumption on the same
    count begins no new segment, and the one on another count says so."""
    run_local(2, _cut_on_two, str(blob_store), str(tmp_path), threads=1)
    cut = {name: load_checkpoint(tmp_path / name / file)["position"] for name, file in
           (("pt", "rbm1.partial.pt"), ("ft", "checkpoint.pt"))}  # fmt: skip
    capsys.readouterr()
    pt = pretrain(blob_store, PretrainConfig(**PRETRAIN), tmp_path / "pt", resume=True)
    ft = finetune(blob_store, FinetuneConfig(**FINETUNE), tmp_path / "ft", resume=True)
    said = " ".join(capsys.readouterr().err.split())
    for stage in ("layer 1", "this run"):  # a layer's own counts: pretrain.json merges the layers'
        assert f"the run goes on with 1 process where it had 2 (processes so far in {stage}: 2 then 1)" in said, said
    assert pt["processes"] == ft["processes"] == 1
    assert pt["processes_by_segment"] == [
        {"layer": 1, "processes": 2, "epoch": 1, "batch": 0},
        {"layer": 1, "processes": 1, "epoch": cut["pt"]["epoch"], "batch": cut["pt"]["batch"]},
    ]  # layer 2 trained on 1 process as the segment before it
    first = [{"processes": 2, "epoch": 1, "batch": 0}]
    assert ft["processes_by_segment"] == first + [{"processes": 1, "epoch": 2, "batch": cut["ft"]["batch"]}]
    assert cut["ft"]["epoch"] == 2 and cut["ft"]["batch"] > 0 and cut["pt"]["batch"] > 0
    more = finetune(blob_store, FinetuneConfig(**(FINETUNE | {"max_epochs": 3})), tmp_path / "ft", resume=True)
    assert more["processes_by_segment"] == ft["processes_by_segment"]
    one = finetune(blob_store, FinetuneConfig(**FINETUNE), tmp_path / "one")
    assert one["processes"] == 1 and one["processes_by_segment"] == [{"processes": 1, "epoch": 1, "batch": 0}]
