"""The report's figures: reconstruction curves, the sweep of D, the DBN layers, recipe 2's training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import NullLocator

from asr_init.plots import label_axes, plt, readable_axes, save
from asr_init.reporting.logs import CurveSummary, is_sweep, sweep_points


def _band(ax, s: CurveSummary, color: str, alpha: float, *style: str, **line) -> None:
    """The mean curve over seeds and a band of one standard deviation around it."""
    ax.plot(s.frames, s.mean, *style, color=color, **line)
    ax.fill_between(s.frames, s.mean - s.std, s.mean + s.std, color=color, alpha=alpha)


def plot_layer1(summaries: list[CurveSummary], path: Path, title: str) -> None:
    named = [s for s in summaries if not is_sweep(s.init)]
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, s in enumerate(sorted(named, key=lambda s: s.auc)):
        style = "-" if s.init.startswith("optimal") else "--"
        width = 2 if s.init == "optimal" else 1.2
        _band(ax, s, f"C{i % 10}", 0.15, style, lw=width, label=f"{s.init} ({s.auc:.4g})")
    # Keep the informative range: a diverging init (e.g. `large`) would flatten all the others.
    top = 1.5 * float(np.percentile(np.array([s.mean[0] for s in named]), 75))
    bottom = 0.9 * min(float(s.mean.min()) for s in named)
    ax.set_ylim(bottom, max(top, bottom * 1.5))
    off = [s.init for s in named if s.mean.max() > top]
    if off:
        ax.text(0.01, 0.99, f"off scale at the start: {', '.join(off)}", transform=ax.transAxes, va="top", fontsize=7)
    ax.set_yscale("log")
    label_axes(ax, "frames seen", "reconstruction error Σ(v−v̂)² per frame (log)", title, grid="both")
    ax.legend(fontsize=7, title="init (mean error over the run)", title_fontsize=7, ncol=2)
    save(fig, path)


def plot_sweep(groups: dict, path: Path, d_star: float) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (visible, lr), summaries in sorted(groups.items()):
        sweep = sweep_points(summaries)
        if sweep:
            ref = min(s.auc for _, s in sweep)
            ds, scores, spreads = zip(*((d, s.auc / ref, s.auc_std / ref) for d, s in sweep))
            ax.errorbar(ds, scores, yerr=spreads, marker="o", capsize=3, label=f"{visible}, lr {lr:g}")
    ax.axvline(d_star, color="k", ls=":", label=f"D* = {d_star:.4f}")
    ax.set_xscale("log")
    ds = sorted({d for summaries in groups.values() for d, _ in sweep_points(summaries)})
    if ds:
        ax.set_xticks(ds, [f"{d:g}" for d in ds])
        ax.xaxis.set_minor_locator(NullLocator())
    ylabel = "mean reconstruction error over the run\n(relative to the best D of each setting)"
    label_axes(ax, "spread D of the first layer's net input (σ = D/√N)", ylabel, grid="both")
    ax.legend(fontsize=8)
    save(fig, path)


def plot_dbn(runs: dict, path: Path) -> None:
    layers = sorted({layer for r in runs.values() for layer in r})
    fig, axes = plt.subplots(1, len(layers), figsize=(4.5 * len(layers), 3.8), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        for i, (init, r) in enumerate(runs.items()):
            if layer in r:
                _band(ax, r[layer], f"C{i % 10}", 0.12, label=init, lw=2 if init == "optimal" else 1)
        ax.set_yscale("log")
        label_axes(ax, "frames seen in this layer", title=f"DBN layer {layer}", grid="both")
    axes[0][0].set_ylabel("reconstruction error / input variance (log)")
    axes[0][-1].legend(fontsize=7)
    save(fig, path)


def plot_nopretrain(rows: list[dict], path: Path) -> None:
    acts = sorted({r["activation"] for r in rows})
    fig, axes = plt.subplots(2, len(acts), figsize=(4.6 * len(acts), 7), squeeze=False)
    for j, act in enumerate(acts):
        mine = [r for r in rows if r["activation"] == act]
        cost, acc = axes[0][j], axes[1][j]
        for i, r in enumerate(mine):
            ep = [e["epoch"] for e in r["epochs"]]
            label = r["init"] + (" (diverged)" if r["diverged"] else "")
            cost.plot(ep, [e["train_loss"] for e in r["epochs"]], "o-", color=f"C{i}", label=label)
            acc.plot(ep, [100 * e["dev_acc"] for e in r["epochs"]], "o-", color=f"C{i}", label=r["init"])
        label_axes(cost, "epoch", "cross-entropy (nats/frame)", f"{act}: training cost")
        label_axes(acc, "epoch", "frame accuracy (%)", f"{act}: dev frame accuracy")
        readable_axes(cost, [e["train_loss"] for r in mine for e in r["epochs"]])
        readable_axes(acc, [])
        cost.legend(fontsize=7)
    save(fig, path)
