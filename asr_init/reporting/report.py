"""REPORT.md for the recipes: tables, plots and conclusions computed from the logs.

Nothing in the report is typed in by hand: every number comes from the CSV/JSON files
the recipes wrote (`logs`), and every conclusion is a sentence chosen by comparing those
numbers (`conclusions`), so the text changes when the numbers do.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import shutil
from pathlib import Path

import numpy as np

from asr_init.errors import UserError
from asr_init.folders import remove_stale_temporaries, swap_in, temporary
from asr_init.io import atomic_write, digest, read_text
from asr_init.progress import counted
from asr_init.records import ABSENT, BOOLEAN, INTEGER, NULL, NUMBER, TEXT, each, read_record, read_record_if, record
from asr_init.reporting.conclusions import (
    best_pretraining_init,
    conclude_am,
    conclude_dbn,
    conclude_layer1,
    conclude_nopretrain,
    conclude_sweep,
    target_error,
)
from asr_init.reporting.figures import plot_dbn, plot_layer1, plot_nopretrain, plot_sweep
from asr_init.reporting.logs import (
    FRAME_ACC,
    CurveSummary,
    epoch_end_saturation,
    finished_runs,
    guard_firings,
    is_sweep,
    last_saturation,
    load_am,
    load_dbn_runs,
    load_dbn_saturation,
    load_layer1,
    load_nopretrain,
    load_remedies,
    load_seed_rows,
    number_in_name,
    stage_times,
    sweep_points,
)
from asr_init.reporting.unfinished import unfinished_lines, unfinished_runs
from asr_init.training.config import PretrainConfig


def _table(header: list[str], rows: list[list]) -> list[str]:
    """A markdown table: the column titles, one line per row of cells, then a blank line."""
    lines = ["| " + " | ".join(map(str, cells)) + " |" for cells in (header, *rows)]
    return [lines[0], "|" + "---|" * len(header), *lines[1:], ""]


def _paragraphs(*texts: str) -> list[str]:
    """Markdown lines: each text followed by the blank line that ends a paragraph."""
    return [line for text in texts for line in (text, "")]


def _image(title: str, name: str) -> str:
    """The markdown line of the figure `name` in the report's folder."""
    return f"![{title}](report/{name})"


class Figures:
    """The report's figures in `folder`, drawn and copied by `make` once every record was read:
    a damaged record stops the report before any figure costs time."""

    def __init__(self, folder: Path) -> None:
        self.folder, self._todo = folder, []

    def plot(self, draw, data, name: str, *args) -> None:
        """Draw `data` into `name` with `draw(data, path, *args)`."""
        self._todo.append(lambda: draw(data, self.folder / name, *args))

    def copied(self, png: Path, name: str, title: str) -> list[str]:
        """Copy `png` next to the report as `name`: its image line, or no line where there is no `png`."""
        if not png.is_file():
            return []
        self._todo.append(lambda: shutil.copy(png, self.folder / name))
        return [_image(title, name)]

    def make(self) -> None:
        """Draw and copy every figure queued."""
        for job in self._todo:
            job()


def dbn_saturation_lines(dbn_dir: Path) -> list[str]:
    """The saturation table of one pre-training run: every layer's every epoch end, guard firings
    (nothing for a run that has not written recon.csv yet)."""
    recon = dbn_dir / "recon.csv"
    sat = epoch_end_saturation(recon) if recon.is_file() else {}
    if not sat:
        return []
    worst = max(v for values in sat.values() for v in values)
    rows = [[k, ", ".join(f"{v:.1%}" for v in values)] for k, values in sorted(sat.items())]
    intro = _paragraphs(
        f"`{dbn_dir.name}`: the largest share of saturated hidden units at any layer's epoch end is "
        f"**{worst:.1%}**; guard firings: {guard_firings(recon)}."
    )
    return intro + _table(["layer", "saturated at the end of each epoch"], rows)


def _fmt(x, spec: str = ".4g") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return format(x, spec)


def _commands_block(results: Path, recipe: str) -> list[str]:
    path = results / recipe / "commands.txt"
    if not path.exists():
        return []
    lines = read_text(path).splitlines()
    summary = f"<details><summary>the {len(lines)} command(s) of this recipe</summary>"
    return [summary, "", "```sh", *lines, "```", "", "</details>", ""]


def _ranked(text: str | None, smoke: bool) -> str | None:
    """A conclusion, or in a `smoke` run (make recipes QUICK=1) the statement that it ranks nothing."""
    if text is None or not smoke:
        return text
    return "Smoke run: not ranked (see the note at the top)."


def _splits(summary: dict, speakers: str) -> str:
    """Each split of a feature store's summary.json: its speakers and frames."""
    return ", ".join(f"{k} {v['speakers']} {speakers} / {v['frames']:,} frames" for k, v in summary["splits"].items())


# the fields of a feature store's summary.json that the report reads
STORE_SUMMARY = {"layout": TEXT, "hours": NUMBER, "splits": each(record(speakers=INTEGER, frames=INTEGER), dict)}
RECIPE_FOLDERS = ("paper", "nopretrain", "am", "timit", "fsdd", "remedies")


