"""The conclusions: sentences chosen by comparing the numbers read from the logs.

Nothing is typed in by hand: each `conclude_*` function picks its wording from the
numbers it is given, so the text changes when the numbers do.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from asr_init.errors import UserError
from asr_init.progress import counted
from asr_init.reporting.logs import CurveSummary, is_sweep, load_layer1, sweep_points

TIE = 0.01  # test frame accuracies closer than this (1 point) are not ranked


def target_error(summaries: list[CurveSummary]) -> float:
    """The common target: the median over initialisations of the final mean error."""
    return float(np.median([s.final for s in summaries]))


def _within(best: CurveSummary, other: CurveSummary) -> bool:
    """`other`'s mean error over the run is above `best`'s by no more than the larger spread over seeds."""
    return other.auc - best.auc <= max(best.auc_std, other.auc_std)


def conclude_layer1(summaries: list[CurveSummary]) -> str:
    """One paragraph: which initialisation converged fastest at this setting, by how much."""
    named = [s for s in summaries if not is_sweep(s.init)] or summaries
    ranked = sorted(named, key=lambda s: s.auc)
    best, second = ranked[0], ranked[1] if len(ranked) > 1 else None
    opt = next((s for s in named if s.init == "optimal"), None)
    if len(ranked) > 1 and all(_within(best, s) for s in ranked[1:]):
        return (
            f"The {len(ranked)} named initialisations end within the spread over seeds of each other (mean "
            f"reconstruction error over the run {best.auc:.4g} to {ranked[-1].auc:.4g}): no ranking at this setting."
        )
    text = f"`{best.init}` converged fastest (mean reconstruction error over the run {best.auc:.4g} ± "
    text += f"{best.auc_std:.2g} over {best.seeds} seeds"
    if second is not None:
        text += f"; {(second.auc - best.auc) / second.auc:.2%} below the runner-up `{second.init}`, {second.auc:.4g}"
        text += ", a gap within the spread over seeds" if _within(best, second) else ""
    text += ")."
    if opt is not None and opt is not best:
        within = _within(best, opt)
        text += (
            f" The paper's `optimal` ranked {ranked.index(opt) + 1} of the {len(ranked)} named initialisations, "
            f"with a mean error {(opt.auc - best.auc) / opt.auc:.2%} above "
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
    """The sweep of D at one setting: where its mean error was lowest, against D*."""
    sweep = sweep_points(summaries)
    if len(sweep) < 2:
        return None
    best_d, best = min(sweep, key=lambda t: t[1].auc)
    near = min(sweep, key=lambda t: abs(t[0] - d_star))
    text = (
        f"Sweep of D ({visible}, lr {lr:g}): the lowest mean error was at D = {best_d:g} ({best.auc:.4g}); "
        f"at D ≈ D* = {d_star:.4f} (D = {near[0]:g}) it was {near[1].auc:.4g}"
    )
    if best_d == near[0]:
        return text + ", so the optimum of the pre-training speed coincides with D*."
    side = "larger" if best_d > near[0] else "smaller"
    return text + f", {(near[1].auc - best.auc) / near[1].auc:.1%} higher: the fastest spread was {side} than D*."


def best_pretraining_init(paper: Path, visible: str = "gauss") -> str:
    """The named initialisation with the lowest mean error at the lowest learning rate tried.

    Without recipe 1's first-layer logs there is nothing to choose from: a UserError, not a default.
    """
    groups = load_layer1(Path(paper))
    keys = sorted(k for k in groups if k[0] == visible)
    if not keys:
        raise UserError(
            f"{paper} has no recipe-1 layer-1 logs for {visible} visible units "
            f"(layer1/{visible}/lrLR/INIT/seedS/recon.csv); run recipe 1 (recipes/paper_replication.py) first"
        )
    named = [s for s in groups[keys[0]] if not is_sweep(s.init)]
    return min(named, key=lambda s: s.auc).init if named else "optimal"


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
        f"Over the whole DBN ({counted(len(layers), 'layer')}), `{best}` converged fastest: its reconstruction error "
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


def conclude_nopretrain(rows: list[dict]) -> list[str]:
    out = []
    for act in sorted({r["activation"] for r in rows}):
        mine = [r for r in rows if r["activation"] == act]
        ok = [r for r in mine if not r["diverged"] and not math.isnan(r["test_acc"])]
        if not ok:
            diverged = all(r["diverged"] for r in mine)
            out.append(f"**{act}:** {'every run diverged' if diverged else 'no test results'}.")
            continue
        best, worst = max(ok, key=lambda r: r["test_acc"]), min(ok, key=lambda r: r["test_acc"])
        if best["test_acc"] - worst["test_acc"] < TIE:
            out.append(
                f"**{act}:** every initialisation ends within {100 * TIE:g} point of the others "
                f"({worst['test_acc']:.1%} to {best['test_acc']:.1%} test frame accuracy): no ranking."
            )
            continue
        top = sorted((r for r in ok if best["test_acc"] - r["test_acc"] < TIE), key=lambda r: -r["test_acc"])
        lead = (f"`{best['init']}` reached the best test frame accuracy ({best['test_acc']:.1%})" if len(top) == 1
                else ", ".join(f"`{r['init']}`" for r in top) + f" tie at the top ({top[-1]['test_acc']:.1%} to "
                f"{best['test_acc']:.1%}, within {100 * TIE:g} point: not ranked)")  # fmt: skip
        text = f"**{act}:** {lead}; the worst was `{worst['init']}` ({worst['test_acc']:.1%})."
        opt = next((r for r in ok if r["init"] == "optimal"), None)
        if opt is not None and opt not in top:
            text += (
                f" `optimal` reached {opt['test_acc']:.1%}, {best['test_acc'] - opt['test_acc']:.1%} below the best."
            )
        diverged = [r["init"] for r in mine if r["diverged"]]
        if diverged:
            text += f" Diverged (loss NaN/Inf): {', '.join(f'`{d}`' for d in diverged)}."
        out.append(text)
    return out


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
        f"error rate from {base['test_per']:.2%} (not pre-trained: {base['model']}, likewise chosen on dev) "
        f"to {best_pre['test_per']:.2%} ({100 * diff:+.2f} percentage points); "
        f"test state frame accuracy {base['test_states']:.2%} → {best_pre['test_states']:.2%}."
    )
