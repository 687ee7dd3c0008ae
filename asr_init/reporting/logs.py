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

from asr_init.config import LIMITS
from asr_init.errors import UserError
from asr_init.io import read_count, read_csv, read_text
from asr_init.records import (
    ABSENT,
    INTEGER,
    NULL,
    NUMBER,
    TEXT,
    Kind,
    check_record,
    each,
    read_record,
    read_record_if,
    record,
)


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


class Row(dict):
    """A row of a CSV log, its cells by column, that names its file and line in the error of a column
    the file lacks (`row[column]`) or of a cell that is not a number (`row.number`)."""

    def __init__(self, path: Path, line: int, cells: dict):
        super().__init__(cells)
        self.path, self.line = path, line

    def __missing__(self, column: str):
        raise UserError(f"{self.path}: has no {column} column")

    def number(self, column: str, kind: type = float) -> float:
        """The cell of `column` as a float (kind=int: an int); a UserError where it is not one."""
        value = self[column]
        try:
            return kind(value)
        except (TypeError, ValueError):  # TypeError: None, the cell of a row that is short of it
            what, got = "an integer" if kind is int else "a number", "missing" if value is None else json.dumps(value)
            raise UserError(f"{self.path}:{self.line}: {column} must be {what}, not {got[:40]}") from None


def read_log(path: Path) -> list[Row]:
    """The rows of the CSV log at `path` (`read_csv`), each naming the file and its line (the header is line 1)."""
    return [Row(path, line, cells) for line, cells in enumerate(read_csv(path), 2)]