def write_report(results: Path) -> Path:
    """Write RESULTS/REPORT.md and RESULTS/report/*.png: the recipes' sections where the recipes
    ran there, and every other pre-training, fine-tuning and evaluation run found under it. The
    figures are made in report.tmp-PID, after every record was read, and swapped in; then REPORT.md
    is written atomically: a report that fails leaves the old one as it was."""
    results = _results_folder(results)
    figs = results / "report"
    runs = _found_runs(results)
    if not any(runs.values()) and not any((results / name).is_dir() for name in RECIPE_FOLDERS):
        raise UserError(
            f"no runs found in {results}: no recipe folder ({', '.join(RECIPE_FOLDERS)}) and no pretrain, finetune "
            "or evaluate output under it; give the folder the runs were written into"
        )
    _refuse_others(results / "REPORT.md", figs)
    remove_stale_temporaries(figs)
    building = temporary(figs)
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    try:
        figures = Figures(building)
        md = _report(results, figures, runs)
        figures.make()
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    swap_in(building, figs)
    path = results / "REPORT.md"
    atomic_write(path, lambda fh: fh.write(("\n".join(md) + "\n").encode()))
    return path


def _results_folder(results: Path) -> Path:
    """`results` as a Path, or a UserError where it is not a folder: `report` reads a folder of runs."""
    results = Path(results)
    if not results.is_dir():
        what = "is not a folder" if results.exists() else "does not exist"
        raise UserError(
            f"results folder {results} {what}: give the folder the runs were written into (the one 'make recipes' "
            "writes, results by default, or one holding your own pretrain, finetune or evaluate runs)"
        )
    return results


def is_smoke_run(results: Path) -> bool:
    """Whether RESULTS/scale.json records a smoke run (`"quick": true`, make recipes QUICK=1), which ranks nothing."""
    path = Path(results) / "scale.json"
    return path.is_file() and read_record(path, quick=BOOLEAN | ABSENT).get("quick", False)


def fastest_init(results: Path) -> str:
    """What `report --best-init` prints: the initialisation of recipe 1 (in RESULTS/paper) that converged fastest,
    as recipe 3 picks it; a UserError where RESULTS is not a folder, or is a smoke run's, which ranks nothing."""
    results = _results_folder(results)
    if is_smoke_run(results):
        raise UserError(
            f'{results} holds a smoke run (scale.json: "quick": true, make recipes QUICK=1), which ranks nothing: '
            "no initialisation converged fastest there; run make recipes without QUICK=1 for one"
        )
    return best_pretraining_init(results / "paper")


def _refuse_others(md: Path, figs: Path) -> None:
    """A UserError where REPORT.md or report/, which a report replaces, holds what no report wrote:
    a report writes only PNG files in report/, and a REPORT.md that begins "# asr-init"."""
    if figs.exists() and not figs.is_dir():
        raise UserError(f"{figs} is a file, where a report writes its figures: move it")
    others = [p.name for p in sorted(figs.iterdir()) if p.suffix != ".png" or not p.is_file()] if figs.is_dir() else []
    if others:
        raise UserError(f"{figs} holds {others[0]}, which no report wrote, and a report replaces that folder: move it")
    head = b""
    if md.is_file():
        with md.open("rb") as fh:
            head = fh.read(10)
    if md.exists() and head != b"# asr-init":
        raise UserError(f"{md} was not written by a report, which replaces it: move it")


def _report(results: Path, figs: Figures, runs: dict[str, list[Path]]) -> list[str]:
    """REPORT.md's lines; its figures are queued in `figs`."""
    recipes = any((results / name).is_dir() for name in RECIPE_FOLDERS)
    md = _paragraphs(
        "# asr-init: does the optimal initialisation pay off?" if recipes else f"# asr-init runs in {results}",
        "Generated by `asr-init report` from the logs under this folder; every number and every conclusion "
        "below is computed from them.",
    )
    smoke = is_smoke_run(results)
    if smoke:
        md += _paragraphs(
            "> **A smoke run** (`make recipes QUICK=1`): every recipe at a tiny scale (minutes of speech, seconds "
            "of training per model), to show that the chain runs end to end. Its numbers measure nothing and "
            "rank nothing, so the report ranks nothing; the tables show that each command ran."
        )
    md += _what_was_run(results)
    if recipes:
        for section in (_paper_replication, _without_pretraining, _acoustic_model, _remedies, _timit, _fsdd):
            md += section(results, figs, smoke)
    return md + _own_runs(results, figs, runs)


def _found_runs(results: Path) -> dict[str, list[Path]]:
    """The run folders under `results` that are not a recipe's, by kind: finished pre-training,
    fine-tuning and evaluation runs, and unfinished pre-training, fine-tuning and prune runs."""

    def found(name: str) -> list[Path]:
        hits = sorted(p.parent for p in results.rglob(name))
        return [p for p in hits if p.relative_to(results).parts[:1] not in [(r,) for r in RECIPE_FOLDERS]]

    runs = {"pretrain": found("pretrain.json"), "finetune": found("finetune.json"), "evaluate": found("results.json")}
    return runs | {f"unfinished {stage}": folders for stage, folders in unfinished_runs(found).items()}


def _own_runs(results: Path, figs: Figures, runs: dict[str, list[Path]]) -> list[str]:
    """Every pre-training, fine-tuning and evaluation folder `_found_runs` found, unfinished ones too."""
    if not any(runs.values()):
        return []
    md = _paragraphs("## Runs")
    for heading, stage, describe, png in (
        ("Pre-training", "pretrain", _pretraining_run, "recon.png"),
        ("Fine-tuning", "finetune", _finetuning_run, "train.png"),
        ("Pruning", "prune", None, None),  # a finished prune run is described by its model folders
    ):
        for folder in runs.get(stage, []):
            name = folder.relative_to(results).as_posix()
            md += _paragraphs(f"### {heading} `{name}`") + describe(folder) + _store_line(results, folder, stage)
            md += _paragraphs(*figs.copied(folder / png, f"run_{name.replace('/', '_')}_{png}", name))
        for folder in runs[f"unfinished {stage}"]:
            name = folder.relative_to(results).as_posix()
            md += _paragraphs(f"### {heading} `{name}` (unfinished)") + unfinished_lines(folder, stage)
    if runs["evaluate"]:
        rows = [_evaluation_row(results, ev) for ev in runs["evaluate"]]
        md += _paragraphs("### Evaluations") + _table(["model", "split", "frame accuracy", "phone error rate"], rows)
    return md


