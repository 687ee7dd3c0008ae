"""REPORT.md from fabricated results: its tables, sentences and plots."""

import json
import re
import shlex
import shutil
from pathlib import Path
from unittest.mock import patch

import pytest
from fakes import FAST, SLOW, write_fake_layer1, write_fake_run
from matplotlib.figure import Figure
from typer.testing import CliRunner

from asr_init.cli import app
from asr_init.errors import UserError
from asr_init.io import read_csv, write_csv
from asr_init.reporting.report import write_report
from asr_init.training.config import PretrainConfig
from asr_init.training.pretrain import CSV_COLUMNS


def test_write_report_from_fabricated_results(tmp_path):
    paper = tmp_path / "paper"
    write_fake_layer1(paper, {"optimal": FAST, "hinton": SLOW})
    (paper / "commands.txt").write_text("asr-init pretrain x --init optimal\n")
    for init, errs in (("optimal", FAST), ("zeros", SLOW)):
        for seed in (0, 1):
            write_fake_run(
                paper / "dbn" / init / f"seed{seed}", errs, saturated=0.02 + 0.5 * (init == "zeros") + 0.01 * seed
            )
    write_fake_run(tmp_path / "am" / "dbn-optimal", FAST, saturated=0.031)
    (tmp_path / "stages.jsonl").write_text(
        json.dumps({"stage": "recipe 1: x", "wall_s": 90.0, "command_s": 170.0, "commands": 4, "jobs": 2}) + "\n"
    )
    path = write_report(tmp_path)
    text = path.read_text()
    assert "`optimal` converged fastest" in text
    assert (
        "| `optimal` | 3 | 161.5 ± 0.41 | 250 | 150 | 115 | 5,000 |" in text
    )  # AUC, errors at 1/4, 1/2, end; frames to target
    assert "| recipe 1: x | 4 | 1.5 min | 2.8 min |" in text
    assert "asr-init pretrain x --init optimal" in text
    assert "Skipped: no TIMIT path was given" in text
    assert "| `optimal` | 2.5% |" in text and "| `zeros` | 52.5% |" in text  # DBN saturation, mean over seeds
    assert "`dbn-optimal`: the largest share of saturated hidden units at any layer's epoch end is **3.1%**" in text
    assert "| 1 | 3.1% |" in text
    for png in ("recipe1_layer1_gauss_lr0.01.png", "recipe1_sweep.png", "recipe1_dbn.png"):
        assert (tmp_path / "report" / png).read_bytes()[:4] == b"\x89PNG"


def test_best_init_on_a_folder_without_recipe1_is_one_error_line(tmp_path):
    """`report --best-init` on an empty or missing results folder: exit 1, one `error:` line naming it."""
    (tmp_path / "empty").mkdir()
    for results, missing in ((tmp_path / "empty", "no recipe-1 layer-1 logs"), (tmp_path / "none", "does not exist")):
        res = CliRunner().invoke(app, ["report", str(results), "--best-init"])
        assert res.exit_code == 1, res.output
        (line,) = res.output.splitlines()  # the error and nothing else: no init is printed
        assert line.startswith("error:") and str(results) in line and missing in line, res.output


@pytest.mark.parametrize("best_init", [[], ["--best-init"]])
def test_a_results_folder_that_is_not_one_is_one_error_line_naming_what_report_reads(tmp_path, best_init):
    """A missing folder was told to "run 'make recipes' first", which is wrong for a folder of one's own runs:
    the line says what is wrong with the path and what report reads, and nothing is written."""
    (tmp_path / "notes.txt").write_text("x")
    for path, problem in (
        (tmp_path / "walk" / "nothing", "does not exist"),
        (tmp_path / "notes.txt", "is not a folder"),
    ):
        res = CliRunner().invoke(app, ["report", str(path), *best_init])
        assert res.exit_code == 1, res.output
        (line,) = res.output.splitlines()
        assert line == (f"error: results folder {path} {problem}: give the folder the runs were written into (the "
                        "one 'make recipes' writes, results by default, or one holding your own pretrain, finetune "
                        "or evaluate runs)"), line  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("smoke", [True, False])
def test_best_init_of_a_smoke_run_is_one_error_line_and_of_a_full_run_the_fastest(tmp_path, smoke):
    """`report --best-init` printed a "fastest" initialisation from a smoke run, whose report ranks nothing."""
    write_fake_layer1(tmp_path / "paper", {"optimal": SLOW, "hinton": FAST})
    (tmp_path / "scale.json").write_text(json.dumps({"quick": smoke}))
    res = CliRunner().invoke(app, ["report", str(tmp_path), "--best-init"])
    assert res.exit_code == int(smoke), res.output
    expected = f"error: {tmp_path} holds a smoke run (scale.json: " if smoke else "hinton"
    (line,) = res.output.splitlines()
    assert line.startswith(expected) and ("ranks nothing" in line) == smoke, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["paper", "scale.json"]


def test_report_of_a_users_own_runs(tiny_store, tmp_path):
    """Pointed at a folder of the user's own runs (no recipes), the report shows each of them."""
    runs = tmp_path / "mine"
    runner = CliRunner()
    for args in (
        ["pretrain", str(tiny_store), "--out", str(runs / "dbn"), "--layers", "2", "--hidden", "16", "--epochs", "1"],
        ["finetune", str(tiny_store), "--out", str(runs / "dnn"), "--dbn", str(runs / "dbn"), "--max-epochs", "2"],
        ["evaluate", str(tiny_store), "--model", str(runs / "dnn")],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["report", str(runs)])
    assert result.exit_code == 0, result.output
    text = (runs / "REPORT.md").read_text()
    assert text.startswith(f"# asr-init runs in {runs}") and "## 1. Paper replication" not in text
    assert (
        "### Pre-training `dbn`" in text and "2 layers of 16, 16 units, init `optimal`" in text and "| layer |" in text
    )
    assert "### Fine-tuning `dnn`" in text and "epochs in" in text and "best on dev: epoch" in text
    # each run names the store it trained on (the Corpus line describes RESULTS/store only)
    assert text.count(f"Trained on the feature store `{tiny_store.resolve()}`.") == 2, text
    assert "| `dnn/eval-test` | test | states " in text and "phones)" in text
    for png in ("run_dbn_recon.png", "run_dnn_train.png"):
        assert (runs / "report" / png).read_bytes()[:4] == b"\x89PNG"
    assert "earlier model.pt" not in text
    # continued to more epochs, the model is not the one its evaluation measured: the row says so
    more = ["finetune", str(tiny_store), "--out", str(runs / "dnn"), "--dbn", str(runs / "dbn"), "--max-epochs", "3"]
    assert runner.invoke(app, [*more, "--resume"]).exit_code == 0
    assert runner.invoke(app, ["report", str(runs)]).exit_code == 0
    row = next(ln for ln in (runs / "REPORT.md").read_text().splitlines() if ln.startswith("| `dnn/eval-test`"))
    assert "(of an earlier model.pt: run evaluate again)" in row, row


