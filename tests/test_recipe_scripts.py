"""The recipes that run on their own: TIMIT on a fake TIMIT tree, FSDD on generated
recordings in its layout, and the layer-2 collapse measurement (a file apart from
test_recipes.py, so that pytest-xdist runs them beside the QUICK end-to-end run)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import recipe_env as _env
from conftest import write_fake_timit

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_timit_recipe_on_fake_tree(tmp_path):
    timit = write_fake_timit(tmp_path / "TIMIT", utts_per_speaker=3)
    env = _env(tmp_path, TIMIT=str(timit))
    run = subprocess.run(
        [sys.executable, "recipes/timit.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = tmp_path / "results" / "timit"
    summary = json.loads((out / "store" / "summary.json").read_text())
    assert summary["layout"] == "timit"
    assert {k: v["speakers"] for k, v in summary["splits"].items()} == {"train": 3, "dev": 1, "test": 1}
    assert summary["utterances"] == 5 * 3  # SA sentences excluded, MXYZ0 in neither dev nor test
    result = json.loads((out / "dnn-pretrained-optimal" / "eval-test" / "results.json").read_text())
    assert result["per"] >= 0 and result["ref_phones"] > 0
    skipped = subprocess.run(
        [sys.executable, "recipes/timit.py"],
        cwd=ROOT,
        env=_env(tmp_path / "other"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert skipped.returncode == 0 and "skipped, no TIMIT path given" in skipped.stdout


def test_layer2_collapse_script(tiny_store, tmp_path):
    """The measurement behind the saturation guard runs on any pretrain folder and shows
    the collapse at lr 0.4 and the guard preventing it; a missing folder is one error line."""
    from asr_init.training.config import PretrainConfig
    from asr_init.training.pretrain import pretrain

    pretrain(tiny_store, PretrainConfig(layers=1, epochs_gauss=1, max_frames=512, stats_frames=200), tmp_path / "pt")
    script = ROOT / "recipes" / "layer2_collapse.py"
    run = subprocess.run(
        [sys.executable, str(script), str(tiny_store), str(tmp_path / "pt"), "--steps", "10"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    rows = {line[:28].strip(): line[28:].split() for line in run.stdout.splitlines()[2:]}
    assert rows["fast step, lr 0.4"][-1].startswith("10:100%"), rows
    assert rows["textbook CD-1, lr 0.4"][-1].startswith("10:100%"), rows
    guarded = int(rows["lr 0.4 + saturation guard"][-1].split(":")[1].split("%")[0])
    assert guarded <= 10
    missing = subprocess.run(
        [sys.executable, str(script), str(tiny_store), str(tmp_path)], capture_output=True, text=True
    )
    assert missing.returncode == 1 and missing.stderr.strip().startswith("error:") and "rbm1.pt" in missing.stderr


@pytest.mark.slow
def test_fsdd_recipe_on_generated_recordings(tmp_path):
    """Recipe 6 on FSDD's layout (4 speakers x 10 digits x 2, 8 kHz): held-out theo and lucas,
    every stage, and the report section beside recipe 1's (absent here: dashes)."""
    from conftest import write_fake_fsdd

    fsdd = write_fake_fsdd(tmp_path / "fsdd", per_digit=2)
    env = _env(tmp_path, FSDD=str(fsdd))
    run = subprocess.run(["bash", "recipes/fsdd.sh", str(fsdd)], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = tmp_path / "results" / "fsdd"
    summary = json.loads((out / "store" / "summary.json").read_text())
    assert summary["layout"] == "fsdd" and summary["sample_rate"] == 8000 and summary["resampled_utterances"] == 0
    assert {k: v["speakers"] for k, v in summary["splits"].items()} == {"train": 2, "dev": 1, "test": 1}
    result = json.loads((out / "am" / "dnn-pretrained" / "seed0" / "eval-test" / "results.json").read_text())
    assert result["targets"] == "phones" and 0 <= result["frame_acc"]["phones"] <= 1
    report = (tmp_path / "results" / "REPORT.md").read_text()
    assert "## 6. Real recorded speech (FSDD)" in report and "8,000 Hz" in report
    assert re.search(r"\| `optimal` \| — \| [\d.]+ \|", report)  # FSDD's figure beside no eSpeak NG run, unranked
    assert not re.search(r"\| [\d.]+ \(\d\) \|", report)  # a smoke run ranks nothing
    assert re.search(r"\| pretrained \| [\d.]+% ± [\d.]+% \| 2 \|", report)
    assert "Smoke run: not ranked" in report
    skipped = subprocess.run([sys.executable, "recipes/fsdd.py"], cwd=ROOT, env=_env(tmp_path / "none"),
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert skipped.returncode == 0 and "recipe 6 (FSDD): skipped" in skipped.stdout


_SLOW_RECIPE = """
import sys
import time
sys.path.insert(0, {recipes!r})
from common import run_commands, run_recipe

def main():
    slow = ["--layers", "1", "--hidden", "8", "--epochs-gauss", "100000", "--max-frames", "500"]
    run_commands("slow", [(["pretrain", {store!r}, "--out", f"{out}/p{{k}}", *slow], None) for k in range(3)], jobs=2)

if __name__ == "__main__":
    run_recipe(main)
"""


def _group_alive(pgid: int) -> list[int]:
    """Processes of process group `pgid` that have not ended (zombies excluded)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            alive.append(int(stat.parent.name))
    return alive


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("signum, to_group", [(signal.SIGINT, True), (signal.SIGTERM, False)])
def test_interrupted_recipe_ends_its_workers_with_one_line(tiny_store, tmp_path, signum, to_group):
    """A recipe running pre-training commands in its 2 workers, one more queued, given Ctrl-C (SIGINT to its
    group) or SIGTERM (to it alone): exit 130, one 'interrupted' line, no traceback, no process left. The
    pool's worker that took Ctrl-C died holding the pool's lock, and the recipe waited for it for ever."""
    script = tmp_path / "slow_recipe.py"
    script.write_text(_SLOW_RECIPE.format(recipes=str(ROOT / "recipes"), store=str(tiny_store), out=str(tmp_path)))
    proc = subprocess.Popen([sys.executable, str(script)], env=_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("p[0-9]*"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None and len(list(tmp_path.glob("p[0-9]*"))) >= 2, "the commands did not start"
        time.sleep(1.0)  # into their training loops, which catch SIGINT and SIGTERM
        (os.killpg if to_group else os.kill)(proc.pid, signum)
        output = proc.communicate(timeout=30)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    deadline = time.monotonic() + 10
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _group_alive(proc.pid)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 130, output[-3000:]
    assert "Traceback" not in output and [line for line in output.splitlines() if "interrupted" in line] == [
        "interrupted"
    ], output[-3000:]
    assert not left, f"processes left: {left}"