def _store_line(results: Path, folder: Path, stage: str) -> list[str]:
    """The store a finished run trained on (its summary's "store"), under RESULTS where it is there:
    the report's Corpus line describes RESULTS/store only."""
    store = None if stage == "prune" else read_record(folder / f"{stage}.json", store=TEXT | ABSENT).get("store")
    if not store:
        return []
    shown = Path(store).relative_to(results.resolve()) if Path(store).is_relative_to(results.resolve()) else store
    return _paragraphs(f"Trained on the feature store `{shown}`.")


def _pretraining_run(dbn: Path) -> list[str]:
    """One pre-training run: its layers, init and time, then its saturation table."""
    summary = read_record(dbn / "pretrain.json", init=TEXT | ABSENT, seconds=NUMBER | ABSENT,
                          layers=each(record()) | ABSENT)  # fmt: skip
    sizes = [layer.get("n_hidden", layer.get("hidden")) for layer in summary.get("layers", [])]
    line = f"{counted(len(sizes), 'layer')} of {', '.join(map(str, sizes))} units, init `{summary.get('init')}`, "
    return _paragraphs(line + f"{_duration(summary.get('seconds', 0))}.") + dbn_saturation_lines(dbn)


def _finetuning_run(model: Path) -> list[str]:
    """One fine-tuning run: its epochs and time, its best epoch on dev."""
    ft = read_record(model / "finetune.json", epochs=INTEGER, seconds=NUMBER, best_epoch=INTEGER,
                     best_dev_acc=NUMBER, best_dev_loss=NUMBER)  # fmt: skip
    return _paragraphs(
        f"{counted(ft['epochs'], 'epoch')} in {_duration(ft['seconds'])}; best on dev: epoch {ft['best_epoch']}, "
        f"dev frame accuracy {ft['best_dev_acc']:.2%}, dev cross-entropy {ft['best_dev_loss']:.4f}."
    )


def _evaluation_row(results: Path, ev: Path) -> list[str]:
    """One evaluation: its folder, split, frame accuracies (states first) and PER; marked where the
    model.pt it evaluated has since changed (a run continued to more epochs), by the identity it recorded."""
    res = read_record(ev / "results.json", split=TEXT, frame_acc=FRAME_ACC | ABSENT, model=TEXT | ABSENT,
                      per=NUMBER | NULL | ABSENT, ref_phones=INTEGER | NULL | ABSENT,
                      inputs=record(model=TEXT | ABSENT) | ABSENT)  # fmt: skip
    accuracies = sorted(res.get("frame_acc", {}).items(), key=lambda kv: kv[0] == "phones")
    per = f"{res['per']:.2%} ({_fmt(res.get('ref_phones'), ',')} phones)" if res.get("per") is not None else "—"
    acc = ", ".join(f"{kind} {value:.2%}" for kind, value in accuracies)
    model, recorded = Path(res.get("model", "")) / "model.pt", res.get("inputs", {}).get("model")
    if recorded is not None and "model" in res and model.is_file() and digest([model]) != recorded:
        acc += " (of an earlier model.pt: run evaluate again)"
    return [f"`{ev.relative_to(results).as_posix()}`", res["split"], acc, per]


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _what_was_run(results: Path) -> list[str]:
    """The machine, the corpus and the time each stage took."""
    import torch

    md = _paragraphs(
        "## What was run",
        f"- Machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}.",
    )
    s = read_record_if(results / "store" / "summary.json", **STORE_SUMMARY)
    if s is not None:
        corpus = "the embedded eSpeak NG corpus" if s["layout"] == "embedded" else f"{s['layout']} layout"
        md += _paragraphs(f"- Corpus: {corpus}, {s['hours']:.2f} h, {_splits(s, 'speakers')}.")
    return md + _stage_table(stage_times(results))


def _stage_table(times: dict[str, dict]) -> list[str]:
    """A row per stage, then their total (its wall time in bold), written by the same cells."""
    if not times:
        return []
    total = {key: sum(v[key] for v in times.values()) for key in ("commands", "wall_s", "command_s")}
    rows = [[k, v["commands"], f"{b}{v['wall_s'] / 60:.1f} min{b}", f"{v['command_s'] / 60:.1f} min"]
            for k, v, b in [*((k, v, "") for k, v in times.items()), ("**total**", total, "**")]]  # fmt: skip
    return _table(["stage", "commands run", "wall time", "sum of command times (commands run in parallel)"], rows)


def _paper_replication(results: Path, figs: Figures, smoke: bool) -> list[str]:
    """Recipe 1: D*, the first RBM layer per setting, the sweep of D, the full DBN."""
    paper = results / "paper"
    d_star, lines = _d_star(paper, figs)
    md = _paragraphs("## 1. Paper replication: initialisation and pre-training speed") + lines
    groups, dbn = load_layer1(paper), load_dbn_runs(paper)
    md += _layer1(groups, figs, d_star, smoke) if groups else []
    md += _full_dbn(paper, dbn, figs, smoke) if dbn else []
    return md + _commands_block(results, "paper")


