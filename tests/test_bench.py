"""The benchmark's accounting: shares of the ceiling paired window by window, and the rows each bench prints."""

import pytest

from asr_init.bench import paired_throughput


def test_paired_throughput_pairs_each_window_with_its_own_ceiling(monkeypatch):
    """On a clock that only the step moves (each step: 0.125 s, 100 frames) and ceilings that
    drift window by window, every ratio is the window's rate over the ceiling measured just
    before it, and the figure is their median, not a rate over a median ceiling."""
    import itertools

    import asr_init.bench as bench

    clock = [0.0]

    def step() -> int:
        clock[0] += 0.125
        return 100

    ceilings = itertools.cycle([1.6e9, 1.0e9, 0.8e9])
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(bench, "matmul_ceiling", lambda *args, **kwargs: next(ceilings))
    result = paired_throughput(step, flops_per_frame=1e6, seconds=3.0, window=0.5)
    assert result["pairs"] == 6
    assert result["frames_per_s"] == 800.0 and result["gflops"] == 0.8  # 400 frames in each 0.5 s window
    assert result["ceiling_flops"] == 1.0e9
    assert (result["of_ceiling_q1"], result["of_ceiling"], result["of_ceiling_q3"]) == (0.5, 0.8, 1.0)


def test_bench_finetune_prints_every_ceiling_and_one_row_per_batch_size(monkeypatch):
    import asr_init.bench as bench
    from asr_init.bench import bench_finetune

    real = bench.matmul_ceiling  # measured, on products small and short enough for a test
    small = lambda device="cpu", dtype=None, **_: real(device, (128,), 1, 0.02, dtype)  # noqa: E731
    monkeypatch.setattr(bench, "matmul_ceiling", small)
    out = bench_finetune(layers=1, hidden=32, inputs=20, outputs=5, batches=(8, 32), seconds=0.4, precision="bf16")
    assert set(out["ceilings"]) == {"fp32", "tf32", "bf16"} and all(v > 0 for v in out["ceilings"].values())
    assert [r["batch"] for r in out["rows"]] == [8, 32]
    assert all(r["frames_per_s"] > 0 and 0 < r["of_ceiling"] < 1 for r in out["rows"])


def test_bench_pretrain_rows_per_batch_and_the_store_fed_share(tiny_store, monkeypatch):
    """Random-data and store-fed CD-1 rows for each batch size; the store-fed row carries its
    share of the random-data rate. bf16 rounds the products of the same step."""
    import asr_init.bench as bench

    monkeypatch.setattr(bench, "peak_rss_of_pretraining", lambda store, buffer_frames: 123.0)
    monkeypatch.setattr(bench, "matmul_ceiling", lambda *args, **kwargs: 1e11)  # the rows, not the machine
    out = bench.bench_pretrain([tiny_store], seconds=0.4, batches=(64,), precision="bf16")
    rows = out["throughput"]
    assert [r["batch"] for r in rows] == [64, 64, 64] and out["precision"] == "bf16"
    assert all(r["frames_per_s"] > 0 and r["of_ceiling"] == pytest.approx(r["gflops"] * 1e9 / 1e11) for r in rows)
    assert rows[2]["of_random"] == rows[2]["frames_per_s"] / rows[0]["frames_per_s"]
    assert out["memory"][0]["peak_rss_mib"] == 123.0


class _Replayer:
    """Stands for a captured graph: replay() runs the captured body."""

    replays = 0

    def __init__(self, body):
        self.body = body

    def replay(self):
        _Replayer.replays += 1
        self.body()


def test_bench_steps_on_a_gpu_are_the_trainers_graphed_steps(monkeypatch):
    """The benches' GPU steps, run here on the CPU with a stand-in for the captured graph and
    the GPU's strategy: replays of the trainers' own steps, figures read every 5 steps."""
    import asr_init.bench as bench
    from asr_init.training.loop import Strategy

    strategy = Strategy(read_every=5, capture=lambda body, state, what: _Replayer(body))
    monkeypatch.setattr(bench, "matmul_ceiling", lambda *args, **kwargs: 1e11)  # the steps, not the machine
    monkeypatch.setattr(Strategy, "for_device", classmethod(lambda cls, device, graphs=True: strategy))
    _Replayer.replays = 0
    out = bench.bench_finetune(layers=1, hidden=16, inputs=20, outputs=5, batches=(8,), seconds=0.4)
    assert _Replayer.replays and out["rows"][0]["frames_per_s"] > 0 and out["rows"][0]["batch"] == 8
    _Replayer.replays = 0
    figures = bench.bench_cd1(20, 16, batch=8, seconds=0.4)
    assert _Replayer.replays and figures["frames_per_s"] > 0