def test_a_report_lists_unfinished_runs_and_the_commands_that_continue_them(tiny_store, tmp_path):
    """An interrupted pretrain and finetune were left out of the report (it held the machine line
    alone): each is listed with where it stopped, and the command the report gives continues it."""
    from asr_init.training.config import FinetuneConfig, PretrainConfig
    from asr_init.training.finetune import finetune
    from asr_init.training.interrupts import Interrupted
    from asr_init.training.pretrain import pretrain

    runs = tmp_path / "mine"
    with pytest.raises(Interrupted):
        pretrain(tiny_store, PretrainConfig(layers=2, hidden=[16], epochs=1, batch_size=64), runs / "dbn",
                 interrupt_after=5)  # fmt: skip
    with pytest.raises(Interrupted):
        finetune(tiny_store, FinetuneConfig(layers=1, hidden=[16], max_epochs=2), runs / "dnn", interrupt_after=3)
    result = CliRunner().invoke(app, ["report", str(runs)])
    assert result.exit_code == 0, result.output
    text = (runs / "REPORT.md").read_text()
    assert "### Pre-training `dbn` (unfinished)" in text and "### Fine-tuning `dnn` (unfinished)" in text
    assert "layer 1 of 2 stopped in epoch 1 of 2 epochs, after 5 batches (320 frames) of it (rbm1.partial.pt)" in text
    assert "it stopped in epoch 1 of at most 2 epochs, after 3 batches (768 frames) of it (checkpoint.pt)" in text
    commands = re.findall(r"^asr-init .*$", text, re.M)
    assert [c.split()[1] for c in commands] == ["pretrain", "finetune"] and all("--resume" in c for c in commands)
    for command, summary in zip(commands, ("dbn/pretrain.json", "dnn/finetune.json"), strict=True):
        result = CliRunner().invoke(app, shlex.split(command)[1:])
        assert result.exit_code == 0 and "resuming at epoch 1" in result.output, result.output
        assert (runs / summary).is_file()


def test_an_unfinished_runs_command_names_its_paths_absolute_and_runs_from_any_folder(tiny_store, tmp_path,
                                                                                        monkeypatch):  # fmt: skip
    """A fine-tuning run started in one folder with a relative --dbn was given a command with the --dbn
    as recorded (and --out as the report was pointed at): from any other folder it named nothing
    ('--dbn runs/dbn does not exist')."""
    from asr_init.training.config import FinetuneConfig, PretrainConfig
    from asr_init.training.finetune import finetune
    from asr_init.training.interrupts import Interrupted
    from asr_init.training.pretrain import pretrain

    for folder in ("project", "elsewhere"):
        (tmp_path / folder).mkdir()
    monkeypatch.chdir(tmp_path / "project")
    pretrain(tiny_store, PretrainConfig(layers=1, hidden=[16], epochs=1, batch_size=64), Path("runs/dbn"))
    with pytest.raises(Interrupted):
        finetune(tiny_store, FinetuneConfig(dbn="runs/dbn", max_epochs=2), Path("runs/dnn"), interrupt_after=3)
    monkeypatch.chdir(tmp_path / "elsewhere")
    result = CliRunner().invoke(app, ["report", "../project/runs"])
    assert result.exit_code == 0, result.output
    (command,) = re.findall(r"^asr-init .*$", (tmp_path / "project/runs/REPORT.md").read_text(), re.M)
    runs = tmp_path / "project" / "runs"
    assert f" --out {runs / 'dnn'} --resume " in command and f" --dbn {runs / 'dbn'} " in command, command
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, shlex.split(command)[1:])
    assert result.exit_code == 0 and "resuming at epoch 1" in result.output, result.output
    assert (runs / "dnn" / "finetune.json").is_file()


def test_an_unfinished_prune_run_is_continued_by_its_prune_command(blob_store, tmp_path, monkeypatch):
    """An interrupted fine-tuning run of a prune output folder (OUT/sparsity-S) was given a finetune
    command; prune resumes its runs when run again, and the report gives that prune command."""
    from asr_init.evaluation import prune as prune_module
    from asr_init.training.config import FinetuneConfig
    from asr_init.training.finetune import finetune

    dense, pruned = tmp_path / "dense", tmp_path / "pruned"
    finetune(blob_store, FinetuneConfig(layers=1, hidden=[8], splice=0, max_epochs=1, stats_frames=100), dense)
    real = prune_module.finetune
    monkeypatch.setattr(prune_module, "finetune", lambda *args, **kw: real(*args, **kw, interrupt_after=2))
    options = ["--batch-size", "32", "--max-epochs", "2", "--stats-frames", "100"]
    result = CliRunner().invoke(app, ["prune", str(dense), "--out", str(pruned), "--sparsity", "0.5,0.7", *options])
    assert result.exit_code == 130, result.output
    monkeypatch.undo()
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "REPORT.md").read_text()
    (command,) = re.findall(r"^asr-init .*$", text, re.M)  # once: the prune run, not its fine-tuning run too
    assert "### Pruning `pruned` (unfinished)\n\nUnfinished: sparsity-0.5: it stopped in epoch 1" in text
    assert "(checkpoint.pt); sparsity-0.7 not started. Continue it with:" in text
    resolved = "--lr 0.008 --batch-size 32 --momentum 0.0 --max-epochs 2 --stats-frames 100"  # as recorded
    given = f"--out {pruned} --sparsity 0.5,0.7 --store {blob_store.resolve()} {resolved}"
    assert command == f"asr-init prune {dense.resolve()} {given}", command
    result = CliRunner().invoke(app, shlex.split(command)[1:])
    assert result.exit_code == 0 and "resuming at epoch 1" in result.output, result.output
    assert (pruned / "prune.json").is_file()