def _d_star(paper: Path, figs: Figures) -> tuple[float, list[str]]:
    """D* as recipe 1 computed it (the sigmoid's known value when it did not), and its lines."""
    d = read_record_if(paper / "optimal_d.json", d_star=NUMBER, mc_samples=INTEGER, d_mc=NUMBER, paper_d=NUMBER,
                       paper_loss=NUMBER)  # fmt: skip
    if d is None:
        return 1.40784, []
    line = (
        f"D* (quadrature) = **{d['d_star']:.5f}** for the logistic sigmoid; "
        f"Monte Carlo ({d['mc_samples']:,} samples) = {d['d_mc']:.5f}; "
        f"the paper's D = {d['paper_d']:g} loses {d['paper_loss']:.1e} of the objective."
    )
    tanh = read_record_if(paper / "optimal_d_tanh.json", d_star=NUMBER)
    if tanh is not None:
        line += f" For tanh D* = {tanh['d_star']:.5f}."
    figure = figs.copied(paper / "optimal_d.png", "optimal_d.png", "D*")
    return d["d_star"], [line, "", *_paragraphs(*figure)] if figure else [line]


def _layer1(groups: dict[tuple[str, float], list[CurveSummary]], figs: Figures, d_star: float,
            smoke: bool) -> list[str]:  # fmt: skip
    md = _paragraphs("### First RBM layer, every initialisation at the same learning rate")
    for (visible, lr), summaries in sorted(groups.items(), key=lambda kv: (kv[0][0] != "gauss", kv[0])):
        md += _layer1_setting(visible, lr, summaries, figs, d_star, smoke)
    figs.plot(plot_sweep, groups, "recipe1_sweep.png", d_star)
    return md + _paragraphs("### Sweep of the spread D", _image("sweep", "recipe1_sweep.png"))


def _layer1_setting(visible: str, lr: float, summaries: list[CurveSummary], figs: Figures, d_star: float,
                    smoke: bool) -> list[str]:  # fmt: skip
    """One visible type and learning rate: conclusion, plot, table, and the sweep's sentence."""
    name = f"recipe1_layer1_{visible}_lr{lr:g}.png"
    figs.plot(plot_layer1, summaries, name, f"first layer, {visible} visible units, lr {lr:g} (mean ± std over seeds)")
    md = _paragraphs(
        f"#### {visible} visible units, learning rate {lr:g}",
        _ranked(conclude_layer1(summaries), smoke),
        _image(f"layer 1 {visible} lr {lr:g}", name),
    )
    sweep_text = _ranked(conclude_sweep(visible, lr, summaries, d_star), smoke)
    return md + _layer1_table(summaries) + (_paragraphs(sweep_text) if sweep_text else [])


def _layer1_table(summaries: list[CurveSummary]) -> list[str]:
    """Mean error over the run, errors at a quarter, half and all of it, frames to the common target."""
    grid = summaries[0].frames
    marks = [grid[-1] / 4, grid[-1] / 2, grid[-1]]
    target = target_error([s for s in summaries if not is_sweep(s.init)] or summaries)
    rows = []
    for s in sorted(summaries, key=lambda s: s.auc):
        ft = s.frames_to(target)
        reached = _fmt(ft, ",.0f") if ft is not None else "not reached"
        rows.append(
            [f"`{s.init}`", s.seeds, f"{s.auc:.4g} ± {s.auc_std:.2g}", *(f"{s.at(m):.4g}" for m in marks), reached]
        )
    marked = [f"error at {m:,.0f} frames" for m in marks]
    return _table(["init", "seeds", "mean error over run", *marked, f"frames to reach {target:.4g}"], rows)


def _full_dbn(paper: Path, dbn: dict[str, dict[int, CurveSummary]], figs: Figures, smoke: bool) -> list[str]:
    """Every layer of the DBNs: conclusion, plot, relative errors, saturation."""
    figs.plot(plot_dbn, dbn, "recipe1_dbn.png")
    layers, rows = _by_layer(dbn, lambda s: f"{s.auc:.4g} / {s.final:.4g}")
    header = ["init", *(f"layer {k} mean / final relative error" for k in layers)]
    md = _paragraphs(
        "### Full DBN",
        _ranked(conclude_dbn(dbn), smoke) or "",
        _image("DBN", "recipe1_dbn.png"),
        "Errors are relative to each layer's input variance (1 = no better than predicting the mean).",
    )
    return md + _table(header, rows) + _dbn_saturation_table(paper)


def _by_layer(per_init: dict[str, dict[int, object]], cell) -> tuple[list[int], list[list[str]]]:
    """The layers of every init's runs, and a row per init with a cell per layer ("—" where
    its runs have none: an interrupted DBN beside finished ones)."""
    layers = sorted({k for runs in per_init.values() for k in runs})
    return layers, [[f"`{init}`", *(cell(runs[k]) if k in runs else "—" for k in layers)]
                    for init, runs in per_init.items()]  # fmt: skip


def _dbn_saturation_table(paper: Path) -> list[str]:
    saturation = load_dbn_saturation(paper)
    if not saturation:
        return []
    layers, rows = _by_layer(saturation, lambda v: f"{v:.1%}")
    intro = _paragraphs(
        "Share of saturated hidden units (output within 0.05 of 0 or 1) at the end of each layer's training, "
        "mean over seeds (the saturation guard is off in this recipe):"
    )
    return intro + _table(["init", *(f"layer {k}" for k in layers)], rows)


