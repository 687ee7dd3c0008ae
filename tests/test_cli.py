"""The command line's front page: --version and --help."""

import os
import re

import torch
from typer.testing import CliRunner

from asr_init import __version__
from asr_init.cli import app
from asr_init.environment import NUMERIC_VARIABLES, environment

runner = CliRunner()

PIPELINE_ORDER = [
    "synth",
    "extract",
    "import-kaldi",
    "optimal-d",
    "inits",
    "inspect",
    "pretrain",
    "finetune",
    "evaluate",
    "prune",
    "export-kaldi",
    "report",
    "bench",
]


def test_version_says_what_a_bug_report_needs():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"asr-init {__version__}"
    build = "CPU" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
    assert lines[1] == f"torch {torch.__version__} ({build} build)"
    devices = lines[2].removeprefix("devices: ").split(", ")
    assert devices[0] == "cpu"
    assert len([d for d in devices if d.startswith("cuda:")]) == (
        torch.cuda.device_count() if torch.cuda.is_available() else 0
    )
    assert re.fullmatch(rf"threads: {torch.get_num_threads()} \(torch intra-op\) on \d+ CPU cores", lines[3])
    assert lines[4].startswith("python ") and "librosa " in lines[4] and "libsndfile " in lines[4]
    assert not [line for line in lines if line.startswith("set: ")] or any(map(os.environ.get, NUMERIC_VARIABLES))


def test_version_names_a_variable_that_overrides_the_precision(monkeypatch):
    """TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 makes `--precision fp32` TF32 on CUDA: the record says so."""
    for name in NUMERIC_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert "environment_variables" not in environment()
    monkeypatch.setenv("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "1")
    assert environment()["environment_variables"] == {"TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "1"}
    assert environment(torch_details=False)["environment_variables"] == {"TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "1"}
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.splitlines()[-1] == "set: TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1"


def test_help_lists_one_line_per_command_in_pipeline_order_and_the_chain():
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = next(i for i, ln in enumerate(lines) if "Commands" in ln)
    panel = []
    for ln in lines[start + 1 :]:
        if ln.startswith("╰"):
            break
        panel.append(ln)
    names = [ln.strip("│ ").split()[0] for ln in panel]
    assert names == PIPELINE_ORDER, result.output  # one line each: no wrapped continuation lines
    chain = [ln.strip() for ln in lines if ln.strip().startswith("asr-init ")]
    assert [c.split()[1] for c in chain] == ["extract", "pretrain", "finetune", "evaluate", "report"]
    assert "--dbn results/dbn" in chain[2] and "--model results/dnn" in chain[3]


def test_messages_to_a_pipe_or_a_log_file_are_one_line_each(blob_store, tmp_path):
    """With stderr not a terminal (a log file, `2>&1 | tee`), the settings line and each epoch's
    line are printed whole, not broken at 80 columns, so that grep finds them."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    args = ["finetune", blob_store, "--out", tmp_path / "ft", "--layers", "1", "--hidden", "8", "--max-epochs", "1"]
    done = subprocess.run([sys.executable, "-m", "asr_init.cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    settings = next(ln for ln in lines if ln.startswith("finetune: 1 x 8 sigmoid"))
    assert len(settings) > 80 and settings.endswith("fp32 on cpu"), done.stderr
    epoch = next(ln for ln in lines if ln.startswith("epoch 1: "))
    assert epoch.endswith("frames/s") and "| dev loss" in epoch, done.stderr
