"""Initialisation methods and the optimal spread D*."""

import math
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from asr_init.cli import app
from asr_init.errors import UserError
from asr_init.models.init import METHODS, InitContext, init_stack, init_weight_, input_power, parse_init
from asr_init.models.nonlinearity import net_input_stats
from asr_init.models.optimal_spread import (
    PAPER_D,
    monte_carlo_d,
    nonlinear_region,
    objective,
    optimal_d,
    second_derivative,
)

runner = CliRunner()


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_d_star_quadrature():
    assert optimal_d("sigmoid") == pytest.approx(1.4078, abs=1e-3)
    assert optimal_d("tanh") == pytest.approx(0.7039, abs=1e-3)
    assert optimal_d("tanh") == pytest.approx(optimal_d("sigmoid") / 2, abs=1e-6)  # tanh(x) = 2 s(2x) - 1
    # The squared criterion has a different, smaller optimum.
    assert optimal_d("sigmoid", "square") < optimal_d("sigmoid") - 0.01


def test_objective_matches_monte_carlo_and_paper_loss():
    z = np.random.default_rng(1).standard_normal(2_000_000)
    mc = np.abs(second_derivative(1.3 * z, "sigmoid")).mean()
    assert objective(1.3) == pytest.approx(mc, rel=2e-3)
    loss = (objective(optimal_d()) - objective(PAPER_D)) / objective(optimal_d())
    assert 3e-5 < loss < 1e-4  # the objective is flat near D*: 1.392 loses ~6e-5


def test_monte_carlo_estimate():
    assert monte_carlo_d("sigmoid", samples=1_000_000, seed=0) == pytest.approx(1.40784, abs=0.02)
    assert monte_carlo_d("tanh", samples=1_000_000, seed=1) == pytest.approx(0.70392, abs=0.02)


def test_nonlinear_region_is_half_maximum():
    a, b = nonlinear_region("sigmoid")
    peak = abs(second_derivative(math.log(2 + math.sqrt(3)), "sigmoid"))  # |f''| peaks at ln(2 + sqrt 3)
    for x in (a, b):
        assert abs(second_derivative(x, "sigmoid")) == pytest.approx(peak / 2, rel=1e-6)


@pytest.mark.parametrize("activation,d", [("sigmoid", 1.40784), ("tanh", 0.70392)])
def test_optimal_gives_net_input_spread_d_star(activation, d):
    n = 429
    w = torch.empty(2048, n)
    init_weight_(w, "optimal", gen(), InitContext(activation))
    x = torch.randn(4000, n, generator=gen(1))
    assert float((x @ w.T).std()) == pytest.approx(d, rel=0.02)


def test_optimal_data_on_unit_interval_inputs():
    # Sigmoid-like inputs in [0, 1], not zero-mean: the premise of 'optimal' fails here.
    # Many units: with non-zero-mean inputs each unit's mean net input is random, so the
    # spread over units converges slowly.
    x = torch.rand(2000, 1024, generator=gen(2)) ** 2
    w = torch.empty(8192, 1024)
    res = init_weight_(w, "optimal-data", gen(), InitContext("sigmoid", input_power(x)))
    assert float((x @ w.T).std()) == pytest.approx(1.40784, rel=0.02)
    assert res.spread == pytest.approx(1.40784, rel=0.02)
    w2 = torch.empty(8192, 1024)
    init_weight_(w2, "optimal", gen(), InitContext("sigmoid"))
    assert float((x @ w2.T).std()) < 0.9  # 'optimal' undershoots on such inputs


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("xavier-normal", lambda i, o: math.sqrt(2 / (i + o))),
        ("xavier-uniform", lambda i, o: math.sqrt(2 / (i + o))),
        ("he-normal", lambda i, o: math.sqrt(2 / i)),
        ("he-uniform", lambda i, o: math.sqrt(2 / i)),
        ("lecun-normal", lambda i, o: math.sqrt(1 / i)),
        ("hinton", lambda i, o: 0.01),
        ("kaldi", lambda i, o: 0.1),
        ("large", lambda i, o: 10.0),
        ("normal:0.05", lambda i, o: 0.05),
        ("uniform:0.3", lambda i, o: 0.3 / math.sqrt(3)),
    ],
)
def test_methods_match_formulas(spec, expected):
    fan_in, fan_out = 429, 1024
    w = torch.empty(fan_out, fan_in)
    res = init_weight_(w, spec, gen())
    assert float(w.std()) == pytest.approx(expected(fan_in, fan_out), rel=0.02)
    assert res.std == pytest.approx(expected(fan_in, fan_out), rel=0.02)


def test_orthogonal_and_constant():
    w = torch.empty(64, 128)
    init_weight_(w, "orthogonal:2", gen())
    torch.testing.assert_close(w @ w.T, 4 * torch.eye(64), atol=1e-4, rtol=0)
    init_weight_(w, "constant:0.25", gen())
    assert torch.all(w == 0.25)


def test_zeros_gives_identical_hidden_units():
    (layers, _) = init_stack([20, 8, 8], "zeros", gen())
    x = torch.randn(50, 20, generator=gen(3))
    h = torch.sigmoid(x @ layers[0][0].T + layers[0][1])
    assert torch.all(h == h[:, :1])


