"""The pretrain stage: outputs, logs, splicing, resume, guards and errors."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from asr_init.cli import app
from asr_init.errors import UserError
from asr_init.features.pipeline import FeaturePipeline, FrameBuffer, splice_frames
from asr_init.features.store import FeatureStore
from asr_init.io import load_checkpoint, read_csv
from asr_init.training.config import PretrainConfig
from asr_init.training.interrupts import Interrupted
from asr_init.training.loop import Strategy
from asr_init.training.pretrain import pretrain

runner = CliRunner()
SMALL = dict(layers=2, hidden=32, epochs=1, epochs_gauss=2, batch_size=64, report_every=500, stats_frames=300)


def _text(result):
    return " ".join(result.output.split())


def test_pretrain_writes_everything(tiny_store, tmp_path):
    out = tmp_path / "pt"
    summary = pretrain(tiny_store, PretrainConfig(init="optimal", **SMALL), out)
    for name in ("rbm1.pt", "rbm2.pt", "dbn.pt", "pretrain.json", "recon.csv", "recon.png", "pretrain.config.json"):
        assert (out / name).exists(), name
    assert not list(out.glob("*.partial.pt"))
    info = json.loads((out / "pretrain.json").read_text())
    assert info == json.loads(json.dumps(summary))
    l1, l2 = info["layers"]
    assert l1["visible"] == "gauss" and l2["visible"] == "bernoulli"
    assert l1["n_visible"] == 39 * 11 and l1["n_hidden"] == 32
    assert l1["D"] == pytest.approx(1.40784, rel=0.05)  # optimal on N(0,1) inputs
    assert l1["sigma"] == pytest.approx(1.40784 / np.sqrt(429), rel=0.05)
    assert info["pipeline"]["splice"] == 5 and len(info["pipeline"]["mean"]) == 39
    assert "torch" in info["versions"]
    rows = read_csv(out / "recon.csv")
    interval = [r for r in rows if r["kind"] == "interval" and r["layer"] == "1"]
    assert len(interval) >= 4
    first, last = float(interval[0]["recon_error"]), float(interval[-1]["recon_error"])
    assert last < first  # reconstruction error falls
    ends = [r for r in rows if r["kind"] == "epoch_end"]
    assert len(ends) == 3  # 2 Gaussian epochs + 1
    for r in ends:
        for key in (
            "net_std",
            "nonlinear",
            "saturated",
            "train_recon",
            "dev_recon",
            "train_free_energy",
            "dev_free_energy",
        ):
            assert np.isfinite(float(r[key])), key
    dbn = load_checkpoint(out / "dbn.pt")
    assert [tuple(layer["W"].shape) for layer in dbn["layers"]] == [(32, 429), (32, 32)]
    assert dbn["phones"] == FeatureStore(tiny_store).phones
    assert (out / "recon.png").read_bytes()[:4] == b"\x89PNG"


def test_rerun_skips_and_other_settings_refused(tiny_store, tmp_path):
    out = tmp_path / "pt"
    pretrain(tiny_store, PretrainConfig(**SMALL), out)
    stamp = (out / "dbn.pt").stat().st_mtime_ns
    pretrain(tiny_store, PretrainConfig(**SMALL), out)
    assert (out / "dbn.pt").stat().st_mtime_ns == stamp
    with pytest.raises(UserError, match=r"other settings \(splice: 5 then, 3 now\)"):
        pretrain(tiny_store, PretrainConfig(**(SMALL | {"splice": 3})), out)


@pytest.mark.parametrize("where", ["layer 1, epoch 1", "layer 1, epoch 2", "layer 2"])
def test_resume_equals_uninterrupted(tiny_store, tmp_path, where):
    cfg = PretrainConfig(init="xavier-normal", **SMALL)
    per_epoch = -(-FeatureStore(tiny_store).num_frames("train") // cfg.batch_size)  # one buffer holds the split
    interrupt_after = {"layer 1, epoch 1": 5, "layer 1, epoch 2": per_epoch + 3, "layer 2": 2 * per_epoch + 3}[where]
    pretrain(tiny_store, cfg, tmp_path / "full")
    with pytest.raises(Interrupted, match=r"in layer \d, epoch \d after [\d,]+ frames; .* continue with --resume"):
        pretrain(tiny_store, cfg, tmp_path / "cut", interrupt_after=interrupt_after)
    partial = list((tmp_path / "cut").glob("rbm*.partial.pt"))
    assert len(partial) == 1
    assert partial[0].name == ("rbm2.partial.pt" if where == "layer 2" else "rbm1.partial.pt")
    with pytest.raises(UserError, match="re-run with --resume"):
        pretrain(tiny_store, cfg, tmp_path / "cut")
    pretrain(tiny_store, cfg, tmp_path / "cut", resume=True)
    a, b = load_checkpoint(tmp_path / "full" / "dbn.pt"), load_checkpoint(tmp_path / "cut" / "dbn.pt")
    for la, lb in zip(a["layers"], b["layers"]):
        assert torch.equal(la["W"], lb["W"]) and torch.equal(la["b"], lb["b"])
    ra = [
        (r["layer"], r["frames"], r["kind"], r["recon_error"], r["dev_recon"])
        for r in read_csv(tmp_path / "full" / "recon.csv")
    ]
    rb = [
        (r["layer"], r["frames"], r["kind"], r["recon_error"], r["dev_recon"])
        for r in read_csv(tmp_path / "cut" / "recon.csv")
    ]
    assert ra == rb


def test_same_seed_same_numbers_and_seed_matters(tiny_store, tmp_path):
    cfg = PretrainConfig(**(SMALL | {"layers": 1}))
    pretrain(tiny_store, cfg, tmp_path / "a")
    pretrain(tiny_store, cfg, tmp_path / "b")
    pretrain(tiny_store, PretrainConfig(**(SMALL | {"layers": 1, "seed": 1})), tmp_path / "c")
    w = [load_checkpoint(tmp_path / d / "dbn.pt")["layers"][0]["W"] for d in "abc"]
    assert torch.equal(w[0], w[1]) and not torch.equal(w[0], w[2])


def test_nan_guard_stops_with_clear_message(tiny_store, tmp_path):
    cfg = PretrainConfig(**(SMALL | {"lr": 1e25, "sat_guard": 0.0}))  # the guard would halve 1e25 for a long time
    with pytest.raises(UserError) as err:
        pretrain(tiny_store, cfg, tmp_path / "pt")
    msg = str(err.value)
    assert "layer 2:" in msg and "frames" in msg and "lower --lr" in msg and "rbm1.pt is kept" in msg
    assert (tmp_path / "pt" / "rbm1.pt").exists() and not (tmp_path / "pt" / "dbn.pt").exists()


def test_gaussian_guard_scales_weights_and_lowers_lr(tiny_store, tmp_path):
    cfg = PretrainConfig(**(SMALL | {"layers": 1, "lr_gauss": 50.0}))
    pretrain(tiny_store, cfg, tmp_path / "pt")
    guards = [r for r in read_csv(tmp_path / "pt" / "recon.csv") if r["kind"] == "guard"]
    assert guards and all(float(g["guard_scale"]) < 0.5 + 1e-9 for g in guards)
    lrs = [float(g["lr"]) for g in guards]
    assert lrs[0] == pytest.approx(45.0) and all(b < a for a, b in zip(lrs, lrs[1:]))


def test_frame_buffer_splices_within_utterances(tiny_store):
    store = FeatureStore(tiny_store)
    pipe = FeaturePipeline.from_store(store, splice=3)
    recs = store.split("train")
    buf = FrameBuffer(store, recs, pipe, batch_size=100, buffer_frames=700)
    got = torch.cat([b.inputs for b in buf.batches(seed=0, epoch=1)])
    want = torch.cat([pipe.utterance(store.features(r)) for r in recs])
    assert got.shape == want.shape == (sum(r.frames for r in recs), 39 * 7)
    key = lambda t: t[np.lexsort(t.numpy().T[::-1])]  # noqa: E731 - sort rows to compare as sets
    torch.testing.assert_close(key(got), key(want))
    # The first frame of an utterance repeats itself as left context.
    first = pipe.utterance(store.features(recs[0]))[0].reshape(7, 39)
    assert torch.equal(first[0], first[3]) and torch.equal(first[2], first[3])


def test_splice_frames_clips_to_bounds():
    x = torch.arange(10.0)[:, None]
    lo = torch.tensor([0, 0, 5, 5])
    hi = torch.tensor([4, 4, 9, 9])
    out = splice_frames(x, torch.tensor([0, 4, 5, 9]), lo, hi, 2)
    assert out.tolist() == [[0, 0, 0, 1, 2], [2, 3, 4, 4, 4], [5, 5, 5, 6, 7], [7, 8, 9, 9, 9]]


def test_cli_errors(tiny_store, tmp_path):
    res = runner.invoke(app, ["pretrain", str(tiny_store), "--out", str(tmp_path / "a"), "--init", "nope"])
    assert res.exit_code == 1 and "error: invalid --init nope: unknown init method 'nope'; valid: zeros" in _text(res)
    empty = tmp_path / "empty"
    shutil.copytree(tiny_store, empty)
    (empty / "manifest.jsonl").write_text("")
    res = runner.invoke(app, ["pretrain", str(empty), "--out", str(tmp_path / "b")])
    assert res.exit_code == 1 and "is empty" in _text(res) and str(empty) in _text(res)
    res = runner.invoke(app, ["pretrain", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c")])
    assert res.exit_code == 1 and "does not exist" in _text(res)
    res = runner.invoke(app, ["pretrain", str(tiny_store), "--out", str(tmp_path / "d"), "--splice", "-1"])
    assert res.exit_code == 1 and "invalid --splice -1" in _text(res)


def test_cli_pretrain_bernoulli_first_layer(tiny_store, tmp_path):
    res = runner.invoke(
        app,
        [
            "pretrain",
            str(tiny_store),
            "--out",
            str(tmp_path / "pt"),
            "--layers",
            "1",
            "--hidden",
            "16",
            "--epochs",
            "1",
            "--visible",
            "bernoulli",
            "--init",
            "optimal-data",
            "--batch-size",
            "64",
        ],
    )
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "pt" / "pretrain.json").read_text())
    assert info["pipeline"]["squash"] is True and info["layers"][0]["visible"] == "bernoulli"
    assert info["layers"][0]["D"] == pytest.approx(1.40784, rel=0.05)


def _epoch_end_saturation(out) -> dict[tuple[int, int], float]:
    return {
        (int(r["layer"]), int(r["epoch"])): float(r["saturated"])
        for r in read_csv(out / "recon.csv")
        if r["kind"] == "epoch_end"
    }


@pytest.fixture(scope="module")
def default_shaped_runs(tiny_store, tmp_path_factory):
    """6 x 1024 with every default but the epoch length (8 mini-batches): as shipped, at
    Kaldi's lr 0.4 with the saturation guard, and at lr 0.4 without it."""
    root = tmp_path_factory.mktemp("default-shaped")
    short = dict(max_frames=2048, stats_frames=500)
    runs = {
        "default": PretrainConfig(**short),
        "kaldi-lr": PretrainConfig(lr=0.4, **short),
        "kaldi-lr-unguarded": PretrainConfig(lr=0.4, sat_guard=0.0, **short),
    }
    for name, cfg in runs.items():
        pretrain(tiny_store, cfg, root / name)
    return root