def test_a_prune_run_interrupted_before_its_first_fine_tuning_run_is_listed_with_its_command(
    blob_store, tmp_path, monkeypatch
):
    """A prune stopped in its dense model's evaluation (dense-eval), its OUT holding prune.config.json
    alone, was not in the report at all."""
    from asr_init.evaluation import prune as prune_module
    from asr_init.training.config import FinetuneConfig
    from asr_init.training.finetune import finetune

    dense, pruned = tmp_path / "dense", tmp_path / "pruned"
    finetune(blob_store, FinetuneConfig(layers=1, hidden=[8], splice=0, max_epochs=1, stats_frames=100), dense)

    def ctrl_c(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(prune_module, "evaluate", ctrl_c)
    args = ["prune", str(dense), "--out", str(pruned), "--sparsity", "0.5", "--max-epochs", "1", "--stats-frames", "9"]
    assert CliRunner().invoke(app, args).exit_code == 130
    monkeypatch.undo()
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "REPORT.md").read_text()
    assert "### Pruning `pruned` (unfinished)\n\nUnfinished: it stopped before its first fine-tuning run, in or " \
        "after the dense model's evaluation (dense-eval). Continue it with:" in text  # fmt: skip
    (command,) = re.findall(r"^asr-init .*$", text, re.M)
    given = f"--out {pruned} --sparsity 0.5 --store {blob_store.resolve()} --lr 0.008 --momentum 0.0"
    assert command == f"asr-init prune {dense.resolve()} {given} --max-epochs 1 --stats-frames 9", command
    result = CliRunner().invoke(app, shlex.split(command)[1:])
    assert result.exit_code == 0 and (pruned / "prune.json").is_file(), result.output


def test_a_report_of_a_folder_without_runs_is_one_error_line_and_writes_nothing(tmp_path):
    """`report` on an empty folder (or one holding no run) wrote a REPORT.md of the machine line alone."""
    (tmp_path / "empty" / "notes").mkdir(parents=True)
    result = CliRunner().invoke(app, ["report", str(tmp_path / "empty")])
    assert result.exit_code == 1, result.output
    (line,) = result.output.splitlines()
    assert line.startswith(f"error: no runs found in {tmp_path / 'empty'}: no recipe folder"), line
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == ["notes"]


def test_a_report_says_1_layer_and_1_epoch_not_1_layers_and_1_epochs(tmp_path):
    (tmp_path / "dbn").mkdir()
    (tmp_path / "dbn" / "pretrain.json").write_text(json.dumps({"init": "optimal", "seconds": 2.0,
                                                               "layers": [{"n_hidden": 16}]}))  # fmt: skip
    (tmp_path / "dnn").mkdir()
    finetune = {"epochs": 1, "seconds": 3.0, "best_epoch": 1, "best_dev_acc": 0.5, "best_dev_loss": 1.0}
    (tmp_path / "dnn" / "finetune.json").write_text(json.dumps(finetune))
    text = write_report(tmp_path).read_text()
    assert "1 layer of 16 units, init `optimal`, 2 s." in text and "1 epoch in 3 s; best on dev" in text, text


def test_a_smoke_run_report_says_so_and_ranks_nothing(tmp_path):
    write_fake_layer1(tmp_path / "paper", {"optimal": FAST, "hinton": SLOW})
    (tmp_path / "scale.json").write_text(json.dumps({"quick": True}))
    text = write_report(tmp_path).read_text()
    assert "> **A smoke run** (`make recipes QUICK=1`)" in text and "Smoke run: not ranked" in text
    assert "converged fastest" not in text and "| `optimal` |" in text  # the table is still there


@pytest.mark.parametrize("smoke", [True, False])
def test_a_smoke_report_shows_no_rank_and_no_fastest_init(tmp_path, smoke):
    """A smoke report said it ranks nothing, yet recipe 6's first-layer tables gave ranks ("345.7 (1)") and
    recipe 3 named recipe 1's fastest initialisation: a full report has both, a smoke report neither."""
    for folder in (tmp_path / "paper", tmp_path / "fsdd"):
        write_fake_layer1(folder, {"optimal": FAST, "hinton": SLOW})
    (tmp_path / "fsdd" / "store").mkdir(parents=True)
    summary = {"layout": "fsdd", "hours": 0.01, "sample_rate": 8000, "splits": {"train": {"speakers": 3, "frames": 9}}}
    (tmp_path / "fsdd" / "store" / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "am").mkdir()
    (tmp_path / "am" / "best_init.txt").write_text("optimal\n")
    (tmp_path / "scale.json").write_text(json.dumps({"quick": smoke}))
    text = write_report(tmp_path).read_text()
    ranked = re.findall(r"\| `(\w+)` \| [\d.]+ \((\d)\) \| [\d.]+ \((\d)\) \|", text)
    assert ranked == ([] if smoke else [("optimal", "1", "1"), ("hinton", "2", "2")]), text
    assert ("Fastest initialisation of recipe 1" in text) != smoke and ("(rank)" in text) != smoke
    if smoke:
        assert "| `optimal` | 161.5 | 161.5 |" in text  # the numbers are still there


@pytest.mark.parametrize("quick", ["false", 0, None, [True]])
def test_a_scale_record_whose_quick_is_not_true_or_false_is_one_error_line(reported, tmp_path, quick):
    """scale.json's quick was read with bool(): "false" (or [true]) made the report a smoke run's, which
    ranks nothing. It is true, false or left out, or one 'error:' line naming the file and the field."""
    damage = lambda path: path.write_text(json.dumps({"quick": quick, "device": "cpu"}))  # noqa: E731
    message = f"quick must be true or false or left out, not {json.dumps(quick)}"
    _fails_leaving_the_report_as_it_was(reported[False], tmp_path, "scale.json", damage, message)