def _without_pretraining(results: Path, figs: Figures, smoke: bool) -> list[str]:
    """Recipe 2: every initialisation trained from scratch, per activation."""
    rows = load_nopretrain(results / "nopretrain")
    md = _paragraphs("## 2. Initialisation without pre-training")
    if not rows:
        return md + _paragraphs("Not run.") + _commands_block(results, "nopretrain")
    figs.plot(plot_nopretrain, rows, "recipe2.png")
    conclusions = dict.fromkeys(_ranked(line, smoke) for line in conclude_nopretrain(rows))
    md += [*conclusions, "", _image("no pre-training", "recipe2.png"), ""]
    header = ["activation", "init", "epochs", "final train cost", "final dev frame acc", "test frame acc (states)"]
    cells = [
        [r["activation"], f"`{r['init']}`", f"{len(r['epochs'])}{' (diverged)' if r['diverged'] else ''}",
         _fmt(r["final_train_loss"]), _fmt(r["final_dev_acc"], ".2%"), _fmt(r["test_acc"], ".2%")]
        for r in rows
    ]  # fmt: skip
    return md + _table(header, cells) + _commands_block(results, "nopretrain")


def _acoustic_model(results: Path, figs: Figures, smoke: bool) -> list[str]:
    """Recipe 3: the DBNs' saturation, then pre-trained against not pre-trained on dev and test."""
    am_dir = results / "am"
    md = _paragraphs("## 3. DNN-HMM acoustic model: pre-trained or not")
    if (am_dir / "best_init.txt").exists():
        best = read_text(am_dir / "best_init.txt").strip()
        fastest = f"Fastest initialisation of recipe 1 (Gaussian first layer, lowest learning rate): `{best}`."
        md += _paragraphs(_ranked(fastest, smoke))
    for dbn_dir in sorted(am_dir.glob("dbn-*")):
        md += dbn_saturation_lines(dbn_dir)
    am = load_am(am_dir)
    if am:
        md += _am_table(am, smoke)
        for r in am:
            md += figs.copied(am_dir / r["model"] / "train.png", f"recipe3_{r['model']}_train.png", r["model"])
        md += [""]
    else:
        md += _paragraphs("Not run.")
    return md + _commands_block(results, "am")


def _am_table(am: list[dict], smoke: bool) -> list[str]:
    def pct(r: dict, key: str) -> str:
        return _fmt(r.get(key), ".2%")

    header = ["model", "pre-training", "fine-tuning (epochs)", "dev frame acc states / phones", "dev PER",
              "test frame acc states / phones", "test PER", "test decoding"]  # fmt: skip
    rows = [
        [r["model"], f"{_fmt(r['pretrain_s'], '.0f')} s", f"{r['finetune_s']:.0f} s ({r['epochs']})",
         f"{pct(r, 'dev_states')} / {pct(r, 'dev_phones')}", pct(r, "dev_per"),
         f"{pct(r, 'test_states')} / {pct(r, 'test_phones')}", pct(r, "test_per"),
         f"{_fmt(r.get('test_decode_s'), '.1f')} s"]
        for r in am
    ]  # fmt: skip
    return (
        _paragraphs(_ranked(conclude_am(am), smoke) or "")
        + _table(header, rows)
        + _paragraphs(
            "The LM weight and insertion penalty are tuned on dev and the compared model is chosen on dev; the "
            "test split is never used to choose anything. Dev and test have 4 speakers each, so their PERs "
            "differ by speaker as much as by model."
        )
    )


def _timit(results: Path, figs: Figures, smoke: bool) -> list[str]:
    """Recipe 5: the pre-trained model on TIMIT's core test set, or why it was skipped (no figure)."""
    md, timit = _paragraphs("## 5. TIMIT"), results / "timit"
    if (timit / "SKIPPED.txt").exists() or not timit.exists():
        return md + _paragraphs("Skipped: no TIMIT path was given (`TIMIT=/path/to/timit make recipes`).")
    counts = dict.fromkeys(("substitutions", "deletions", "insertions", "ref_phones"), INTEGER | NULL)
    res = read_record_if(timit / "dnn-pretrained-optimal" / "eval-test" / "results.json", per=NUMBER | NULL,
                         frame_acc_states=NUMBER | NULL, frame_acc_phones=NUMBER, **counts)  # fmt: skip
    if res is not None:
        md += _paragraphs(
            f"Core test set: state frame accuracy {_fmt(res['frame_acc_states'], '.2%')}, phone frame accuracy "
            f"{res['frame_acc_phones']:.2%}, PER {_fmt(res['per'], '.2%')} (S {res['substitutions']}, "
            f"D {res['deletions']}, I {res['insertions']} of {res['ref_phones']} phones)."
        )
    return md + _commands_block(results, "timit")


