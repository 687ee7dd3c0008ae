"""Bad options and damaged inputs at the command line: exit status 1, exactly one 'error:'
line naming the option or file, no traceback, and every input left as it was."""

import errno
import hashlib
import json
import os
import re
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import write_kaldi_dir, write_tiny_model
from typer.testing import CliRunner

from asr_init.cli import app
from asr_init.io import load_checkpoint, save_checkpoint

runner = CliRunner()


def _digests(*paths: Path) -> dict[str, str]:
    """sha256 of every file under `paths`, by path."""
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.is_file()]
    files = [f for f in files if not (f.name.startswith(".") and f.name.endswith(".lock"))]  # output locks
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def error_line(args: list[str], *inputs: Path) -> str:
    """Run the CLI; check the exit status, the one error line and the untouched inputs; return the line."""
    before = _digests(*inputs)
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not an uncaught error
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, result.output
    assert _digests(*inputs) == before
    return errors[0]


@pytest.fixture
def model_dir(blob_store, tmp_path):
    return write_tiny_model(blob_store, tmp_path / "model")


# --- synth -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--snr", "nan"], "invalid --snr nan: must be a number of dB between -100 and 100"),
        (["--snr", "1e308"], "invalid --snr 1e+308: must be a number of dB between -100 and 100"),
        (["--hours", "inf"], "invalid --hours inf: must be a number of hours > 0 and at most 1,000"),
        (["--hours", "1e30"], "invalid --hours 1e+30: must be a number of hours > 0 and at most 1,000"),
        (["--jobs", "0"], "invalid --jobs 0: must be at least 1"),
        (["--seed", "-1"], "invalid --seed -1: must be from 0 to 4294967295"),
    ],
)
def test_synth_bad_values(tmp_path, args, message):
    assert message in error_line(["synth", tmp_path / "corpus", *args])
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("where", ["file", "current", "foreign"])
def test_synth_names_its_out_argument_as_out_not_an_option(tmp_path, monkeypatch, where):
    """synth takes OUT as an argument: the line called it '--out', an option synth does not have."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("kept")
    if where == "file":
        line = error_line(["synth", "afile"], tmp_path / "afile")
        assert line == "error: OUT afile is a file, not a folder; choose another OUT (the file is kept)"
    elif where == "current":
        line = error_line(["synth", "."], tmp_path)
        assert line == "error: OUT . is the current folder or holds it; choose another OUT"
    else:  # a folder of something else: output_folder's own messages name OUT too
        (tmp_path / "notes").mkdir()
        (tmp_path / "notes" / "a.txt").write_text("kept")
        line = error_line(["synth", "notes"], tmp_path / "notes" / "a.txt")
        assert line.endswith("exists and is not a synthesised corpus; choose another OUT (it is left as it is)")
        return
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]


# --- evaluate, pretrain, finetune: numbers and devices -----------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--penalties", "0,nan"], "invalid --penalties 0.0,nan: each must be a finite number"),
        (["--lm-weights", "nan"], "invalid --lm-weights nan: each must be a finite number >= 0"),
        (["--lm-weights", "1,inf"], "invalid --lm-weights 1.0,inf: each must be a finite number >= 0"),
        (["--prior-scale", "nan"], "invalid --prior-scale nan: must be a finite number >= 0"),
        (["--prior-scale", "1e308"], "invalid --prior-scale 1e+308: must be a finite number >= 0 and at most 1e6"),
        (["--lm-weights", "1,1e308"], "invalid --lm-weights 1.0,1e+308: each must be a finite number >= 0 and at most"),
        (["--penalties=-1e308"], "invalid --penalties -1e+308: each must be a finite number from -1e6 to 1e6 (larger"),
        (["--device", "tpu"], "invalid --device tpu: must be auto, cpu, cuda or cuda:N"),
        (["--device", "cuda:x"], "invalid --device cuda:x: must be auto, cpu, cuda or cuda:N"),
        (["--device", "cuda:²"], "invalid --device 'cuda:²': must be auto, cpu, cuda or cuda:N"),
    ],
)
def test_evaluate_bad_values(blob_store, model_dir, args, message):
    line = error_line(["evaluate", blob_store, "--model", model_dir, *args], blob_store, model_dir)
    assert message in line
    assert not (model_dir / "eval-test").exists()


def test_a_model_folder_that_does_not_exist_is_named_as_missing(blob_store, tmp_path):
    """evaluate --model, export-kaldi MODEL and prune MODEL of a folder that is not there: it said the folder
    "has no model.pt", asking whether it was a finished run, as if it were there."""
    gone = tmp_path / "nomodel"
    said = f"error: {gone} does not exist; give an 'asr-init finetune' output folder (one holding model.pt)"
    for args in (["evaluate", blob_store, "--model", gone], ["export-kaldi", gone, "--out", tmp_path / "exp"]):
        assert error_line(args, blob_store) == said
    assert not (tmp_path / "exp").exists()
    os.mkfifo(gone)  # a pipe given for the folder: it said the pipe "has no model.pt"
    said = f"error: {gone} is a pipe, a socket or a device, not an 'asr-init finetune' output folder (one holding "
    for args in (["evaluate", blob_store, "--model", gone], ["export-kaldi", gone, "--out", tmp_path / "exp"]):
        assert error_line(args, blob_store).startswith(said)


def test_evaluate_a_split_the_store_lacks_names_the_splits_it_has(blob_store, tmp_path):
    """evaluate of a store of train and dev (an import-kaldi store of Kaldi's train and cv sets) on
    its default split, test: the line names the splits the store has and the option that chooses one
    (it said only that there were no test utterances)."""
    store = tmp_path / "store"
    shutil.copytree(blob_store, store)
    manifest = store / "manifest.jsonl"
    manifest.write_text(manifest.read_text().replace('"split": "test"', '"split": "dev"'))
    model = write_tiny_model(store, tmp_path / "model")
    line = error_line(["evaluate", store, "--model", model], store, model)
    assert line == (f"error: store {store} has no test utterances (its splits: train, dev); evaluate on one of "
                    "them, e.g. --split dev")  # fmt: skip
    assert not (model / "eval-test").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", ["evaluate", "pretrain", "finetune"])
def test_cuda_without_cuda(blob_store, model_dir, tmp_path, command):
    args = ["--model", model_dir] if command == "evaluate" else ["--out", tmp_path / "out"]
    line = error_line([command, blob_store, *args, "--device", "cuda"], blob_store, model_dir)
    assert "invalid --device cuda: CUDA is not available on this machine; use --device cpu" in line


@pytest.mark.parametrize(
    "args, message",
    [
        (["--device", "tpu"], "invalid --device tpu: must be auto, cpu, cuda or cuda:N"),
        (["--lr", "nan"], "invalid --lr nan: must be a finite number > 0 that float32 holds"),
        (["--lr", "-1"], "invalid --lr -1.0: must be a finite number > 0 that float32 holds"),
        (["--l2", "-1"], "invalid --l2 -1.0: must be a finite number >= 0"),
        (["--l2", "nan"], "invalid --l2 nan: must be a finite number >= 0"),
        (["--l2", "1e308"], "invalid --l2 1e+308: must be a finite number >= 0 and at most 1 (a weight decay; recipes"),
        (["--cd-k", "99999999999999999999999"], "invalid --cd-k 99999999999999999999999: at most 100"),
        (["--cd-k", "2147483648"], "invalid --cd-k 2147483648: at most 100"),
        (["--momentum-start", "1"], "invalid --momentum-start 1.0: must be in [0, 1)"),
        (["--momentum-end", "nan"], "invalid --momentum-end nan: must be in [0, 1)"),
        (["--seed", "-1"], "invalid --seed -1: must be from 0 to 4294967295"),
        (["--momentum-frames", "-1"], "invalid --momentum-frames -1: must be >= 0"),
        (["--buffer-frames", "0"], "invalid --buffer-frames 0: must be at least one batch"),
    ],
)
def test_pretrain_bad_values(blob_store, tmp_path, args, message):
    assert message in error_line(["pretrain", blob_store, "--out", tmp_path / "pt", *args], blob_store)
    assert not (tmp_path / "pt").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--device", "tpu"], "invalid --device tpu: must be auto, cpu, cuda or cuda:N"),
        (["--grad-clip", "-1"], "invalid --grad-clip -1.0: must be a finite number > 0"),
        (["--grad-clip", "0"], "invalid --grad-clip 0.0: must be a finite number > 0"),
        (["--l2", "-1"], "invalid --l2 -1.0: must be a finite number >= 0"),
        (["--l2", "1e38"], "invalid --l2 1e+38: must be a finite number >= 0 and at most 1 (a weight decay; recipes"),
        (["--l2", "1e308"], "invalid --l2 1e+308: must be a finite number >= 0 and at most 1 (a weight decay; recipes"),
        (["--prior-floor", "1e308"], "invalid --prior-floor 1e+308: must be a finite number >= 0 and at most 1e12 (a"),
        (["--dbn", ""], "invalid --dbn '': an empty path names no file or folder; give a pretrain output folder"),
        (["--init-from", "", "--reuse-layers", "1"], "invalid --init-from '': an empty path names no file or folder"),
        (["--init-from", "", "--sparsity", "0.5"], "invalid --init-from '': an empty path names no file or folder"),
        (["--max-norm", "nan"], "invalid --max-norm nan: must be a finite number > 0"),
        (["--max-norm", "-2"], "invalid --max-norm -2.0: must be a finite number > 0"),
        (["--dropout", "1"], "invalid --dropout 1.0: must be in [0, 1)"),
        (["--dropout", "-0.1"], "invalid --dropout -0.1: must be in [0, 1)"),
        (["--lr", "inf"], "invalid --lr inf: must be a finite number > 0 that float32 holds"),
        (["--seed", "-1"], "invalid --seed -1: must be from 0 to 4294967295"),
        (["--hidden", "0"], "invalid --hidden 0: every width must be at least 1"),
        (["--min-epochs", "-1"], "invalid --min-epochs -1: must be >= 0"),
        (["--keep-lr-epochs", "-1"], "invalid --keep-lr-epochs -1: must be >= 0"),
        (["--reuse-layers", "-1"], "invalid --reuse-layers -1: must be >= 0"),
        (["--min-epochs", "5", "--max-epochs", "3"], "invalid --min-epochs 5: must be at most --max-epochs 3"),
        (["--buffer-frames", "0"], "invalid --buffer-frames 0: must be at least one batch"),
    ],
)
def test_finetune_bad_values(blob_store, tmp_path, args, message):
    assert message in error_line(["finetune", blob_store, "--out", tmp_path / "ft", *args], blob_store)
    assert not (tmp_path / "ft").exists()


# --- inspect, optimal-d --------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--activation", "bogus"], "invalid --activation bogus: must be one of sigmoid, tanh, relu"),
        (["--hidden", "512,-5"], "invalid --hidden 512,-5: every width must be at least 1"),
        (["--frames", "0"], "invalid --frames 0: must be at least 1"),
        (["--seed", "-1"], "invalid --seed -1: must be from 0 to 4294967295"),
        (["--split", "eval"], "invalid --split eval: must be one of train, dev, test"),
        (
            ["--init", "constant:1e308"],
            "invalid --init constant:1e308: malformed init 'constant:1e308': VALUE must be at most 1000 in magnitude",
        ),
        (
            ["--init", "normal:inf"],
            "invalid --init normal:inf: malformed init 'normal:inf': STD must be a positive finite number",
        ),
    ],
)
def test_inspect_bad_values(blob_store, args, message):
    assert message in error_line(["inspect", blob_store, *args], blob_store)


# --- every command: a bad value is named by its option, as typed ---------------------------


@pytest.mark.parametrize(
    "args, says",
    [
        (["extract", "{corpus}", "--out", "{tmp}/o", "--jobs", "0"], "invalid --jobs 0: must be at least 1"),
        (["extract", "{corpus}", "--out", "{tmp}/o", "--dev-fraction", "nan"], "invalid --dev-fraction nan: must"),
        (["extract", "{corpus}", "--out", "{tmp}/o", "--shard-frames", "-1"], "invalid --shard-frames -1: must be pos"),
        (["extract", "{corpus}", "--out", "{tmp}/o", "--dev-fraction", "0.5", "--test-fraction", "0.5"],
         "invalid --test-fraction 0.5: with --dev-fraction 0.5 it leaves no speakers for training"),
        (["extract", "{corpus}", "--out", "{tmp}/o", "--dev-speakers", "a,b", "--test-speakers", "b"],
         "invalid --dev-speakers a,b: speaker(s) b also in --test-speakers"),
        (["import-kaldi", "{corpus}", "--out", "{tmp}/o", "--ali", "{store}/stats.json", "--num-pdfs", "0"],
         "invalid --num-pdfs 0: must be from 1"),
        (["import-kaldi", "{corpus}", "--out", "{tmp}/o", "--ali", "{store}/stats.json", "--no-cmvn", "--norm-vars"],
         "invalid --norm-vars: needs CMVN"),
        (["synth", "{tmp}/o", "--speakers", "2"], "invalid --speakers 2: need at least 3"),
        (["pretrain", "{store}", "--out", "{tmp}/o", "--cd-k", "0"], "invalid --cd-k 0: must be at least 1"),
        (["pretrain", "{store}", "--out", "{tmp}/o", "--epochs-gauss", "0"], "invalid --epochs-gauss 0: must be at"),
        (["pretrain", "{store}", "--out", "{tmp}/o", "--sat-guard", "inf"], "invalid --sat-guard inf: must be in"),
        (["pretrain", "{store}", "--out", "{tmp}/o", "--visible", "binary"], "invalid --visible binary: must be one"),
        (["finetune", "{store}", "--out", "{tmp}/o", "--prior-floor", "-1"], "invalid --prior-floor -1.0: must be a"),
        (["finetune", "{store}", "--out", "{tmp}/o", "--halving-factor", "0"], "invalid --halving-factor 0.0: must"),
        (["finetune", "{store}", "--out", "{tmp}/o", "--halving-factor", "2"],
         "invalid --halving-factor 2.0: must be in (0, 1]: the learning rate is multiplied by it"),
        (["finetune", "{store}", "--out", "{tmp}/o", "--schedule", "exponential", "--decay", "1.5"],
         "invalid --decay 1.5: must be in (0, 1]"),
        (["finetune", "{store}", "--out", "{tmp}/o", "--batch-size", "0"], "invalid --batch-size 0: must be at least"),
        (["finetune", "{store}", "--out", "{tmp}/o", "--dbn", "x", "--activation", "tanh"],
         "invalid --activation tanh: a DBN's layers are sigmoid"),
        (["evaluate", "{store}", "--model", "{model}", "--out", "{tmp}/o", "--prior-scale", "-1"],
         "invalid --prior-scale -1.0: must be a finite number >= 0"),
        (["evaluate", "{store}", "--model", "{model}", "--out", "{tmp}/o", "--penalties", ","],
         "invalid --penalties: must list at least one value"),
        (["evaluate", "{store}", "--model", "{model}", "--out", "{tmp}/o", "--tune-split", "eval"],
         "invalid --tune-split eval: must be one of train, dev, test"),
        (["prune", "{model}", "--store", "{store}", "--out", "{tmp}/o", "--device", "tpu"], "invalid --device tpu:"),
        (["bench", "extract", "{corpus}", "--jobs", "0"], "invalid --jobs 0: must be at least 1"),
        (["bench", "extract", "{corpus}", "--features", "plp"], "invalid --features plp: must be one of"),
        (["bench", "pretrain", "--device", "tpu"], "invalid --device tpu: must be auto, cpu"),
        (["inspect", "{store}", "--splice", "-1"], "invalid --splice -1: must be at least 0"),
        (["inspect", "{store}", "--layers", "2", "--hidden", "8,8,8"], "invalid --layers 2: --hidden lists 3 widths"),
        (["inspect", "{store}", "--activation", "softsign"], "invalid --activation softsign: must be one of"),
    ],
)  # fmt: skip
def test_a_bad_value_is_named_by_the_option_as_typed(blob_store, model_dir, small_corpus, tmp_path, args, says):
    """The one error line names the option the user typed (`--jobs 0`), not the config field
    (`jobs=0`), whichever command reads it; nothing is written."""
    args = [a.format(store=blob_store, model=model_dir, corpus=small_corpus, tmp=tmp_path) for a in args]
    assert says in error_line(args, blob_store, model_dir, small_corpus)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args, says",
    [
        (["synth", "{tmp}/o", "--jobs", str(10**30)], f"invalid --jobs {10**30}: at most 1,024"),
        (["synth", "{tmp}/o", "--speakers", "20000"], "invalid --speakers 20000: at most 10,000"),
        (["extract", "{corpus}", "--out", "{tmp}/o", "--jobs", "1025"], "invalid --jobs 1025: at most 1,024"),
        (["extract", "--out", "{tmp}/o", "--jobs", "100000"], "invalid --jobs 100000: at most 1,024"),
        (["bench", "extract", "{corpus}", "--jobs", "100000"], "invalid --jobs 100000: at most 1,024"),
        (["prune", "{model}", "--store", "{store}", "--out", "{tmp}/o", "--max-epochs", "0"],
         "invalid --max-epochs 0: must be at least 1"),
        (["prune", "{model}", "--store", "{store}", "--out", "{tmp}/o", "--lr", "nan"], "invalid --lr nan: must be"),
    ],
)  # fmt: skip
def test_a_bad_value_is_refused_before_anything_starts(blob_store, model_dir, small_corpus, tmp_path, monkeypatch,
                                                       args, says):  # fmt: skip
    """A --jobs of 10**30 started worker processes until the machine had no more (synth's pool
    starts them all at once), --speakers 20000 went on to synthesise, and prune evaluated the
    dense model into OUT before its fine-tuning options were checked."""

    def no_fork():
        raise AssertionError("a process was started")

    monkeypatch.setattr(os, "fork", no_fork)
    args = [a.format(store=blob_store, model=model_dir, corpus=small_corpus, tmp=tmp_path) for a in args]
    assert says in error_line(args, blob_store, model_dir, small_corpus)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args, says",
    [
        (["finetune", "--seconds", "nan"], "invalid --seconds nan: must be a finite number of seconds > 0"),
        (["finetune", "--hidden", "1000000000"], "invalid --hidden 1000000000: at most 65,536"),
        (["finetune", "--outputs", "0"], "invalid --outputs 0: must be from 1 to 65,536"),
        (["finetune", "--layers", "0"], "invalid --layers 0: must be at least 1"),
        (["finetune", "--batch-size", "0"], "invalid --batch-size 0: must be at least 1"),
        (["finetune", "--precision", "fp16"], "invalid --precision fp16: must be one of fp32, tf32, bf16"),
        (["pretrain", "--store", "{store}", "--batch-size", "0"], "invalid --batch-size 0: must be at least 1"),
        (["pretrain", "--store", "{store}", "--buffer-frames", "0"], "invalid --buffer-frames 0: must be at least one"),
        (["pretrain", "--store", "{store}", "--seconds", "-1"], "invalid --seconds -1.0: must be a finite number"),
        (["pretrain", "--store", "{store}", "--seconds", "inf"], "invalid --seconds inf: must be a finite number"),
        (["pretrain", "--store", "{tmp}/nowhere"], "feature store {tmp}/nowhere does not exist"),
        (["distributed", "--store", "{store}", "--frames", "0"], "invalid --frames 0: must be at least one batch"),
        (["distributed", "--store", "{store}", "--hidden", "0"], "invalid --hidden 0: every width must be at least 1"),
        (["distributed", "--store", "{store}", "--batch-size", "0"], "invalid --batch-size 0: must be at least 1"),
        (["distributed", "--store", "{store}", "--processes", "1,100000"],
         "invalid --processes 1,100000: at most 1,024"),
        (["distributed", "--store", "{store}", "--processes", "0,2"], "invalid --processes 0,2: every count must be"),
        (["distributed", "--store", "{store}", "--processes", ","], "invalid --processes: must list at least one"),
        (["extract", "{corpus}", "--runs", "0"], "invalid --runs 0: must be at least 1"),
    ],
)  # fmt: skip
def test_a_bad_bench_option_is_refused_before_anything_is_measured_or_started(blob_store, small_corpus, tmp_path,
                                                                              monkeypatch, args, says):  # fmt: skip
    """bench checked its options only where they were used: `--seconds nan` stopped in a
    ValueError after the ceilings were measured, --batch-size 0 in a ZeroDivisionError,
    --buffer-frames 0 in the memory run's CalledProcessError, `distributed --frames 0` in a
    traceback of every worker, --layers 0 printed figures of no network, and --processes had no
    limit. Now each is one line naming the option as typed, before anything is measured or started."""
    import asr_init.bench as bench
    import asr_init.training.distributed as distributed

    def started(*args, **kwargs):
        raise AssertionError("a measurement or a process was started")

    for module, name in ((bench, "matmul_ceiling"), (bench, "peak_rss_of_pretraining"), (distributed, "run_local"),
                         (os, "fork")):  # fmt: skip
        monkeypatch.setattr(module, name, started)
    args = ["bench", *(a.format(store=blob_store, corpus=small_corpus, tmp=tmp_path) for a in args)]
    assert says.format(tmp=tmp_path) in error_line(args, blob_store, small_corpus)
    assert [p for p in tmp_path.iterdir() if p != small_corpus] == []


def test_a_config_built_in_python_names_the_option_too():
    """The docs describe options, so a config made in Python is refused in their words as well."""
    from asr_init.errors import UserError
    from asr_init.features.config import ExtractConfig
    from asr_init.training.config import FinetuneConfig, PretrainConfig

    with pytest.raises(UserError, match=r"^invalid --jobs 0: must be at least 1$"):
        ExtractConfig(jobs=0).validate()
    with pytest.raises(UserError, match=r"^invalid --norm-vars: needs CMVN; drop --cmvn none$"):
        ExtractConfig(cmvn="none", norm_vars=True).validate()
    with pytest.raises(UserError, match=r"^invalid --hidden 512,-5: every width must be at least 1$"):
        FinetuneConfig(hidden=[512, -5]).validate()
    with pytest.raises(UserError, match=r"^invalid --features '': must be one of "):
        ExtractConfig(features="").validate()
    with pytest.raises(UserError, match=r"^invalid --cd-k 1000000: at most 100$"):
        PretrainConfig(cd_k=10**6).validate()
    with pytest.raises(UserError, match=r"^invalid --feature-transform '': an empty path names no file or folder; "):
        FinetuneConfig(dbn="pretrain-folder", feature_transform="").validate()


@pytest.mark.parametrize("option", ["--plot", "--json"])
def test_optimal_d_output_in_missing_folder(tmp_path, option):
    line = error_line(["optimal-d", "--samples", "1000", option, tmp_path / "nodir" / "x.png"])
    assert f"{option} {tmp_path / 'nodir' / 'x.png'}: the folder {tmp_path / 'nodir'} does not exist" in line
    assert not (tmp_path / "nodir").exists()


@pytest.mark.parametrize("name", ["od.txt", "noext"])
def test_optimal_d_plot_without_a_figure_suffix_is_one_error_line(tmp_path, name):
    """--plot od.txt was matplotlib's traceback (and --json not written); --plot noext said
    'wrote noext' of the noext.png matplotlib wrote."""
    line = error_line(["optimal-d", "--samples", "1000", "--plot", tmp_path / name, "--json", tmp_path / "d.json"])
    assert f"--plot {tmp_path / name}: name a .png, .pdf or .svg file (its suffix is the format)" in line
    assert list(tmp_path.iterdir()) == []


def test_optimal_d_help_shows_the_whole_criterion_text():
    result = runner.invoke(app, ["optimal-d", "--help"], env={"COLUMNS": "200"})
    assert "abs: E|f''|, the paper's; square: E[f''^2]." in result.output, result.output


def test_optimal_d_square_criterion_prints_its_formula():
    result = runner.invoke(app, ["optimal-d", "--criterion", "square", "--samples", "1000"])
    assert "J(D) = E[f″(z)²], z ~ N(0, D²)" in result.output, result.output


# --- damaged stores and models -------------------------------------------------------------


@pytest.fixture
def damaged_store(tiny_store, tmp_path):
    """A copy of the tiny store (and a model for it) whose manifest places its last utterance past its shard's end."""
    store = shutil.copytree(tiny_store, tmp_path / "store")
    records = [json.loads(ln) for ln in (store / "manifest.jsonl").read_text().splitlines()]
    records[-1]["offset"] = len(np.load(store / "shards" / "feats-00000.npy", mmap_mode="r"))
    (store / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return store


@pytest.mark.parametrize("command", ["pretrain", "evaluate", "inspect"])
def test_manifest_past_shard_end(damaged_store, tmp_path, command):
    model = write_tiny_model(damaged_store, tmp_path / "model")
    args = {
        "pretrain": ["--out", tmp_path / "pt", "--layers", "1", "--hidden", "8"],
        "evaluate": ["--model", model, "--frames-only", "--split", "train"],
        "inspect": ["--frames", "100"],
    }[command]
    line = error_line([command, damaged_store, *args], damaged_store, model)
    assert f"{damaged_store / 'manifest.jsonl'}: utterance " in line
    assert f"of shard {damaged_store / 'shards' / 'feats-00000.npy'}, which has" in line


def test_store_of_another_format_version(blob_store, tmp_path):
    store = shutil.copytree(blob_store, tmp_path / "store")
    (store / "config.json").write_text(json.dumps({"corpus": "blobs", "format_version": 99}))
    line = error_line(["inspect", store], store)
    assert f"{store / 'config.json'} has format_version 99" in line


def test_evaluate_inconsistent_model(blob_store, model_dir):
    ckpt = load_checkpoint(model_dir / "model.pt")
    ckpt["state_dict"]["hidden.0.weight"] = torch.zeros(8, 12)
    save_checkpoint(ckpt, model_dir / "model.pt")
    line = error_line(["evaluate", blob_store, "--model", model_dir], blob_store, model_dir)
    assert f"{model_dir / 'model.pt'} is inconsistent: weight hidden.0.weight has shape (8, 12)" in line


def test_truncated_model_on_export_is_not_advised_to_be_deleted(model_dir, tmp_path):
    data = (model_dir / "model.pt").read_bytes()
    (model_dir / "model.pt").write_bytes(data[: len(data) // 2])
    line = error_line(["export-kaldi", model_dir, "--out", tmp_path / "exp"], model_dir)
    assert f"checkpoint {model_dir / 'model.pt'} is not a torch.save file" in line and "delete it" not in line
    assert "make it again with 'asr-init finetune'" in line


@pytest.mark.parametrize(
    "option, message",
    [
        ("--init-from", "--init-from {} does not exist; --init-from takes a pretrain or finetune output folder or"),
        ("--dbn", "--dbn {} does not exist; --dbn takes a pretrain output folder or a Kaldi nnet1 .dbn file"),
    ],
)
def test_finetune_from_a_missing_path(blob_store, tmp_path, option, message):
    missing = tmp_path / "nosuch.nnet"
    reuse = ["--reuse-layers", "1"] if option == "--init-from" else []
    line = error_line(["finetune", blob_store, "--out", tmp_path / "ft", option, missing, *reuse], blob_store)
    assert message.format(missing) in line


# --- corpus problems through extract -------------------------------------------------------


@pytest.fixture
def small_corpus(tmp_path):
    return write_kaldi_dir(tmp_path / "c", speakers=4, utts_per_speaker=1)


def test_extract_wav_with_nan_samples(small_corpus, tmp_path):
    wav = small_corpus / "wav" / "spk2-utt0.wav"
    audio, sr = sf.read(wav, dtype="float32")
    audio[50] = np.nan
    sf.write(wav, audio, sr, subtype="FLOAT")
    line = error_line(["extract", small_corpus, "--out", tmp_path / "s", "--jobs", "1"], small_corpus)
    assert f"{wav}: audio of utterance spk2-utt0 has 1 sample(s) that are NaN or infinite" in line
    assert not (tmp_path / "s").exists()


def test_extract_hours_with_a_corpus(small_corpus, tmp_path):
    """--hours sizes the embedded corpus only: given with CORPUS (to cut a corpus short, or
    asking for more than it holds) it was silently ignored and the whole corpus extracted."""
    for hours in ("0.001", "5"):
        line = error_line(["extract", small_corpus, "--out", tmp_path / "s", "--hours", hours], small_corpus)
        assert f"--hours {hours} sizes the embedded corpus" in line and str(small_corpus) in line, line
        assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "duration, said",
    [("nan", "'nan' is not a finite number of seconds"),
     ("0_5", "'0_5' is not a number (seconds)"),  # strtod reads ASCII digits only; float() takes these too
     ("\u0661", "'\u0661' is not a number (seconds)")],
)  # fmt: skip
def test_extract_ctm_duration_not_a_number(small_corpus, tmp_path, duration, said):
    ctm = small_corpus / "phones.ctm"
    lines = ctm.read_text().splitlines()
    lines[1] = " ".join(lines[1].split()[:3] + [duration] + lines[1].split()[4:])
    ctm.write_text("\n".join(lines) + "\n")
    line = error_line(["extract", small_corpus, "--out", tmp_path / "s", "--jobs", "1"], small_corpus)
    assert f"{ctm}:2: duration {said}" in line, line


# --- outputs: an existing file, a read-only folder, a full disk ----------------------------


def test_extract_out_is_an_existing_file(small_corpus, tmp_path):
    out = tmp_path / "notes.txt"
    out.write_text("keep me\n")
    for force in ([], ["--force"]):
        line = error_line(["extract", small_corpus, "--out", out, "--jobs", "1", *force], small_corpus, out)
        assert f"--out {out} is a file, not a folder" in line


def test_evaluate_out_is_an_existing_file(blob_store, model_dir, tmp_path):
    out = tmp_path / "results"
    out.write_text("keep me\n")
    line = error_line(["evaluate", blob_store, "--model", model_dir, "--out", out], blob_store, model_dir, out)
    assert f"--out {out} is a file, not a folder" in line


@pytest.fixture
def read_only(monkeypatch, tmp_path):
    """A folder in which creating a file fails with EACCES, as a read-only folder does for
    a user other than root (the tests may run as root, whom permissions do not stop)."""
    import tempfile

    folder = tmp_path / "ro"
    folder.mkdir()
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == folder:
            raise PermissionError(errno.EACCES, "Permission denied", str(Path(dir) / "x"))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    return folder


def test_extract_into_read_only_folder(small_corpus, read_only):
    line = error_line(["extract", small_corpus, "--out", read_only / "store", "--jobs", "1"], small_corpus)
    assert f"cannot write to folder {read_only} (Permission denied); choose another --out" in line
    assert not list(read_only.iterdir())


def test_evaluate_into_read_only_folder(blob_store, model_dir, read_only):
    line = error_line(["evaluate", blob_store, "--model", model_dir, "--out", read_only], blob_store, model_dir)
    assert f"cannot write to folder {read_only} (Permission denied)" in line


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="permissions do not stop root")
def test_extract_into_a_folder_without_write_permission(small_corpus, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        line = error_line(["extract", small_corpus, "--out", folder / "store", "--jobs", "1"], small_corpus)
    finally:
        folder.chmod(0o755)
    assert f"cannot write to folder {folder} (Permission denied)" in line
    assert not list(folder.iterdir())


def test_disk_full_gives_one_line_naming_the_file(monkeypatch, tmp_path):
    import asr_init.io

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(asr_init.io.os, "fsync", full)
    out = tmp_path / "d.json"
    line = error_line(["optimal-d", "--samples", "1000", "--json", out])
    assert f"error: {out}: No space left on device; free some space and run the command again" == line
    assert not list(tmp_path.iterdir())  # neither the file nor its temporary


def test_a_plot_that_cannot_be_written_is_named(monkeypatch, blob_store, model_dir, tmp_path):
    """The image writer's OSError of a full file system (ulimit -f, EFBIG) names no file: the line
    named none either."""
    from matplotlib.figure import Figure

    def too_large(self, *args, **kwargs):
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(Figure, "savefig", too_large)
    out = tmp_path / "eval"
    line = error_line(["evaluate", blob_store, "--model", model_dir, "--out", out, "--frames-only"], blob_store)
    assert re.match(rf"error: {re.escape(str(out))}\.tmp-\d+/confusion\.png: File too large; ", line), line
    assert not out.exists() and not list(tmp_path.glob("eval.tmp-*"))  # built beside OUT, and removed


@pytest.mark.parametrize("where", ["path", "value"])
def test_a_line_break_in_a_path_or_a_value_keeps_the_error_on_one_line(blob_store, model_dir, tmp_path, where):
    if where == "path":
        line = error_line(["pretrain", tmp_path / "new\nline", "--out", tmp_path / "o"])
        assert line == f"error: feature store {tmp_path}/new\\nline does not exist (run 'asr-init extract' first)"
    else:
        line = error_line(["evaluate", blob_store, "--model", model_dir, "--split", "te\nst"], blob_store)
        assert line == "error: invalid --split 'te\\nst': must be one of train, dev, test"


def test_other_os_errors_keep_their_traceback(monkeypatch, tmp_path):
    import asr_init.io

    def broken(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(asr_init.io.os, "fsync", broken)
    result = runner.invoke(app, ["optimal-d", "--samples", "1000", "--json", str(tmp_path / "d.json")])
    assert isinstance(result.exception, OSError) and result.exception.errno == errno.EIO


@pytest.mark.parametrize(
    "args, message",
    [
        (["optimal-d", "--samples", "1e10"], "error: invalid value for '--samples': Input should be a valid integer"),
        (["pretrain", "store", "--layers", "six"], "error: invalid value for '--layers'"),
        (["pretrain", "store", "--bogus"], "error: no such option: --bogus"),
        (["pretrain"], "error: missing argument 'STORE' ('asr-init pretrain --help' for options)"),
        (["pretrian"], "error: no such command 'pretrian'"),
    ],
)
def test_a_mistyped_command_line_is_one_error_line(args, message):
    """What the command line itself rejects gets the same one line as any other bad input
    (exit status 2, a usage error's), not a usage box."""
    result = runner.invoke(app, args)
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith(message), result.output


@pytest.mark.parametrize(
    "args, name",
    [
        (["import-kaldi", "data", "--out", "s", "--ali", "a.ark", "--dev", ""], "--dev"),
        (["import-kaldi", "data", "--out", "s", "--ali", "a.ark", "--ali", ""], "--ali"),
        (["import-kaldi", "data", "--out", "", "--ali", "a.ark"], "--out"),
        (["pretrain", "", "--out", "x"], "STORE"),
        (["extract", "", "--out", "x"], "CORPUS"),
        (["extract", "c", "--out", "x", "--phones", ""], "--phones"),
        (["evaluate", "store", "--model", ""], "--model"),
        (["report", ""], "RESULTS_DIR"),
        (["bench", "pretrain", "--store", "s", "--store", ""], "--store"),
    ],
)
def test_an_empty_path_is_refused_naming_its_option(args, name, tmp_path, monkeypatch):
    """An empty path was read as '.', the current folder: '--dev ""' said 'Kaldi data dir . has no
    feats.scp', 'pretrain ""' that '.' is not a feature store. Every path argument and option
    refuses it in one line naming it, before any work."""
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith(f"error: invalid value for '{name}") and "an empty path" in lines[0], result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value, said", [
    ("   ", "'   ' is only white space; name a file or folder"),  # a folder named by spaces, made where one stood
    ("b" * 300, f"{'b' * 300}: File name too long"),  # checked while options are read: it was a traceback
])  # fmt: skip
def test_a_blank_or_too_long_path_is_one_line_naming_its_option(value, said, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    option = "--out" if value.isspace() else "--phones"
    result = runner.invoke(app, ["extract", "c", "--out", "x", option, value])
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and said in lines[0], result.output
    assert lines[0].startswith(f"error: invalid value for '{option}"), result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["fifo", "link", "dangling"])
def test_a_json_or_plot_output_that_is_not_a_regular_file_is_left_alone(tmp_path, kind):
    """optimal-d --json writes by a rename, which replaced a named pipe, a link (/dev/stdin as root) or a
    dangling link with a regular file, and said nothing."""
    target = tmp_path / "out.json"
    if kind == "fifo":
        os.mkfifo(target)
    else:
        (tmp_path / "real.json").write_text("kept")
        target.symlink_to(tmp_path / ("real.json" if kind == "link" else "gone.json"))
    line = error_line(["optimal-d", "--samples", "1000", "--json", target])
    assert line == f"error: --json {target} is not a regular file (a link, a pipe or a device); give a file name"
    assert target.is_symlink() if kind != "fifo" else stat.S_ISFIFO(os.lstat(target).st_mode)


def test_synth_names_its_out_on_a_symlink_loop(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    line = error_line(["synth", tmp_path / "a"])
    assert line == f"error: OUT {tmp_path / 'a'} lies on a symlink loop; remove the loop or give another path"


@pytest.mark.parametrize("value, message", [("missing", "missing does not exist"), ("d", "d is a folder, not a file")])
def test_a_file_option_that_is_missing_or_a_folder_is_refused_naming_it(value, message, tmp_path, monkeypatch):
    """--phones (an existing file) keeps its checks now that path options are read by asr-init's own parser."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    result = runner.invoke(app, ["extract", "c", "--out", "x", "--phones", value])
    assert result.exit_code == 2 and f"error: invalid value for '--phones': {message}" in result.output


def test_a_file_given_for_a_store_or_a_data_dir_is_called_a_file(blob_store, tmp_path):
    """pretrain of a store's file, import-kaldi of a file: the line said the folder 'does not exist'."""
    given = blob_store / "summary.json"
    line = error_line(["pretrain", given, "--out", tmp_path / "o"], blob_store)
    assert line == f"error: feature store {given} is a file, not a folder; give the folder 'asr-init extract' or " \
        "'import-kaldi' wrote"  # fmt: skip
    (tmp_path / "ali.ark").write_text("u1 0 0\n")
    line = error_line(["import-kaldi", given, "--out", tmp_path / "o", "--ali", tmp_path / "ali.ark"], blob_store)
    assert line == f"error: Kaldi data dir {given} is a file, not a folder; give the folder holding feats.scp"
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("option", ["--dbn", "--init-from", "--sparsity"])
def test_a_checkpoint_file_given_for_its_run_folder_names_the_folder(blob_store, model_dir, tmp_path, option):
    """finetune --dbn DBN/dbn.pt or --init-from DNN/model.pt (the checkpoint, not its folder): the
    line said the Kaldi network was malformed, showing the zip's first bytes."""
    if option == "--dbn":  # any torch.save file is a zip: what is checked, before it is read
        (tmp_path / "dbn").mkdir()
        torch.save({"layers": []}, tmp_path / "dbn" / "dbn.pt")
        given, extra = tmp_path / "dbn" / "dbn.pt", []
    else:  # pruned (--sparsity), the file was called "a network file" to fine-tune from first
        given, extra = model_dir / "model.pt", ["--reuse-layers", "1"] if option == "--init-from" else []
        option, extra = "--init-from", extra or ["--sparsity", "0.5"]
    line = error_line(["finetune", blob_store, "--out", tmp_path / "o", option, given, *extra], blob_store, given)
    assert line == f"error: {option} {given} is an asr-init checkpoint file, not a Kaldi nnet1 file; give the run " \
        f"folder holding it ({option} {given.parent})"  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_a_kaldi_network_file_given_for_a_model_folder_is_called_a_file(blob_store, model_dir, tmp_path):
    """evaluate --model and export-kaldi of a Kaldi network file (final.nnet, as
    export-kaldi writes it): the line says the path is a file, not a finetune output folder; it
    used to say that final.nnet 'has no model.pt', as of a folder."""
    assert runner.invoke(app, ["export-kaldi", str(model_dir), "--out", str(tmp_path / "exp")]).exit_code == 0
    nnet = tmp_path / "exp" / "final.nnet"
    expected = f"{nnet} is a file, not an 'asr-init finetune' output folder (one holding model.pt)"
    assert expected in error_line(["evaluate", blob_store, "--model", nnet], blob_store, nnet)
    assert expected in error_line(["export-kaldi", nnet, "--out", tmp_path / "exp2"], nnet)
    assert "has no model.pt" not in error_line(["evaluate", blob_store, "--model", nnet], blob_store, nnet)


def test_init_from_alone_is_refused_as_it_would_take_no_layer(blob_store, model_dir, tmp_path):
    """finetune --init-from MODEL without --reuse-layers or --sparsity took MODEL's input pipeline and
    none of its layers, and called the network's start 'init optimal'."""
    line = error_line(
        ["finetune", blob_store, "--out", tmp_path / "ft", "--init-from", model_dir], blob_store, model_dir
    )
    assert "init_from" in line and "--reuse-layers K" in line and "alone it would take none" in line, line
    assert not (tmp_path / "ft").exists()


@pytest.mark.parametrize("program", ["asr-init", "python -m asr_init.cli"])
def test_the_options_hint_names_the_asr_init_command_however_it_was_started(program):
    """`python -m asr_init.cli prune x --out y --targets pdfs` pointed to 'asr-init -m asr_init.cli
    prune --help', a command that does not exist: the words of the program's name after the first
    were taken for command names."""
    result = runner.invoke(app, ["prune", "x", "--out", "y", "--targets", "pdfs"], prog_name=program)
    assert result.exit_code == 2
    assert result.output.strip() == "error: no such option: --targets ('asr-init prune --help' for options)"
    result = runner.invoke(app, ["bench", "extract", "--bogus"], prog_name=program)
    assert result.output.strip().endswith("('asr-init bench extract --help' for options)"), result.output


@pytest.mark.parametrize(
    "args, name",
    [
        (["export-kaldi", "model", "--out", "exported"], "asr-init export-kaldi"),
        (["evaluate", "store", "--model", "model"], "asr-init evaluate"),
        (["inits"], "asr-init inits"),
        (["bench", "extract", "no-corpus"], "asr-init bench extract"),
    ],
)
def test_under_torchrun_a_command_the_processes_would_not_share_is_refused(args, name, tmp_path, monkeypatch):
    """Only pretrain, finetune and prune divide their work among torchrun's processes; any other
    command ran whole in each of them (and two evaluations met at one output folder's lock)."""
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args, env={"WORLD_SIZE": "2"})
    assert result.exit_code == 1
    expected = f"error: {name} does not share its work among processes (WORLD_SIZE is 2): run it without torchrun"
    assert result.output.strip() == expected
    assert not list(tmp_path.iterdir())
