"""The optimal spread D* of a unit's net input: where the sigmoid is most non-linear.

For net input z ~ N(0, D^2) the objective is J(D) = E[|f''(z)|] (criterion "abs", the
paper's) or E[f''(z)^2] (criterion "square"). D* = argmax_D J(D). With inputs normalised
to N(0, 1) and N inputs per unit, weights drawn from N(0, sigma^2) give net inputs of
spread sigma * sqrt(N), hence sigma = D* / sqrt(N).

J is computed by adaptive Gauss-Kronrod quadrature (scipy.integrate.quad) and maximised
with a bounded Brent search, so D* is deterministic to ~1e-7. The Monte Carlo estimate
reproduces the paper's procedure: one fixed sample z0 ~ N(0, 1) (common random numbers),
J_MC(D) = mean |f''(D z0)|, maximised with the same search (values: docs/reference.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import integrate, optimize

from asr_init.config import SEED_RANGE
from asr_init.errors import UserError

ACTIVATIONS = ("sigmoid", "tanh")
CRITERIA = ("abs", "square")
PAPER_D = 1.392  # the source paper's Monte Carlo value for the logistic sigmoid
MC_SAMPLES = (100, 100_000_000)  # the sample sizes `optimal-d --samples` takes
_SEARCH = (0.05, 10.0)


def second_derivative(x: np.ndarray, activation: str) -> np.ndarray:
    """f''(x): sigmoid: s(1-s)(1-2s); tanh: -2 t (1 - t^2)."""
    if activation == "sigmoid":
        s = 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))  # overflow-free logistic
        return s * (1 - s) * (1 - 2 * s)
    if activation == "tanh":
        t = np.tanh(np.asarray(x, dtype=np.float64))
        return -2.0 * t * (1 - t * t)
    raise UserError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")


def _check(activation: str, criterion: str) -> None:
    if activation not in ACTIVATIONS:
        raise UserError(f"invalid --activation {activation}: must be one of {', '.join(ACTIVATIONS)}")
    if criterion not in CRITERIA:
        raise UserError(f"invalid --criterion {criterion}: must be one of {', '.join(CRITERIA)}")


def objective(d: float, activation: str = "sigmoid", criterion: str = "abs") -> float:
    """J(D) = E[|f''(z)|] or E[f''(z)^2] for z ~ N(0, D^2), by quadrature.

    |f''| is even, so J = 2 * int_0^inf g(D u) phi(u) du; the integrand is smooth on
    [0, inf) and negligible beyond u = 12.
    """
    _check(activation, criterion)
    power = 1 if criterion == "abs" else 2

    def integrand(u: float) -> float:
        return (
            abs(float(second_derivative(d * u, activation))) ** power * math.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)
        )

    value, _ = integrate.quad(integrand, 0.0, 12.0, epsabs=1e-14, epsrel=1e-12, limit=200)
    return 2.0 * value


@cache
def optimal_d(activation: str = "sigmoid", criterion: str = "abs") -> float:
    """D* = argmax_D J(D) by quadrature and a bounded 1-D Brent search (cached)."""
    _check(activation, criterion)
    res = optimize.minimize_scalar(
        lambda d: -objective(d, activation, criterion), bounds=_SEARCH, method="bounded", options={"xatol": 1e-9}
    )
    return float(res.x)


def monte_carlo_d(
    activation: str = "sigmoid", criterion: str = "abs", samples: int = 1_000_000, seed: int = 0
) -> float:
    """The paper's estimate: maximise the sample mean of |f''(D z0)| over one fixed sample."""
    _check(activation, criterion)
    check_monte_carlo(samples, seed)
    z0 = np.random.default_rng(seed).standard_normal(samples)
    power = 1 if criterion == "abs" else 2

    def neg(d: float) -> float:
        return -float(np.mean(np.abs(second_derivative(d * z0, activation)) ** power))

    return float(optimize.minimize_scalar(neg, bounds=_SEARCH, method="bounded", options={"xatol": 1e-6}).x)