def _fsdd(results: Path, figs: Figures, smoke: bool) -> list[str]:
    """Recipe 6: the findings on real recorded speech (FSDD) beside the embedded corpus's, row for row."""
    fsdd, md = results / "fsdd", _paragraphs("## 6. Real recorded speech (FSDD)")
    if (fsdd / "SKIPPED.txt").exists() or not (fsdd / "store" / "summary.json").exists():
        return md + _paragraphs("Skipped: no FSDD folder was given (`make recipes FSDD=DIR`).")
    s = read_record(fsdd / "store" / "summary.json", sample_rate=INTEGER, **STORE_SUMMARY)
    md += _paragraphs(
        f"The Free Spoken Digit Dataset: {s['hours']:.2f} h of real recordings at {s['sample_rate']:,} Hz, every "
        f"frame labelled with its recording's digit; {_splits(s, 'speaker(s)')}. Beside each figure, the same "
        "measurement on the embedded eSpeak NG corpus (recipes 1 and 3)."
    )
    md += _fsdd_layer1(load_layer1(results / "paper"), load_layer1(fsdd), figs, smoke)
    shapes = {corpus: _dbn_shape(sorted((folder / "dbn").glob("*/seed*"))) for corpus, folder in
              (("eSpeak NG", results / "paper"), ("FSDD", fsdd))}  # fmt: skip
    md += _fsdd_dbn(load_dbn_saturation(results / "paper"), load_dbn_saturation(fsdd), smoke, shapes)
    md += _fsdd_classification(fsdd, results / "am", smoke)
    return md + _commands_block(results, "fsdd")


def _ranks(summaries: list[CurveSummary]) -> dict[str, tuple[int, float]]:
    named = sorted((s for s in summaries if not is_sweep(s.init)), key=lambda s: s.auc)
    return {s.init: (i + 1, s.auc) for i, s in enumerate(named)}


def _rank_cell(ranks: dict[str, tuple[int, float]], init: str, smoke: bool) -> str:
    """`init`'s mean error over the run and its rank, as `_ranks` gives them (no rank in a `smoke` run, which
    ranks nothing); "—" where it was not run."""
    if init not in ranks:
        return "—"
    return f"{ranks[init][1]:.4g}" + ("" if smoke else f" ({ranks[init][0]})")


def _fsdd_layer1(espeak: dict, fsdd: dict, figs: Figures, smoke: bool) -> list[str]:
    md = []
    for (visible, lr), summaries in sorted(fsdd.items()):
        name = f"recipe6_layer1_{visible}_lr{lr:g}.png"
        figs.plot(plot_layer1, summaries, name, f"FSDD first layer, {visible} visible units, lr {lr:g}")
        ours, theirs = _ranks(summaries), _ranks(espeak.get((visible, lr), []))
        header = [f"{corpus}: mean error over the run{'' if smoke else ' (rank)'}" for corpus in ("eSpeak NG", "FSDD")]
        rows = [[f"`{init}`", _rank_cell(theirs, init, smoke), _rank_cell(ours, init, smoke)] for init in ours]
        md += _paragraphs(
            f"### First layer, {visible} visible units, learning rate {lr:g}", _image("FSDD layer 1", name)
        )
        md += _table(["init", *header], rows)
        md += _paragraphs(_ranked(_agreement(ours, theirs, summaries, espeak.get((visible, lr), [])), smoke) or "")
    return md


def _agreement(ours: dict, theirs: dict, summaries: list, espeak: list) -> str:
    """Where the first-layer findings agree on the two corpora: the fastest, optimal's rank, the sweep's best D."""
    fastest = min(ours, key=lambda k: ours[k][0])
    text = f"On FSDD `{fastest}` converged fastest of {len(ours)}"
    if theirs:
        other = min(theirs, key=lambda k: theirs[k][0])
        text += f"; on eSpeak NG `{other}` of {len(theirs)}: {'the same' if other == fastest else 'they differ'}."
    else:
        text += "."
    if "optimal" in ours:
        text += f" `optimal` ranked {ours['optimal'][0]} on FSDD"
        text += f" and {theirs['optimal'][0]} on eSpeak NG." if "optimal" in theirs else "."
    best = {}
    for corpus, group in (("FSDD", summaries), ("eSpeak NG", espeak)):
        sweep = sweep_points(group)
        if sweep:
            best[corpus] = min(sweep, key=lambda t: t[1].auc)[0]
    if best:
        text += " The sweep's fastest D: " + ", ".join(f"{d:g} on {c}" for c, d in best.items()) + " (D* = 1.408)."
    return text


def _fsdd_dbn(espeak: dict, fsdd: dict, smoke: bool, shapes: dict[str, str | None]) -> list[str]:
    """The saturation of recipe 6's DBNs beside recipe 1's, layer by layer; `shapes` gives each corpus's DBN shape
    as `_dbn_shape` does (None: not recorded)."""
    if not fsdd:
        return []
    layers = sorted({k for shares in fsdd.values() for k in shares})
    rows = [
        [f"`{init}`", *(f"{_fmt(espeak.get(init, {}).get(k), '.1%')} / {_fmt(shares.get(k), '.1%')}" for k in layers)]
        for init, shares in fsdd.items()
    ]
    known = {corpus: shape for corpus, shape in shapes.items() if shape}
    sizes = f" ({', '.join(f'{shape} hidden units on {corpus}' for corpus, shape in known.items())})"
    if len(set(known.values())) == 1:
        sizes = f" of {next(iter(known.values()))} hidden units"
    sizes = sizes if known else ""
    md = _paragraphs(f"### DBNs{sizes}: saturation at the end of each layer (guard off, mean over seeds)")
    md += _table(["init", *(f"layer {k}: eSpeak NG / FSDD" for k in layers)], rows)
    if 2 not in layers:
        return md
    worst = max(fsdd, key=lambda i: fsdd[i].get(2, 0.0))
    text = f"Layer 2 saturates most from `{worst}` on FSDD ({fsdd[worst][2]:.1%})"
    if espeak:
        other = max(espeak, key=lambda i: espeak[i].get(2, 0.0))
        text += f" and from `{other}` on eSpeak NG ({espeak[other].get(2, 0.0):.1%})"
    if "optimal" in fsdd:
        text += f"; `optimal` leaves it {fsdd['optimal'][2]:.1%} saturated on FSDD"
        text += f", {espeak['optimal'][2]:.1%} on eSpeak NG." if 2 in espeak.get("optimal", {}) else "."
    return md + _paragraphs(_ranked(text if text.endswith(".") else text + ".", smoke))


