"""REPORT.md for the recipes: tables, plots and conclusions computed from the logs.

Nothing in the report is typed in by hand: every number comes from the CSV/JSON files
the recipes wrote, and every conclusion is a sentence chosen by comparing those
numbers (`conclude_*` functions), so the text changes when the numbers do.

Measures for recipe 1 (per visible type, learning rate and initialisation, over seeds):
- the reconstruction error (paper eq. 7, CD reconstruction, mean over each report
  interval) against frames seen, mean and spread (standard deviation) over seeds;
- the error at fixed frame counts (a quarter, half and all of the run);
- the mean error over the run (the area under the curve divided by its length), the
  main measure of "converges faster": lower is faster;
- the frames needed to reach a common target error, the median over initialisations
  of the final mean error at that setting.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr_init.io import read_csv


def _init_name(folder: str) -> str:
    """Folder label back to the init spec: optimal_1.392 -> optimal:1.392."""
    head, sep, tail = folder.rpartition("_")
    if sep and head in ("optimal", "optimal-data", "normal", "uniform", "constant", "orthogonal"):
        return f"{head}:{tail}"
    return folder


@dataclass
class CurveSummary:
    """One (visible, lr, init) setting over its seeds."""

    visible: str
    lr: float
    init: str
    seeds: int
    frames: np.ndarray  # (K,) common grid
    mean: np.ndarray  # (K,)
    std: np.ndarray  # (K,)
    auc: float  # mean error over the run, averaged over seeds
    auc_std: float
    final: float
    final_std: float

    def at(self, frames: float) -> float:
        return float(np.interp(frames, self.frames, self.mean))

    def frames_to(self, target: float) -> float | None:
        below = np.flatnonzero(self.mean <= target)
        return float(self.frames[below[0]]) if len(below) else None


def _curve(path: Path, layer: int = 1, relative: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Reconstruction error against frames of one layer; `relative` divides it by the
    layer's input variance (sum over units), which makes layers fed by different data
    comparable (1.0 = no better than predicting the mean)."""
    rows = [r for r in read_csv(path) if int(r["layer"]) == layer]
    interval = [r for r in rows if r["kind"] == "interval"]
    scale = 1.0
    if relative:
        var = [float(r["input_var"]) for r in rows if r["kind"] == "epoch_start" and r.get("input_var")]
        scale = var[0] if var and var[0] > 0 else math.nan
    return (
        np.array([float(r["frames"]) for r in interval]),
        np.array([float(r["recon_error"]) / scale for r in interval]),
    )


def summarise_curves(
    visible: str, lr: float, init: str, curves: list[tuple[np.ndarray, np.ndarray]]
) -> CurveSummary | None:
    """Mean and spread over seeds on the frames of the shortest run."""
    curves = [c for c in curves if len(c[0]) >= 2]
    if not curves:
        return None
    grid = min((c[0] for c in curves), key=lambda f: f[-1])
    ys = np.array([np.interp(grid, f, e) for f, e in curves])
    finite = np.isfinite(ys).all(1)
    ys = ys[finite] if finite.any() else ys
    span = grid[-1] - grid[0]
    aucs = np.array([np.trapezoid(y, grid) / span for y in ys])
    return CurveSummary(
        visible,
        lr,
        init,
        len(ys),
        grid,
        ys.mean(0),
        ys.std(0),
        float(aucs.mean()),
        float(aucs.std()),
        float(ys[:, -1].mean()),
        float(ys[:, -1].std()),
    )


def load_layer1(paper: Path) -> dict[tuple[str, float], list[CurveSummary]]:
    """paper/layer1/VISIBLE/lrLR/INIT/seedS/recon.csv -> summaries grouped by (visible, lr)."""
    groups: dict[tuple[str, float], list[CurveSummary]] = defaultdict(list)
    for lr_dir in sorted(Path(paper).glob("layer1/*/lr*")):
        visible, lr = lr_dir.parent.name, float(lr_dir.name[2:])
        for init_dir in sorted(p for p in lr_dir.iterdir() if p.is_dir()):
            curves = [_curve(f) for f in sorted(init_dir.glob("seed*/recon.csv"))]
            s = summarise_curves(visible, lr, _init_name(init_dir.name), curves)
            if s is not None:
                groups[(visible, lr)].append(s)
    return dict(groups)