@pytest.mark.parametrize(
    "dbn, verdict",
    [([0.70, 0.71], "still pays"), ([0.54, 0.55], "falls behind"), ([0.60, 0.66], "is neither ahead nor behind")],
)
def test_the_remedies_verdict_on_pre_training_says_which_way_it_went(dbn, verdict):
    from asr_init.reporting.report import _remedy_conclusions

    rows = {"dbn": [{"test_states": a} for a in dbn],
            "sigmoid/optimal": [{"test_states": 0.62}, {"test_states": 0.63}],
            "sigmoid/lsuv": [{"test_states": 0.60}, {"test_states": 0.61}]}  # fmt: skip
    last = _remedy_conclusions(rows)[-1]
    assert f"with this budget pre-training {verdict}" in last and "`sigmoid/optimal`" in last


def test_dbn_tables_of_an_interrupted_dbn_beside_finished_ones(tmp_path):
    """`hinton`'s DBN stopped after layer 1, `optimal`'s finished 2: a column per layer of any
    run, a dash where a run has none (the first init's layers used to set the columns)."""
    paper = tmp_path / "paper"
    write_fake_layer1(paper, {"optimal": FAST})
    for init in ("hinton", "optimal"):
        write_fake_run(paper / "dbn" / init / "seed0", FAST, saturated=0.02)
    finished = paper / "dbn" / "optimal" / "seed0" / "recon.csv"
    rows = read_csv(finished)
    write_csv(finished, rows + [r | {"layer": "2", "saturated": r["saturated"] and "0.04"} for r in rows], CSV_COLUMNS)
    text = write_report(tmp_path).read_text()
    assert "| init | layer 1 mean / final relative error | layer 2 mean / final relative error |" in text
    assert re.search(r"\| `hinton` \| [\d.]+ / [\d.]+ \| — \|", text)
    assert re.search(r"\| `optimal` \| [\d.]+ / [\d.]+ \| [\d.]+ / [\d.]+ \|", text)
    assert "| `hinton` | 2.0% | — |" in text and "| `optimal` | 2.0% | 4.0% |" in text


def test_a_report_over_files_it_did_not_write_is_refused_and_they_are_kept(tmp_path):
    """report DIR replaced DIR/report/ whatever it held (a fine-tuned model kept there was deleted)
    and a user's own DIR/REPORT.md: both are refused, naming what is there, and left as they are."""
    write_fake_layer1(tmp_path / "paper", {"optimal": FAST})
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "model.pt").write_bytes(b"weights")
    with pytest.raises(UserError, match=r"report holds model\.pt, which no report wrote, and a report replaces"):
        write_report(tmp_path)
    assert (tmp_path / "report" / "model.pt").read_bytes() == b"weights"
    (tmp_path / "report" / "model.pt").unlink()
    (tmp_path / "REPORT.md").write_text("my notes\n")
    with pytest.raises(UserError, match=r"REPORT\.md was not written by a report, which replaces it: move it"):
        write_report(tmp_path)
    assert (tmp_path / "REPORT.md").read_text() == "my notes\n"
    (tmp_path / "REPORT.md").unlink()
    write_report(tmp_path)
    write_report(tmp_path)  # its own report and figures it replaces
    assert (tmp_path / "REPORT.md").read_text().startswith("# asr-init")


def test_fsdd_dbn_table_of_an_init_missing_a_layer_has_a_dash_cell():
    """Recipe 6's DBN table: an init whose FSDD DBN stopped after layer 1 gets a dash for layer 2
    (its cells were left out, so its row was shorter than the header)."""
    from asr_init.reporting.report import _fsdd_dbn

    espeak = {"hinton": {1: 0.01, 2: 0.5}, "optimal": {1: 0.02, 2: 0.06}}
    shapes = {"eSpeak NG": "3 x 1024", "FSDD": None}
    lines = _fsdd_dbn(espeak, {"hinton": {1: 0.03}, "optimal": {1: 0.04, 2: 0.07}}, False, shapes)
    assert "| `hinton` | 1.0% / 3.0% | 50.0% / — |" in lines
    assert "| `optimal` | 2.0% / 4.0% | 6.0% / 7.0% |" in lines
    assert "Layer 2 saturates most from `optimal` on FSDD (7.0%)" in lines[-2]
    smoke = _fsdd_dbn(espeak, {"hinton": {1: 0.03}, "optimal": {1: 0.04, 2: 0.07}}, True, shapes)
    assert smoke[:-2] == lines[:-2] and smoke[-2] == "Smoke run: not ranked (see the note at the top)."


def _dbn_run(folder: Path, layers: int, hidden: int, **settings) -> None:
    """A pre-training run's log and the settings record pretrain writes when it starts."""
    write_fake_run(folder, FAST, saturated=0.1)
    config = PretrainConfig(layers=layers, hidden=[hidden], **settings).to_dict()
    (folder / "pretrain.config.json").write_text(json.dumps({"config": config, "store": "store"}))


@pytest.mark.parametrize(
    "scale, texts",
    [
        ({"fsdd": (3, 1024), "paper": (3, 1024), "fsdd_am": (6, 1024), "am": (6, 1024), "am_epochs": 2},
         ["### DBNs of 3 x 1024 hidden units: saturation",
          "The default 6 x 1024 DBN (every default of `pretrain`) on FSDD, saturated share",
          "The same DBN on eSpeak NG (recipe 3): layer 1 10.0%."]),
        ({"fsdd": (2, 32), "paper": (2, 32), "fsdd_am": (2, 32), "am": (2, 64), "am_epochs": 1},
         ["### DBNs of 2 x 32 hidden units: saturation", "The 2 x 32 DBN on FSDD, saturated share",
          "The 2 x 64 DBN on eSpeak NG (recipe 3): layer 1 10.0%."]),
        ({"fsdd": (2, 32), "paper": (3, 1024), "fsdd_am": (2, 32), "am": (6, 1024), "am_epochs": 1},
         ["### DBNs (3 x 1024 hidden units on eSpeak NG, 2 x 32 hidden units on FSDD): saturation",
          "The 2 x 32 DBN on FSDD, saturated share", "The 6 x 1024 DBN on eSpeak NG (recipe 3): layer 1 10.0%."]),
    ],
)  # fmt: skip
def test_the_fsdd_section_names_the_dbns_the_runs_recorded(tmp_path, scale, texts):
    """Recipe 6 named its DBNs "of 1024 units" and "the default 6 x 1024 DBN (every default of `pretrain`)"
    whatever was trained (a smoke run trains 2 x 32): the sizes are the runs' recorded settings, and "every
    default" is said only where each setting that changes training was pretrain's default."""
    (tmp_path / "fsdd" / "store").mkdir(parents=True)
    summary = {"layout": "fsdd", "hours": 0.01, "sample_rate": 8000, "splits": {"train": {"speakers": 3, "frames": 9}}}
    (tmp_path / "fsdd" / "store" / "summary.json").write_text(json.dumps(summary))
    for seed in (0, 1):
        _dbn_run(tmp_path / "fsdd" / "am" / "dbn-default" / f"seed{seed}", *scale["fsdd_am"], seed=seed)
        for corpus in ("fsdd", "paper"):
            _dbn_run(tmp_path / corpus / "dbn" / "optimal" / f"seed{seed}", *scale[corpus], seed=seed)
    _dbn_run(tmp_path / "am" / "dbn-optimal", *scale["am"], epochs=scale["am_epochs"])
    text = write_report(tmp_path).read_text()
    for line in texts:
        assert line in text, text
    assert ("1024" in text) == (1024 in (*scale["fsdd"], *scale["paper"], *scale["am"]))
    assert ("every default" in text) == (scale["am_epochs"] == 2)


