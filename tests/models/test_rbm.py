"""RBM learning: Gaussian and Bernoulli visible units, CD against the exact gradient."""

import copy
import threading

import numpy as np
import pytest
import torch

from asr_init.models.optimal_spread import optimal_d
from asr_init.models.rbm import RBM, BatchPart, UniformSource, cd_step_reference, log_likelihood_gradient


def _train(rbm, data, lr, epochs, batch=50, momentum=0.5, seed=0):
    u = UniformSource(seed)
    errors = []
    for _ in range(epochs):
        perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(len(errors)))
        total = 0.0
        for i in range(0, len(data), batch):
            total += float(rbm.cd_step(data[perm[i : i + batch]], lr, momentum, 0.0, u).error_sum)
        errors.append(total / len(data))
    return errors


def test_gaussian_rbm_learns_low_rank_data():
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(3, 20, generator=g)
    data = torch.randn(4000, 3, generator=g) @ basis
    data = (data - data.mean(0)) / data.std(0) + 0.05 * torch.randn(4000, 20, generator=g)
    rbm = RBM(20, 64, "gauss")
    torch.nn.init.normal_(rbm.Wt, 0, 1.4 / np.sqrt(20), generator=g)

    def mean_field_error():
        return float((rbm.reconstruct(data) - data).pow(2).sum(1).mean())

    initial = mean_field_error()
    errors = _train(rbm, data, lr=0.05, epochs=30)
    assert errors[-1] < errors[0]
    assert mean_field_error() < initial / 10, (initial, mean_field_error())


def test_bernoulli_rbm_reconstructs_binary_patterns():
    patterns = torch.tensor(
        [
            [1, 1, 1, 0, 0, 0, 0, 0, 1, 0],
            [0, 0, 0, 1, 1, 1, 0, 0, 0, 1],
            [0, 1, 0, 0, 1, 0, 1, 1, 0, 0],
            [1, 0, 0, 1, 0, 0, 0, 1, 1, 1],
        ],
        dtype=torch.float32,
    )
    data = patterns.repeat(500, 1)
    rbm = RBM(10, 16, "bernoulli")
    torch.nn.init.normal_(rbm.Wt, 0, 0.1, generator=torch.Generator().manual_seed(1))
    rbm.init_visible_bias_from_data(data.mean(0))
    _train(rbm, data, lr=0.5, epochs=20)
    recon = rbm.reconstruct(patterns)
    assert torch.equal((recon > 0.5).float(), patterns)
    assert float((recon - patterns).abs().max()) < 0.3


def test_visible_bias_is_logit_of_mean():
    rbm = RBM(3, 2, "bernoulli")
    rbm.init_visible_bias_from_data(torch.tensor([0.5, 0.9, 0.0]))
    torch.testing.assert_close(rbm.vb, torch.tensor([0.0, np.log(9.0), np.log(1e-3 / (1 - 1e-3))], dtype=torch.float32))


def test_cd_gradient_agrees_with_exact_gradient():
    """On a 4x3 RBM, the CD-1 update points the way of the exact log-likelihood gradient."""
    g = torch.Generator().manual_seed(2)
    rbm = RBM(4, 3, "bernoulli")
    torch.nn.init.normal_(rbm.Wt, 0, 0.5, generator=g)
    rbm.hb.normal_(0, 0.2, generator=g)
    rbm.vb.normal_(0, 0.2, generator=g)
    data = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]], dtype=torch.float32).repeat(2000, 1)
    gW, ghb, gvb = log_likelihood_gradient(rbm, data)
    before = RBM.from_state_dict(rbm.state_dict())
    # One plain CD step (no momentum, no L2) on the whole set: the parameter change / lr is the CD estimate.
    rbm.cd_step(data, lr=1.0, momentum=0.0, l2=0.0, uniforms=UniformSource(3), guard=False)
    cd = torch.cat([(rbm.W - before.W).flatten(), rbm.hb - before.hb, rbm.vb - before.vb]).double()
    exact = torch.cat([gW.flatten(), ghb, gvb])
    cosine = float(cd @ exact / (cd.norm() * exact.norm()))
    assert cosine > 0.9, cosine
    # And CD moves the log-likelihood up: a small step along it increases it.
    assert float(cd @ exact) > 0


def test_state_dict_round_trip():
    rbm = RBM(5, 4, "gauss")
    rbm.Wt.normal_()
    rbm.dWt.normal_()
    again = RBM.from_state_dict(rbm.state_dict())
    assert torch.equal(again.W, rbm.W) and torch.equal(again.dWt, rbm.dWt) and again.visible == "gauss"
    assert rbm.state_dict()["W"].shape == (4, 5)  # stored as nn.Linear does


def test_uniform_source_state():
    u = UniformSource(7)
    a = torch.empty(1000)
    u.fill_(a)
    assert float(a.min()) >= 0 and float(a.max()) < 1 and abs(float(a.mean()) - 0.5) < 0.03
    state = u.state_dict()
    b, c = torch.empty(10), torch.empty(10)
    u.fill_(b)
    u.load_state_dict(state)
    u.fill_(c)
    assert torch.equal(b, c)