def _is_sweep(init: str) -> bool:
    return init.startswith("optimal:") and init != "optimal:1.392"


def target_error(summaries: list[CurveSummary]) -> float:
    """The common target: the median over initialisations of the final mean error."""
    return float(np.median([s.final for s in summaries]))


def conclude_layer1(visible: str, lr: float, summaries: list[CurveSummary]) -> str:
    """One paragraph: which initialisation converged fastest at this setting, by how much."""
    named = [s for s in summaries if not _is_sweep(s.init)] or summaries
    ranked = sorted(named, key=lambda s: s.auc)
    best, second = ranked[0], ranked[1] if len(ranked) > 1 else None
    opt = next((s for s in named if s.init == "optimal"), None)
    text = (
        f"**{visible} visible units, learning rate {lr:g}:** `{best.init}` converged fastest "
        f"(mean reconstruction error over the run {best.auc:.4g} ± {best.auc_std:.2g} over {best.seeds} seeds"
    )
    if second is not None:
        gap = (second.auc - best.auc) / second.auc
        text += f"; {gap:.2%} below the runner-up `{second.init}`, {second.auc:.4g}"
        if second.auc - best.auc <= max(best.auc_std, second.auc_std):
            text += ", a gap within the spread over seeds"
    text += ")."
    if opt is not None and opt is not best:
        rank = ranked.index(opt) + 1
        gap = (opt.auc - best.auc) / opt.auc
        within = opt.auc - best.auc <= max(best.auc_std, opt.auc_std)
        text += (
            f" The paper's `optimal` ranked {rank} of {len(ranked)}, with a mean error {gap:.2%} above "
            f"`{best.init}`{' (within the seed spread)' if within else ''}: at this setting the measurement "
            f"{'does not clearly separate them' if within else 'goes against the claim that it converges fastest'}."
        )
    elif opt is best:
        text += " This supports the paper's claim at this setting."
    target = target_error(named)
    fb, fo = best.frames_to(target), opt.frames_to(target) if opt else None
    if fb is not None:
        text += f" `{best.init}` reached the common target error {target:.4g} after {fb:,.0f} frames"
        if opt is not None and opt is not best:
            text += f", `optimal` after {fo:,.0f} frames." if fo is not None else ", `optimal` never reached it."
        else:
            text += "."
    return text


def conclude_sweep(visible: str, lr: float, summaries: list[CurveSummary], d_star: float) -> str | None:
    sweep = sorted(
        (
            (float(s.init.split(":")[1]), s)
            for s in summaries
            if s.init.startswith("optimal:") and s.init != "optimal:1.392"
        ),
        key=lambda t: t[0],
    )
    if len(sweep) < 2:
        return None
    best_d, best = min(sweep, key=lambda t: t[1].auc)
    near = min(sweep, key=lambda t: abs(t[0] - d_star))
    text = (
        f"Sweep of D ({visible}, lr {lr:g}): the lowest mean error was at D = {best_d:g} ({best.auc:.4g}); "
        f"at D ≈ D* = {d_star:.4f} (D = {near[0]:g}) it was {near[1].auc:.4g}"
    )
    if best_d == near[0]:
        text += ", so the optimum of the pre-training speed coincides with D*."
    else:
        text += f", {(near[1].auc - best.auc) / near[1].auc:.1%} higher: the fastest spread was {'larger' if best_d > near[0] else 'smaller'} than D*."
    return text


def best_pretraining_init(paper: Path, visible: str = "gauss") -> str:
    """The named initialisation with the lowest mean error at the lowest learning rate tried."""
    groups = load_layer1(Path(paper))
    keys = sorted(k for k in groups if k[0] == visible)
    if not keys:
        return "optimal"
    named = [s for s in groups[keys[0]] if not _is_sweep(s.init)]
    return min(named, key=lambda s: s.auc).init if named else "optimal"


# --- DBN, recipe 2, recipe 3 ------------------------------------------------------------