def test_a_report_that_fails_leaves_the_old_report_as_it_was(tmp_path):
    """The figures are built aside and swapped in with REPORT.md only when the whole report is made."""
    paper = tmp_path / "paper"
    write_fake_layer1(paper, {"optimal": FAST, "hinton": SLOW})
    write_report(tmp_path)
    before = {p.name: p.read_bytes() for p in (tmp_path / "report").iterdir()}
    text = (tmp_path / "REPORT.md").read_text()
    write_fake_layer1(paper, {"optimal": SLOW, "hinton": FAST})  # other figures
    (tmp_path / "am" / "dnn-optimal").mkdir(parents=True)
    (tmp_path / "am" / "dnn-optimal" / "finetune.json").write_text('{"seconds": 1')  # read after recipe 1's figures
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 1 and result.output.startswith("error:"), result.output
    assert (tmp_path / "REPORT.md").read_text() == text
    assert {p.name: p.read_bytes() for p in (tmp_path / "report").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("report")) == ["report"]


def test_recipe3_pre_training_time_does_not_depend_on_the_current_folder(tmp_path, monkeypatch):
    """finetune.json records its --dbn as typed (relative to the folder the recipe ran in): the report
    finds it from the model's folder, not from wherever the report is made (it showed `— s`, or the
    time of another results/am/dbn-optimal under the current folder)."""
    ran_in, elsewhere = tmp_path / "R", tmp_path / "elsewhere"
    am = ran_in / "results" / "am"
    for folder, seconds in ((am / "dbn-optimal", 7.0), (elsewhere / "results" / "am" / "dbn-optimal", 99.0)):
        write_fake_run(folder, FAST)
        (folder / "pretrain.json").write_text(json.dumps({"seconds": seconds}))
    (am / "dnn-optimal").mkdir()
    finetune = {"seconds": 3.0, "epochs": 2, "config": {"dbn": "results/am/dbn-optimal"}}
    (am / "dnn-optimal" / "finetune.json").write_text(json.dumps(finetune))
    absolute = str(ran_in / "results")
    for cwd, results in ((ran_in, "results"), (elsewhere, absolute), (tmp_path, absolute)):
        monkeypatch.chdir(cwd)
        text = write_report(results).read_text()
        assert "| dnn-optimal | 7 s | 3 s (2) |" in text, cwd


def test_a_dbn_that_has_not_written_its_log_yet_is_left_out_of_the_tables(tmp_path):
    """A recipe-3 DBN folder without recon.csv (a run that stopped before its first interval):
    the report is made without it (it stopped with FileNotFoundError)."""
    write_fake_run(tmp_path / "am" / "dbn-optimal", FAST, saturated=0.031)
    (tmp_path / "am" / "dbn-xavier-normal").mkdir()
    text = write_report(tmp_path).read_text()
    assert "`dbn-optimal`: the largest share" in text and "dbn-xavier-normal`: the largest" not in text


FSDD_RESULTS = "fsdd/am/dnn-pretrained/seed0/eval-test/results.json"


def _records(root):
    """A results folder of one user's runs and a few recipe records, every field of the type asr-init writes."""
    files = {
        "mine/dbn/pretrain.json": {"init": "optimal", "seconds": 3.0, "layers": [{"n_hidden": 16}, {"n_hidden": 16}]},
        "mine/dnn/finetune.json": {"epochs": 2, "seconds": 4.0, "best_epoch": 2, "best_dev_acc": 0.25,
                                   "best_dev_loss": 2.5, "config": {"dbn": None, "hidden": [16, 16]}},
        "mine/dnn/eval-test/results.json": {"split": "test", "frame_acc": {"states": 0.3, "phones": 0.6}, "per": 0.3,
                                            "ref_phones": 33, "frame_acc_states": 0.3, "frame_acc_phones": 0.6},
        "timit/dnn-pretrained-optimal/eval-test/results.json": {"frame_acc_states": 0.4, "frame_acc_phones": 0.7,
                                                                "per": 0.25, "substitutions": 1, "deletions": 2,
                                                                "insertions": 3, "ref_phones": 40},
        "paper/optimal_d.json": {"d_star": 1.40784, "mc_samples": 1000, "d_mc": 1.408, "paper_d": 1.0,
                                 "paper_loss": 0.01},
        "store/summary.json": {"layout": "embedded", "hours": 0.25, "splits": {"train": {"speakers": 3, "frames": 9}}},
        "fsdd/store/summary.json": {"layout": "fsdd", "hours": 0.01, "sample_rate": 8000,
                                    "splits": {"train": {"speakers": 3, "frames": 9}}},
        "fsdd/am/dnn-pretrained/seed0/finetune.json": {"best_dev_acc": 0.5, "epochs": 3},
        FSDD_RESULTS: {"targets": "digits", "frame_acc": {"digits": 0.6}},
    }  # fmt: skip
    for name, record in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(json.dumps(record))
    (root / "stages.jsonl").write_text(json.dumps({"stage": "s", "wall_s": 1.0, "command_s": 1.0, "commands": 1}))
    write_fake_run(root / "mine" / "dbn", FAST)
    (root / "mine" / "dnn" / "train.png").write_bytes(b"\x89PNG old")
    return files


