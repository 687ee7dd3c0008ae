"""`asr-init prune` (asr_init/evaluation/prune.py): what its evaluations run on.

The fine-tuning at each sparsity is tested in tests/training/test_remedies.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import terminated_cli

from asr_init.errors import UserError
from asr_init.evaluation import prune as prune_module
from asr_init.training.config import FinetuneConfig
from asr_init.training.finetune import finetune

TINY = dict(layers=1, hidden=8, splice=0, max_epochs=1, stats_frames=100)


def test_prune_evaluates_on_the_runs_device_and_on_dev_when_the_store_has_no_test_split(blob_store, tmp_path,
                                                                                       monkeypatch):  # fmt: skip
    """A store of train and dev (an import-kaldi store of Kaldi's tr90 and cv sets) is pruned
    and evaluated on dev, which prune.json, prune.csv and the table name; every evaluation runs
    on the run's --device."""
    store = tmp_path / "store"
    shutil.copytree(blob_store, store)
    manifest = store / "manifest.jsonl"
    manifest.write_text(manifest.read_text().replace('"split": "test"', '"split": "dev"'))
    finetune(store, FinetuneConfig(**TINY), tmp_path / "dense")
    seen, evaluate = [], prune_module.evaluate
    monkeypatch.setattr(prune_module, "evaluate", lambda *a: seen.append(a[2]) or evaluate(*a))
    config = FinetuneConfig(max_epochs=1, stats_frames=100, device="cpu")
    monkeypatch.chdir(tmp_path)  # a relative --out and --store: prune.json and prune.csv still name the folders
    summary = prune_module.prune(Path("dense"), Path("pruned"), config, [0.5], store=Path("store"))
    assert [r["model"] for r in summary["rows"]] == [str(tmp_path / "dense"), str(tmp_path / "pruned" / "sparsity-0.5")]
    assert summary["store"] == str(store)
    assert [(c.device, c.split) for c in seen] == [("cpu", "dev"), ("cpu", "dev")]
    assert summary["split"] == "dev" and [r["sparsity"] for r in summary["rows"]] == [0.0, 0.5]
    assert all(r["dev_states"] is not None and "test_states" not in r for r in summary["rows"])
    assert json.loads((tmp_path / "pruned" / "prune.json").read_text())["split"] == "dev"
    assert (tmp_path / "pruned" / "prune.csv").read_text().startswith("sparsity,model,dev_states,dev_phones,dev_per")
    assert "dev states" in str([c.header for c in prune_module.prune_table(summary).columns])
    stats = store / "stats.json"  # the store made again from other data: the dense row would be another store's
    stats.write_text(stats.read_text().replace("{", '{"other": 1, ', 1))
    with pytest.raises(UserError, match="the feature store changed since .*pruned was made from it"):
        prune_module.prune(tmp_path / "dense", tmp_path / "pruned", config, [0.5])


def test_a_setting_the_model_contradicts_is_refused_before_anything_is_written(blob_store, tmp_path):
    """`prune --targets states` of a phones model stops before the dense model's evaluation, so
    the corrected command runs in the same --out (it used to find prune.config.json there and
    ask for --force)."""
    finetune(blob_store, FinetuneConfig(**TINY, targets="phones"), tmp_path / "dense")
    contradicting = FinetuneConfig(max_epochs=1, stats_frames=100, targets="states")
    with pytest.raises(UserError, match="fine-tune it with the same --targets and --batch-norm setting"):
        prune_module.prune(tmp_path / "dense", tmp_path / "pruned", contradicting, [0.5])
    assert not (tmp_path / "pruned").exists()
    corrected = FinetuneConfig(max_epochs=1, stats_frames=100)
    summary = prune_module.prune(tmp_path / "dense", tmp_path / "pruned", corrected, [0.5])
    assert [r["sparsity"] for r in summary["rows"]] == [0.0, 0.5] and summary["rows"][1]["test_phones"] is not None


def test_an_interrupted_prune_says_to_run_the_same_command_again(blob_store, tmp_path, monkeypatch):
    """prune has no --resume (it resumes by itself): the interruption's advice is its own."""
    from typer.testing import CliRunner

    from asr_init.cli import app
    from asr_init.training.interrupts import Interrupted

    finetune(blob_store, FinetuneConfig(**TINY), tmp_path / "dense")

    def stopped(store, config, out, resume, source):
        raise Interrupted(f"stopped by signal 2 in epoch 1; state saved to {out}/checkpoint.pt")

    monkeypatch.setattr(prune_module, "finetune", stopped)
    args = ["prune", str(tmp_path / "dense"), "--out", str(tmp_path / "p"), "--sparsity", "0.5"]
    result = CliRunner().invoke(app, args)
    text = " ".join(result.output.split())
    assert result.exit_code == 130 and "pt; run the same prune command again to continue" in text, text
    assert "--resume" not in text


def test_sigterm_anywhere_in_prune_says_interrupted_and_the_same_command_continues(blob_store, tmp_path):
    """SIGTERM while a sparsity's fine-tuning writes its model (after its own signal handling) and
    between that run and its evaluation: each time one 'interrupted' line and exit status 130 (it
    ended with 143 and nothing said); the next run goes on from what is kept, and the last one
    finishes without fine-tuning again."""
    import os
    import subprocess
    import sys

    finetune(blob_store, FinetuneConfig(**TINY), tmp_path / "dense")
    out, repo = tmp_path / "p", Path(__file__).resolve().parents[2]
    args = ["prune", str(tmp_path / "dense"), "--out", str(out), "--sparsity", "0.5", "--max-epochs", "1"]
    env = {**os.environ, "PYTHONPATH": str(repo), "COLUMNS": "200"}
    prune, ft = "asr_init.evaluation.prune", "asr_init.training.finetune"
    points = [(f"{ft}:_write_outputs", 1), (f"{prune}:_evaluated", 2)]
    model = out / "sparsity-0.5" / "model.pt"
    for target, nth in points:
        done = subprocess.run([sys.executable, "-c", terminated_cli(target, nth), *args], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)  # fmt: skip
        said = done.stdout.rpartition("interrupted: ")[2]
        assert done.returncode == 130 and "Traceback" not in done.stdout, (target, done.returncode, done.stdout)
        assert " ".join(said.split()).endswith(" is kept; run the same prune command again to continue"), done.stdout
        assert not (out / "prune.json").exists()
        if target.endswith(":_evaluated"):
            trained = model.stat().st_mtime_ns
    finished = subprocess.run([sys.executable, "-m", "asr_init.cli", *args], env=env, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
    assert finished.returncode == 0, finished.stdout + finished.stderr
    rows = json.loads((out / "prune.json").read_text())["rows"]
    assert [r["sparsity"] for r in rows] == [0.0, 0.5] and model.stat().st_mtime_ns == trained


def test_a_second_prune_run_says_it_is_complete_and_changes_nothing(blob_store, tmp_path):
    """The same prune command again: one line says OUT already holds the finished run (as
    finetune and pretrain say), the table is printed, and no file is written again."""
    from typer.testing import CliRunner

    from asr_init.cli import app

    finetune(blob_store, FinetuneConfig(**TINY), tmp_path / "dense")
    args = ["prune", str(tmp_path / "dense"), "--out", str(tmp_path / "p"), "--sparsity", "0.5", "--max-epochs", "1"]
    assert CliRunner().invoke(app, args).exit_code == 0
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "p").rglob("*")}
    result = CliRunner().invoke(app, args)
    text = " ".join(result.output.split())
    assert result.exit_code == 0 and "/p already holds a finished prune run with these settings" in text
    assert "pruning " in text and "50%" in text
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "p").rglob("*")} == before
    # MODEL's shape and activation are not prune's to record (a relu model's record said sigmoid); a record
    # of an older asr-init that holds them is the same run
    record = tmp_path / "p" / "prune.config.json"
    settings = json.loads(record.read_text())
    assert not {"activation", "hidden", "layers", "splice", "init", "output_init", "targets", "batch_norm"} & set(
        settings["config"]
    )
    record.write_text(json.dumps(settings | {"config": settings["config"] | {"activation": "relu", "hidden": [9]}}))
    assert "already holds a finished prune run" in " ".join(CliRunner().invoke(app, args).output.split())