def test_gpu_check_script_names_existing_tests_and_options():
    """scripts/gpu-check.sh runs on a GPU machine only; here: it parses, its test files
    exist, and every bench option it passes is one the CLI has."""
    import re
    import subprocess
    from pathlib import Path

    from typer.testing import CliRunner

    from asr_init.cli import app

    root = Path(__file__).resolve().parent.parent
    script = (root / "scripts" / "gpu-check.sh").read_text()
    subprocess.run(["bash", "-n", str(root / "scripts" / "gpu-check.sh")], check=True)
    test_files = re.findall(r"tests/\S+\.py", script)
    benches = re.findall(r"asr_init\.cli bench (\w+) (.*?)\\?\n", script)
    assert len(test_files) == 3 and [c for c, _ in benches] == ["pretrain", "finetune"]
    for test_file in test_files:
        assert (root / test_file).exists(), test_file
    for command, options in benches:
        help_text = CliRunner().invoke(app, ["bench", command, "--help"], terminal_width=200).output
        for option in re.findall(r"--[a-z-]+", options):
            assert option in help_text, (command, option)


def test_bench_precision_is_checked_before_anything_runs():
    from typer.testing import CliRunner

    from asr_init.cli import app

    for args in (["pretrain", "--store", "nowhere"], ["finetune"]):
        result = CliRunner().invoke(app, ["bench", *args, "--precision", "fp16"])
        lines = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert result.exit_code == 1 and lines == ["error: invalid --precision fp16: must be one of fp32, tf32, bf16"]


def test_bench_extract_times_whole_extractions_and_reports_the_median(kaldi_dir):
    """x real time of the median run over the audio the store holds, and both peaks."""
    from typer.testing import CliRunner

    from asr_init.cli import app

    result = CliRunner().invoke(app, ["bench", "extract", str(kaldi_dir), "--runs", "3", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    runs = [float(word[:-1].replace(",", "")) for word in text.split() if word.endswith("x") and word[:-1][0].isdigit()]
    assert len(runs) == 4 and runs[-1] == sorted(runs[:3])[1]  # three runs, then the median's figure
    assert "extract (kaldi-mfcc): 0.0" in text and "h of audio in" in text and "(median of 3)" in text
    assert "MiB (main) (no workers)" in text and "largest worker" not in text  # one job runs in this process
    bad = CliRunner().invoke(app, ["bench", "extract", str(kaldi_dir), "--features", "plp"])
    assert bad.exit_code == 1 and "invalid --features plp:" in bad.output
    bad = CliRunner().invoke(app, ["bench", "extract", str(kaldi_dir), "--hours", "0.01"])  # it was ignored
    assert bad.exit_code == 1 and "--hours 0.01 sizes the embedded corpus, not CORPUS" in " ".join(bad.output.split())


def test_bench_extract_stopped_by_sigterm_says_so_and_leaves_no_scratch_folder(kaldi_dir, tmp_path):
    """SIGTERM after the scratch folder is made, before extract's own clean-up is armed: one
    'interrupted' line, status 130, and the folder gone (it stayed, and the process ended with 143)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from conftest import terminated_cli

    scratch = tmp_path / "scratch"  # TMPDIR: where the bench makes its scratch folders
    scratch.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "TMPDIR": str(scratch)}
    code = terminated_cli("asr_init.features.extract:extract")
    args = ["bench", "extract", str(kaldi_dir), "--runs", "1", "--jobs", "1"]
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 130 and done.stdout.strip().splitlines()[-1] == "interrupted", done.stdout
    assert list(scratch.iterdir()) == []