@pytest.mark.parametrize("spec", sorted(set(METHODS) - {"zeros", "constant", "normal", "uniform", "optimal-data"}))
def test_seeding_is_reproducible(spec):
    # lsuv and data-dependent read a sample of the layer's inputs; the others ignore it.
    ctx = InitContext(inputs=torch.randn(200, 40, generator=gen(9)))
    a, b, c = torch.empty(30, 40), torch.empty(30, 40), torch.empty(30, 40)
    init_weight_(a, spec, gen(5), ctx)
    init_weight_(b, spec, gen(5), ctx)
    init_weight_(c, spec, gen(6), ctx)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    "spec,message",
    [
        ("bogus", "unknown init method 'bogus'; valid: zeros, constant, normal"),
        ("normal:abc", "malformed init 'normal:abc': STD must be a number"),
        ("normal", "needs a parameter: normal:STD"),
        ("xavier-normal:2", "takes no parameter"),
        ("normal:-1", "must be a positive finite number"),
        ("constant:nan", "malformed init 'constant:nan': VALUE must be a finite number"),
        ("normal:inf", "malformed init 'normal:inf': STD must be a positive finite number"),
        ("constant:1e308", r"malformed init 'constant:1e308': VALUE must be at most 1000 in magnitude: .* \|z\| = 17"),
        ("constant:-1000.5", "VALUE must be at most 1000 in magnitude"),
        ("optimal:2e3", "D must be at most 1000 in magnitude"),
        ("orthogonal:-5000", "GAIN must be at most 1000 in magnitude"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_init(spec)


def test_largest_parameters_are_accepted():
    assert parse_init("constant:-1000")[1] == -1000.0 and parse_init("normal:1000")[1] == 1000.0


def test_optimal_data_needs_input_power():
    with pytest.raises(UserError, match="optimal-data.*needs the layer's input power"):
        init_weight_(torch.empty(3, 4), "optimal-data", gen())


def test_net_input_stats():
    net = torch.randn(20000, 50, generator=gen(4)) * 1.40784
    s = net_input_stats(net, "sigmoid")
    assert s.std == pytest.approx(1.40784, rel=0.02)
    a, b = nonlinear_region("sigmoid")
    from scipy.stats import norm

    expected = 2 * (norm.cdf(b / 1.40784) - norm.cdf(a / 1.40784))
    assert s.nonlinear == pytest.approx(expected, abs=0.01)
    assert net_input_stats(net * 100, "sigmoid").saturated > 0.95


def test_cli_optimal_d_and_plot(tmp_path):
    png = tmp_path / "d.png"
    result = runner.invoke(app, ["optimal-d", "--samples", "200000", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert "D* (quadrature)        = 1.40784" in result.output
    assert "relative loss of J: 5.58e-05" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    tanh = runner.invoke(app, ["optimal-d", "--activation", "tanh", "--samples", "1000"])
    assert "= 0.70392" in tanh.output
    bad = runner.invoke(app, ["optimal-d", "--activation", "relu"])
    assert bad.exit_code == 1 and "invalid --activation relu: must be one of sigmoid, tanh" in bad.output
    bad = runner.invoke(app, ["optimal-d", "--criterion", "max"])
    assert bad.exit_code == 1 and "invalid --criterion max: must be one of abs, square" in bad.output


def test_cli_inits_and_inspect(tiny_store):
    out = runner.invoke(app, ["inits"])
    assert out.exit_code == 0 and "optimal-data" in out.output and "Glorot" in out.output
    res = runner.invoke(
        app, ["inspect", str(tiny_store), "--init", "large", "--layers", "2", "--hidden", "64", "--frames", "500"]
    )
    assert res.exit_code == 0, res.output
    # 'large' saturates nearly every unit: the last column (saturated) shows it.
    rows = [ln for ln in res.output.splitlines() if ln.startswith("│")]
    saturated = [float(re.findall(r"([\d.]+)%", ln)[-1]) for ln in rows]
    assert len(saturated) == 2 and min(saturated) > 90
    bad = runner.invoke(app, ["inspect", str(tiny_store), "--init", "normal:abc"])
    assert bad.exit_code == 1 and "malformed init" in bad.output


@pytest.mark.parametrize(
    "activation, saturated",
    [("sigmoid", "outputs below 0.05 or above 0.95"), ("tanh", "outputs beyond ±0.9"),
     ("relu", "outputs at 0 (dead units)")],
)  # fmt: skip
def test_inspect_caption_says_what_satur_counts_for_its_activation(tiny_store, activation, saturated):
    """saturated_mask counts |out| > 0.9 for tanh and dead units for ReLU: the caption said
    "within 0.05 of 0 or 1" for every activation."""
    from asr_init.models.config import InspectConfig
    from asr_init.models.nonlinearity import inspect_network

    config = InspectConfig(init="he-normal", activation=activation, layers=1, hidden=[16], frames=100)
    caption = inspect_network(tiny_store, None, config).caption
    assert caption.endswith(f"satur: share of {activation} {saturated}") and "0.05 of 0 or 1" not in caption
    kink = "non-lin: share of net inputs within 1e-3 of the kink at 0;"  # ReLU's f'' is 0 but at its kink
    assert (kink in caption) == (activation == "relu") and ("|f''| >= max/2" in caption) == (activation != "relu")