def load_dbn_runs(paper: Path) -> dict[str, dict[int, CurveSummary]]:
    out: dict[str, dict[int, CurveSummary]] = {}
    for init_dir in sorted(Path(paper).glob("dbn/*")):
        files = sorted(init_dir.glob("seed*/recon.csv"))
        if not files:
            continue
        layers = sorted({int(r["layer"]) for r in read_csv(files[0])})
        out[_init_name(init_dir.name)] = {
            layer: s
            for layer in layers
            if (
                s := summarise_curves(
                    "dbn", 0.0, _init_name(init_dir.name), [_curve(f, layer, relative=True) for f in files]
                )
            )
            is not None
        }
    return out


def epoch_end_saturation(recon_csv: Path) -> dict[int, list[float]]:
    """Layer -> the share of saturated hidden units at the end of each of its epochs."""
    out: dict[int, list[float]] = {}
    for r in read_csv(recon_csv):
        if r["kind"] == "epoch_end" and r.get("saturated", "") != "":
            out.setdefault(int(r["layer"]), []).append(float(r["saturated"]))
    return out


def load_dbn_saturation(paper: Path) -> dict[str, dict[int, float]]:
    """Init -> layer -> saturated share at the end of the layer's training, mean over seeds."""
    out: dict[str, dict[int, float]] = {}
    for init_dir in sorted(Path(paper).glob("dbn/*")):
        per_seed = [epoch_end_saturation(f) for f in sorted(init_dir.glob("seed*/recon.csv"))]
        layers = sorted({k for s in per_seed for k in s})
        out[_init_name(init_dir.name)] = {k: float(np.mean([s[k][-1] for s in per_seed if k in s])) for k in layers}
    return out


def dbn_saturation_lines(dbn_dir: Path) -> list[str]:
    """The saturation table of one pre-training run: every layer's every epoch end, guard firings."""
    sat = epoch_end_saturation(dbn_dir / "recon.csv")
    if not sat:
        return []
    guards = sum(1 for r in read_csv(dbn_dir / "recon.csv") if r["kind"] == "guard")
    worst = max(v for values in sat.values() for v in values)
    lines = [
        f"`{dbn_dir.name}`: the largest share of saturated hidden units at any layer's epoch end is "
        f"**{worst:.1%}**; guard firings: {guards}.",
        "",
        "| layer | saturated at the end of each epoch |",
        "|---|---|",
    ]
    lines += [f"| {k} | " + ", ".join(f"{v:.1%}" for v in values) + " |" for k, values in sorted(sat.items())]
    return lines + [""]


def conclude_dbn(runs: dict[str, dict[int, CurveSummary]]) -> str | None:
    """Rank inits by the mean over layers of the relative reconstruction error.

    Each layer above the first sees the output of its own init's lower layers, so raw
    errors are not comparable across inits (a layer fed constant inputs reconstructs them
    perfectly); the error relative to the input variance is.
    """
    runs = {init: layers for init, layers in runs.items() if layers}
    if not runs:
        return None
    layers = sorted({layer for r in runs.values() for layer in r})
    score = {init: float(np.mean([r[k].auc for k in layers if k in r])) for init, r in runs.items()}
    finite = {k: v for k, v in score.items() if math.isfinite(v)}
    ranked = sorted(finite, key=finite.get)
    if not ranked:
        return "No DBN run produced a comparable reconstruction error."
    best = ranked[0]
    text = (
        f"Over the whole DBN ({len(layers)} layers), `{best}` converged fastest: its reconstruction error "
        f"relative to each layer's input variance, averaged over the run and the layers, is {finite[best]:.4g}"
    )
    if "optimal" in finite and best != "optimal":
        text += f"; `optimal` ranked {ranked.index('optimal') + 1} of {len(ranked)} ({finite['optimal']:.4g})."
    else:
        text += "."
    degenerate = sorted(set(score) - set(finite))
    if degenerate:
        text += (
            f" {', '.join(f'`{d}`' for d in degenerate)}: a layer's input had no variance (identical hidden "
            f"units below), so its error is not comparable."
        )
    return text