def test_default_dbn_keeps_every_layer_non_linear(default_shaped_runs):
    sat = _epoch_end_saturation(default_shaped_runs / "default")
    assert sorted(sat) == [(1, e) for e in range(1, 5)] + [(layer, e) for layer in range(2, 7) for e in (1, 2)]
    assert max(sat.values()) <= 0.1, sat
    assert not [r for r in read_csv(default_shaped_runs / "default" / "recon.csv") if r["kind"] == "guard"]


def test_saturation_guard_rescues_kaldi_learning_rate(default_shaped_runs):
    unguarded = _epoch_end_saturation(default_shaped_runs / "kaldi-lr-unguarded")
    assert unguarded[(2, 1)] > 0.5  # the collapse this guard exists for
    rows = read_csv(default_shaped_runs / "kaldi-lr" / "recon.csv")
    guards = [r for r in rows if r["kind"] == "guard"]
    assert guards and {r["guard"] for r in guards} == {"saturation"}
    assert {int(r["layer"]) for r in guards} >= {2}
    for layer in {int(r["layer"]) for r in guards}:
        lrs = [float(r["lr"]) for r in guards if int(r["layer"]) == layer]
        assert lrs[0] == pytest.approx(0.2) and all(b == pytest.approx(a / 2) for a, b in zip(lrs, lrs[1:]))
    assert max(_epoch_end_saturation(default_shaped_runs / "kaldi-lr").values()) <= 0.15
    intervals = [r for r in rows if r["kind"] == "interval" and r["layer"] == "2"]
    assert all(0 <= float(r["saturated"]) <= 1 for r in intervals)


