"""RBM learning and the one CD-k step: against the textbook step and the exact gradient, the
guards, read every step (the CPU) or every N steps (a GPU), in parts over processes."""

import threading

import numpy as np
import pytest
import torch

from asr_init.models.optimal_spread import optimal_d
from asr_init.models.rbm import (
    RBM,
    BatchPart,
    ContrastiveDivergence,
    UniformSource,
    cd_step_reference,
)


def _rbm(nv: int, nh: int, visible: str, weight_std: float, seed: int) -> RBM:
    g = torch.Generator().manual_seed(seed)
    rbm = RBM(nv, nh, visible)
    torch.nn.init.normal_(rbm.Wt, 0, weight_std, generator=g)
    if visible == "bernoulli":
        rbm.vb.normal_(0, 0.5, generator=g)
    return rbm


def _data(n: int, nv: int, visible: str, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if visible == "gauss":
        return torch.randn(n, nv, generator=g)
    return torch.sigmoid(torch.randn(n, 16, generator=g) @ torch.randn(16, nv, generator=g) * 0.4)


def _run(rbm, batches, lr, read_every=1, reads=None, **kw):
    """Train on `batches` (momentum ramping 0.5 -> 0.9); the reports of the reads after the
    steps in `reads` (default: the last), every `read_every` steps the figures read anyway."""
    reads = reads or [len(batches)]
    cd = ContrastiveDivergence(rbm, UniformSource(11), lr, len(batches[0]), read_every=read_every, **kw)
    out, pending = [], []
    for i, v in enumerate(batches):
        cd.step(v, 0.5 + 0.4 * i / len(batches))
        if (i + 1) % read_every == 0 or i + 1 in reads:
            pending.append(cd.read())
        if i + 1 in reads:
            out.append(_merge(pending))
            pending = []
    return out, cd


def _merge(reports):
    """Reports read at several points of an interval, as one (steps counted from its start)."""
    err = sum(r.error_sum for r in reports)
    sat = sum(r.saturated_sum for r in reports)
    events, offset = [], 0
    for r in reports:
        events += [(e.step + offset, e.guard, e.scale, e.lr) for e in r.events]
        offset += r.steps
    return err, sat, events, reports[-1].lr


def log_likelihood_gradient(rbm: RBM, data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact d log p(data) / d(W, hb, vb) of a tiny Bernoulli-Bernoulli RBM by enumeration of
    all 2^(n_visible) visible vectors; for checking CD on small models only."""
    nv = rbm.n_visible
    if rbm.visible != "bernoulli" or nv > 16:
        raise ValueError("exact gradients only for Bernoulli RBMs with at most 16 visible units")
    W, hb, vb = rbm.W.double(), rbm.hb.double(), rbm.vb.double()
    states = torch.tensor([[(i >> j) & 1 for j in range(nv)] for i in range(2**nv)], dtype=torch.float64)
    free = -(states @ vb) - torch.nn.functional.softplus(states @ W.T + hb).sum(1)
    p_model = torch.softmax(-free, 0)
    h_model = torch.sigmoid(states @ W.T + hb)
    d = data.double()
    h_data = torch.sigmoid(d @ W.T + hb)
    gW = h_data.T @ d / len(d) - (h_model * p_model[:, None]).T @ states
    ghb = h_data.mean(0) - (h_model * p_model[:, None]).sum(0)
    gvb = d.mean(0) - (states * p_model[:, None]).sum(0)
    return gW, ghb, gvb


def test_gaussian_rbm_learns_low_rank_data():
    g = torch.Generator().manual_seed(0)
    data = torch.randn(4000, 3, generator=g) @ torch.randn(3, 20, generator=g)
    data = (data - data.mean(0)) / data.std(0) + 0.05 * torch.randn(4000, 20, generator=g)
    rbm = _rbm(20, 64, "gauss", 1.4 / np.sqrt(20), 0)
    initial = float((rbm.reconstruct(data) - data).pow(2).sum(1).mean())
    epochs = _run(rbm, [data[i : i + 50] for i in range(0, 4000, 50)] * 30, 0.05, reads=[80, 2320, 2400])[0]
    assert epochs[-1][0] < epochs[0][0]  # the last epoch's summed error against the first's
    assert float((rbm.reconstruct(data) - data).pow(2).sum(1).mean()) < initial / 10


def test_bernoulli_rbm_reconstructs_binary_patterns():
    patterns = torch.tensor([[1, 1, 1, 0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 1, 1, 1, 0, 0, 0, 1],
                             [0, 1, 0, 0, 1, 0, 1, 1, 0, 0], [1, 0, 0, 1, 0, 0, 0, 1, 1, 1]])  # fmt: skip
    patterns = patterns.float()
    data = patterns.repeat(500, 1)
    rbm = _rbm(10, 16, "bernoulli", 0.1, 1)
    rbm.init_visible_bias_from_data(data.mean(0))
    _run(rbm, [data[i : i + 50] for i in range(0, 2000, 50)] * 20, 0.5)
    recon = rbm.reconstruct(patterns)
    assert torch.equal((recon > 0.5).float(), patterns) and float((recon - patterns).abs().max()) < 0.3


def test_visible_bias_is_logit_of_mean():
    rbm = RBM(3, 2, "bernoulli")
    rbm.init_visible_bias_from_data(torch.tensor([0.5, 0.9, 0.0]))
    torch.testing.assert_close(rbm.vb, torch.tensor([0.0, np.log(9.0), np.log(1e-3 / (1 - 1e-3))], dtype=torch.float32))


def test_cd_gradient_agrees_with_exact_gradient():
    """On a 4x3 RBM, the CD-1 update points the way of the exact log-likelihood gradient."""
    rbm = _rbm(4, 3, "bernoulli", 0.5, 2)
    rbm.hb.normal_(0, 0.2, generator=torch.Generator().manual_seed(3))
    data = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]], dtype=torch.float32).repeat(2000, 1)
    gW, ghb, gvb = log_likelihood_gradient(rbm, data)
    before = RBM.from_state_dict(rbm.state_dict())
    ContrastiveDivergence(rbm, UniformSource(3), 1.0, len(data), guard=False).step(data, 0.0)  # no momentum, no L2
    cd = torch.cat([(rbm.W - before.W).flatten(), rbm.hb - before.hb, rbm.vb - before.vb]).double()
    exact = torch.cat([gW.flatten(), ghb, gvb])
    assert float(cd @ exact / (cd.norm() * exact.norm())) > 0.9 and float(cd @ exact) > 0


def test_state_dict_round_trip():
    rbm = RBM(5, 4, "gauss")
    rbm.Wt.normal_()
    rbm.dWt.normal_()
    again = RBM.from_state_dict(rbm.state_dict())
    assert torch.equal(again.W, rbm.W) and torch.equal(again.dWt, rbm.dWt) and again.visible == "gauss"
    assert rbm.state_dict()["W"].shape == (4, 5)  # stored as nn.Linear does


def test_uniform_source_state_round_trips_and_crosses_devices():
    u = UniformSource(7)
    a = torch.empty(1000)
    u.fill_(a)
    assert float(a.min()) >= 0 and float(a.max()) < 1 and abs(float(a.mean()) - 0.5) < 0.03
    state = u.state_dict()
    b, c = torch.empty(10), torch.empty(10)
    u.fill_(b)
    UniformSource.from_state_dict(state).fill_(c)
    assert torch.equal(b, c)
    # A checkpoint of the GPU's generator resumed on the CPU: no error, a stream fixed by (seed, draws).
    gpu_state = {"kind": "torch", "seed": 7, "draws": 5, "state": torch.Generator().get_state()}
    d, e = torch.empty(10), torch.empty(10)
    UniformSource.from_state_dict(gpu_state).fill_(d)
    UniformSource.from_state_dict(gpu_state).fill_(e)
    assert torch.equal(d, e) and not torch.equal(d, c)


@pytest.mark.parametrize("read_every", [1, 2])
@pytest.mark.parametrize(
    "visible,k,sat_limit", [("gauss", 1, 0.0), ("bernoulli", 1, 0.0), ("gauss", 2, 0.0), ("bernoulli", 1, 0.99)]
)
def test_the_step_equals_textbook_cd(visible, k, sat_limit, read_every):
    """The step (biases inside the products, one gradient product; fused on the host) makes
    exactly the textbook update: same uniforms, same parameters after three steps."""
    g = torch.Generator().manual_seed(4)
    nv, nh = 13, 7
    rbm = _rbm(nv, nh, visible, 0.3, 4)
    rbm.hb.normal_(0, 0.2, generator=g)
    rbm.vb.normal_(0, 0.2, generator=g)
    ref = [t.clone() for t in (rbm.W, rbm.hb, rbm.vb, rbm.dWt.T, rbm.dhb, rbm.dvb)]
    cd = ContrastiveDivergence(rbm, UniformSource(9), 0.1, 32, k=k, l2=0.01, guard=False, sat_limit=sat_limit,
                               read_every=read_every)  # fmt: skip
    theirs = UniformSource(9)
    for i in range(4):
        v0 = torch.randn(32, nv, generator=g) if visible == "gauss" else (torch.rand(32, nv, generator=g) < 0.3).float()
        cd.step(v0, 0.5 + 0.1 * i)  # watching saturation (a limit that is not reached) changes nothing
        *ref, ref_err = cd_step_reference(*ref, v0, 0.1, 0.5 + 0.1 * i, 0.01, theirs, k, visible)
        if (i + 1) % read_every == 0:
            report = cd.read()
            assert report.error_sum == pytest.approx(ref_err if read_every == 1 else report.error_sum, rel=1e-5)
    for got, want in zip((rbm.W, rbm.hb, rbm.vb, rbm.dWt.T, rbm.dhb, rbm.dvb), ref):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "visible,weight_std,lr,l2,k,sat_limit,expect",
    [
        ("gauss", 0.1, 0.05, 2e-4, 1, 0.0, set()),  # no guard fires
        ("gauss", 1.5, 0.05, 0.0, 2, 0.0, {"recon_std"}),  # the reconstruction explodes, CD-2
        ("bernoulli", 0.8, 2.0, 2e-4, 1, 0.2, {"saturation"}),  # saturated from the start, then pushed there
    ],
)
def test_reading_every_n_steps_equals_reading_every_step(visible, weight_std, lr, l2, k, sat_limit, expect):
    """Decisions left on the device (read every 7 steps) and read every step: the same guard
    firings at the same steps with the same scales and rate cuts, the same sums, and the same
    parameters to float32 rounding."""
    nv, nh, B = 24, 40, 32
    data = _data(20 * B, nv, visible, seed=3)
    batches = [data[i * B : (i + 1) * B] for i in range(20)] + [data[:7]]  # and a short last batch
    host, dev = _rbm(nv, nh, visible, weight_std, 1), _rbm(nv, nh, visible, weight_std, 1)
    kw = {"k": k, "l2": l2, "sat_limit": sat_limit, "reads": [6, 14, 21]}
    want, _ = _run(host, batches, lr, **kw)
    got, _ = _run(dev, batches, lr, read_every=7, **kw)
    assert {e[1] for *_, events, _ in want for e in events} == expect
    for (err, sat, fired, rate), (d_err, d_sat, d_fired, d_rate) in zip(want, got, strict=True):
        assert d_err == pytest.approx(err, rel=1e-5) and d_sat == pytest.approx(sat, rel=1e-6, abs=1e-9)
        assert [e[:2] for e in d_fired] == [e[:2] for e in fired]
        assert [e[2] for e in d_fired] == pytest.approx([e[2] for e in fired], rel=1e-5)
        assert [e[3] for e in d_fired] == [e[3] for e in fired] and d_rate == rate  # the same double products
    torch.testing.assert_close(dev.theta, host.theta, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(dev.dtheta, host.dtheta, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("read_every", [1, 3])
def test_gaussian_guard_rescales_when_reconstruction_explodes(read_every):
    """A Gaussian RBM whose reconstruction std is far above the data's: the update is
    skipped, the parameters are scaled by std(v0)/std(vk), the momentum is reset."""
    rbm = _rbm(20, 30, "gauss", 3.0, 5)
    rbm.dWt.fill_(0.1)
    before = rbm.W.clone()
    v0 = torch.randn(64, 20, generator=torch.Generator().manual_seed(5))
    cd = ContrastiveDivergence(rbm, UniformSource(1), 0.01, 64, read_every=read_every)
    cd.step(v0, 0.5)
    hs = (UniformSource(1).fill_(torch.empty(64, 30)) < torch.sigmoid(v0 @ before.T)).float()
    [event] = cd.read().events
    assert event.guard == "recon_std" and event.scale == pytest.approx(float(v0.std() / (hs @ before).std()), rel=1e-4)
    assert event.lr == pytest.approx(0.009) and cd.lr == event.lr
    torch.testing.assert_close(rbm.W, before * event.scale)
    assert float(rbm.dWt.abs().max()) == 0.0


def _uncentred_inputs(n: int, nv: int, seed: int) -> torch.Tensor:
    """Frames like the input of a layer above the first: sigmoid outputs of a 1-hidden-layer
    code, mean ~0.5 in every dimension and correlated, (n, nv)."""
    g = torch.Generator().manual_seed(seed)
    return torch.sigmoid(torch.randn(n, 24, generator=g) @ torch.randn(24, nv, generator=g) * 0.3)


def _saturated_share(rbm: RBM, v: torch.Tensor) -> float:
    return float((torch.addmm(rbm.hb, v, rbm.Wt).abs() > 2.944).float().mean())


def _train_layer(v: torch.Tensor, lr: float, sat_limit: float, steps: int = 60):
    """A Bernoulli layer on uncentred inputs; the guard halves the rate when it fires."""
    rbm = _rbm(v.shape[1], 256, "bernoulli", optimal_d() / np.sqrt(v.shape[1]), 1)
    rbm.init_visible_bias_from_data(v.mean(0))
    g = torch.Generator().manual_seed(3)
    cd = ContrastiveDivergence(rbm, UniformSource(2), lr, 128, l2=2e-4, sat_limit=sat_limit)
    fired = []
    for step in range(steps):
        cd.step(v[torch.randint(0, len(v), (128,), generator=g)], 0.5)
        fired += [(step, e.guard) for e in cd.read().events]
    return rbm, fired, cd.lr


def test_uncentred_bernoulli_layer_collapses_without_the_saturation_guard():
    """The real-scale failure in small: inputs with mean 0.5 over 512 dimensions give each CD
    update a large step along the mean direction, and at a high learning rate every hidden
    unit ends saturated. With the guard the layer stays in its non-linear region."""
    v, held_out = _uncentred_inputs(4000, 512, seed=0), _uncentred_inputs(1000, 512, seed=9)
    start, _, _ = _train_layer(v, 0.4, 0.0, steps=0)
    assert _saturated_share(start, held_out) < 0.1  # the optimal init starts non-linear
    collapsed, fired, _ = _train_layer(v, 2.0, 0.0)
    assert not fired and _saturated_share(collapsed, held_out) > 0.9
    guarded, fired, lr = _train_layer(v, 2.0, 0.1)
    assert fired and all(kind == "saturation" for _, kind in fired) and fired[0][0] < 10 and lr < 2.0 / 4
    assert _saturated_share(guarded, held_out) <= 0.1


@pytest.mark.parametrize("read_every", [1, 4])
def test_saturation_guard_rescales_to_optimal_spread(read_every):
    """When it fires: no update, W and the hidden biases scaled so that the rms net input is
    D*, visible biases kept, momentum reset, the rate halved; the saturated share is reported."""
    g = torch.Generator().manual_seed(6)
    rbm = _rbm(40, 30, "bernoulli", 2.0, 6)
    rbm.hb.normal_(0, 1.0, generator=g)
    rbm.dWt.fill_(0.1)
    W, hb, vb = rbm.W.clone(), rbm.hb.clone(), rbm.vb.clone()
    v0 = (torch.rand(64, 40, generator=g) < 0.5).float()
    net = v0 @ W.T + hb
    cd = ContrastiveDivergence(rbm, UniformSource(1), 0.1, 64, sat_limit=0.2, read_every=read_every)
    cd.step(v0, 0.5)
    report = cd.read()
    share = float((torch.sigmoid(net) - 0.5).abs().gt(0.45).float().mean())
    [event] = report.events
    assert share > 0.2 and event.saturated == pytest.approx(share, abs=1e-6) and report.lr == 0.05
    scale = optimal_d() / float(net.pow(2).mean().sqrt())
    assert event.guard == "saturation" and event.scale == pytest.approx(scale, rel=1e-5)
    torch.testing.assert_close(rbm.W, W * scale)
    torch.testing.assert_close(rbm.hb, hb * scale)
    assert torch.equal(rbm.vb, vb) and float(rbm.dWt.abs().max()) == 0.0
    quiet = ContrastiveDivergence(RBM(40, 30, "bernoulli"), UniformSource(1), 0.1, 64, sat_limit=0.2)
    quiet.step(v0, 0.5)
    assert not quiet.read().events  # below the limit: the normal update


@pytest.mark.parametrize("read_every", [1, 5])
def test_a_non_finite_step_is_reported_at_the_read_and_weights_are_checked(read_every):
    rbm = _rbm(24, 40, "gauss", 0.1, 1)
    cd = ContrastiveDivergence(rbm, UniformSource(1), 0.05, 16, read_every=read_every)
    data = _data(64, 24, "gauss", seed=1)
    reports = []
    for i in range(4):
        v = data[16 * i : 16 * (i + 1)].clone()
        if i == 2:
            v[3, 5] = float("nan")
        cd.step(v, 0.5)
        if (i + 1) % read_every == 0:
            reports.append(cd.read())
    report = reports[2] if read_every == 1 else cd.read()
    assert report.bad_step == (0 if read_every == 1 else 2) and np.isnan(report.bad_error)
    assert not rbm.is_finite()  # a NaN frame poisons the update too: no checkpoint will be written
    assert cd.read().bad_step is None  # reset after a read


def test_work_buffers_kept_for_the_main_batch_size_and_one_other():
    cd = ContrastiveDivergence(_rbm(24, 40, "gauss", 0.1, 1), UniformSource(1), 0.05, 16, read_every=8)
    data = _data(64, 24, "gauss", seed=1)
    for n in (16, 7, 16, 9, 11, 16):
        cd.step(data[:n], 0.5)
    assert sorted(cd._work) == [(11, 11), (16, 16)]


@pytest.mark.parametrize("read_every", [1, 4])
@pytest.mark.parametrize(
    "visible,weight_std,lr,sat_limit,sizes",
    [
        ("gauss", 0.1, 0.05, 0.0, [24, 25, 2]),  # 2 rows over 3 processes: one has none
        ("gauss", 1.5, 0.05, 0.0, [24, 24, 24]),  # the Gaussian guard fires
        ("bernoulli", 2.5, 2.0, 0.2, [24, 24, 25]),  # the saturation guard fires
    ],
)
def test_steps_in_parts_equal_one_process(visible, weight_std, lr, sat_limit, sizes, read_every, thread_sum):
    """Three processes (threads) with their rows of every batch, statistics summed by one
    collective: the same firings, rates and errors as one process on the whole batch, the
    same parameters to float32 rounding, equal on every process."""
    nv, nh, world = 11, 9, 3
    data = _data(sum(sizes), nv, visible, seed=5)
    batches = [data[sum(sizes[:i]) : sum(sizes[: i + 1])] for i in range(len(sizes))]
    total, rbms, reports = thread_sum(world), [_rbm(nv, nh, visible, weight_std, 4) for _ in range(world)], [None] * 3

    def train(rank):
        cd = ContrastiveDivergence(rbms[rank], UniformSource(11), lr, len(batches[0]), k=2, l2=0.01,
                                   sat_limit=sat_limit, read_every=read_every)  # fmt: skip
        parts = []
        for i, v in enumerate(batches):
            start, end = rank * len(v) // world, (rank + 1) * len(v) // world
            cd.step(v[start:end], 0.5 + 0.4 * i / len(batches), BatchPart(start, len(v), total.for_rank(rank)))
            if read_every == 1:
                parts.append(cd.read())
        reports[rank] = _merge(parts or [cd.read()])

    threads = [threading.Thread(target=train, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    one = _rbm(nv, nh, visible, weight_std, 4)
    [single], _ = _run(one, batches, lr, k=2, l2=0.01, sat_limit=sat_limit)
    for err, _, events, rate in reports:
        assert err == pytest.approx(single[0], rel=1e-5) and rate == single[3]
        assert [e[:2] for e in events] == [e[:2] for e in single[2]]
    assert bool(single[2]) == (weight_std > 1 or sat_limit > 0)  # the guards were exercised
    for rbm in rbms:
        torch.testing.assert_close(rbm.theta, rbms[0].theta, rtol=0, atol=0)
        torch.testing.assert_close(rbm.theta, one.theta, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_replay_equals_the_cpu_step():
    """On a GPU the step of the main batch size is captured and replayed; its decisions and
    parameters match the CPU's."""
    from asr_init.cuda_graphs import capture_checked

    nv, nh, B = 24, 40, 32
    data = _data(10 * B, nv, "gauss", seed=3)
    cpu = _rbm(nv, nh, "gauss", 1.5, 1)
    gpu = RBM.from_state_dict(cpu.state_dict(), "cuda")
    cd_cpu = ContrastiveDivergence(cpu, UniformSource(11), 0.05, B, read_every=10)
    cd_gpu = ContrastiveDivergence(gpu, _CpuUniformsOn("cuda", 11), 0.05, B, read_every=10, capture=capture_checked)
    for i in range(10):
        cd_cpu.step(data[i * B : (i + 1) * B], 0.5)
        cd_gpu.step(data[i * B : (i + 1) * B].cuda(), 0.5)
    assert cd_gpu._graph
    a, b = cd_cpu.read(), cd_gpu.read()
    assert [e.guard for e in a.events] == [e.guard for e in b.events] and b.lr == a.lr
    torch.testing.assert_close(gpu.theta.cpu(), cpu.theta, rtol=1e-4, atol=1e-5)


class _CpuUniformsOn:
    """The CPU generator's uniforms, copied to a device."""

    def __init__(self, device: str, seed: int):
        self.source, self.device = UniformSource(seed), device

    def fill_(self, out: torch.Tensor) -> torch.Tensor:
        return out.copy_(self.source.fill_(torch.empty(out.shape)))
