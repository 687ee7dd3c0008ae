"""The conclusions must follow the numbers: fabricated logs with known winners."""

import pytest
from fakes import FAST, SLOW, write_fake_layer1

from asr_init.errors import UserError
from asr_init.reporting.conclusions import (
    best_pretraining_init,
    conclude_am,
    conclude_layer1,
    conclude_nopretrain,
)
from asr_init.reporting.logs import load_layer1


def test_conclusion_follows_the_numbers(tmp_path):
    write_fake_layer1(tmp_path / "a", {"optimal": FAST, "hinton": SLOW, "optimal:2": SLOW})
    (s,) = load_layer1(tmp_path / "a").values()
    text = conclude_layer1(s)
    assert "`optimal` converged fastest" in text and "supports the paper's claim" in text
    assert best_pretraining_init(tmp_path / "a") == "optimal"

    write_fake_layer1(tmp_path / "b", {"optimal": SLOW, "hinton": FAST, "optimal:2": SLOW})
    (s,) = load_layer1(tmp_path / "b").values()
    text = conclude_layer1(s)
    assert "`hinton` converged fastest" in text
    assert "`optimal` ranked 2 of the 2 named initialisations" in text and "goes against the claim" in text
    assert best_pretraining_init(tmp_path / "b") == "hinton"


def test_close_results_are_called_within_spread(tmp_path):
    """All within the seed spread: no ranking. One clearly slower: ranked, the close pair named as such."""
    write_fake_layer1(tmp_path / "a", {"optimal": FAST, "xavier-normal": [e - 0.1 for e in FAST]}, noise=5.0)
    (s,) = load_layer1(tmp_path / "a").values()
    text = conclude_layer1(s)
    assert "end within the spread over seeds of each other" in text and "no ranking" in text
    assert "fastest" not in text
    write_fake_layer1(tmp_path / "b", {"optimal": FAST, "xavier-normal": [e - 0.1 for e in FAST], "hinton": SLOW},
                      noise=5.0)  # fmt: skip
    (s,) = load_layer1(tmp_path / "b").values()
    text = conclude_layer1(s)
    assert "`xavier-normal` converged fastest" in text and "within the seed spread" in text
    assert "does not clearly separate them" in text


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
    # Inits within a point of the best tie at the top and are not ranked among themselves.
    accs = (("xavier-normal", 0.7129), ("he-normal", 0.7066), ("optimal", 0.70), ("zeros", 0.037))
    rows = [{"activation": "relu", "init": i, "diverged": False, "test_acc": a} for i, a in accs]
    (text,) = conclude_nopretrain(rows)
    assert "`xavier-normal`, `he-normal` tie at the top (70.7% to 71.3%, within 1 point: not ranked)" in text
    assert "`optimal` reached 70.0%, 1.3% below the best" in text and "reached the best" not in text


def test_best_init_needs_recipe1_logs(tmp_path):
    """No first-layer logs (or none for the visible type asked): an error, not a silent `optimal`."""
    with pytest.raises(UserError, match="has no recipe-1 layer-1 logs for gauss visible units"):
        best_pretraining_init(tmp_path / "paper")
    write_fake_layer1(tmp_path / "paper", {"optimal": FAST})
    with pytest.raises(UserError, match=f"{tmp_path / 'paper'} has no recipe-1 layer-1 logs for bernoulli"):
        best_pretraining_init(tmp_path / "paper", visible="bernoulli")