def test_sat_guard_option_validated(tiny_store, tmp_path):
    result = runner.invoke(app, ["pretrain", str(tiny_store), "--out", str(tmp_path / "x"), "--sat-guard", "1.5"])
    assert result.exit_code == 1 and "invalid --sat-guard 1.5:" in _text(result) and "[0, 1)" in _text(result)


# --- steps read every N steps (as on a GPU), run here on the CPU ----------------------------

GUARDED = SMALL | {"hidden": 64, "lr_gauss": 50.0, "lr": 8.0, "sat_guard": 0.1, "report_every": 700}
EVERY_7 = Strategy(read_every=7)


def test_reading_every_n_steps_gives_the_run_read_every_step(tiny_store, tmp_path):
    """The same log (rows, frames, guard firings with their rates and scales, errors) and the
    same DBN to float32 rounding, with both guards firing."""
    cfg = PretrainConfig(**GUARDED)
    pretrain(tiny_store, cfg, tmp_path / "host")
    pretrain(tiny_store, cfg, tmp_path / "device", strategy=EVERY_7)
    host, dev = read_csv(tmp_path / "host" / "recon.csv"), read_csv(tmp_path / "device" / "recon.csv")
    assert {(r["layer"], r["guard"]) for r in host if r["kind"] == "guard"} == {("1", "recon_std"), ("2", "saturation")}
    key = ("layer", "epoch", "frames", "kind", "guard")
    assert [tuple(r[c] for c in key) for r in dev] == [tuple(r[c] for c in key) for r in host]
    for a, b in zip(host, dev, strict=True):
        for col in ("recon_error", "lr", "guard_scale", "saturated", "train_recon", "net_std"):
            if a[col] != "":
                assert float(b[col]) == pytest.approx(float(a[col]), rel=1e-3, abs=1e-6), (col, a, b)
    wa, wb = (load_checkpoint(tmp_path / d / "dbn.pt")["layers"] for d in ("host", "device"))
    for la, lb in zip(wa, wb, strict=True):
        torch.testing.assert_close(lb["W"], la["W"], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("first, second", [(EVERY_7, EVERY_7), (EVERY_7, Strategy()), (Strategy(), EVERY_7)])
def test_resume_on_either_read_interval_equals_uninterrupted(tiny_store, tmp_path, first, second):
    cfg = PretrainConfig(**GUARDED)
    pretrain(tiny_store, cfg, tmp_path / "full")
    with pytest.raises(Interrupted):
        pretrain(tiny_store, cfg, tmp_path / "cut", interrupt_after=7, strategy=first)
    pretrain(tiny_store, cfg, tmp_path / "cut", resume=True, strategy=second)
    a, b = load_checkpoint(tmp_path / "full" / "dbn.pt"), load_checkpoint(tmp_path / "cut" / "dbn.pt")
    for la, lb in zip(a["layers"], b["layers"], strict=True):
        torch.testing.assert_close(lb["W"], la["W"], rtol=1e-4, atol=1e-5)
    cols = ("layer", "frames", "kind", "guard")
    full, cut = (read_csv(tmp_path / d / "recon.csv") for d in ("full", "cut"))
    assert [tuple(r[c] for c in cols) for r in full if r["kind"] != "interval"] == [
        tuple(r[c] for c in cols) for r in cut if r["kind"] != "interval"
    ]


@pytest.mark.parametrize("strategy", [Strategy(), EVERY_7])
def test_a_diverged_layer_stops_at_the_next_read_without_a_checkpoint(tiny_store, tmp_path, strategy):
    """A NaN is found at the next read, named with the frames where it happened; no
    checkpoint of the diverged layer is written."""
    cfg = PretrainConfig(**(SMALL | {"lr": 1e25, "sat_guard": 0.0}))
    with pytest.raises(UserError) as err:
        pretrain(tiny_store, cfg, tmp_path / "pt", strategy=strategy)
    msg = str(err.value)
    assert "layer 2:" in msg and "frames" in msg and "lower --lr" in msg and "rbm1.pt is kept" in msg
    assert (tmp_path / "pt" / "rbm1.pt").exists() and not (tmp_path / "pt" / "rbm2.partial.pt").exists()


def test_resume_with_more_epochs_continues_a_finished_last_layer(tiny_store, tmp_path):
    """--resume --epochs-gauss 3 on a finished one-layer run trained for 2: the same DBN as a
    run made for 3 epochs; without more epochs, --resume has nothing to do."""
    small = dict(layers=1, hidden=16, batch_size=64, report_every=500, stats_frames=200)
    pretrain(tiny_store, PretrainConfig(**small, epochs_gauss=2), tmp_path / "a")
    with pytest.raises(UserError, match="last layer trained fewer epochs than asked: add --resume to continue it"):
        pretrain(tiny_store, PretrainConfig(**small, epochs_gauss=3), tmp_path / "a")
    pretrain(tiny_store, PretrainConfig(**small, epochs_gauss=3), tmp_path / "a", resume=True)
    pretrain(tiny_store, PretrainConfig(**small, epochs_gauss=3), tmp_path / "b")
    a, b = (load_checkpoint(tmp_path / d / "dbn.pt")["layers"][0]["W"] for d in ("a", "b"))
    assert torch.equal(a, b)
    assert [r["epoch"] for r in read_csv(tmp_path / "a" / "recon.csv") if r["kind"] == "epoch_end"] == ["1", "2", "3"]
    before = (tmp_path / "a" / "dbn.pt").read_bytes()
    pretrain(tiny_store, PretrainConfig(**small, epochs_gauss=3), tmp_path / "a", resume=True)
    assert (tmp_path / "a" / "dbn.pt").read_bytes() == before
    (tmp_path / "a" / "rbm1.pt").write_bytes(b"damaged")  # a plain re-run of the finished run reads its summary
    assert pretrain(tiny_store, PretrainConfig(**small, epochs_gauss=3), tmp_path / "a")["layers"]
    with pytest.raises(UserError, match="rbm1.pt .*delete it to start that stage again"):
        pretrain(tiny_store, PretrainConfig(**small, epochs_gauss=3), tmp_path / "a", resume=True)


def test_a_finished_run_continued_with_more_epochs_says_and_records_what_each_layer_had(tiny_store, tmp_path):
    """pretrain --epochs 1, then --epochs 2 --resume: the header said "layer 1 Gaussian, 4 epochs" of
    a layer reloaded with its 2, pretrain.config.json kept "epochs": 1, and a plain --epochs 2 then
    said the folder held a finished run "with these settings", which --epochs 2 does not make."""
    out = tmp_path / "pt"
    args = ["pretrain", str(tiny_store), "--out", str(out), "--layers", "2", "--hidden", "16", "--batch-size", "64",
            "--report-every", "500", "--stats-frames", "200"]  # fmt: skip
    assert runner.invoke(app, [*args, "--epochs", "1"]).exit_code == 0
    result = runner.invoke(app, [*args, "--epochs", "2", "--resume"])
    assert result.exit_code == 0, result.output
    assert ("layer 1 Gaussian, finished earlier with 2 epochs, reloaded as it is; layer 2 Bernoulli, finished "
            "earlier with 1 epoch, continues to 2 epochs at lr 0.04; CD-1") in _text(result)  # fmt: skip
    summary = json.loads((out / "pretrain.json").read_text())
    assert [layer["epochs"] for layer in summary["layers"]] == [2, 2]
    assert json.loads((out / "pretrain.config.json").read_text())["config"]["epochs"] == 2
    record = (out / "pretrain.config.json").read_text()  # a continuation interrupted: the record stays the run's
    with pytest.raises(Interrupted):
        config = PretrainConfig(layers=2, hidden=16, batch_size=64, report_every=500, stats_frames=200, epochs=3)
        pretrain(tiny_store, config, out, resume=True, interrupt_after=2)
    assert (out / "pretrain.config.json").read_text() == record
    dbn = (out / "dbn.pt").read_bytes()
    result = runner.invoke(app, [*args, "--epochs", "2"])
    assert result.exit_code == 1, result.output
    assert ("holds a finished pre-training run whose layers trained other epochs than these settings give (layer 1: "
            "2 epochs, where --epochs-gauss (2 x --epochs) gives 4): it is not the DBN this command makes; give "
            "--epochs-gauss 2 to take it as it is") in _text(result)  # fmt: skip
    assert (out / "dbn.pt").read_bytes() == dbn
    result = runner.invoke(app, [*args, "--epochs", "2", "--epochs-gauss", "2"])
    assert result.exit_code == 0 and "already holds a finished pre-training run" in _text(result), result.output


def test_fewer_epochs_than_a_layer_has_trained_are_refused(tiny_store, tmp_path):
    """--resume with --epochs-gauss below the epoch a layer's checkpoint reached ran no batch and
    finished the layer part-way (or failed with a KeyError), for good; a finished run re-run with
    fewer epochs said it held a run "with these settings". Both are refused, the folder kept."""
    cfg = PretrainConfig(**SMALL)
    per_epoch = -(-FeatureStore(tiny_store).num_frames("train") // cfg.batch_size)
    with pytest.raises(Interrupted):
        pretrain(tiny_store, cfg, tmp_path / "cut", interrupt_after=per_epoch + 3)  # in layer 1's epoch 2
    partial = (tmp_path / "cut" / "rbm1.partial.pt").read_bytes()
    fewer = PretrainConfig(**(SMALL | {"epochs_gauss": 1}))
    with pytest.raises(UserError, match=r"layer 1 of .*cut has reached epoch 2, past --epochs-gauss 1: give "
                                        r"--epochs-gauss 2 or more to go on with it, or --force"):  # fmt: skip
        pretrain(tiny_store, fewer, tmp_path / "cut", resume=True)
    assert (tmp_path / "cut" / "rbm1.partial.pt").read_bytes() == partial
    assert not (tmp_path / "cut" / "rbm1.pt").exists()
    with pytest.raises(Interrupted):  # layer 1 finished, then stopped in layer 2
        pretrain(tiny_store, cfg, tmp_path / "cut", resume=True, interrupt_after=per_epoch)
    with pytest.raises(UserError, match=r"layer 1 of .*cut has reached epoch 2, past --epochs-gauss 1"):
        pretrain(tiny_store, fewer, tmp_path / "cut", resume=True)
    pretrain(tiny_store, cfg, tmp_path / "cut", resume=True)
    dbn = (tmp_path / "cut" / "dbn.pt").read_bytes()
    with pytest.raises(UserError, match=r"layer 1 of .*cut has reached epoch 2, past --epochs-gauss 1"):
        pretrain(tiny_store, fewer, tmp_path / "cut")
    assert (tmp_path / "cut" / "dbn.pt").read_bytes() == dbn


def test_the_refusal_says_when_the_gaussian_layers_epochs_are_twice_epochs():
    """--epochs-gauss not given is 2 x --epochs: the refusal names where the number it gives comes from."""
    from asr_init.training.pretrain import _refuse_past

    said = r"layer 1 of out has reached epoch 10, past --epochs-gauss \(2 x --epochs\) 6: give --epochs-gauss"
    with pytest.raises(UserError, match=said):
        _refuse_past(PretrainConfig(epochs=3), 1, 10, Path("out"))


@pytest.mark.parametrize(
    "layers, above",
    [(1, "; CD-1"), (2, "; layer 2 Bernoulli, 2 epochs at lr 0.04; CD-1"), (3, "; layers 2-3 Bernoulli, 2 epochs")],
)
def test_the_settings_line_names_only_the_layers_there_are(layers, above):
    """The settings line said 'layers 2-1 Bernoulli' of a one-layer DBN and 'layers 2-2' of a
    two-layer one; it names the layers above the first only where they exist."""
    from asr_init.training.pretrain import settings_line

    pipeline = FeaturePipeline(splice=0, mean=(0.0,) * 13, std=(1.0,) * 13)
    line = settings_line(PretrainConfig(layers=layers, hidden=[8]), pipeline, "cpu")
    assert f"layer 1 Gaussian, 4 epochs at lr 0.01{above}" in line, line


def test_the_settings_line_says_1_epoch_not_1_epochs():
    from asr_init.training.pretrain import settings_line

    pipeline = FeaturePipeline(splice=0, mean=(0.0,) * 13, std=(1.0,) * 13)
    line = settings_line(PretrainConfig(layers=2, hidden=[8], epochs=1, epochs_gauss=1), pipeline, "cpu")
    assert "layer 1 Gaussian, 1 epoch at lr 0.01; layer 2 Bernoulli, 1 epoch at lr 0.04;" in line, line


def test_a_finished_layers_damaged_segments_are_refused_and_its_real_layer_is_recorded(tiny_store, tmp_path):
    """rbm1.pt of a finished run edited to hold segments "abc": --resume failed with a TypeError. A
    segment that names a layer of its own ("x") overrode the real one in pretrain.json."""
    small = dict(layers=2, hidden=16, epochs_gauss=1, batch_size=64, report_every=500, stats_frames=200)
    pretrain(tiny_store, PretrainConfig(**small, epochs=1), tmp_path / "a")
    path = tmp_path / "a" / "rbm1.pt"
    ckpt = load_checkpoint(path)
    for segments in ("abc", [{"processes": 1, "epoch": 1, "batch": 0, "layer": "x"}]):
        ckpt["position"]["segments"] = segments
        torch.save(ckpt, path)
        if segments == "abc":
            with pytest.raises(UserError) as caught:
                pretrain(tiny_store, PretrainConfig(**small, epochs=2), tmp_path / "a", resume=True)
            assert str(caught.value) == (
                f"{path} is damaged: its position.segments must be a list of at most 10,000 segments or left out, "
                'not "abc"; delete it to start that stage again'
            )
    pretrain(tiny_store, PretrainConfig(**small, epochs=2), tmp_path / "a", resume=True)
    recorded = json.loads((tmp_path / "a" / "pretrain.json").read_text())["processes_by_segment"]
    assert recorded == [{"layer": 1, "processes": 1, "epoch": 1, "batch": 0}], recorded