def load_nopretrain(folder: Path) -> list[dict]:
    rows = []
    for model in sorted(Path(folder).glob("*/*")):
        if not model.is_dir():
            continue
        train = read_csv(model / "train.csv") if (model / "train.csv").exists() else []
        epochs = [r for r in train if int(r["epoch"]) > 0]
        res = (
            json.loads((model / "eval-test" / "results.json").read_text())
            if (model / "eval-test" / "results.json").exists()
            else None
        )
        rows.append(
            {
                "activation": model.parent.name,
                "init": _init_name(model.name),
                "epochs": epochs,
                "diverged": (model / "failed.json").exists(),
                "final_train_loss": float(epochs[-1]["train_loss"]) if epochs else math.nan,
                "final_dev_acc": float(epochs[-1]["dev_acc"]) if epochs else math.nan,
                "test_acc": res["frame_acc_states"] if res else math.nan,
            }
        )
    return rows


def conclude_nopretrain(rows: list[dict]) -> list[str]:
    out = []
    for act in sorted({r["activation"] for r in rows}):
        mine = [r for r in rows if r["activation"] == act]
        ok = [r for r in mine if not r["diverged"] and not math.isnan(r["test_acc"])]
        if not ok:
            diverged = all(r["diverged"] for r in mine)
            out.append(f"**{act}:** {'every run diverged' if diverged else 'no test results'}.")
            continue
        best = max(ok, key=lambda r: r["test_acc"])
        worst = min(ok, key=lambda r: r["test_acc"])
        text = (
            f"**{act}:** `{best['init']}` reached the best test frame accuracy ({best['test_acc']:.1%}); "
            f"the worst was `{worst['init']}` ({worst['test_acc']:.1%})."
        )
        opt = next((r for r in ok if r["init"] == "optimal"), None)
        if opt is not None and opt is not best:
            text += (
                f" `optimal` reached {opt['test_acc']:.1%}, {best['test_acc'] - opt['test_acc']:.1%} below the best."
            )
        diverged = [r["init"] for r in mine if r["diverged"]]
        if diverged:
            text += f" Diverged (loss NaN/Inf): {', '.join(f'`{d}`' for d in diverged)}."
        out.append(text)
    return out


def load_am(folder: Path) -> list[dict]:
    rows = []
    for model in sorted(Path(folder).glob("dnn-*")):
        ft = json.loads((model / "finetune.json").read_text()) if (model / "finetune.json").exists() else None
        if ft is None:
            continue
        row = {
            "model": model.name,
            "pretrained": "not-pretrained" not in model.name,
            "finetune_s": ft["seconds"],
            "epochs": ft["epochs"],
            "pretrain_s": None,
        }
        if ft["config"].get("dbn"):
            pj = Path(ft["config"]["dbn"]) / "pretrain.json"
            if pj.exists():
                row["pretrain_s"] = json.loads(pj.read_text())["seconds"]
        for split in ("dev", "test"):
            path = model / f"eval-{split}" / "results.json"
            if path.exists():
                res = json.loads(path.read_text())
                row[f"{split}_states"] = res["frame_acc_states"]
                row[f"{split}_phones"] = res["frame_acc_phones"]
                row[f"{split}_per"] = res["per"]
                row[f"{split}_decode_s"] = res["decode_seconds"]
        rows.append(row)
    return rows


def conclude_am(rows: list[dict]) -> str | None:
    """Pre-trained (the one best on dev) against not pre-trained, on test: the test split never chooses."""
    scored = [r for r in rows if r.get("test_per") is not None]
    pre = [r for r in scored if r["pretrained"]]
    nopre = [r for r in scored if not r["pretrained"]]
    if not pre or not nopre:
        return None

    def on_dev(r: dict) -> float:
        return r["dev_per"] if r.get("dev_per") is not None else r["test_per"]

    best_pre, base = min(pre, key=on_dev), min(nopre, key=on_dev)
    diff = best_pre["test_per"] - base["test_per"]
    verb = "lowered" if diff < 0 else "raised" if diff > 0 else "did not change"
    return (
        f"Pre-training ({best_pre['model']}, the pre-trained model with the lowest dev PER) {verb} the test phone "
        f"error rate from {base['test_per']:.2%} (not pre-trained: {base['model']}, likewise chosen on dev) to {best_pre['test_per']:.2%} ({diff:+.2%} "
        f"absolute); test state frame accuracy {base['test_states']:.2%} → {best_pre['test_states']:.2%}."
    )


