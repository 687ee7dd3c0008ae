"""The report's figures: reconstruction curves, the sweep of D, the DBN layers, recipe 2's training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import NullLocator

from asr_init.plots import plt, readable_axes
from asr_init.reporting.logs import CurveSummary, is_sweep


def plot_layer1(summaries: list[CurveSummary], path: Path, title: str) -> None:
    named = [s for s in summaries if not is_sweep(s.init)]
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, s in enumerate(sorted(named, key=lambda s: s.auc)):
        color = f"C{i % 10}"
        style = "-" if s.init.startswith("optimal") else "--"
        ax.plot(
            s.frames, s.mean, style, color=color, lw=2 if s.init == "optimal" else 1.2, label=f"{s.init} ({s.auc:.4g})"
        )
        ax.fill_between(s.frames, s.mean - s.std, s.mean + s.std, color=color, alpha=0.15)
    # Keep the informative range: a diverging init (e.g. `large`) would flatten all the others.
    firsts = np.array([s.mean[0] for s in named])
    top = 1.5 * float(np.percentile(firsts, 75))
    bottom = 0.9 * min(float(s.mean.min()) for s in named)
    ax.set_ylim(bottom, max(top, bottom * 1.5))
    off = [s.init for s in named if s.mean.max() > top]
    if off:
        ax.text(0.01, 0.99, f"off scale at the start: {', '.join(off)}", transform=ax.transAxes, va="top", fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel("frames seen")
    ax.set_ylabel("reconstruction error Σ(v−v̂)² per frame (log)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, title="init (mean error over the run)", title_fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sweep(groups: dict, path: Path, d_star: float) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (visible, lr), summaries in sorted(groups.items()):
        sweep = sorted(((float(s.init.split(":")[1]), s) for s in summaries if is_sweep(s.init)), key=lambda t: t[0])
        if sweep:
            ref = min(s.auc for _, s in sweep)
            ax.errorbar(
                [d for d, _ in sweep],
                [s.auc / ref for _, s in sweep],
                yerr=[s.auc_std / ref for _, s in sweep],
                marker="o",
                capsize=3,
                label=f"{visible}, lr {lr:g}",
            )
    ax.axvline(d_star, color="k", ls=":", label=f"D* = {d_star:.4f}")
    ax.set_xscale("log")
    ds = sorted({float(s.init.split(":")[1]) for v in groups.values() for s in v if is_sweep(s.init)})
    if ds:
        ax.set_xticks(ds, [f"{d:g}" for d in ds])
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("spread D of the first layer's net input (σ = D/√N)")
    ax.set_ylabel("mean reconstruction error over the run\n(relative to the best D of each setting)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_dbn(runs: dict, path: Path) -> None:
    layers = sorted({layer for r in runs.values() for layer in r})
    fig, axes = plt.subplots(1, len(layers), figsize=(4.5 * len(layers), 3.8), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        for i, (init, r) in enumerate(runs.items()):
            if layer in r:
                s = r[layer]
                ax.plot(s.frames, s.mean, label=init, color=f"C{i % 10}", lw=2 if init == "optimal" else 1)
                ax.fill_between(s.frames, s.mean - s.std, s.mean + s.std, color=f"C{i % 10}", alpha=0.12)
        ax.set_yscale("log")
        ax.set_title(f"DBN layer {layer}")
        ax.set_xlabel("frames seen in this layer")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("reconstruction error / input variance (log)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_nopretrain(rows: list[dict], path: Path) -> None:
    acts = sorted({r["activation"] for r in rows})
    fig, axes = plt.subplots(2, len(acts), figsize=(4.6 * len(acts), 7), squeeze=False)
    for j, act in enumerate(acts):
        for i, r in enumerate(x for x in rows if x["activation"] == act):
            ep = [int(e["epoch"]) for e in r["epochs"]]
            axes[0][j].plot(
                ep,
                [float(e["train_loss"]) for e in r["epochs"]],
                "o-",
                color=f"C{i}",
                label=r["init"] + (" (diverged)" if r["diverged"] else ""),
            )
            axes[1][j].plot(ep, [100 * float(e["dev_acc"]) for e in r["epochs"]], "o-", color=f"C{i}", label=r["init"])
        axes[0][j].set_title(f"{act}: training cost")
        axes[1][j].set_title(f"{act}: dev frame accuracy")
        axes[0][j].set_ylabel("cross-entropy (nats/frame)")
        axes[1][j].set_ylabel("frame accuracy (%)")
        costs = [float(e["train_loss"]) for r in rows if r["activation"] == act for e in r["epochs"]]
        readable_axes(axes[0][j], costs)
        readable_axes(axes[1][j], [])
        for ax in (axes[0][j], axes[1][j]):
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        axes[0][j].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