def test_a_prune_started_from_python_is_the_cli_prune_of_the_same_settings(blob_store, tmp_path):
    """prune.config.json recorded the --sparsity, --init-from and --reuse-layers of the config it was given,
    which prune sets for each run itself: a prune started from Python recorded sparsity 0.0, the CLI's 0.5,
    and the CLI refused the same run (and the report's command continuing it) as "other settings". A config
    made in Python with the default lr and momentum (and sparsity 0) fine-tuned at a random start's 0.0004
    and 0.9, where the CLI's takes a trained model's 0.008 and 0."""
    from typer.testing import CliRunner

    from asr_init.cli import app

    finetune(blob_store, FinetuneConfig(**TINY), tmp_path / "dense")
    config = FinetuneConfig(max_epochs=1, stats_frames=100)  # lr and momentum by default, made with sparsity 0
    prune_module.prune(tmp_path / "dense", tmp_path / "p", config, [0.5])
    recorded = json.loads((tmp_path / "p" / "prune.config.json").read_text())["config"]
    assert not {"sparsity", "init_from", "reuse_layers"} & set(recorded), recorded
    run = json.loads((tmp_path / "p" / "sparsity-0.5" / "finetune.json").read_text())["config"]
    assert (recorded["lr"], recorded["momentum"]) == (run["lr"], run["momentum"]) == (0.008, 0.0)  # a trained model's
    args = ["prune", str(tmp_path / "dense"), "--out", str(tmp_path / "p"), "--sparsity", "0.5", "--max-epochs", "1"]
    result = CliRunner().invoke(app, [*args, "--stats-frames", "100"])
    assert result.exit_code == 0 and "already holds a finished prune run" in " ".join(result.output.split())