def check_monte_carlo(samples: int, seed: int) -> None:
    """A UserError naming --samples or --seed, each checked on its own, where it is out of range."""
    low, high = MC_SAMPLES
    if not low <= samples <= high:
        raise UserError(f"invalid --samples {samples}: must be from {low:,} to {high:,}")
    if not 0 <= seed < 2**32:
        raise UserError(f"invalid --seed {seed}: {SEED_RANGE}")


@dataclass(frozen=True)
class SpreadReport:
    activation: str
    criterion: str
    d_star: float
    j_star: float
    d_mc: float
    mc_samples: int
    paper_d: float
    paper_loss: float  # relative loss of J at the paper's D


def spread_report(
    activation: str = "sigmoid", criterion: str = "abs", samples: int = 1_000_000, seed: int = 0
) -> SpreadReport:
    """D* by quadrature, the Monte Carlo estimate, and how much the paper's 1.392 loses.

    The paper's D is for the logistic sigmoid; for tanh the comparison point is 1.392 / 2.
    """
    d_star = optimal_d(activation, criterion)
    j_star = objective(d_star, activation, criterion)
    paper = PAPER_D if activation == "sigmoid" else PAPER_D / 2
    loss = (j_star - objective(paper, activation, criterion)) / j_star
    return SpreadReport(
        activation, criterion, d_star, j_star, monte_carlo_d(activation, criterion, samples, seed), samples, paper, loss
    )


@cache
def nonlinear_region(activation: str = "sigmoid") -> tuple[float, float]:
    """[a, b] with a, b > 0 such that |f''(x)| >= max|f''| / 2 exactly for a <= |x| <= b (cached)."""
    _check(activation, "abs")
    peak = optimize.minimize_scalar(
        lambda x: -abs(float(second_derivative(x, activation))),
        bounds=(0.01, 5),
        method="bounded",
        options={"xatol": 1e-10},
    ).x
    half = abs(float(second_derivative(peak, activation))) / 2

    def g(x: float) -> float:
        return abs(float(second_derivative(x, activation))) - half

    return float(optimize.brentq(g, 1e-9, peak)), float(optimize.brentq(g, peak, 20.0))


def plot_spread(report: SpreadReport, path) -> None:
    """|f''(z)| with the N(0, D*^2) density, and J(D) with D* and the paper's D marked."""
    from asr_init.plots import plt, save

    act, crit = report.activation, report.criterion
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    z = np.linspace(-4.5 * report.d_star, 4.5 * report.d_star, 800)
    g = np.abs(second_derivative(z, act))
    ax1.plot(z, g, label=f"|f''(z)|, f = {act}", color="C0")
    density = np.exp(-0.5 * (z / report.d_star) ** 2) / (report.d_star * math.sqrt(2 * math.pi))
    ax1b = ax1.twinx()
    ax1b.plot(z, density, color="C1", ls="--", label=f"N(0, D*²) density, D* = {report.d_star:.5f}")
    ax1.set_xlabel("net input z")
    ax1.set_ylabel("|f''(z)|")
    ax1b.set_ylabel("density")
    lines = ax1.get_lines() + ax1b.get_lines()
    ax1.legend(lines, [ln.get_label() for ln in lines], loc="upper left", fontsize=8)
    ax1.set_title("second derivative and the optimal net-input spread")
    ds = np.linspace(0.1, 5 * report.d_star, 300)
    js = [objective(d, act, crit) for d in ds]
    ax2.plot(ds, js, color="C0", label=f"J(D) = E[{'|f″(z)|' if crit == 'abs' else 'f″(z)²'}], z ~ N(0, D²)")
    ax2.axvline(report.d_star, color="C2", label=f"D* = {report.d_star:.5f} (quadrature)")
    ax2.axvline(
        report.paper_d, color="C3", ls=":", label=f"paper D = {report.paper_d:.4g} (loses {report.paper_loss:.1e})"
    )
    ax2.axvline(
        report.d_mc, color="C4", ls="--", lw=1, label=f"Monte Carlo D = {report.d_mc:.4f} (n = {report.mc_samples:,})"
    )
    ax2.set_xlabel("spread D (standard deviation of the net input)")
    ax2.set_ylabel("J(D)")
    ax2.legend(fontsize=8)
    ax2.set_title("objective against spread")
    save(fig, path, dpi=120)
