"""CUDA-graph plumbing: what the steps do around capture and replay.

Capture itself needs a GPU (the last test). The others pass a recorder as the strategy's
capture function, whose "graph" runs the captured body when replayed: they check that the steps
copy each batch into their static inputs, capture only full batches, capture again when
the learning rate changes, and give the numbers of the eager steps.
"""

import pytest
import torch

import asr_init.cuda_graphs as cuda_graphs
from asr_init.io import read_csv
from asr_init.models.dnn import load_model
from asr_init.models.rbm import RBM, ContrastiveDivergence, UniformSource
from asr_init.training.config import FinetuneConfig
from asr_init.training.finetune import finetune
from asr_init.training.loop import Strategy


class _Replayer:
    """Stands for a captured graph: replay() runs the body on whatever its static tensors hold."""

    def __init__(self, body):
        self.body, self.replays = body, 0

    def replay(self):
        self.replays += 1
        self.body()


def _recorder(captured: list, check=None):
    """A capture function that does to the step's tensors what cuda_graphs.capture_checked
    does: two warm-up runs, the listed `state` put back, an eager run and the check's replay
    compared, the state put back. A tensor the step changes but `state` leaves out is
    changed four times by a capture, as on a GPU."""

    def capture(body, state, what):
        if check:
            check(state)
        saved = cuda_graphs._snapshot(state)
        for _ in range(cuda_graphs.WARMUP):
            body()
        cuda_graphs._restore(state, saved)
        graph = _Replayer(body)  # recording runs nothing
        results = []
        for run in (body, graph.body):  # the eager run, then the check's replay
            run()
            results.append(cuda_graphs._snapshot(state))
            cuda_graphs._restore(state, saved)
        assert cuda_graphs._largest_difference(*results, rtol=1e-5, atol=1e-6) is None
        captured.append(graph)
        return graph

    return capture


def test_graphed_cd_step_replays_full_batches_and_equals_eager_steps():
    g = torch.Generator().manual_seed(0)
    data = torch.randn(10 * 32 + 5, 24, generator=g)
    runs, captured = {}, []
    for capture in (None, _recorder(captured)):
        rbm = RBM(24, 40, "gauss")
        torch.nn.init.normal_(rbm.Wt, 0, 1.5, generator=torch.Generator().manual_seed(1))
        cd = ContrastiveDivergence(rbm, UniformSource(3), 0.05, 32, read_every=11, capture=capture)
        for i in range(11):
            cd.step(data[i * 32 : (i + 1) * 32], 0.5 + 0.03 * i)  # the last batch has 5 rows: eager
        runs[capture is None] = (rbm.theta.clone(), cd.read())
    assert len(captured) == 1 and captured[0].replays == 10
    (a, ra), (b, rb) = runs[True], runs[False]
    assert torch.equal(a, b) and ra.error_sum == rb.error_sum
    assert [e.step for e in ra.events] == [e.step for e in rb.events] and ra.events  # the guard fired
    assert ra.lr == rb.lr


@pytest.mark.parametrize("schedule,batch_norm", [("newbob", False), ("constant", False), ("newbob", True)])
def test_graphed_finetune_step_captures_per_learning_rate_and_equals_eager(blob_store, tmp_path, schedule, batch_norm):
    """Eager first step, then replays; newbob's halving makes a new capture, a constant rate
    replays one capture in every epoch (a graph keeps writing to the sums it was captured on,
    so the next epoch's sums must be those); batch norm's running statistics are state a
    capture puts back; the log and the model are the eager run's bit for bit."""
    cfg = FinetuneConfig(layers=2, hidden=32, splice=1, batch_size=32, max_epochs=4, stats_frames=200, momentum=0.5,
                         schedule=schedule, batch_norm=batch_norm)  # fmt: skip
    finetune(blob_store, cfg, tmp_path / "eager", strategy=Strategy(read_every=200))
    captured = []

    def check(state):  # parameters, grads, momentum, sums
        assert any(t.dim() == 2 and t.shape[1] == 32 for t in state)

    finetune(blob_store, cfg, tmp_path / "graphed", strategy=Strategy(200, _recorder(captured, check)))
    rows = read_csv(tmp_path / "graphed" / "train.csv")
    lrs = {r["lr"] for r in rows if r["epoch"] != "0"}
    halvings = schedule == "newbob" and not batch_norm  # with batch norm the dev loss falls on, at one rate
    assert len(captured) == len(lrs) >= 1 + halvings and all(g.replays > 0 for g in captured)
    keep = ("epoch", "lr", "train_loss", "train_acc", "dev_loss", "dev_acc", "accepted", "grad_norm_1", "sat_1")
    eager = read_csv(tmp_path / "eager" / "train.csv")
    assert [[r[k] for k in keep] for r in rows] == [[r[k] for k in keep] for r in eager]
    a, b = load_model(tmp_path / "eager")[0].state_dict(), load_model(tmp_path / "graphed")[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_capture_checked_restores_the_state_and_replays_the_body():
    x = torch.ones(64, device="cuda")
    acc = torch.zeros(64, device="cuda")

    def body():
        acc.add_(x * 2)

    graph = cuda_graphs.capture_checked(body, [acc], "a test body")
    assert graph is not None and float(acc.sum()) == 0.0
    graph.replay()
    graph.replay()
    assert float(acc.sum()) == 64 * 4


def test_after_a_failed_capture_every_later_step_stays_eager(monkeypatch, capsys):
    """A capture that raises leaves the state as it was and returns None (eager steps); later
    captures in the process are not tried."""
    tried = []

    def failing_stream():
        tried.append(1)
        raise RuntimeError("operation not permitted when stream is capturing\ndetails")

    monkeypatch.setattr(cuda_graphs, "_FAILED", [])
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: None)
    monkeypatch.setattr(torch.cuda, "Stream", failing_stream)
    monkeypatch.setattr(torch.cuda, "set_stream", lambda stream: None)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    acc = torch.arange(4.0)
    assert cuda_graphs.capture_checked(lambda: acc.add_(1), [acc], "the first step") is None
    assert cuda_graphs.capture_checked(lambda: acc.add_(1), [acc], "the second step") is None
    assert tried == [1] and torch.equal(acc, torch.arange(4.0))
    printed = capsys.readouterr()
    out = " ".join((printed.out + printed.err).split())  # the console wraps lines
    assert "the first step: capture failed (operation not permitted when stream is capturing)" in out
    assert "the second step: an earlier capture in this process failed" in out
