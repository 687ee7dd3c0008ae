"""CD-k decided on the device (DeviceCD) against the host-decided step (RBM.cd_step)."""

import numpy as np
import pytest
import torch

from asr_init.models.cd_device import MAX_EVENTS, DeviceCD
from asr_init.models.optimal_spread import optimal_d
from asr_init.models.rbm import GUARD_LR_FACTOR, RBM, UniformSource


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


def _host_run(rbm, batches, lr, l2, k, sat_limit, reads):
    """What pre-training does with `cd_step`: cut the rate after a firing; the sums between reads."""
    u, out, fired, err, sat, since = UniformSource(11), [], [], 0.0, 0.0, 0
    for i, v in enumerate(batches):
        momentum = 0.5 + 0.4 * i / len(batches)
        r = rbm.cd_step(v, lr, momentum, l2, u, k=k, sat_limit=sat_limit)
        if r.skipped:
            lr *= GUARD_LR_FACTOR[r.guard]
            fired.append((i - since, r.guard, r.guard_scale, lr))
        err += float(r.error_sum)
        if r.saturated is not None:
            sat += float(r.saturated) * len(v)
        if i + 1 in reads:
            out.append((err, sat, fired, lr))
            err, sat, fired, since = 0.0, 0.0, [], i + 1
    return out


def _device_run(rbm, batches, lr, l2, k, sat_limit, reads):
    cd = DeviceCD(rbm, UniformSource(11), lr, len(batches[0]), k=k, l2=l2, sat_limit=sat_limit)
    out = []
    for i, v in enumerate(batches):
        cd.step(v, 0.5 + 0.4 * i / len(batches))
        if i + 1 in reads:
            r = cd.read()
            assert r.steps == i + 1 - (reads[reads.index(i + 1) - 1] if reads.index(i + 1) else 0)
            assert r.bad_step is None
            out.append((r.error_sum, r.saturated_sum, [(e.step, e.guard, e.scale, e.lr) for e in r.events], r.lr))
    return out


@pytest.mark.parametrize(
    "visible,weight_std,lr,l2,k,sat_limit,expect",
    [
        ("gauss", 0.1, 0.05, 2e-4, 1, 0.0, set()),  # no guard fires
        ("gauss", 1.5, 0.05, 0.0, 2, 0.0, {"recon_std"}),  # the reconstruction explodes, CD-2
        ("bernoulli", 0.8, 2.0, 2e-4, 1, 0.2, {"saturation"}),  # saturated from the start, then pushed there
    ],
)
def test_device_decisions_equal_the_host_step_by_step(visible, weight_std, lr, l2, k, sat_limit, expect):
    """The same guard firings at the same steps with the same scales and rate cuts, the
    same accumulated error and saturated share, and the same parameters, to float32 rounding."""
    nv, nh, B = 24, 40, 32
    data = _data(20 * B, nv, visible, seed=3)
    batches = [data[i * B : (i + 1) * B] for i in range(20)] + [data[:7]]  # and a short last batch
    reads = [6, 14, 21]
    host, dev = _rbm(nv, nh, visible, weight_std, 1), _rbm(nv, nh, visible, weight_std, 1)
    want = _host_run(host, batches, lr, l2, k, sat_limit, reads)
    got = _device_run(dev, batches, lr, l2, k, sat_limit, reads)
    assert {g for _, _, fired, _ in want for _, g, _, _ in fired} == expect
    for (err, sat, fired, rate), (d_err, d_sat, d_fired, d_rate) in zip(want, got, strict=True):
        assert d_err == pytest.approx(err, rel=1e-5)
        assert d_sat == pytest.approx(sat, rel=1e-6, abs=1e-9)
        assert [(s, g) for s, g, _, _ in d_fired] == [(s, g) for s, g, _, _ in fired]
        assert [sc for _, _, sc, _ in d_fired] == pytest.approx([sc for _, _, sc, _ in fired], rel=1e-5)
        assert [r for *_, r in d_fired] == [r for *_, r in fired]  # the same double products
        assert d_rate == rate
    for a, b in ((host.theta, dev.theta), (host.dtheta, dev.dtheta)):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_first_step_equals_the_host_step_bit_for_bit():
    """Before any update has been made the two paths compute the same numbers exactly:
    the guard's scale of a firing step, and the error."""
    data = _data(64, 24, "gauss", seed=4)
    host, dev = _rbm(24, 40, "gauss", 1.5, 2), _rbm(24, 40, "gauss", 1.5, 2)
    r = host.cd_step(data, 0.05, 0.5, 0.0, UniformSource(5))
    cd = DeviceCD(dev, UniformSource(5), 0.05, 64)
    cd.step(data, 0.5)
    report = cd.read()
    assert r.skipped and report.events[0].scale == r.guard_scale
    assert report.error_sum == float(r.error_sum)
    assert torch.equal(host.theta, dev.theta) and float(dev.dtheta.abs().max()) == 0.0