def _curve(path: Path, layer: int = 1, relative: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Reconstruction error against frames of one layer; `relative` divides it by the
    layer's input variance (sum over units), which makes layers fed by different data
    comparable (1.0 = no better than predicting the mean)."""
    rows = [r for r in read_log(path) if r.number("layer", int) == layer]
    interval = [r for r in rows if r["kind"] == "interval"]
    scale = 1.0
    if relative:
        var = [r.number("input_var") for r in rows if r["kind"] == "epoch_start" and r.get("input_var")]
        scale = var[0] if var and var[0] > 0 else math.nan
    frames, errors = (np.array([r.number(key) for r in interval]) for key in ("frames", "recon_error"))
    return frames, errors / scale


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
    aucs = np.array([np.trapezoid(y, grid) / (grid[-1] - grid[0]) for y in ys])
    # the mean and spread over seeds of the mean error over the run, then of the final error
    spreads = [float(stat(x)) for x in (aucs, ys[:, -1]) for stat in (np.mean, np.std)]
    return CurveSummary(visible, lr, init, len(ys), grid, ys.mean(0), ys.std(0), *spreads)


def load_layer1(paper: Path) -> dict[tuple[str, float], list[CurveSummary]]:
    """paper/layer1/VISIBLE/lrLR/INIT/seedS/recon.csv -> summaries grouped by (visible, lr)."""
    groups: dict[tuple[str, float], list[CurveSummary]] = defaultdict(list)
    for lr_dir in sorted(Path(paper).glob("layer1/*/lr*")):
        visible, lr = lr_dir.parent.name, number_in_name(lr_dir, "lr")
        for init, files in _seeds(lr_dir, "*"):  # a file there has no seeds, so no summary
            if files and is_sweep(init):  # a run's folder, not a file or an empty folder beside them
                number_in_name(lr_dir / init.replace(":", "_"), "optimal_")  # D, which sweep_points reads
            s = summarise_curves(visible, lr, init, [_curve(f) for f in files])
            if s is not None:
                groups[(visible, lr)].append(s)
    return dict(groups)


def number_in_name(folder: Path, prefix: str) -> float:
    """The number a recipe's folder name holds after `prefix` (lr0.01, optimal_0.5, sparsity-0.9); a
    folder under that name without one is a UserError naming it."""
    try:
        return float(folder.name.removeprefix(prefix))
    except ValueError:
        raise UserError(f"{folder}: a recipe names this folder {prefix}NUMBER; move it out of the results") from None


def is_sweep(init: str) -> bool:
    return init.startswith("optimal:") and init != "optimal:1.392"


def sweep_points(summaries: list[CurveSummary]) -> list[tuple[float, CurveSummary]]:
    """(D, summary) of each run of the sweep of the spread D, by increasing D."""
    return sorted(((float(s.init.split(":")[1]), s) for s in summaries if is_sweep(s.init)), key=lambda t: t[0])


def _seeds(folder: Path, pattern: str):
    """FOLDER/PATTERN/seedS/recon.csv -> (init, the recon.csv of each of its seeds) per init folder."""
    for init_dir in sorted(Path(folder).glob(pattern)):
        yield init_name(init_dir.name), sorted(init_dir.glob("seed*/recon.csv"))


def load_dbn_runs(paper: Path) -> dict[str, dict[int, CurveSummary]]:
    """Init -> layer -> its reconstruction error relative to the layer's input variance, over seeds."""
    out: dict[str, dict[int, CurveSummary]] = {}
    for init, files in _seeds(paper, "dbn/*"):
        if files:
            layers = sorted({r.number("layer", int) for r in read_log(files[0])})
            runs = {k: summarise_curves("dbn", 0.0, init, [_curve(f, k, relative=True) for f in files]) for k in layers}
            out[init] = {k: s for k, s in runs.items() if s is not None}
    return out


def epoch_end_saturation(recon_csv: Path) -> dict[int, list[float]]:
    """Layer -> the share of saturated hidden units at the end of each of its epochs."""
    out: dict[int, list[float]] = {}
    for r in read_log(recon_csv):
        if r["kind"] == "epoch_end" and r.get("saturated", "") != "":
            out.setdefault(r.number("layer", int), []).append(r.number("saturated"))
    return out


def guard_firings(recon_csv: Path) -> int:
    """How many times the saturation guard fired in one pre-training run."""
    return sum(1 for r in read_log(recon_csv) if r["kind"] == "guard")


def load_dbn_saturation(paper: Path) -> dict[str, dict[int, float]]:
    """Init -> layer -> saturated share at the end of the layer's training, mean over seeds."""
    out: dict[str, dict[int, float]] = {}
    for init, files in _seeds(paper, "dbn/*"):
        out[init] = {k: float(np.mean(shares)) for k, shares in sorted(last_saturation(files).items())}
    return out


FRAME_ACC = each(NUMBER, dict)  # results.json's frame_acc: an accuracy per kind of target


def load_nopretrain(folder: Path) -> list[dict]:
    """Recipe 2: per ACTIVATION/INIT model, its epochs (train.csv's epoch, train_loss and dev_acc), whether
    it diverged, its last epoch's train cost and dev accuracy, its test state accuracy."""
    rows = []
    for model in (m for m in sorted(Path(folder).glob("*/*")) if m.is_dir()):
        train = read_log(model / "train.csv") if (model / "train.csv").exists() else []
        epochs = [{"epoch": epoch, "train_loss": r.number("train_loss"), "dev_acc": r.number("dev_acc")}
                  for r in train if (epoch := r.number("epoch", int)) > 0]  # fmt: skip
        res = read_record_if(model / "eval-test" / "results.json", frame_acc_states=NUMBER)
        rows.append({
            "activation": model.parent.name, "init": init_name(model.name), "epochs": epochs,
            "diverged": (model / "failed.json").exists(),
            "final_train_loss": epochs[-1]["train_loss"] if epochs else math.nan,
            "final_dev_acc": epochs[-1]["dev_acc"] if epochs else math.nan,
            "test_acc": res["frame_acc_states"] if res else math.nan})  # fmt: skip
    return rows


def recorded_path(recorded: str, folder: Path) -> Path:
    """A path a run recorded as it was typed (e.g. finetune.json's config.dbn), found from the run's
    `folder`: an absolute path as it is; a relative one under the nearest ancestor of `folder` that
    holds it (the folder the command ran in is one of them), else under the current folder. So a
    report of RESULTS reads the runs under RESULTS wherever it is made."""
    path = Path(recorded)
    if path.is_absolute():
        return path
    return next((base / path for base in Path(folder).absolute().parents if (base / path).exists()), path)


def load_am(folder: Path) -> list[dict]:
    """Recipe 3: per fine-tuned model (dnn-*), its pre-training time (its DBN found by `recorded_path`),
    fine-tuning time and epochs, its dev and test results (state and phone frame accuracy, PER,
    decoding time)."""
    # a row's key per split <- the results.json field it holds, of the kind it must be
    rows, fields = [], {"states": ("frame_acc_states", NUMBER), "phones": ("frame_acc_phones", NUMBER | NULL),
                        "per": ("per", NUMBER | NULL), "decode_s": ("decode_seconds", NUMBER | NULL)}  # fmt: skip
    for model in sorted(Path(folder).glob("dnn-*")):
        ft = read_record_if(model / "finetune.json", seconds=NUMBER, epochs=INTEGER,
                            config=record(dbn=TEXT | NULL | ABSENT))  # fmt: skip
        if ft is None:
            continue
        dbn = ft["config"].get("dbn")
        pretrain = read_record_if(recorded_path(dbn, model) / "pretrain.json", seconds=NUMBER) if dbn else None
        row = {"model": model.name, "pretrained": "not-pretrained" not in model.name, "finetune_s": ft["seconds"],
               "epochs": ft["epochs"], "pretrain_s": pretrain["seconds"] if pretrain is not None else None}  # fmt: skip
        for split in ("dev", "test"):
            res = read_record_if(model / f"eval-{split}" / "results.json", **dict(fields.values()))
            if res is not None:
                row.update({f"{split}_{key}": res[name] for key, (name, _) in fields.items()})
        rows.append(row)
    return rows


def finished_runs(folder: Path, pattern: str, finetune: dict[str, Kind], results: dict[str, Kind], *needed: str):
    """(run, its finetune.json, its eval-test/results.json) of each run folder matching `pattern`
    that has both (and the files `needed`), each with the `finetune` and `results` fields checked."""
    for run in sorted(Path(folder).glob(pattern)):
        ft, res = run / "finetune.json", run / "eval-test" / "results.json"
        if ft.exists() and res.exists() and all((run / name).exists() for name in needed):
            yield run, read_record(ft, **finetune), read_record(res, **results)


def load_seed_rows(folder: Path) -> dict[str, list[dict]]:
    """FOLDER/dnn-ROW/seedS -> row -> per seed: held-out frame accuracy of the model's targets,
    best dev accuracy, epochs (recipe 5's classification runs)."""
    out: dict[str, list[dict]] = {}
    finetune, results = {"best_dev_acc": NUMBER, "epochs": INTEGER}, {"frame_acc": FRAME_ACC, "targets": TEXT}
    for run, summary, result in finished_runs(folder, "dnn-*/seed*", finetune, results):
        targets = result["targets"]
        check_record(run / "eval-test" / "results.json", result, frame_acc=record(**{targets: NUMBER}))  # of them
        acc = result["frame_acc"][targets]
        out.setdefault(run.parent.name[4:], []).append({
            "seed": run.name, "test_acc": acc, "dev_acc": summary["best_dev_acc"],
            "epochs": summary["epochs"]})  # fmt: skip
    return out


def last_saturation(recon_csvs: list[Path]) -> dict[int, list[float]]:
    """Layer -> the share saturated at its last epoch end, one per recon.csv (seed) that has the layer."""
    out: dict[int, list[float]] = {}
    for recon in recon_csvs:
        for layer, shares in epoch_end_saturation(recon).items():
            out.setdefault(layer, []).append(shares[-1])
    return out


def load_remedies(folder: Path) -> dict[str, list[dict]]:
    """Recipe 4: row (dbn, or VARIANT/INIT) -> per seed: dev accuracy per epoch, best dev accuracy,
    test state accuracy and PER, the saturated share of each layer after the first epoch."""
    out: dict[str, list[dict]] = {}
    results = {"frame_acc_states": NUMBER, "per": NUMBER | NULL}
    for run, summary, result in finished_runs(folder, "**/seed*", {"best_dev_acc": NUMBER}, results, "train.csv"):
        rows = read_log(run / "train.csv")
        first = next((r for r in rows if r["epoch"] == "1"), {})
        layers = {k: read_count(k[4:], LIMITS["layers"]) for k in first if k.startswith("sat_")}  # sat_1, sat_2...
        keys = sorted((k for k, n in layers.items() if n is not None and n <= LIMITS["layers"]), key=layers.get)
        out.setdefault(run.parent.relative_to(folder).as_posix(), []).append({
            "dev_acc": [r.number("dev_acc") for r in rows if r.number("epoch", int) > 0],
            "best_dev": summary["best_dev_acc"], "test_states": result["frame_acc_states"],
            "test_per": result["per"], "sat_epoch1": [first.number(k) for k in keys if first[k]]})  # fmt: skip
    return out


def stage_times(results: Path) -> dict[str, dict]:
    """Per stage: wall time (summed over the runs that did work) and summed command time."""
    times: dict[str, dict] = {}
    path = results / "stages.jsonl"
    if path.exists():
        for n, line in enumerate(read_text(path).splitlines(), 1):
            if line.strip():
                try:
                    r = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserError(f"{path}:{n} is not valid JSON ({exc.msg})") from None
                check_record(f"{path}:{n}", r, stage=TEXT, wall_s=NUMBER, command_s=NUMBER, commands=INTEGER)
                t = times.setdefault(r["stage"], {"wall_s": 0.0, "command_s": 0.0, "commands": 0})
                for key in t:
                    t[key] += r[key]
    return times
