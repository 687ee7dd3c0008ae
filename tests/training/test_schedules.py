"""Learning-rate schedules: newbob as Kaldi scripts it, constant, exponential, checkpoint state."""

import pytest

from asr_init.training.schedules import Constant, Exponential, Newbob, make_schedule


def test_newbob_halves_and_stops_as_scripted():
    nb = Newbob(lr=0.008)
    nb.start(2.0)
    # 25% better (keep lr); worse: rejected, improvement 0 < 1% turns halving on (lr / 2);
    # 3.3% better: halve again; 0.007% better < 0.1% with halving on: stop (no more halving)
    script = [1.5, 1.6, 1.45, 1.4499]
    out = [nb.step(loss) for loss in script]
    assert [a for a, _ in out] == [True, False, True, True]
    assert [s for _, s in out] == [False, False, False, True]
    assert [h["next_lr"] for h in nb.history] == pytest.approx([0.008, 0.004, 0.002, 0.002])
    assert nb.best == 1.4499
    # Once halving is on, a rejected epoch (improvement 0) ends training.
    nb2 = Newbob(lr=1.0)
    nb2.start(1.0)
    assert nb2.step(0.995) == (True, False)  # 0.5% < 1%: halving on
    assert nb2.step(1.2) == (False, True)


def test_newbob_min_epochs_and_keep_lr_epochs_as_kaldis_train_scheduler():
    """min_iters: accepted whatever the loss, halving starts as usual, and where it would stop
    the epoch goes on without halving; keep_lr_iters: accepted at the initial rate."""
    nb = Newbob(lr=1.0, min_epochs=3)
    nb.start(1.0)
    assert nb.step(1.0) == (True, False) and nb.lr == 0.5  # no gain: halving starts
    assert nb.step(1.1) == (True, False) and nb.lr == 0.5  # worse but accepted; would stop: goes on, no halving
    assert nb.step(1.1) == (True, False) and nb.lr == 0.5
    assert nb.step(1.1) == (False, True)  # past min_iters: rejected, and stops
    keep = Newbob(lr=1.0, keep_lr_epochs=2)
    keep.start(1.0)
    assert [keep.step(loss) for loss in (1.2, 0.9, 0.9)] == [(True, False), (True, False), (False, False)]
    assert [h["next_lr"] for h in keep.history] == [1.0, 1.0, 0.5] and keep.best == 0.9


def test_constant_and_exponential_keep_the_best_and_never_stop():
    const = Constant(lr=0.1)
    const.start(2.0)
    assert [const.step(loss) for loss in (1.5, 1.7, 1.4)] == [(True, False), (False, False), (True, False)]
    assert const.lr == 0.1 and const.best == 1.4
    exp = Exponential(lr=0.1, decay=0.3)
    exp.start(2.0)
    rates = []
    for loss in (1.9, 2.5, 1.8, 1.7):
        rates.append(exp.lr)
        exp.step(loss)
    assert rates == pytest.approx([0.1, 0.03, 0.009, 0.0027], rel=1e-12)  # lr_e = lr_1 * decay^(e-1)
    assert not Constant.rolls_back and not Exponential.rolls_back and Newbob.rolls_back


def test_schedule_state_round_trips_through_a_checkpoint_dict():
    settings = {
        "lr": 0.008,
        "decay": 0.5,
        "start_halving": 0.01,
        "end_halving": 0.001,
        "halving_factor": 0.5,
        "min_epochs": 1,
        "keep_lr_epochs": 0,
    }
    a = make_schedule("newbob", settings)
    a.start(2.0)
    for loss in (1.5, 1.6, 1.45):
        a.step(loss)
    b = make_schedule("newbob", settings)
    b.load_state_dict(a.state_dict())
    assert b.step(1.4499) == a.step(1.4499) and b.lr == a.lr and b.history == a.history
    with pytest.raises(ValueError, match="valid: newbob, constant, exponential"):
        make_schedule("cosine", settings)
