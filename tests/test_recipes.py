"""The recipes end to end at QUICK scale, and the TIMIT recipe on a fake TIMIT tree."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import write_fake_timit

ROOT = Path(__file__).resolve().parent.parent


def _env(tmp_path: Path, **extra) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # asr-init and python of this venv
    env.update(QUICK="1", RESULTS=str(tmp_path / "results"), ASR_INIT_CACHE=str(tmp_path / "cache"), **extra)
    return env


def test_quick_recipes_end_to_end(tmp_path):
    env = _env(tmp_path)
    run = subprocess.run(["bash", "recipes/run.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = tmp_path / "results"
    report = (results / "REPORT.md").read_text()
    # Every section is there and holds numbers, not placeholders.
    for heading in ("## 1. Paper replication", "## 2. Initialisation without pre-training",
                    "## 3. DNN-HMM acoustic model", "## 4. TIMIT"):
        assert heading in report
    assert re.search(r"D\* \(quadrature\) = \*\*1\.40784\*\*", report)
    assert re.search(r"\| `optimal` \| 2 \| [\d.]+ ± [\d.]+ \|", report)  # recipe 1 table row with numbers
    assert re.search(r"converged fastest \(mean reconstruction error over the run [\d.]+", report)
    assert re.search(r"\| sigmoid \| `zeros` \| 2 \| [\d.]+ \| [\d.]+% \| [\d.]+% \|", report)  # recipe 2
    assert re.search(r"\| sigmoid-3x64 \| `optimal` \| 1 \| [\d.]+ \| [\d.]+% \| [\d.]+% \|", report)  # deep, no pre-training
    assert re.search(r"\| dnn-pretrained-optimal \| \d+ s \| \d+ s \(\d+\) \| [\d.]+% / [\d.]+% \| [\d.]+% \|", report)
    assert re.search(r"(lowered|raised|did not change) the test phone error rate", report)
    images = re.findall(r"!\[[^\]]*\]\((report/[^)]+\.png)\)", report)
    assert len(images) >= 10
    for image in images:
        assert (results / image).read_bytes()[:4] == b"\x89PNG", image
    assert len((results / "paper" / "commands.txt").read_text().splitlines()) == 2 + 17 * 2 * 2 * 2 + 10 * 2

    # A second run finds everything complete and only rewrites the report.
    again = subprocess.run(["bash", "recipes/run.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "136 command(s), 0 to run" in again.stdout


def test_timit_recipe_on_fake_tree(tmp_path):
    timit = write_fake_timit(tmp_path / "TIMIT", utts_per_speaker=3)
    env = _env(tmp_path, TIMIT=str(timit))
    run = subprocess.run([sys.executable, "recipes/timit.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = tmp_path / "results" / "timit"
    summary = json.loads((out / "store" / "summary.json").read_text())
    assert summary["layout"] == "timit"
    assert {k: v["speakers"] for k, v in summary["splits"].items()} == {"train": 3, "dev": 1, "test": 1}
    assert summary["utterances"] == 5 * 3  # SA sentences excluded, MXYZ0 in neither dev nor test
    result = json.loads((out / "dnn-pretrained-optimal" / "eval-test" / "results.json").read_text())
    assert 0 <= result["per"] and result["ref_phones"] > 0
    skipped = subprocess.run([sys.executable, "recipes/timit.py"], cwd=ROOT, env=_env(tmp_path / "other"),
                             capture_output=True, text=True, timeout=120)
    assert skipped.returncode == 0 and "skipped, no TIMIT path given" in skipped.stdout