def test_a_model_that_is_not_a_finished_finetune_folder_is_named_for_what_it_is(blob_store, tmp_path):
    """prune MODEL where MODEL does not exist, is an unfinished fine-tuning run, a pretrain folder or
    a Kaldi network file: one line says what MODEL is and what prune takes, with or without --store,
    and nothing is written; it used to ask for --store (which did not help) or name --init-from."""
    from asr_init.training.interrupts import Interrupted

    config = FinetuneConfig(**TINY | {"batch_size": 32})
    with pytest.raises(Interrupted):
        finetune(blob_store, config, tmp_path / "cut", interrupt_after=2)
    (tmp_path / "final.nnet").write_bytes(b"")
    (tmp_path / "dbn").mkdir()
    (tmp_path / "dbn" / "dbn.pt").write_bytes(b"")
    (tmp_path / "dense").mkdir()
    (tmp_path / "dense" / "model.pt").write_bytes(b"")
    cases = {
        "nosuch": "MODEL {} does not exist; prune takes a finished 'asr-init finetune' output folder",
        "cut": "MODEL {} holds no model.pt: its fine-tuning run is unfinished; finish it with 'asr-init finetune "
        "--resume' first",
        "dbn": "MODEL {} holds no model.pt: prune takes a finished 'asr-init finetune' output folder",
        "final.nnet": "MODEL {} is a file: prune takes a finished 'asr-init finetune' output folder (a Kaldi network: "
        "fine-tune from it first, finetune --init-from {} --reuse-layers N)",
        "dense/model.pt": "MODEL {} is a file: prune takes a finished 'asr-init finetune' output folder; give its "
        f"folder, {tmp_path / 'dense'}",
    }
    for name, message in cases.items():
        for store in (None, blob_store):
            with pytest.raises(UserError) as err:
                prune_module.prune(tmp_path / name, tmp_path / "pruned", config, [0.5], store=store)
            assert str(err.value) == message.format(tmp_path / name, tmp_path / name)
    assert not (tmp_path / "pruned").exists()


def test_a_model_whose_fine_tuning_is_running_is_named_as_being_written(blob_store, tmp_path):
    """prune of a model folder a fine-tuning run holds (its lock): one line says it is being written by
    another run, as every command says; it said to finish the run with 'finetune --resume'."""
    from asr_init.folders import _locked
    from asr_init.training.interrupts import Interrupted

    with pytest.raises(Interrupted):
        finetune(blob_store, FinetuneConfig(**TINY | {"batch_size": 32}), tmp_path / "cut", interrupt_after=2)
    with _locked(tmp_path / "cut", True, "--out"), pytest.raises(UserError) as err:
        prune_module.prune(tmp_path / "cut", tmp_path / "pruned", FinetuneConfig(**TINY), [0.5])
    assert str(err.value).startswith(f"input {tmp_path / 'cut'} is being written by another asr-init run (pid ")
    assert not (tmp_path / "pruned").exists()