# --- plots -------------------------------------------------------------------------------


def _plot_layer1(summaries: list[CurveSummary], path: Path, title: str) -> None:
    from asr_init.plots import plt

    named = [s for s in summaries if not _is_sweep(s.init)]
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


def _plot_sweep(groups: dict, path: Path, d_star: float) -> None:
    from asr_init.plots import plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (visible, lr), summaries in sorted(groups.items()):
        sweep = sorted(((float(s.init.split(":")[1]), s) for s in summaries if _is_sweep(s.init)), key=lambda t: t[0])
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
    ds = sorted({float(s.init.split(":")[1]) for v in groups.values() for s in v if _is_sweep(s.init)})
    if ds:
        ax.set_xticks(ds, [f"{d:g}" for d in ds])
        ax.xaxis.set_minor_locator(__import__("matplotlib").ticker.NullLocator())
    ax.set_xlabel("spread D of the first layer's net input (σ = D/√N)")
    ax.set_ylabel("mean reconstruction error over the run\n(relative to the best D of each setting)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_dbn(runs: dict, path: Path) -> None:
    from asr_init.plots import plt

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


def _plot_nopretrain(rows: list[dict], path: Path) -> None:
    from asr_init.plots import plt

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
        for ax in (axes[0][j], axes[1][j]):
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        axes[0][j].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- the report ---------------------------------------------------------------------------


def _fmt(x, spec: str = ".4g") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return format(x, spec)


def _stage_times(results: Path) -> dict[str, dict]:
    """Per stage: wall time (summed over the runs that did work) and summed command time."""
    times: dict[str, dict] = {}
    path = results / "stages.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                t = times.setdefault(r["stage"], {"wall_s": 0.0, "command_s": 0.0, "commands": 0})
                t["wall_s"] += r["wall_s"]
                t["command_s"] += r["command_s"]
                t["commands"] += r["commands"]
    return times


def _commands_block(results: Path, recipe: str) -> list[str]:
    path = results / recipe / "commands.txt"
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [
        f"<details><summary>the {len(lines)} command(s) of this recipe</summary>",
        "",
        "```sh",
        *lines,
        "```",
        "",
        "</details>",
        "",
    ]


def write_report(results: Path) -> Path:
    """Write RESULTS/REPORT.md and RESULTS/report/*.png from the recipes' outputs."""
    import torch

    results = Path(results)
    figs = results / "report"
    figs.mkdir(parents=True, exist_ok=True)
    md: list[str] = ["# asr-init: does the optimal initialisation pay off?", ""]
    md += [
        "Generated by `asr-init report` from the logs under this folder; every number and every conclusion "
        "below is computed from them.",
        "",
    ]
    times = _stage_times(results)
    md += [
        "## What was run",
        "",
        f"- Machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{__import__('os').cpu_count()} CPU cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}.",
        "",
    ]
    summary = results / "store" / "summary.json"
    if summary.exists():
        s = json.loads(summary.read_text())
        md += [
            f"- Corpus: {s['layout']} layout, {s['hours']:.2f} h, "
            + ", ".join(f"{k} {v['speakers']} speakers / {v['frames']:,} frames" for k, v in s["splits"].items())
            + ".",
            "",
        ]
    if times:
        md += [
            "| stage | commands run | wall time | sum of command times (commands run in parallel) |",
            "|---|---|---|---|",
        ]
        md += [
            f"| {k} | {v['commands']} | {v['wall_s'] / 60:.1f} min | {v['command_s'] / 60:.1f} min |"
            for k, v in times.items()
        ]
        md += [
            f"| **total** | {sum(v['commands'] for v in times.values())} | "
            f"**{sum(v['wall_s'] for v in times.values()) / 60:.1f} min** | "
            f"{sum(v['command_s'] for v in times.values()) / 60:.1f} min |",
            "",
        ]

    # Recipe 1
    paper = results / "paper"
    md += ["## 1. Paper replication: initialisation and pre-training speed", ""]
    d_star = 1.40784
    if (paper / "optimal_d.json").exists():
        d = json.loads((paper / "optimal_d.json").read_text())
        d_star = d["d_star"]
        md += [
            f"D* (quadrature) = **{d['d_star']:.5f}** for the logistic sigmoid; Monte Carlo ({d['mc_samples']:,} samples) "
            f"= {d['d_mc']:.5f}; the paper's D = {d['paper_d']:g} loses {d['paper_loss']:.1e} of the objective."
        ]
        if (paper / "optimal_d_tanh.json").exists():
            t = json.loads((paper / "optimal_d_tanh.json").read_text())
            md[-1] += f" For tanh D* = {t['d_star']:.5f}."
        if (paper / "optimal_d.png").exists():
            shutil.copy(paper / "optimal_d.png", figs / "optimal_d.png")
            md += ["", "![D*](report/optimal_d.png)", ""]
    groups = load_layer1(paper)
    if groups:
        md += ["### First RBM layer, every initialisation at the same learning rate", ""]
        for (visible, lr), summaries in sorted(groups.items()):
            name = f"recipe1_layer1_{visible}_lr{lr:g}.png"
            _plot_layer1(
                summaries, figs / name, f"first layer, {visible} visible units, lr {lr:g} (mean ± std over seeds)"
            )
            grid = summaries[0].frames
            marks = [grid[-1] / 4, grid[-1] / 2, grid[-1]]
            target = target_error([s for s in summaries if not _is_sweep(s.init)] or summaries)
            md += [
                f"#### {visible} visible units, learning rate {lr:g}",
                "",
                conclude_layer1(visible, lr, summaries),
                "",
                f"![layer 1 {visible} lr {lr:g}](report/{name})",
                "",
                "| init | seeds | mean error over run | "
                + " | ".join(f"error at {m:,.0f} frames" for m in marks)
                + f" | frames to reach {target:.4g} |",
                "|---|---|---|" + "---|" * len(marks) + "---|",
            ]
            for s in sorted(summaries, key=lambda s: s.auc):
                ft = s.frames_to(target)
                md.append(
                    f"| `{s.init}` | {s.seeds} | {s.auc:.4g} ± {s.auc_std:.2g} | "
                    + " | ".join(f"{s.at(m):.4g}" for m in marks)
                    + f" | {_fmt(ft, ',.0f') if ft is not None else 'not reached'} |"
                )
            md.append("")
            sweep_text = conclude_sweep(visible, lr, summaries, d_star)
            if sweep_text:
                md += [sweep_text, ""]
        _plot_sweep(groups, figs / "recipe1_sweep.png", d_star)
        md += ["### Sweep of the spread D", "", "![sweep](report/recipe1_sweep.png)", ""]
    dbn = load_dbn_runs(paper)
    if dbn:
        _plot_dbn(dbn, figs / "recipe1_dbn.png")
        md += [
            "### Full DBN",
            "",
            conclude_dbn(dbn) or "",
            "",
            "![DBN](report/recipe1_dbn.png)",
            "",
            "Errors are relative to each layer's input variance (1 = no better than predicting the mean).",
            "",
            "| init | "
            + " | ".join(f"layer {k} mean / final relative error" for k in sorted(next(iter(dbn.values()))))
            + " |",
            "|---|" + "---|" * len(next(iter(dbn.values()))),
        ]
        for init, layers in dbn.items():
            md.append(
                f"| `{init}` | " + " | ".join(f"{s.auc:.4g} / {s.final:.4g}" for _, s in sorted(layers.items())) + " |"
            )
        md.append("")
        saturation = load_dbn_saturation(paper)
        if saturation:
            md += [
                "Share of saturated hidden units (output within 0.05 of 0 or 1) at the end of each layer's training, "
                "mean over seeds (the saturation guard is off in this recipe):",
                "",
                "| init | " + " | ".join(f"layer {k}" for k in sorted(next(iter(saturation.values())))) + " |",
                "|---|" + "---|" * len(next(iter(saturation.values()))),
            ]
            md += [
                f"| `{init}` | " + " | ".join(f"{v:.1%}" for _, v in sorted(layers.items())) + " |"
                for init, layers in saturation.items()
            ]
            md.append("")
    md += _commands_block(results, "paper")

    # Recipe 2
    rows = load_nopretrain(results / "nopretrain")
    md += ["## 2. Initialisation without pre-training", ""]
    if rows:
        _plot_nopretrain(rows, figs / "recipe2.png")
        md += conclude_nopretrain(rows)
        md += [
            "",
            "![no pre-training](report/recipe2.png)",
            "",
            "| activation | init | epochs | final train cost | final dev frame acc | test frame acc (states) |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            md.append(
                f"| {r['activation']} | `{r['init']}` | {len(r['epochs'])}{' (diverged)' if r['diverged'] else ''} | "
                f"{_fmt(r['final_train_loss'])} | {_fmt(r['final_dev_acc'], '.2%')} | {_fmt(r['test_acc'], '.2%')} |"
            )
        md.append("")
    else:
        md += ["Not run.", ""]
    md += _commands_block(results, "nopretrain")

    # Recipe 3
    am = load_am(results / "am")
    md += ["## 3. DNN-HMM acoustic model: pre-trained or not", ""]
    if (results / "am" / "best_init.txt").exists():
        md += [
            f"Fastest initialisation of recipe 1 (Gaussian first layer, lowest learning rate): "
            f"`{(results / 'am' / 'best_init.txt').read_text().strip()}`.",
            "",
        ]
    for dbn_dir in sorted((results / "am").glob("dbn-*")):
        md += dbn_saturation_lines(dbn_dir)
    if am:
        md += [
            conclude_am(am) or "",
            "",
            "| model | pre-training | fine-tuning (epochs) | dev frame acc states / phones | dev PER | test frame acc states / phones | test PER | test decoding |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in am:
            md.append(
                f"| {r['model']} | {_fmt(r['pretrain_s'], '.0f')} s | {r['finetune_s']:.0f} s ({r['epochs']}) | "
                f"{_fmt(r.get('dev_states'), '.2%')} / {_fmt(r.get('dev_phones'), '.2%')} | {_fmt(r.get('dev_per'), '.2%')} | "
                f"{_fmt(r.get('test_states'), '.2%')} / {_fmt(r.get('test_phones'), '.2%')} | {_fmt(r.get('test_per'), '.2%')} | "
                f"{_fmt(r.get('test_decode_s'), '.1f')} s |"
            )
        md += [
            "",
            "The LM weight and insertion penalty are tuned on dev and the compared model is chosen on dev; the "
            "test split is never used to choose anything. Dev and test have 4 speakers each, so their PERs "
            "differ by speaker as much as by model.",
            "",
        ]
        for r in am:
            if (results / "am" / r["model"] / "train.png").exists():
                shutil.copy(results / "am" / r["model"] / "train.png", figs / f"recipe3_{r['model']}_train.png")
                md.append(f"![{r['model']}](report/recipe3_{r['model']}_train.png)")
        md.append("")
    else:
        md += ["Not run.", ""]
    md += _commands_block(results, "am")

    # Recipe 4
    md += ["## 4. TIMIT", ""]
    timit = results / "timit"
    if (timit / "SKIPPED.txt").exists() or not timit.exists():
        md += ["Skipped: no TIMIT path was given (`TIMIT=/path/to/timit make recipes`).", ""]
    else:
        res_path = timit / "dnn-pretrained-optimal" / "eval-test" / "results.json"
        if res_path.exists():
            res = json.loads(res_path.read_text())
            md += [
                f"Core test set: state frame accuracy {_fmt(res['frame_acc_states'], '.2%')}, phone frame accuracy "
                f"{res['frame_acc_phones']:.2%}, PER {_fmt(res['per'], '.2%')} (S {res['substitutions']}, D {res['deletions']}, "
                f"I {res['insertions']} of {res['ref_phones']} phones).",
                "",
            ]
        md += _commands_block(results, "timit")
    path = results / "REPORT.md"
    path.write_text("\n".join(md) + "\n")
    return path