# Settings that do not change what a pre-training run trains: compared by `_dbn_named`, they are left out.
_NOT_TRAINING = ("seed", "device", "report_every", "cuda_graphs", "layers", "hidden")


def _recorded_configs(runs: list[Path]) -> list[PretrainConfig]:
    """The settings each pre-training run in `runs` recorded in its pretrain.config.json, where it has one."""
    paths = [run / "pretrain.config.json" for run in runs]
    return [PretrainConfig.from_record(path, read_record(path)) for path in paths if path.is_file()]


def _dbn_shape(runs: list[Path]) -> str | None:
    """The hidden layers the pre-training runs in `runs` recorded: "6 x 1024" (layers x units), the widths
    where they differ ("512-256"), shapes joined by "or" where the runs differ; None where none recorded one."""
    shapes = [f"{len(c.sizes)} x {c.sizes[0]}" if len(set(c.sizes)) == 1 else "-".join(map(str, c.sizes))
              for c in _recorded_configs(runs)]  # fmt: skip
    return " or ".join(dict.fromkeys(shapes)) or None


def _every_default(runs: list[Path]) -> bool:
    """Whether the pre-training runs in `runs` recorded their settings and each setting that changes what a run
    trains was pretrain's default in every one."""
    configs, default = _recorded_configs(runs), PretrainConfig()
    same = [f.name for f in dataclasses.fields(PretrainConfig) if f.name not in _NOT_TRAINING]
    return bool(configs) and all(
        c.sizes == default.sizes and all(getattr(c, name) == getattr(default, name) for name in same) for c in configs
    )


def _dbn_named(runs: list[Path]) -> str:
    """The pre-training runs in `runs` as the report names them: "2 x 64 DBN" by the shape they recorded,
    "default 6 x 1024 DBN (every default of `pretrain`)" where `_every_default` holds, "DBN" where no run
    recorded its settings."""
    shape = _dbn_shape(runs)
    if _every_default(runs):
        return f"default {shape} DBN (every default of `pretrain`)"
    return f"{shape} DBN" if shape else "DBN"


def _spread(values: list[float]) -> str:
    return f"{np.mean(values):.2%} ± {np.std(values):.2%}" if len(values) > 1 else f"{values[0]:.2%}"


def _fsdd_classification(fsdd: Path, am: Path, smoke: bool) -> list[str]:
    rows, sat = load_seed_rows(fsdd / "am"), last_saturation(sorted((fsdd / "am" / "dbn-default").glob("*/recon.csv")))
    md = _paragraphs("### Digit frame classification of the held-out speaker")
    if sat:
        ours = _dbn_named(sorted((fsdd / "am" / "dbn-default").glob("seed*")))
        shares = ", ".join(f"layer {k} {_spread(v)}" for k, v in sorted(sat.items()))
        md += _paragraphs(f"The {ours} on FSDD, saturated share at the end of each layer (mean ± std over seeds): "
                          f"{shares}.")  # fmt: skip
        recon = am / "dbn-optimal" / "recon.csv"  # recipe 3's DBN of init optimal
        espeak = epoch_end_saturation(recon) if recon.exists() else {}
        if espeak:
            theirs = _dbn_named([am / "dbn-optimal"])
            shares = ", ".join(f"layer {k} {v[-1]:.1%}" for k, v in sorted(espeak.items()))
            same = "The same DBN" if theirs == ours and _every_default([am / "dbn-optimal"]) else f"The {theirs}"
            md += _paragraphs(f"{same} on eSpeak NG (recipe 3): {shares}.")
    if not rows:
        return md + _paragraphs("Not run.")
    header = ["start", "held-out digit frame accuracy, mean ± std over seeds", "seeds", "epochs"]
    md += _table(header, [[row, _spread([r["test_acc"] for r in runs]), len(runs),
                           ", ".join(str(r["epochs"]) for r in runs)] for row, runs in rows.items()])  # fmt: skip
    if "pretrained" in rows and len(rows) > 1:
        mean = {row: float(np.mean([r["test_acc"] for r in runs])) for row, runs in rows.items()}
        spread = {row: float(np.std([r["test_acc"] for r in runs])) for row, runs in rows.items()}
        best = max(mean, key=mean.get)
        clear = all(mean[best] - mean[r] > spread[best] + spread[r] for r in mean if r != best)
        verdict = "beyond the seed spread of the others" if clear else "but within the seed spread of another start"
        md += _paragraphs(_ranked(f"Held out, `{best}` classified best ({mean[best]:.2%}), {verdict}.", smoke))
    return md