def test_saturation_rescale_uses_the_optimal_spread():
    """A firing scales weights and hidden biases so that the rms net input is D*, keeps the
    visible biases and resets the momentum; the rate is halved."""
    g = torch.Generator().manual_seed(6)
    rbm = _rbm(40, 30, "bernoulli", 2.0, 6)
    rbm.hb.normal_(0, 1.0, generator=g)
    rbm.dWt.fill_(0.1)
    W, hb, vb = rbm.W.clone(), rbm.hb.clone(), rbm.vb.clone()
    v0 = (torch.rand(64, 40, generator=g) < 0.5).float()
    cd = DeviceCD(rbm, UniformSource(1), 0.1, 64, sat_limit=0.2)
    cd.step(v0, 0.5)
    report = cd.read()
    scale = optimal_d() / float((v0 @ W.T + hb).pow(2).mean().sqrt())
    assert [e.guard for e in report.events] == ["saturation"] and report.lr == 0.05
    assert report.events[0].scale == pytest.approx(scale, rel=1e-5) and report.events[0].saturated > 0.2
    torch.testing.assert_close(rbm.W, W * scale)
    torch.testing.assert_close(rbm.hb, hb * scale)
    assert torch.equal(rbm.vb, vb) and float(rbm.dWt.abs().max()) == 0.0


def test_a_non_finite_step_is_reported_at_the_next_read():
    """Nothing is read per step: a NaN input shows up as the first bad step at the read."""
    rbm = _rbm(24, 40, "gauss", 0.1, 1)
    cd = DeviceCD(rbm, UniformSource(1), 0.05, 16)
    data = _data(64, 24, "gauss", seed=1)
    for i in range(4):
        v = data[16 * i : 16 * (i + 1)].clone()
        if i == 2:
            v[3, 5] = float("nan")
        cd.step(v, 0.5)
    report = cd.read()
    assert report.bad_step == 2 and report.steps == 4 and np.isnan(report.error_sum)
    assert np.isnan(report.bad_error) and report.bad_weights  # a NaN frame poisons the update too
    assert cd.read().bad_step is None  # reset after a read


def test_weights_gone_non_finite_with_a_finite_error_are_named_as_such():
    """An update too large for float32: the step's error (computed before it) is finite,
    its weights are not; the host words that "weights became NaN/Inf"."""
    rbm = _rbm(24, 40, "gauss", 0.1, 1)
    cd = DeviceCD(rbm, UniformSource(1), 1e40, 16, guard=False)
    cd.step(_data(16, 24, "gauss", seed=1), 0.5)
    report = cd.read()
    assert report.bad_step == 0 and report.bad_weights and np.isfinite(report.bad_error)


def test_work_buffers_kept_for_the_main_batch_size_and_one_other():
    rbm = _rbm(24, 40, "gauss", 0.1, 1)
    cd = DeviceCD(rbm, UniformSource(1), 0.05, 16)
    data = _data(64, 24, "gauss", seed=1)
    for n in (16, 7, 16, 9, 11, 16):
        cd.step(data[:n], 0.5)
    assert sorted(cd._work) == [(11, 11), (16, 16)]


def test_more_firings_than_slots_are_all_counted_in_the_rate():
    """Between two reads the log keeps MAX_EVENTS firings; the rate cut counts every one."""
    rbm = _rbm(20, 30, "gauss", 3.0, 7)
    cd = DeviceCD(rbm, UniformSource(1), 1.0, 8)
    data = _data(8, 20, "gauss", seed=2)
    for _ in range(MAX_EVENTS + 3):
        rbm.Wt.mul_(50)  # explode again before every step
        cd.step(data, 0.5)
    report = cd.read()
    assert len(report.events) == MAX_EVENTS and report.lost_events == 3
    assert report.lr == pytest.approx(0.9 ** (MAX_EVENTS + 3), rel=1e-12)
    assert [e.step for e in report.events] == list(range(MAX_EVENTS - 1)) + [MAX_EVENTS + 2]  # the last one
    assert report.events[-2].lr == pytest.approx(0.9 ** (MAX_EVENTS - 1), rel=1e-12)
    assert report.events[-1].lr == report.lr
    roomy = DeviceCD(_rbm(20, 30, "gauss", 3.0, 7), UniformSource(1), 1.0, 8, max_events=100)
    for _ in range(MAX_EVENTS + 3):
        roomy.rbm.Wt.mul_(50)
        roomy.step(data, 0.5)
    assert len(roomy.read().events) == MAX_EVENTS + 3