@pytest.mark.parametrize(
    "name, field, value, message",
    [
        ("mine/dnn/finetune.json", "best_dev_acc", "x", 'best_dev_acc must be a number, not "x"'),
        ("mine/dnn/finetune.json", "best_dev_acc", True, "best_dev_acc must be a number, not true"),
        ("mine/dnn/finetune.json", "best_dev_acc", 10**400, "best_dev_acc must be a number, not 1000000"),
        ("mine/dnn/finetune.json", "best_dev_loss", None, "best_dev_loss must be a number, not null"),
        ("mine/dnn/finetune.json", "seconds", [4.0], "seconds must be a number, not [4.0]"),
        ("mine/dnn/finetune.json", "epochs", None, "epochs must be an integer, not null"),
        ("mine/dnn/finetune.json", "best_epoch", ..., "best_epoch must be an integer, not missing"),
        ("mine/dnn/eval-test/results.json", "per", "30%", 'per must be a number or null or left out, not "30%"'),
        ("mine/dnn/eval-test/results.json", "frame_acc", {"states": None}, "frame_acc.states must be a number"),
        ("mine/dnn/eval-test/results.json", "frame_acc", [0.3], "frame_acc must be an object or left out"),
        ("mine/dnn/eval-test/results.json", "split", 1, "split must be a string, not 1"),
        ("mine/dbn/pretrain.json", "seconds", "3", 'seconds must be a number or left out, not "3"'),
        ("mine/dbn/pretrain.json", "layers", [16], "layers[0] must be an object, not 16"),
        ("timit/dnn-pretrained-optimal/eval-test/results.json", "frame_acc_phones", "x", "frame_acc_phones must be"),
        ("paper/optimal_d.json", "d_star", None, "d_star must be a number, not null"),
        ("store/summary.json", "splits", {"train": {"speakers": "3"}}, "splits.train.speakers must be an integer"),
        ("stages.jsonl", "wall_s", "1", 'wall_s must be a number, not "1"'),
        (FSDD_RESULTS, "targets", "states", "frame_acc.states must be a number, not missing"),
    ],
)
def test_a_record_holding_a_value_of_the_wrong_type_is_one_error_line(reported, tmp_path, name, field, value, message):
    """A record with a string, null, list or bool where the report formats a number (or another
    type where it reads one), or with targets its frame_acc does not hold: one 'error:' line naming
    the file and the field (it stopped with a TypeError or ValueError from a format, or a KeyError)."""

    def damage(path):
        record = json.loads(path.read_text())
        record.pop(field)
        if value is not ...:  # ...: the field left out
            record[field] = value
        path.write_text(json.dumps(record))

    _fails_leaving_the_report_as_it_was(reported[False], tmp_path, name, damage, message)


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """Folders of _records, without and with _logs, each with its report written: made once, copied by each test."""
    folders = {}
    for logs in (False, True):
        folders[logs] = tmp_path_factory.mktemp("reported")
        _records(folders[logs])
        if logs:
            _logs(folders[logs])
        write_report(folders[logs])
    return folders


def _fails_leaving_the_report_as_it_was(reported, root, name, damage, message):
    """`reported` (a folder and its report) copied to `root`, then `damage(root / name)`: `asr-init
    report` is one 'error:' line naming the file, with `message`, exit 1, and the old REPORT.md and
    report/ left as they were. It stops before it draws any figure."""
    shutil.copytree(reported, root, dirs_exist_ok=True)
    text = (root / "REPORT.md").read_text()
    figures = {p.name: p.read_bytes() for p in (root / "report").iterdir()}
    assert "run_mine_dnn_train.png" in figures
    (root / "mine" / "dnn" / "train.png").write_bytes(b"\x89PNG new")
    damage(root / name)
    with patch.object(Figure, "savefig", side_effect=AssertionError("a figure was drawn")):
        result = CliRunner().invoke(app, ["report", str(root)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), repr(result.exception)  # no traceback
    (line,) = result.output.splitlines()
    assert line.startswith(f"error: {root / name}") and message in line, result.output
    assert (root / "REPORT.md").read_text() == text
    assert {p.name: p.read_bytes() for p in (root / "report").iterdir()} == figures
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("report")) == ["report"]


def _logs(root):
    """The CSV logs the report reads beside _records' mine/dbn/recon.csv: a first-layer run of recipe 1,
    a model of recipe 2 and a run of recipe 4 (train.csv, finetune.json, results.json); and recipe 1's
    commands.txt."""
    write_fake_run(root / "paper" / "layer1" / "gauss" / "lr0.01" / "optimal" / "seed0", FAST)
    (root / "paper" / "commands.txt").write_text("asr-init pretrain x --init optimal\n")
    train = [{"epoch": 0, "dev_acc": 0.1}, {"epoch": 1, "train_loss": 2.0, "dev_acc": 0.2, "sat_1": 0.1},
             {"epoch": 2, "train_loss": 1.5, "dev_acc": 0.3, "sat_1": 0.2}]  # fmt: skip
    for model in ("nopretrain/sigmoid/optimal", "remedies/sigmoid/optimal/seed0"):
        (root / model).mkdir(parents=True)
        write_csv(root / model / "train.csv", train, ["epoch", "train_loss", "dev_acc", "sat_1"])
    run = root / "remedies" / "sigmoid" / "optimal" / "seed0"
    (run / "finetune.json").write_text(json.dumps({"best_dev_acc": 0.3}))
    (run / "eval-test").mkdir()
    (run / "eval-test" / "results.json").write_text(json.dumps({"frame_acc_states": 0.3, "per": 0.5}))


LAYER1 = "paper/layer1/gauss/lr0.01/optimal/seed0/recon.csv"