@pytest.mark.parametrize(
    "visible,k,sat_limit", [("gauss", 1, 0.0), ("bernoulli", 1, 0.0), ("gauss", 2, 0.0), ("bernoulli", 1, 0.99)]
)
def test_fused_cd_step_equals_textbook_cd(visible, k, sat_limit):
    """The fused step (biases inside the matrix products, one gradient product) computes
    exactly the textbook update: same uniforms, same parameters after three steps."""
    g = torch.Generator().manual_seed(4)
    nv, nh = 13, 7
    rbm = RBM(nv, nh, visible)
    torch.nn.init.normal_(rbm.Wt, 0, 0.3, generator=g)
    rbm.hb.normal_(0, 0.2, generator=g)
    rbm.vb.normal_(0, 0.2, generator=g)
    ref = [t.clone() for t in (rbm.W, rbm.hb, rbm.vb, rbm.dWt.T, rbm.dhb, rbm.dvb)]
    ours, theirs = UniformSource(9), UniformSource(9)
    for i in range(3):
        v0 = torch.randn(32, nv, generator=g) if visible == "gauss" else (torch.rand(32, nv, generator=g) < 0.3).float()
        # Watching saturation (a limit that is not reached) must not change the update.
        err = float(rbm.cd_step(v0, 0.1, 0.5 + 0.1 * i, 0.01, ours, k=k, guard=False, sat_limit=sat_limit).error_sum)
        *ref, ref_err = cd_step_reference(*ref, v0, 0.1, 0.5 + 0.1 * i, 0.01, theirs, k, visible)
        assert err == pytest.approx(ref_err, rel=1e-5)
    for got, want in zip((rbm.W, rbm.hb, rbm.vb, rbm.dWt.T, rbm.dhb, rbm.dvb), ref):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_guard_rescales_when_reconstruction_explodes():
    """A Gaussian RBM whose reconstruction std is far above the data's: the update is
    skipped, the parameters are scaled by std(v0)/std(vk), the momentum is reset."""
    g = torch.Generator().manual_seed(5)
    rbm = RBM(20, 30, "gauss")
    torch.nn.init.normal_(rbm.Wt, 0, 3.0, generator=g)
    rbm.dWt.fill_(0.1)
    before = copy.deepcopy(rbm.W)
    v0 = torch.randn(64, 20, generator=g)
    u = UniformSource(1)
    state = u.state_dict()
    result = rbm.cd_step(v0, 0.01, 0.5, 0.0, u)
    u.load_state_dict(state)
    hs = (u.fill_(torch.empty(64, 30)) < torch.sigmoid(v0 @ before.T)).float()
    vk = hs @ before
    assert result.skipped and result.guard_scale == pytest.approx(float(v0.std() / vk.std()), rel=1e-4)
    torch.testing.assert_close(rbm.W, before * result.guard_scale)
    assert float(rbm.dWt.abs().max()) == 0.0