def test_a_store_of_another_pdf_inventory_is_named_not_the_targets(tmp_path):
    """prune --store of an import-kaldi store with another --num-pdfs (the model's targets and batch
    norm as they were): the line names both inventories and the store; it used to say to fine-tune
    with the same --targets and --batch-norm setting, which were the same."""
    import kaldiio
    from conftest import write_kaldi_features

    from asr_init.features.config import KaldiImportConfig
    from asr_init.features.kaldi import import_kaldi

    ref = write_kaldi_features(tmp_path / "data", speakers=5, utts_per_speaker=2)
    kaldiio.save_ark(str(tmp_path / "pdf.ark"), ref["pdfs"])
    for name, pdfs in (("s8", 8), ("s10", 10)):
        import_kaldi(tmp_path / "data", tmp_path / name,
                     KaldiImportConfig(ali=[str(tmp_path / "pdf.ark")], num_pdfs=pdfs, dev_fraction=0.2))  # fmt: skip
    finetune(tmp_path / "s8", FinetuneConfig(**TINY), tmp_path / "dense")
    with pytest.raises(UserError) as err:
        prune_module.prune(tmp_path / "dense", tmp_path / "pruned", FinetuneConfig(**TINY), [0.5], tmp_path / "s10")
    assert str(err.value) == (
        f"--sparsity prunes the whole of {tmp_path / 'dense'}, whose 8 pdfs outputs are not the 10 pdfs of store "
        f"{tmp_path / 's10'}; fine-tune it on a store made with the same inventory"
    )
    assert not (tmp_path / "pruned").exists()


def test_a_store_without_the_models_target_kind_is_named_not_another_targets(kaldi_stores, tmp_path):
    """prune --store of a store holding pdfs alone, of a phones model: the line says the model's
    phones outputs need phones targets; it said to choose --targets pdfs, which --sparsity then refused."""
    both, pdfs = kaldi_stores["pdfs+phones"], kaldi_stores["pdfs"]
    finetune(both, FinetuneConfig(**(TINY | {"targets": "phones"})), tmp_path / "dense")
    with pytest.raises(UserError) as err:
        prune_module.prune(tmp_path / "dense", tmp_path / "pruned", FinetuneConfig(**TINY), [0.5], pdfs)
    assert str(err.value) == (
        f"--sparsity prunes the whole of {tmp_path / 'dense'}, whose outputs are phones; store {pdfs} "
        "has no phones targets (it holds pdfs)"
    )
    assert not (tmp_path / "pruned").exists()


MODELS_OWN = ("--activation", "--hidden", "--layers", "--splice", "--init", "--output-init", "--targets")
MODELS_OWN += ("--batch-norm",)


@pytest.mark.parametrize("option", MODELS_OWN)
def test_options_the_model_decides_are_not_prunes(option, tmp_path):
    """prune --activation relu of a sigmoid model pruned it as sigmoid, recording relu, with no word:
    prune takes no option that MODEL decides (--targets and --batch-norm were offered, and any value
    but the model's own refused)."""
    from typer.testing import CliRunner

    from asr_init.cli import app

    result = CliRunner().invoke(app, ["prune", str(tmp_path / "m"), "--out", str(tmp_path / "o"), option, "1"])
    assert result.exit_code != 0 and f"no such option: {option}" in result.output, result.output


def test_prune_help_describes_prune(blob_store, tmp_path):
    """prune --help spoke of finetune: --max-epochs 'with --resume' (prune has none), --lr and
    --momentum 'with --dbn'; it says what they do in a prune run, and a phones model with batch norm
    is pruned as one with no option naming either."""
    from typer.testing import CliRunner

    from asr_init.cli import app

    said = CliRunner().invoke(app, ["prune", "--help"], env={"COLUMNS": "200"}).output
    text = " ".join(said.replace("│", " ").split())  # the rows of the options box, joined
    assert "--resume" not in text and "--dbn" not in text and "random weights" not in text, text
    assert "another value for a finished prune run is refused, --force starts it over" in text
    assert "SGD momentum of each sparsity's fine-tuning (default 0)" in text and "(default 0.008)" in text
    assert "--store <path> Feature store each pruned model is fine-tuned on (its train and dev splits) and" in text
    finetune(blob_store, FinetuneConfig(**TINY, targets="phones", batch_norm=True), tmp_path / "dense")
    args = ["prune", str(tmp_path / "dense"), "--out", str(tmp_path / "p"), "--sparsity", "0.5", "--max-epochs", "1"]
    assert CliRunner().invoke(app, args).exit_code == 0
    pruned = json.loads((tmp_path / "p" / "sparsity-0.5" / "finetune.json").read_text())["config"]
    assert (pruned["targets"], pruned["batch_norm"]) == ("phones", True)