def _remedies(results: Path, figs: Figures, smoke: bool) -> list[str]:
    """Recipe 4: initialisations with batch norm and ReLU, recipe 3's DBN, the same budget; pruning."""
    folder, md = results / "remedies", _paragraphs("## 4. Instead of pre-training: batch norm, LSUV, ReLU, pruning")
    rows = {k: v for k, v in load_remedies(folder).items() if not k.startswith(("dense", "pruned"))}
    if not rows:
        return md + _paragraphs("Not run.") + _commands_block(results, "remedies")
    target = float(np.median([np.mean([r["best_dev"] for r in runs]) for runs in rows.values()]))
    layers = max(len(r["sat_epoch1"]) for runs in rows.values() for r in runs)
    md += _paragraphs(f"Every row has the same fine-tuning budget; the common dev accuracy is the median over rows of "
                      f"the best dev accuracy, {target:.2%}. Saturated share of each hidden layer after the first "
                      "epoch (dead units for ReLU).")  # fmt: skip
    md += _table(["start", "seeds", f"epochs to {target:.1%} dev", "best dev states", "test states", "test PER",
                  f"saturated after epoch 1, layers 1-{layers}"], [
        _remedy_row(runs, target, layers, row) for row, runs in rows.items()])  # fmt: skip
    dbn = _dbn_named([results / "am" / "dbn-optimal"])  # the DBN recipe 4 fine-tunes and prunes
    md += [*dict.fromkeys(_ranked(line, smoke) for line in _remedy_conclusions(rows, dbn)), ""]
    return md + _pruning(folder, figs, dbn) + _commands_block(results, "remedies")


def _remedy_row(runs: list[dict], target: float, layers: int, row: str) -> list[str]:
    """One row of recipe 4 over its seeds: epochs to the common dev accuracy, accuracies, PER, saturation."""
    reach = [next((i + 1 for i, a in enumerate(r["dev_acc"]) if a >= target), None) for r in runs]
    reached = [e for e in reach if e is not None]
    epochs = (f"{np.mean(reached):.1f}" + (f" ({len(reached)} of {len(runs)})" if len(reached) < len(runs) else "")
              if reached else "not reached")  # fmt: skip
    sat = np.mean([r["sat_epoch1"] for r in runs if len(r["sat_epoch1"]) == layers], axis=0)
    per = _spread([r["test_per"] for r in runs if r["test_per"] is not None] or [float("nan")])
    states = [_spread([r[key] for r in runs]) for key in ("best_dev", "test_states")]
    return [row, len(runs), epochs, *states, per,
            ", ".join(f"{v:.0%}" for v in np.atleast_1d(sat))]  # fmt: skip


def _remedy_conclusions(rows: dict[str, list[dict]], dbn: str = "DBN") -> list[str]:
    """Per variant: does the choice of initialisation separate beyond the seed spread; does the DBN, the row
    "dbn" (`dbn` names it, as `_dbn_named` does), win."""
    mean = {k: float(np.mean([r["test_states"] for r in v])) for k, v in rows.items()}
    std = {k: float(np.std([r["test_states"] for r in v])) for k, v in rows.items()}
    out = []
    for variant in sorted({k.split("/")[0] for k in rows if "/" in k}):
        mine = {k.split("/")[1]: k for k in rows if k.startswith(variant + "/")}
        best, worst = max(mine, key=lambda i: mean[mine[i]]), min(mine, key=lambda i: mean[mine[i]])
        gap, noise = mean[mine[best]] - mean[mine[worst]], 2 * max(std[k] for k in mine.values())
        out.append(f"{variant}: the initialisations span {gap:.2%} of test accuracy (`{best}` best, `{worst}` "
                   f"worst); " + ("beyond" if gap > noise else "within") + " twice the largest seed spread "
                   f"({noise:.2%}), so here the initialisation " + ("matters." if gap > noise else "does not clearly "
                   "matter."))  # fmt: skip
    if "dbn" in mean:
        others = {k: v for k, v in mean.items() if k != "dbn"}
        best = max(others, key=others.get)
        gap, noise = mean["dbn"] - others[best], std["dbn"] + std[best]
        verdict = ("still pays, beyond the seed spread." if gap > noise else "falls behind, beyond the seed spread."
                   if gap < -noise else "is neither ahead nor behind, within the spread.")  # fmt: skip
        out.append(
            f"The {dbn} reached {mean['dbn']:.2%} test accuracy against {others[best]:.2%} for the best "
            f"row without pre-training (`{best}`): with this budget pre-training {verdict}"
        )
    return out


def _pruning(folder: Path, figs: Figures, dbn: str) -> list[str]:
    """Recipe 4's pruned model of the DBN `dbn` (as `_dbn_named` names it) against dense networks as large."""
    summary = read_record_if(folder / "pruned" / "prune.json", scope=TEXT,
                             rows=each(record(sparsity=NUMBER, test_states=NUMBER | NULL)))  # fmt: skip
    if summary is None:
        return []
    dense = {}
    hidden = {"config": record(hidden=INTEGER | each(INTEGER))}
    for run, ft, res in finished_runs(folder / "dense", "sparsity-*", hidden, {"frame_acc_states": NUMBER}):
        sizes = ft["config"]["hidden"]
        width = ", ".join(map(str, dict.fromkeys(sizes))) if isinstance(sizes, list) else str(sizes)
        dense[number_in_name(run, "sparsity-")] = [f"{width} wide", f"{res['frame_acc_states']:.2%}"]
    md = _paragraphs("### Pruning", f"The {dbn}'s model (seed 0) pruned by magnitude ({summary['scope']}-wise) "
                     "and fine-tuned with the mask held, against a dense network with as many hidden weights trained "
                     "from scratch with the same budget:")  # fmt: skip
    rows = [
        [f"{r['sparsity']:.0%}", _fmt(r["test_states"], ".2%"), *dense.get(r["sparsity"], ["—", "—"])]
        for r in summary["rows"]
    ]
    md += _table(["pruned", "test states, pruned", "dense network", "test states, dense"], rows)
    return md + _paragraphs(*figs.copied(folder / "pruned" / "sparsity.png", "recipe4_pruning.png", "pruning"))
