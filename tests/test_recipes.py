"""The recipes end to end at QUICK scale (`make recipes QUICK=1`) and their commands at full scale."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import recipe_env as _env

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # the whole chain as `make recipes` runs it (QUICK=1); `make test` runs it too
def test_quick_recipes_end_to_end(tmp_path):
    env = _env(tmp_path)
    run = subprocess.run(["bash", "recipes/run.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Warning" not in run.stdout + run.stderr  # nothing the user should not see (a mean of nothing in the report)
    results = tmp_path / "results"
    report = (results / "REPORT.md").read_text()
    # Every section is there and holds numbers, not placeholders.
    for heading in (
        "## 1. Paper replication",
        "## 2. Initialisation without pre-training",
        "## 3. DNN-HMM acoustic model",
        "## 4. Instead of pre-training",
        "## 5. TIMIT",
    ):
        assert heading in report
    assert re.search(r"D\* \(quadrature\) = \*\*1\.40784\*\*", report)
    assert re.search(r"\| `optimal` \| 2 \| [\d.]+ ± [\d.]+ \|", report)  # recipe 1 table row with numbers
    assert re.search(r"\| sigmoid \| `zeros` \| 2 \| [\d.]+ \| [\d.]+% \| [\d.]+% \|", report)  # recipe 2
    assert re.search(
        r"\| sigmoid-3x64 \| `optimal` \| 1 \| [\d.]+ \| [\d.]+% \| [\d.]+% \|", report
    )  # deep, no pre-training
    assert re.search(r"\| dnn-pretrained-optimal \| \d+ s \| \d+ s \(\d+\) \| [\d.]+% / [\d.]+% \| [\d.]+% \|", report)
    assert "Smoke run: not ranked" in report and "converged fastest" not in report  # a smoke run ranks nothing
    assert re.search(r"\| sigmoid-bn/lsuv \| 1 \| [^|]+ \| [\d.]+% \| [\d.]+% \| [\d.]+% \| \d+%, \d+% \|", report)
    assert re.search(r"\| 90% \| [\d.]+% \| \d+ wide \| [\d.]+% \|", report)  # pruned against dense
    images = re.findall(r"!\[[^\]]*\]\((report/[^)]+\.png)\)", report)
    assert len(images) >= 10
    for image in images:
        assert (results / image).read_bytes()[:4] == b"\x89PNG", image
    quick_rates = 1  # QUICK: one learning rate per visible type
    assert len((results / "paper" / "commands.txt").read_text().splitlines()) == 2 + 17 * 2 * quick_rates * 2 + 10 * 2

    # A second run finds everything complete and only rewrites the report.
    again = subprocess.run(["bash", "recipes/run.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "68 command(s), 0 to run" in again.stdout


_DRY_RUN = """
import sys
sys.path.insert(0, "recipes")
import common, dnn_hmm, init_without_pretraining, paper_replication
lines = []
for mod in (paper_replication, init_without_pretraining, dnn_hmm):
    mod.run_commands = lambda stage, commands, **_: lines.extend(" ".join(a) for a, _ in commands)
dnn_hmm.best_pretraining_init = lambda folder: "optimal"
for mod in (paper_replication, init_without_pretraining, dnn_hmm):
    mod.main()
print("\\n".join(lines))
"""


def _full_scale_commands(tmp_path: Path, device: str | None) -> list[str]:
    env = _env(tmp_path, QUICK="", **({"DEVICE": device} if device else {}))
    run = subprocess.run(
        [sys.executable, "-c", _DRY_RUN], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return [line for line in run.stdout.splitlines() if line.startswith(("pretrain", "finetune", "evaluate"))]


def test_full_scale_is_the_size_users_train(tmp_path):
    """Full scale on 2 CPU cores: recipe 3 is 6 x 1024 with every training default (its
    fine-tuning cut to 4 epochs of 100,000 frames); recipe 1's DBNs and recipe 2's deep
    runs are 1024 units wide, with epochs cut by --max-frames."""
    lines = _full_scale_commands(tmp_path, None)
    am = [line for line in lines if "/am/" in line and not line.startswith("evaluate")]
    assert len(am) == 4  # one DBN (the fastest init is optimal here), fine-tuning from it, from Xavier and optimal
    for line in am:
        assert "--device" not in line and "--lr" not in line and "--momentum" not in line and "--epochs " not in line
        assert ("--max-epochs 4 --max-frames 100000" in line) == line.startswith("finetune")
    scratch = [line for line in am if line.startswith("finetune") and "--dbn" not in line]
    assert len(scratch) == 2 and all("--layers 6 --hidden 1024" in line for line in scratch)
    deep = [line for line in lines if "nopretrain/sigmoid-6x1024/" in line and line.startswith("finetune")]
    assert len(deep) == 6 and all("--max-frames 100000" in line for line in deep)
    assert all("--hidden 1024" in line and "--sat-guard 0" in line for line in lines if "/paper/dbn/" in line)


def test_device_cuda_runs_full_epochs_on_the_gpu(tmp_path):
    lines = _full_scale_commands(tmp_path, "cuda")
    assert lines and all(line.endswith("--device cuda") for line in lines)
    assert not any("--max-frames" in line for line in lines)
