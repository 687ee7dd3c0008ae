"""PNG plots of training logs (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _num(row: dict, key: str) -> float | None:
    value = row.get(key)
    return None if value in (None, "") else float(value)


def readable_axes(ax, values) -> None:
    """Whole epochs on the x axis; a log y axis where the values span more than 100x (one
    diverging run would otherwise flatten the others into a line at 0)."""
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    finite = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    if finite and max(finite) > 100 * min(finite):
        ax.set_yscale("log")


def fixed_margins(fig, nrows: int, ncols: int, left: float = 0.85, right: float = 0.15, bottom: float = 0.5,
                  top: float = 0.6, wgap: float = 0.95, hgap: float = 0.85) -> None:  # fmt: skip
    """Margins and gaps fixed in inches: room for tick and axis labels left of and below each
    panel and for the title above (tight_layout would draw the figure once more to measure them)."""
    w, h = fig.get_size_inches()
    aw, ah = (w - left - right - (ncols - 1) * wgap) / ncols, (h - top - bottom - (nrows - 1) * hgap) / nrows
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h,
                        wspace=wgap / aw, hspace=hgap / ah)  # fmt: skip


def label_axes(ax, xlabel: str, ylabel: str | None = None, title: str | None = None, grid: str = "major") -> None:
    """An axes' labels and title, and a light grid at its `grid` ("major" or "both") ticks."""
    ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    ax.grid(alpha=0.3, which=grid)


def save(fig, path: Path, panels: tuple[int, int] | None = None, dpi: int = 110, laid_out: bool = False) -> None:
    """Lay the figure out (`fixed_margins` for a grid of (rows, columns) panels, else tight_layout;
    neither where the caller has `laid_out` it), write it at `dpi` and close it. A failed write
    (a full disk) names the file: the image writer's OSError names none."""
    if panels:
        fixed_margins(fig, *panels)
    elif not laid_out:
        fig.tight_layout()
    try:
        fig.savefig(path, dpi=dpi)
    except OSError as exc:
        exc.filename = exc.filename or str(path)
        raise
    finally:
        plt.close(fig)


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
            ax.plot(*zip(*pts), marker=".", label="CD reconstruction (train, interval mean)")
        for key, style, label in (("train_recon", "o--", "train"), ("dev_recon", "s--", "dev")):
            ends = [(_num(r, "frames"), _num(r, key)) for r in mine if r["kind"] in ("epoch_start", "epoch_end")]
            ends = [p for p in ends if p[1] is not None]
            if ends:
                ax.plot(*zip(*ends), style, ms=4, label=f"mean-field, {label} sample")
        label_axes(ax, "frames seen", "reconstruction error Σ(v−v̂)² / frame", f"layer {layer}")
        ax.xaxis.set_major_formatter(matplotlib.ticker.EngFormatter())
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(layers) :]:
        ax.axis("off")
    fig.suptitle(title)
    save(fig, path, (nrows, cols))


def plot_training(rows: list[dict], path: Path, title: str = "fine-tuning") -> None:
    """Cross-entropy and frame accuracy per epoch (train and dev), as in train.csv."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    train = [r for r in rows if _num(r, "train_loss") is not None]
    dev = [r for r in rows if _num(r, "dev_loss") is not None]

    def by_epoch(some: list[dict], key: str, scale: float = 1.0) -> tuple[list, list]:
        return [_num(r, "epoch") for r in some], [scale * _num(r, key) for r in some]

    for ax, measure, scale, ylabel in (
        (ax1, "loss", 1.0, "cross-entropy (nats/frame)"),
        (ax2, "acc", 100, "frame accuracy (%)"),
    ):
        ax.plot(*by_epoch(train, f"train_{measure}", scale), "o-", label="train")
        ax.plot(*by_epoch(dev, f"dev_{measure}", scale), "s--", label="dev")
        label_axes(ax, "epoch", ylabel)
    rejected = [r for r in dev if str(r.get("accepted")) in ("False", "false", "0")]
    if rejected:
        ax1.plot(*by_epoch(rejected, "dev_loss"), "rx", ms=9, label="rejected epoch")
    readable_axes(ax1, [_num(r, "train_loss") for r in train] + [_num(r, "dev_loss") for r in dev])
    readable_axes(ax2, [])
    for ax in (ax1, ax2):
        ax.legend(fontsize=8)
    fig.suptitle(title)
    save(fig, path, (1, 2))