@pytest.mark.parametrize(
    "name, column, value, message",
    [
        (LAYER1, "recon_error", "x", ':3: recon_error must be a number, not "x"'),
        (LAYER1, "layer", "", ':2: layer must be an integer, not ""'),
        ("mine/dbn/recon.csv", "saturated", "1%", ':9: saturated must be a number, not "1%"'),
        ("mine/dbn/recon.csv", "kind", ..., "has no kind column"),
        ("nopretrain/sigmoid/optimal/train.csv", "epoch", "", ':2: epoch must be an integer, not ""'),
        ("nopretrain/sigmoid/optimal/train.csv", "train_loss", "x", ':3: train_loss must be a number, not "x"'),
        ("remedies/sigmoid/optimal/seed0/train.csv", "dev_acc", "x", ':3: dev_acc must be a number, not "x"'),
        ("remedies/sigmoid/optimal/seed0/train.csv", "sat_1", "x", ':3: sat_1 must be a number, not "x"'),
        ("remedies/sigmoid/optimal/seed0/train.csv", "epoch", ..., "has no epoch column"),
    ],
)
def test_a_log_holding_a_cell_that_is_not_a_number_is_one_error_line(reported, tmp_path, name, column, value, message):
    """A CSV log with a cell that is not a number where the report reads one (in every row that
    has the column filled), or without a column it reads (value ...): one 'error:' line naming the
    file, the line and the column (it stopped with a ValueError from float() or int(), or a KeyError)."""

    def damage(path):
        rows, columns = read_csv(path), list(read_csv(path)[0])
        if value is ...:
            columns.remove(column)
        write_csv(path, [r | {column: value} if r[column] else r for r in rows], columns)

    _fails_leaving_the_report_as_it_was(reported[True], tmp_path, name, damage, message)


@pytest.mark.parametrize(
    "name",
    [
        "mine/dnn/finetune.json",
        "stages.jsonl",
        "mine/dbn/recon.csv",
        "nopretrain/sigmoid/optimal/train.csv",
        "paper/commands.txt",
    ],
)
def test_a_record_or_log_that_is_not_utf8_is_one_error_line(reported, tmp_path, name):
    """A JSON record, a CSV log or a recipe's commands that is not UTF-8 text (a byte of Latin-1 in it):
    one 'error:' line naming the file (it stopped with a UnicodeDecodeError)."""

    def damage(path):
        data = path.read_bytes()
        path.write_bytes(data[:1] + b"\xe9" + data[1:])

    _fails_leaving_the_report_as_it_was(
        reported[True], tmp_path, name, damage, "is not UTF-8 text (byte 0xe9 at byte offset 1)"
    )


@pytest.mark.parametrize(
    "name, was, message",
    [
        ("paper/layer1/gauss/lrx", "lr0.01", "a recipe names this folder lrNUMBER"),
        ("paper/layer1/gauss/lr0.01/optimal_x", "optimal", "a recipe names this folder optimal_NUMBER"),
    ],
)
def test_a_recipe_folder_whose_name_lacks_its_number_is_one_error_line(reported, tmp_path, name, was, message):
    """A learning-rate or D-sweep folder of recipe 1 named without its number (lrx, optimal_x): one
    'error:' line naming the folder (it stopped with a ValueError from float())."""
    _fails_leaving_the_report_as_it_was(
        reported[True], tmp_path, name, lambda path: (path.parent / was).rename(path), message
    )


def test_a_file_beside_recipe_1s_runs_is_not_a_run(tmp_path):
    """A file or an empty folder beside recipe 1's init folders (notes.txt, optimal_notes.txt) is
    not a run: the report leaves it out, as it leaves out any folder without seeds."""
    _records(tmp_path)
    _logs(tmp_path)
    lr = tmp_path / "paper" / "layer1" / "gauss" / "lr0.01"
    (lr / "optimal_notes.txt").write_text("to do")
    (lr / "optimal_old").mkdir()
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output


def test_a_sat_column_not_numbered_in_ascii_digits_is_not_a_layers(tmp_path):
    """train.csv's saturation columns are sat_1, sat_2...: a 'sat_²' column (str.isdigit() takes '²', int()
    does not) or a number of 5,000 digits stopped the report in a ValueError traceback; such a column, or a
    layer past the 64 a network may have, is no layer's column and is left out."""
    from asr_init.reporting.logs import load_remedies

    _logs(tmp_path)
    path = tmp_path / "remedies" / "sigmoid" / "optimal" / "seed0" / "train.csv"
    odd = ["sat_\u00b2", "sat_" + "1" * 5000, "sat_65"]  # int() refuses over 4,300 digits; at most 64 layers
    write_csv(path, [r | dict.fromkeys(odd, "0.9") for r in read_csv(path)], [*read_csv(path)[0], *odd])
    assert [run["sat_epoch1"] for run in load_remedies(tmp_path / "remedies")["sigmoid/optimal"]] == [[0.1]]


def _write_unfinished(path, **config):
    """An unfinished run's settings record at `path` (pretrain/finetune/prune.config.json, chosen by its
    name) whose config holds `config` over a small run's: a field given as ... is left out."""
    from asr_init.training.config import FinetuneConfig, PretrainConfig

    stage = path.name.split(".")[0]
    base = (PretrainConfig if stage == "pretrain" else FinetuneConfig)(layers=1, hidden=[16]).to_dict()
    rec = {"store": "/data/store", "config": {k: v for k, v in (base | config).items() if v is not ...}}
    if stage == "prune":
        rec |= {"model": "/data/dense", "sparsities": [0.5]}
        rec["config"] |= {"init_from": "/data/dense", "sparsity": 0.5}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))