def _uncentred_inputs(n: int, nv: int, seed: int) -> torch.Tensor:
    """Frames like the input of a layer above the first: sigmoid outputs of a 1-hidden-layer
    code, mean ~0.5 in every dimension and correlated, (n, nv)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 24, generator=g)
    return torch.sigmoid(z @ torch.randn(24, nv, generator=g) * 0.3)


def _saturated_share(rbm: RBM, v: torch.Tensor) -> float:
    return float((torch.addmm(rbm.hb, v, rbm.Wt).abs() > 2.944).float().mean())


def _train_layer(v: torch.Tensor, lr: float, sat_limit: float, steps: int = 60):
    """A Bernoulli layer on uncentred inputs, lowering lr by half when the guard fires."""
    rbm = RBM(v.shape[1], 256, "bernoulli")
    torch.nn.init.normal_(rbm.Wt, 0, optimal_d() / np.sqrt(v.shape[1]), generator=torch.Generator().manual_seed(1))
    rbm.init_visible_bias_from_data(v.mean(0))
    u, g, fired = UniformSource(2), torch.Generator().manual_seed(3), []
    for step in range(steps):
        result = rbm.cd_step(v[torch.randint(0, len(v), (128,), generator=g)], lr, 0.5, 2e-4, u, sat_limit=sat_limit)
        if result.skipped:
            fired.append((step, result.guard))
            lr *= 0.5
    return rbm, fired, lr


def test_uncentred_bernoulli_layer_collapses_without_the_saturation_guard():
    """The real-scale failure in small: inputs with mean 0.5 over 512 dimensions give each
    CD update a large step along the mean direction, and at a high learning rate every
    hidden unit ends saturated. With the guard the layer stays in its non-linear region."""
    v = _uncentred_inputs(4000, 512, seed=0)
    held_out = _uncentred_inputs(1000, 512, seed=9)
    start, _, _ = _train_layer(v, 0.4, 0.0, steps=0)
    assert _saturated_share(start, held_out) < 0.1  # the optimal init starts non-linear
    collapsed, fired, _ = _train_layer(v, 2.0, 0.0)
    assert not fired and _saturated_share(collapsed, held_out) > 0.9
    guarded, fired, lr = _train_layer(v, 2.0, 0.1)
    assert fired and all(kind == "saturation" for _, kind in fired) and fired[0][0] < 10
    assert lr < 2.0 / 4
    assert _saturated_share(guarded, held_out) <= 0.1


def test_saturation_guard_rescales_to_optimal_spread():
    """When it fires: no update, W and the hidden biases scaled so that the rms net input is
    D*, visible biases kept, momentum reset; the saturated share is reported."""
    g = torch.Generator().manual_seed(6)
    rbm = RBM(40, 30, "bernoulli")
    torch.nn.init.normal_(rbm.Wt, 0, 2.0, generator=g)
    rbm.hb.normal_(0, 1.0, generator=g)
    rbm.vb.normal_(0, 1.0, generator=g)
    rbm.dWt.fill_(0.1)
    W, hb, vb = rbm.W.clone(), rbm.hb.clone(), rbm.vb.clone()
    v0 = (torch.rand(64, 40, generator=g) < 0.5).float()
    net = v0 @ W.T + hb
    result = rbm.cd_step(v0, 0.1, 0.5, 0.0, UniformSource(1), sat_limit=0.2)
    share = float((torch.sigmoid(net) - 0.5).abs().gt(0.45).float().mean())
    assert share > 0.2 and float(result.saturated) == pytest.approx(share, abs=1e-6)
    assert result.skipped and result.guard == "saturation"
    scale = optimal_d() / float(net.pow(2).mean().sqrt())
    assert result.guard_scale == pytest.approx(scale, rel=1e-5)
    torch.testing.assert_close(rbm.W, W * scale)
    torch.testing.assert_close(rbm.hb, hb * scale)
    torch.testing.assert_close(rbm.vb, vb)
    assert float(rbm.dWt.abs().max()) == 0.0
    # Below the limit nothing happens beyond the normal update.
    quiet = RBM(40, 30, "bernoulli")
    assert not quiet.cd_step(v0, 0.1, 0.5, 0.0, UniformSource(1), sat_limit=0.2).skipped


@pytest.mark.parametrize(
    "visible,lr,sat_limit,sizes",
    [
        ("gauss", 0.1, 0.0, [24, 25, 2]),  # 2 rows over 3 processes: one has none
        ("gauss", 40.0, 0.0, [24, 24, 24]),  # the reconstruction explodes: the Gaussian guard fires
        ("bernoulli", 0.5, 0.3, [24, 24, 25]),  # the saturation guard fires
    ],
)
def test_cd_step_in_parts_equals_one_step(visible, lr, sat_limit, sizes, thread_sum):
    """Three processes (threads here) each with their rows of every batch, the statistics
    summed: the same updates, errors and guard decisions as one step on the whole batch."""
    g = torch.Generator().manual_seed(7)
    nv, nh, world = 11, 9, 3
    whole = RBM(nv, nh, visible)
    torch.nn.init.normal_(whole.Wt, 0, 2.0 if sat_limit else 0.3, generator=g)
    whole.vb.normal_(0, 0.2, generator=g)
    batches = [torch.randn(n, nv, generator=g) if visible == "gauss" else torch.rand(n, nv, generator=g) for n in sizes]
    parts = [RBM.from_state_dict(whole.state_dict()) for _ in range(world)]
    results: list = [[None] * len(sizes) for _ in range(world)]
    total = thread_sum(world)

    def train(rank: int) -> None:
        u, reduce_ = UniformSource(3), total.for_rank(rank)
        for i, v in enumerate(batches):
            start, end = rank * len(v) // world, (rank + 1) * len(v) // world
            part = BatchPart(start, len(v), reduce_)
            results[rank][i] = parts[rank].cd_step(v[start:end], lr, 0.5, 0.01, u, k=2, sat_limit=sat_limit, part=part)

    threads = [threading.Thread(target=train, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    u = UniformSource(3)
    for i, v in enumerate(batches):
        want = whole.cd_step(v, lr, 0.5, 0.01, u, k=2, sat_limit=sat_limit)
        for rank in range(world):
            got = results[rank][i]
            assert (got.skipped, got.guard) == (want.skipped, want.guard)
            assert float(got.error_sum) == pytest.approx(float(want.error_sum), rel=1e-5)
            assert got.guard_scale == pytest.approx(want.guard_scale, rel=1e-5)
            if sat_limit:
                assert float(got.saturated) == pytest.approx(float(want.saturated), abs=1e-6)
    if lr > 1 or sat_limit:
        assert any(r.skipped for r in results[0])  # the guard was exercised
    for rbm in parts:
        for got, ref in zip(
            (rbm.Wt, rbm.hb, rbm.vb, rbm.dWt, rbm.dhb, rbm.dvb),
            (whole.Wt, whole.hb, whole.vb, whole.dWt, whole.dhb, whole.dvb),
        ):
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
