"""Reading the recipes' logs: reconstruction curves, DBN runs, saturation, fine-tuning results.

Measures for recipe 1 (per visible type, learning rate and initialisation, over seeds):
- the reconstruction error (paper eq. 7, CD reconstruction, mean over each report
  interval) against frames seen, mean and spread (standard deviation) over seeds;
- the error at fixed frame counts (a quarter, half and all of the run);
- the mean error over the run (the area under the curve divided by its length), the
  main measure of "converges faster": lower is faster;
- the frames needed to reach a common target error, the median over initialisations
  of the final mean error at that setting (`conclusions.target_error`).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr_init.io import read_csv, read_json


def init_name(folder: str) -> str:
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
            s = summarise_curves(visible, lr, init_name(init_dir.name), curves)
            if s is not None:
                groups[(visible, lr)].append(s)
    return dict(groups)


def is_sweep(init: str) -> bool:
    return init.startswith("optimal:") and init != "optimal:1.392"


def load_dbn_runs(paper: Path) -> dict[str, dict[int, CurveSummary]]:
    out: dict[str, dict[int, CurveSummary]] = {}
    for init_dir in sorted(Path(paper).glob("dbn/*")):
        files = sorted(init_dir.glob("seed*/recon.csv"))
        if not files:
            continue
        layers = sorted({int(r["layer"]) for r in read_csv(files[0])})
        out[init_name(init_dir.name)] = {
            layer: s
            for layer in layers
            if (
                s := summarise_curves(
                    "dbn", 0.0, init_name(init_dir.name), [_curve(f, layer, relative=True) for f in files]
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


def guard_firings(recon_csv: Path) -> int:
    """How many times the saturation guard fired in one pre-training run."""
    return sum(1 for r in read_csv(recon_csv) if r["kind"] == "guard")


def load_dbn_saturation(paper: Path) -> dict[str, dict[int, float]]:
    """Init -> layer -> saturated share at the end of the layer's training, mean over seeds."""
    out: dict[str, dict[int, float]] = {}
    for init_dir in sorted(Path(paper).glob("dbn/*")):
        per_seed = [epoch_end_saturation(f) for f in sorted(init_dir.glob("seed*/recon.csv"))]
        layers = sorted({k for s in per_seed for k in s})
        out[init_name(init_dir.name)] = {k: float(np.mean([s[k][-1] for s in per_seed if k in s])) for k in layers}
    return out


def load_nopretrain(folder: Path) -> list[dict]:
    rows = []
    for model in sorted(Path(folder).glob("*/*")):
        if not model.is_dir():
            continue
        train = read_csv(model / "train.csv") if (model / "train.csv").exists() else []
        epochs = [r for r in train if int(r["epoch"]) > 0]
        res = (
            read_json(model / "eval-test" / "results.json") if (model / "eval-test" / "results.json").exists() else None
        )
        rows.append(
            {
                "activation": model.parent.name,
                "init": init_name(model.name),
                "epochs": epochs,
                "diverged": (model / "failed.json").exists(),
                "final_train_loss": float(epochs[-1]["train_loss"]) if epochs else math.nan,
                "final_dev_acc": float(epochs[-1]["dev_acc"]) if epochs else math.nan,
                "test_acc": res["frame_acc_states"] if res else math.nan,
            }
        )
    return rows


def load_am(folder: Path) -> list[dict]:
    rows = []
    for model in sorted(Path(folder).glob("dnn-*")):
        ft = read_json(model / "finetune.json") if (model / "finetune.json").exists() else None
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
                row["pretrain_s"] = read_json(pj)["seconds"]
        for split in ("dev", "test"):
            path = model / f"eval-{split}" / "results.json"
            if path.exists():
                res = read_json(path)
                row[f"{split}_states"] = res["frame_acc_states"]
                row[f"{split}_phones"] = res["frame_acc_phones"]
                row[f"{split}_per"] = res["per"]
                row[f"{split}_decode_s"] = res["decode_seconds"]
        rows.append(row)
    return rows


def load_seed_rows(folder: Path) -> dict[str, list[dict]]:
    """FOLDER/dnn-ROW/seedS -> row -> per seed: held-out frame accuracy of the model's targets,
    best dev accuracy, epochs (recipe 5's classification runs)."""
    out: dict[str, list[dict]] = {}
    for run in sorted(Path(folder).glob("dnn-*/seed*")):
        ft, res = run / "finetune.json", run / "eval-test" / "results.json"
        if not (ft.exists() and res.exists()):
            continue
        summary, result = read_json(ft), read_json(res)
        out.setdefault(run.parent.name[4:], []).append({
            "seed": run.name, "test_acc": result["frame_acc"][result["targets"]], "dev_acc": summary["best_dev_acc"],
            "epochs": summary["epochs"]})  # fmt: skip
    return out


def default_dbn_saturation(folder: Path) -> dict[int, list[float]]:
    """FOLDER/SEED*/recon.csv -> layer -> the share saturated at its last epoch end, one per seed."""
    out: dict[int, list[float]] = {}
    for recon in sorted(Path(folder).glob("*/recon.csv")):
        for layer, shares in epoch_end_saturation(recon).items():
            out.setdefault(layer, []).append(shares[-1])
    return out


def load_remedies(folder: Path) -> dict[str, list[dict]]:
    """Recipe 4: row (dbn, or VARIANT/INIT) -> per seed: dev accuracy per epoch, best dev accuracy,
    test state accuracy and PER, the saturated share of each layer after the first epoch."""
    out: dict[str, list[dict]] = {}
    for run in sorted(Path(folder).glob("**/seed*")):
        ft, res = run / "finetune.json", run / "eval-test" / "results.json"
        if not (ft.exists() and res.exists() and (run / "train.csv").exists()):
            continue
        rows, result = read_csv(run / "train.csv"), read_json(res)
        first = next((r for r in rows if r["epoch"] == "1"), {})
        keys = sorted((k for k in first if k.startswith("sat_") and k[4:].isdigit()), key=lambda k: int(k[4:]))
        sat = [float(first[k]) for k in keys if first[k]]
        out.setdefault(run.parent.relative_to(folder).as_posix(), []).append({
            "dev_acc": [float(r["dev_acc"]) for r in rows if int(r["epoch"]) > 0],
            "best_dev": read_json(ft)["best_dev_acc"], "test_states": result["frame_acc_states"],
            "test_per": result["per"], "sat_epoch1": sat})  # fmt: skip
    return out


def stage_times(results: Path) -> dict[str, dict]:
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
