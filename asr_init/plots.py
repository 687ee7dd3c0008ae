"""PNG plots of training logs (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _num(row: dict, key: str) -> float | None:
    value = row.get(key)
    if value in (None, ""):
        return None
    return float(value)


def readable_axes(ax, values, epochs: bool = True) -> None:
    """Whole epochs on the x axis; a log y axis where the values span more than 100x (one
    diverging run would otherwise flatten the others into a line at 0)."""
    import math

    if epochs:
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    finite = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    if finite and max(finite) > 100 * min(finite):
        ax.set_yscale("log")


def fixed_margins(fig, nrows: int, ncols: int, left: float = 0.85, right: float = 0.15, bottom: float = 0.5,
                  top: float = 0.6, wgap: float = 0.95, hgap: float = 0.85) -> None:  # fmt: skip
    """Margins and gaps fixed in inches: room for tick and axis labels left of and below each
    panel and for the title above. (tight_layout measures the labels by drawing the figure
    once more: a third of the plotting time, which is most of a short run's time.)"""
    w, h = fig.get_size_inches()
    aw, ah = (w - left - right - (ncols - 1) * wgap) / ncols, (h - top - bottom - (nrows - 1) * hgap) / nrows
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h,
                        wspace=wgap / aw, hspace=hgap / ah)  # fmt: skip


def plot_recon(rows: list[dict], path: Path, title: str = "RBM pre-training") -> None:
    """Reconstruction error against frames seen, one panel per layer (rows as in recon.csv)."""
    layers = sorted({int(r["layer"]) for r in rows})
    if not layers:
        return
    cols = min(3, len(layers))
    nrows = -(-len(layers) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.4 * nrows), squeeze=False)
    for ax, layer in zip(axes.flat, layers):
        mine = [r for r in rows if int(r["layer"]) == layer]
        pts = [(_num(r, "frames"), _num(r, "recon_error")) for r in mine if r["kind"] == "interval"]
        if pts:
            ax.plot(
                [p[0] for p in pts], [p[1] for p in pts], marker=".", label="CD reconstruction (train, interval mean)"
            )
        for key, style, label in (
            ("train_recon", "o--", "mean-field, train sample"),
            ("dev_recon", "s--", "mean-field, dev sample"),
        ):
            ep = [
                (_num(r, "frames"), _num(r, key))
                for r in mine
                if r["kind"] in ("epoch_start", "epoch_end") and _num(r, key) is not None
            ]
            if ep:
                ax.plot([p[0] for p in ep], [p[1] for p in ep], style, ms=4, label=label)
        ax.set_title(f"layer {layer}")
        ax.set_xlabel("frames seen")
        ax.set_ylabel("reconstruction error Σ(v−v̂)² / frame")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_formatter(matplotlib.ticker.EngFormatter())
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(layers) :]:
        ax.axis("off")
    fig.suptitle(title)
    fixed_margins(fig, nrows, cols)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_training(rows: list[dict], path: Path, title: str = "fine-tuning") -> None:
    """Cross-entropy and frame accuracy per epoch (train and dev), as in train.csv."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    train = [r for r in rows if _num(r, "train_loss") is not None]
    dev = [r for r in rows if _num(r, "dev_loss") is not None]
    ax1.plot([_num(r, "epoch") for r in train], [_num(r, "train_loss") for r in train], "o-", label="train")
    ax1.plot([_num(r, "epoch") for r in dev], [_num(r, "dev_loss") for r in dev], "s--", label="dev")
    rejected = [r for r in dev if str(r.get("accepted")) in ("False", "false", "0")]
    if rejected:
        ax1.plot(
            [_num(r, "epoch") for r in rejected],
            [_num(r, "dev_loss") for r in rejected],
            "rx",
            ms=9,
            label="rejected epoch",
        )
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy (nats/frame)")
    ax2.plot([_num(r, "epoch") for r in train], [100 * _num(r, "train_acc") for r in train], "o-", label="train")
    ax2.plot([_num(r, "epoch") for r in dev], [100 * _num(r, "dev_acc") for r in dev], "s--", label="dev")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("frame accuracy (%)")
    readable_axes(ax1, [_num(r, "train_loss") for r in train] + [_num(r, "dev_loss") for r in dev])
    readable_axes(ax2, [])
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fixed_margins(fig, 1, 2)
    fig.savefig(path, dpi=110)
    plt.close(fig)