@pytest.mark.parametrize(
    "name, field, value, message",
    [
        ("pretrain", "layers", "x", 'config.layers must be an integer or null or left out, not "x"'),
        ("pretrain", "layers", 10**12, "config: invalid --layers 1000000000000: at most 64"),
        ("pretrain", "layers", 65, "config: invalid --layers 65: at most 64"),
        ("pretrain", "hidden", "x", 'config.hidden must be a list or left out, not "x"'),
        ("pretrain", "hidden", [10**9], "config: invalid --hidden 1000000000: at most 65,536"),
        ("pretrain", "cuda_graphs", "false", 'config.cuda_graphs must be true or false or left out, not "false"'),
        ("pretrain", "lr", "0.1", 'config.lr must be a number or left out, not "0.1"'),
        ("finetune", "dbn", 5, "config.dbn must be a string or null or left out, not 5"),
        ("finetune", "dbn", ["x"], 'config.dbn must be a string or null or left out, not ["x"]'),
        ("finetune", "feature_transform", {"a": 1}, "config.feature_transform must be a string or null"),
        ("finetune", "max_epochs", "x", 'config.max_epochs must be an integer or left out, not "x"'),
        ("finetune", "layers", 10**12, "config: invalid --layers 1000000000000: at most 64"),
        ("prune", "batch_size", None, "config.batch_size must be an integer or left out, not null"),
    ],
)
def test_an_unfinished_runs_recorded_config_is_checked_as_its_command_checks_it(reported, tmp_path, name, field,
                                                                                  value, message):  # fmt: skip
    """The config of an unfinished run was used unchecked: a string where a number goes stopped the
    report in a TypeError or ValueError, --layers 10**8 took a gigabyte (10**12: 'not enough memory',
    naming no file), and --hidden "x" or [] was printed into the command as it was. Each field is of
    its kind and within the command's own limits, or one 'error:' line names the file and the field."""
    damage = lambda path: _write_unfinished(path, **{field: value})  # noqa: E731
    _fails_leaving_the_report_as_it_was(reported[False], tmp_path, f"cut/{name}.config.json", damage, message)


@pytest.mark.parametrize(
    "name, field, value, reason",
    [
        ("pretrain", "cd_k", 200, "invalid --cd-k 200: at most 100"),
        ("pretrain", "hidden", [], "invalid --hidden: every width must be at least 1"),
        ("pretrain", "init", "nonsense", "invalid --init nonsense: unknown init method 'nonsense'"),
        ("finetune", "max_epochs", 0, "invalid --max-epochs 0: must be at least 1"),
        ("prune", "splice", 101, "invalid --splice 101: at most 100"),
    ],
)
def test_an_unfinished_run_whose_recorded_settings_are_refused_today_is_listed_without_a_command(
    tmp_path, name, field, value, reason
):
    """An unfinished run recorded with --cd-k 200 (an older asr-init took it; today's limit is 100) stopped the
    whole report: "error: ...pretrain.config.json: config: invalid --cd-k 200: at most 100", no REPORT.md. It is
    listed as unfinished, saying why this asr-init refuses its settings, with no command to continue it."""
    _write_unfinished(tmp_path / "old" / f"{name}.config.json", **{field: value})
    _write_unfinished(tmp_path / "new" / "pretrain.config.json")
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "REPORT.md").read_text()
    old = text[text.index("`old` (unfinished)") :]
    old = old[: old.index("###")] if "###" in old else old
    said = " ".join(old.split())
    assert f"Unfinished; its recorded settings are refused by this asr-init ({reason}" in said, old
    then = "), so no command here continues it: continue it with the asr-init that started it, or start it again"
    assert then + " with --force." in said, old
    assert "asr-init " + name not in old and "```" not in old, old
    assert len(re.findall(r"^asr-init pretrain .*/new --resume", text, re.M)) == 1, text


def test_an_unfinished_run_recorded_on_another_machine_is_reported_with_its_device(tmp_path):
    """A run recorded on a GPU is reported on any machine: its --device is not checked against this one;
    a field this version does not know is left out, one it lacks takes its default."""
    _write_unfinished(tmp_path / "dbn" / "pretrain.config.json", device="cuda:7", epochs=..., future_field=1)
    text = write_report(tmp_path).read_text()
    (command,) = re.findall(r"^asr-init .*$", text, re.M)
    assert command.endswith(" --resume --layers 1 --hidden 16 --device cuda:7"), command
    assert "layer 1 stopped before its first checkpoint" in text, text


SHELL = "a b;$(touch PWNED)`touch PWNED`'\"\\ |&>x\n#"  # shell syntax of every kind, in one value


@pytest.mark.parametrize("field, value", [("store", f"/data/{SHELL}"), ("store", f"--{SHELL}"),
                                          ("dbn", f"/data/{SHELL}"), ("folder", SHELL.replace("/", ""))])  # fmt: skip
def test_an_unfinished_runs_command_is_the_words_recorded_whatever_they_hold(tmp_path, field, value):
    """The command that continues an unfinished run is pasted into a shell: a recorded string holding shell
    syntax (the store, --dbn, the run folder's own name) is one quoted word, so that the shell gives
    asr-init exactly the words meant and runs nothing else (a word that began with -- was left unquoted)."""
    import subprocess

    folder = tmp_path / ("dnn" + value if field == "folder" else "dnn")
    store, dbn = (value if field == name else "/data/x" for name in ("store", "dbn"))
    _write_unfinished(folder / "finetune.config.json", dbn=dbn)
    record = json.loads((folder / "finetune.config.json").read_text())
    (folder / "finetune.config.json").write_text(json.dumps(record | {"store": store}))
    text = write_report(tmp_path).read_text()
    command = text[text.index("asr-init finetune") : text.index("\n```", text.index("asr-init finetune"))]
    words = ["asr-init", "finetune", store, "--out", str(folder), "--resume", "--dbn", dbn, "--layers", "1",
             "--hidden", "16", "--lr", "0.0004", "--momentum", "0.9"]  # fmt: skip
    assert shlex.split(command) == words, command
    shell = subprocess.run(["bash", "-c", "printf '%s\\0' " + command], cwd=tmp_path, capture_output=True, text=True)
    assert shell.stdout.split("\0")[:-1] == words and not (tmp_path / "PWNED").exists(), shell.stderr


@pytest.mark.parametrize(
    "hidden, message",
    [
        (["$(touch PWNED)"], 'config.hidden[0] must be an integer, not "$(touch PWNED)"'),
        ([16, ["'$(touch PWNED)"]], 'config.hidden[1] must be an integer, not ["\'$(touch PWNED)"]'),
        ([[["x"], 16]], 'config.hidden[0] must be an integer, not [["x"], 16]'),
    ],
)
def test_an_unfinished_run_whose_list_holds_shell_syntax_is_refused(reported, tmp_path, hidden, message):
    """A list item that is not a number was written into the command unquoted, with str(): pasted, the
    command ran `touch`. Such a record is one 'error:' line naming the file and the item."""
    damage = lambda path: _write_unfinished(path, hidden=hidden)  # noqa: E731
    _fails_leaving_the_report_as_it_was(reported[False], tmp_path, "cut/pretrain.config.json", damage, message)
