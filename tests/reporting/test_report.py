"""The report: conclusions must follow the numbers (fabricated logs), tables and plots."""

import json
from pathlib import Path

import numpy as np
import pytest

from asr_init.io import write_csv
from asr_init.reporting.conclusions import (
    best_pretraining_init,
    conclude_am,
    conclude_layer1,
    conclude_nopretrain,
)
from asr_init.reporting.logs import load_layer1
from asr_init.reporting.report import write_report
from asr_init.training.pretrain import CSV_COLUMNS


def _fake_run(folder: Path, errors: list[float], input_var: float = 400.0, saturated: float = 0.05) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"layer": 1, "epoch": 1, "frames": 0, "kind": "epoch_start", "input_var": input_var}]
    rows += [
        {"layer": 1, "epoch": 1, "frames": 1000 * (i + 1), "kind": "interval", "recon_error": e}
        for i, e in enumerate(errors)
    ]
    rows.append({"layer": 1, "epoch": 1, "frames": 1000 * len(errors), "kind": "epoch_end", "saturated": saturated})
    write_csv(folder / "recon.csv", rows, CSV_COLUMNS)


def _fake_layer1(paper: Path, curves: dict[str, list[float]], lr: str = "0.01", noise: float = 0.5) -> None:
    for init, base in curves.items():
        for seed in (0, 1, 2):
            errs = [e + noise * (seed - 1) for e in base]
            _fake_run(paper / "layer1" / "gauss" / f"lr{lr}" / init.replace(":", "_") / f"seed{seed}", errs)


FAST = [300, 200, 150, 130, 120, 115]
SLOW = [400, 330, 260, 200, 160, 140]


def test_conclusion_follows_the_numbers(tmp_path):
    _fake_layer1(tmp_path / "a", {"optimal": FAST, "hinton": SLOW, "optimal:2": SLOW})
    (s,) = load_layer1(tmp_path / "a").values()
    text = conclude_layer1("gauss", 0.01, s)
    assert "`optimal` converged fastest" in text and "supports the paper's claim" in text
    assert best_pretraining_init(tmp_path / "a") == "optimal"

    _fake_layer1(tmp_path / "b", {"optimal": SLOW, "hinton": FAST, "optimal:2": SLOW})
    (s,) = load_layer1(tmp_path / "b").values()
    text = conclude_layer1("gauss", 0.01, s)
    assert "`hinton` converged fastest" in text
    assert "`optimal` ranked 2 of 2" in text and "goes against the claim" in text
    assert best_pretraining_init(tmp_path / "b") == "hinton"


def test_close_results_are_called_within_spread(tmp_path):
    _fake_layer1(tmp_path, {"optimal": FAST, "xavier-normal": [e - 0.1 for e in FAST]}, noise=5.0)
    (s,) = load_layer1(tmp_path).values()
    text = conclude_layer1("gauss", 0.01, s)
    assert "`xavier-normal` converged fastest" in text and "within the seed spread" in text
    assert "does not clearly separate them" in text


def test_summary_numbers(tmp_path):
    _fake_layer1(tmp_path, {"optimal": FAST}, noise=0.0)
    (summaries,) = load_layer1(tmp_path).values()
    s = summaries[0]
    assert s.seeds == 3 and s.final == pytest.approx(115)
    assert s.auc == pytest.approx(np.trapezoid(FAST, np.arange(1, 7) * 1000) / 5000)
    assert s.frames_to(150) == 3000 and s.frames_to(100) is None


def test_am_and_nopretrain_conclusions():
    base = {"pretrained": False, "model": "dnn-not-pretrained", "test_per": 0.30, "test_states": 0.50}
    better = {
        "pretrained": True,
        "model": "dnn-pretrained-optimal",
        "dev_per": 0.2,
        "test_per": 0.25,
        "test_states": 0.55,
    }
    worse = better | {"test_per": 0.35}
    assert "lowered the test phone error rate from 30.00%" in conclude_am([base, better])
    assert "raised the test phone error rate" in conclude_am([base, worse])
    # The pre-trained model is chosen on dev, not on test.
    other = better | {"model": "dnn-pretrained-hinton", "dev_per": 0.1, "test_per": 0.40}
    assert "(dnn-pretrained-hinton," in conclude_am([base, better, other]) and "to 40.00%" in conclude_am(
        [base, better, other]
    )
    # So is the model without pre-training it is compared with.
    base2 = base | {"model": "dnn-not-pretrained-optimal", "dev_per": 0.5, "test_per": 0.10}
    base = base | {"dev_per": 0.4}
    assert "from 30.00% (not pre-trained: dnn-not-pretrained, likewise chosen on dev)" in conclude_am(
        [base2, base, better]
    )
    rows = [
        {"activation": "tanh", "init": "zeros", "diverged": False, "test_acc": 0.05},
        {"activation": "tanh", "init": "optimal", "diverged": False, "test_acc": 0.40},
        {"activation": "tanh", "init": "large", "diverged": True, "test_acc": float("nan")},
    ]
    (text,) = conclude_nopretrain(rows)
    assert "`optimal` reached the best test frame accuracy (40.0%)" in text and "`zeros` (5.0%)" in text
    assert "Diverged (loss NaN/Inf): `large`" in text


def test_write_report_from_fabricated_results(tmp_path):
    paper = tmp_path / "paper"
    _fake_layer1(paper, {"optimal": FAST, "hinton": SLOW})
    (paper / "commands.txt").write_text("asr-init pretrain x --init optimal\n")
    for init, errs in (("optimal", FAST), ("zeros", SLOW)):
        for seed in (0, 1):
            _fake_run(
                paper / "dbn" / init / f"seed{seed}", errs, saturated=0.02 + 0.5 * (init == "zeros") + 0.01 * seed
            )
    _fake_run(tmp_path / "am" / "dbn-optimal", FAST, saturated=0.031)
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