@pytest.mark.parametrize(
    "visible,weight_std,lr,sat_limit,sizes",
    [
        ("gauss", 0.1, 0.05, 0.0, [24, 25, 2]),  # 2 rows over 3 processes: one has none
        ("gauss", 1.5, 0.05, 0.0, [24, 24, 24]),  # the Gaussian guard fires
        ("bernoulli", 2.5, 2.0, 0.2, [24, 24, 25]),  # the saturation guard fires
    ],
)
def test_device_decisions_in_parts_equal_the_host_parts_and_one_process(
    visible, weight_std, lr, sat_limit, sizes, thread_sum
):
    """Three processes (threads) with their rows of every batch, statistics summed by one
    collective: the same firings, rates and errors as the host-decided parts
    (`RBM.cd_step(part=...)`) and as one process on the whole batch, the same parameters
    to float32 rounding, equal on every process."""
    import threading

    from asr_init.models.rbm import BatchPart

    nv, nh, world = 11, 9, 3
    data = _data(sum(sizes), nv, visible, seed=5)
    batches, at = [], 0
    for n in sizes:
        batches.append(data[at : at + n])
        at += n
    total = thread_sum(world)
    runs = {}
    for mode in ("host", "device"):
        rbms, reports = [_rbm(nv, nh, visible, weight_std, 4) for _ in range(world)], [None] * world

        def train(rank, mode=mode, rbms=rbms, reports=reports):
            u, reduce_ = UniformSource(3), total.for_rank(rank)
            cd = DeviceCD(rbms[rank], UniformSource(3), lr, len(batches[0]), k=2, l2=0.01, sat_limit=sat_limit)
            rate, fired = lr, []
            for i, v in enumerate(batches):
                start, end = rank * len(v) // world, (rank + 1) * len(v) // world
                part = BatchPart(start, len(v), reduce_)
                if mode == "device":
                    cd.step(v[start:end], 0.5, part=part)
                    continue
                r = rbms[rank].cd_step(v[start:end], rate, 0.5, 0.01, u, k=2, sat_limit=sat_limit, part=part)
                if r.skipped:
                    rate *= GUARD_LR_FACTOR[r.guard]
                    fired.append((i, r.guard))
            if mode == "device":
                report = cd.read()
                reports[rank] = ([(e.step, e.guard) for e in report.events], report.lr)
            else:
                reports[rank] = (fired, rate)

        threads = [threading.Thread(target=train, args=(r,)) for r in range(world)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        runs[mode] = (rbms, reports)
    one = _rbm(nv, nh, visible, weight_std, 4)
    cd = DeviceCD(one, UniformSource(3), lr, len(batches[0]), k=2, l2=0.01, sat_limit=sat_limit)
    for v in batches:
        cd.step(v, 0.5)
    single = cd.read()
    (host, host_reports), (dev, dev_reports) = runs["host"], runs["device"]
    assert dev_reports == host_reports == [([(e.step, e.guard) for e in single.events], single.lr)] * world
    assert bool(single.events) == (weight_std > 1 or sat_limit > 0)  # the guards were exercised
    for rank in range(world):
        torch.testing.assert_close(dev[rank].theta, dev[0].theta, rtol=0, atol=0)
        torch.testing.assert_close(dev[rank].theta, host[rank].theta, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(dev[rank].theta, one.theta, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_replay_equals_the_cpu_step():
    """On a GPU the step of the main batch size is captured and replayed; its decisions and
    parameters match the CPU's."""
    nv, nh, B = 24, 40, 32
    data = _data(10 * B, nv, "gauss", seed=3)
    cpu = _rbm(nv, nh, "gauss", 1.5, 1)
    gpu = RBM.from_state_dict(cpu.state_dict(), "cuda")
    cd_cpu = DeviceCD(cpu, UniformSource(11), 0.05, B)
    cd_gpu = DeviceCD(gpu, UniformSource(11), 0.05, B, graphs=True)
    cd_gpu.uniforms = _CpuUniformsOn("cuda", 11)  # the same draws on both devices
    for i in range(10):
        cd_cpu.step(data[i * B : (i + 1) * B], 0.5)
        cd_gpu.step(data[i * B : (i + 1) * B].cuda(), 0.5)
    assert cd_gpu.graph_status.startswith("captured")
    a, b = cd_cpu.read(), cd_gpu.read()
    assert [e.guard for e in a.events] == [e.guard for e in b.events] and b.lr == a.lr
    torch.testing.assert_close(gpu.theta.cpu(), cpu.theta, rtol=1e-4, atol=1e-5)


class _CpuUniformsOn:
    """The CPU generator's uniforms, copied to a device."""

    def __init__(self, device: str, seed: int):
        self.source, self.device = UniformSource(seed), device

    def fill_(self, out: torch.Tensor) -> torch.Tensor:
        return out.copy_(self.source.fill_(torch.empty(out.shape)))
