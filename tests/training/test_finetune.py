"""Fine-tuning, newbob, priors, resume, errors, and the end-to-end CLI pipeline."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from asr_init.cli import app
from asr_init.errors import UserError
from asr_init.features.pipeline import FeaturePipeline
from asr_init.features.store import FeatureStore
from asr_init.io import load_checkpoint, read_csv
from asr_init.models.dbn import save_dbn
from asr_init.models.dnn import load_model
from asr_init.models.nnet1 import load_kaldi_network
from asr_init.training.config import FinetuneConfig
from asr_init.training.finetune import class_priors, finetune
from asr_init.training.interrupts import Interrupted
from asr_init.training.loop import Strategy

runner = CliRunner()
QUICK = dict(layers=2, hidden=32, splice=1, batch_size=32, max_epochs=4, stats_frames=200)


def _text(result):
    return " ".join(result.output.split())


def test_separable_problem_reaches_near_perfect_accuracy(blob_store, tmp_path):
    summary = finetune(blob_store, FinetuneConfig(**(QUICK | {"max_epochs": 8, "lr": 0.02})), tmp_path / "ft")
    assert summary["best_dev_acc"] > 0.97
    rows = read_csv(tmp_path / "ft" / "train.csv")
    assert float(rows[-1]["train_acc"]) > 0.97
    for key in ("grad_norm_1", "grad_norm_2", "grad_norm_out", "sat_1", "sat_2", "frames_per_s"):
        assert np.isfinite(float(rows[-1][key])), key
    assert (tmp_path / "ft" / "train.png").read_bytes()[:4] == b"\x89PNG"
    model, meta = load_model(tmp_path / "ft")
    assert meta["outputs"] == FeatureStore(blob_store).states and len(meta["priors"]) == 12


def test_zeros_never_break_symmetry_but_xavier_does(blob_store, tmp_path):
    def trained(init):
        cfg = FinetuneConfig(**(QUICK | {"init": init, "output_init": "same", "max_epochs": 3, "lr": 0.05}))
        summary = finetune(blob_store, cfg, tmp_path / init)
        model, _ = load_model(tmp_path / init)
        return summary, [layer.weight.detach() for layer in model.hidden] + [model.output.weight.detach()]

    summary, weights = trained("zeros")
    assert summary["best_epoch"] >= 1  # training did change the model
    for w in weights[:-1]:
        assert torch.allclose(w, w[:1].expand_as(w), atol=1e-6)  # every hidden unit the same
    # The output layer did learn: its columns (one per hidden unit) are identical but not zero.
    out = weights[-1]
    assert float(out.abs().max()) > 0 and torch.allclose(out, out[:, :1].expand_as(out), atol=1e-6)
    assert summary["best_dev_acc"] < 0.5  # identical units cannot separate 12 classes
    _, weights = trained("xavier-normal")
    for w in weights[:-1]:
        assert float((w - w[:1]).abs().max()) > 0.01


def test_priors_sum_to_one(blob_store):
    store = FeatureStore(blob_store)
    for targets, n in (("states", 12), ("phones", 4)):
        p = class_priors(store, targets, floor=1.0)
        assert p.shape == (n,) and p.sum() == pytest.approx(1.0) and (p > 0).all()


def test_resume_equals_uninterrupted(blob_store, tmp_path):
    cfg = FinetuneConfig(**(QUICK | {"max_epochs": 3, "momentum": 0.5, "dropout": 0.1}))
    finetune(blob_store, cfg, tmp_path / "full")
    with pytest.raises(Interrupted, match=r"in epoch \d+ after [\d,]+ frames; state saved"):  # said once
        finetune(blob_store, cfg, tmp_path / "cut", interrupt_after=40)
    with pytest.raises(UserError, match="--resume"):
        finetune(blob_store, cfg, tmp_path / "cut")
    finetune(blob_store, cfg, tmp_path / "cut", resume=True)
    a = load_checkpoint(tmp_path / "full" / "model.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "cut" / "model.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    cols = ("epoch", "lr", "train_loss", "dev_loss", "dev_acc", "accepted")
    ra = [tuple(r[c] for c in cols) for r in read_csv(tmp_path / "full" / "train.csv")]
    rb = [tuple(r[c] for c in cols) for r in read_csv(tmp_path / "cut" / "train.csv")]
    assert ra == rb


def test_dbn_input_mismatch_and_missing_targets(blob_store, tmp_path):
    pipe = FeaturePipeline(splice=0, mean=(0.0,) * 13, std=(1.0,) * 13)
    save_dir = tmp_path / "dbn13"
    save_dir.mkdir()
    save_dbn(save_dir / "dbn.pt", [(torch.zeros(8, 13), torch.zeros(8))], pipe, ["sil"], ["sil_0"], "gauss")
    res = runner.invoke(app, ["finetune", str(blob_store), "--out", str(tmp_path / "x"), "--dbn", str(save_dir)])
    assert res.exit_code == 1 and "expects 13-dim frames" in _text(res) and "has 39-dim frames" in _text(res)
    broken = tmp_path / "broken"
    shutil.copytree(blob_store, broken)
    (broken / "states.txt").unlink()
    res = runner.invoke(app, ["finetune", str(broken), "--out", str(tmp_path / "y")])
    assert res.exit_code == 1 and "states.txt is missing" in _text(res)
    res = runner.invoke(app, ["finetune", str(blob_store), "--out", str(tmp_path / "z"), "--dbn", str(tmp_path)])
    assert res.exit_code == 1 and "has no dbn.pt" in _text(res)


def test_a_dbn_run_records_the_dbns_splice_and_widths_not_the_options_it_ignores(blob_store, tmp_path):
    """With --dbn the network's splice, layers and widths are the DBN's: finetune.config.json,
    finetune.json and model.pt record those whatever --splice/--layers/--hidden said, and the
    run still resumes, and is still found finished from a record written before."""
    store = FeatureStore(blob_store)
    pipe, gen = FeaturePipeline.from_store(store, splice=1), torch.Generator().manual_seed(0)
    layers = [
        (torch.randn(16, pipe.dim, generator=gen) * 0.1, torch.zeros(16)),
        (torch.randn(8, 16, generator=gen) * 0.1, torch.zeros(8)),
    ]
    (tmp_path / "dbn").mkdir()
    save_dbn(tmp_path / "dbn" / "dbn.pt", layers, pipe, store.phones, store.states, "gauss")
    cfg = dict(dbn=str(tmp_path / "dbn"), splice=4, layers=3, hidden=32, batch_size=32, max_epochs=2, stats_frames=200)
    with pytest.raises(Interrupted):
        finetune(blob_store, FinetuneConfig(**cfg), tmp_path / "ft", interrupt_after=10)
    summary = finetune(blob_store, FinetuneConfig(**cfg), tmp_path / "ft", resume=True)
    record = json.loads((tmp_path / "ft" / "finetune.config.json").read_text())
    for config in (record["config"], summary["config"], load_model(tmp_path / "ft")[1]["config"]):
        assert (config["splice"], config["layers"], config["hidden"]) == (1, 2, [16, 8])
    record["config"] |= {"splice": 4, "layers": 3, "hidden": [32]}  # as asr-init recorded them before
    (tmp_path / "ft" / "finetune.config.json").write_text(json.dumps(record))
    assert finetune(blob_store, FinetuneConfig(**cfg), tmp_path / "ft")["epochs"] == summary["epochs"]


def test_a_changed_kaldi_feature_transform_found_beside_the_network_refuses_resumption(blob_store, tmp_path):
    """The final.feature_transform a Kaldi --dbn (or --init-from) file uses by default is part
    of the run's identity, as a --feature-transform given is: changed, --resume is refused."""
    from asr_init.models.export_kaldi import export_kaldi
    from asr_init.models.nnet1 import read_nnet, write_nnet

    finetune(blob_store, FinetuneConfig(layers=1, hidden=8, splice=0, max_epochs=1, stats_frames=100), tmp_path / "a")
    export_kaldi(tmp_path / "a", tmp_path / "exp")
    write_nnet(tmp_path / "exp" / "1.dbn", read_nnet(tmp_path / "exp" / "final.nnet")[:-2])
    cfg = FinetuneConfig(dbn=str(tmp_path / "exp" / "1.dbn"), batch_size=32, max_epochs=2, stats_frames=100)
    with pytest.raises(Interrupted):
        finetune(blob_store, cfg, tmp_path / "ft", interrupt_after=5)
    transform = tmp_path / "exp" / "final.feature_transform"
    write_nnet(transform, read_nnet(transform), binary=False)  # rewritten: another file
    with pytest.raises(UserError, match="the --feature-transform changed since"):
        finetune(blob_store, cfg, tmp_path / "ft", resume=True)


def test_init_from_reuses_lower_layers(blob_store, tmp_path):
    finetune(blob_store, FinetuneConfig(**(QUICK | {"max_epochs": 1})), tmp_path / "a")
    cfg = FinetuneConfig(
        **(QUICK | {"max_epochs": 1, "init_from": str(tmp_path / "a"), "reuse_layers": 1, "lr": 1e-12})
    )
    finetune(blob_store, cfg, tmp_path / "b")
    a, _ = load_model(tmp_path / "a")
    b, meta = load_model(tmp_path / "b")
    assert torch.allclose(a.hidden[0].weight, b.hidden[0].weight, atol=1e-6)
    assert meta["layers"][0]["from"] == "init-from" and meta["layers"][1]["from"] == "init"
    with pytest.raises(UserError, match=r"layer 2 of \S+ is 32->32, but this network needs 32->8; match "
                                        r"--layers/--hidden \(its inputs are the model's splice\)"):  # fmt: skip
        finetune(blob_store, FinetuneConfig(**(cfg.to_dict() | {"reuse_layers": 2, "hidden": [32, 8]})), tmp_path / "w")
    with pytest.raises(UserError, match="has only 2 hidden layers"):
        finetune(
            blob_store,
            FinetuneConfig(**(QUICK | {"init_from": str(tmp_path / "a"), "reuse_layers": 3})),
            tmp_path / "c",
        )


def test_init_from_refuses_reused_layers_of_another_activation(blob_store, tmp_path):
    """Reused layers keep the non-linearity they were trained with: a tanh model's layers under
    the default --activation sigmoid are refused, in one line saying what to give."""
    finetune(blob_store, FinetuneConfig(**(QUICK | {"max_epochs": 1, "activation": "tanh", "lr": 0.002})),
             tmp_path / "tanh")  # fmt: skip
    reuse = QUICK | {"max_epochs": 1, "init_from": str(tmp_path / "tanh"), "reuse_layers": 1}
    with pytest.raises(UserError, match=r"--init-from \S+tanh has tanh hidden layers, but --activation is sigmoid; "
                                        "give --activation tanh to reuse them"):  # fmt: skip
        finetune(blob_store, FinetuneConfig(**reuse), tmp_path / "sigmoid")
    _, meta = load_model(tmp_path / "tanh")
    finetune(blob_store, FinetuneConfig(**(reuse | {"activation": "tanh"})), tmp_path / "again")
    assert load_model(tmp_path / "again")[1]["config"]["activation"] == meta["config"]["activation"] == "tanh"


def test_a_relu_models_kaldi_export_starts_a_relu_network(blob_store, tmp_path):
    """export-kaldi writes a ReLU model's layers as <ParametricRelu>; --init-from the exported
    file reuses them, bit for bit, under --activation relu and refuses them under sigmoid."""
    from asr_init.models.export_kaldi import export_kaldi

    finetune(
        blob_store,
        FinetuneConfig(**(QUICK | {"max_epochs": 1, "activation": "relu", "init": "he-normal"})),
        tmp_path / "relu",
    )
    export_kaldi(tmp_path / "relu", tmp_path / "exp")
    reuse = QUICK | {"max_epochs": 1, "init_from": str(tmp_path / "exp" / "final.nnet"), "reuse_layers": 2}
    with pytest.raises(UserError, match="has relu hidden layers, but --activation is sigmoid; give --activation relu"):
        finetune(blob_store, FinetuneConfig(**reuse), tmp_path / "sigmoid")
    net = load_kaldi_network(tmp_path / "exp" / "final.nnet")
    for (w, b), layer in zip(net.hidden, load_model(tmp_path / "relu")[0].hidden, strict=True):
        assert torch.equal(w, layer.weight) and torch.equal(b, layer.bias)
    finetune(blob_store, FinetuneConfig(**(reuse | {"activation": "relu", "init": "he-normal"})), tmp_path / "again")
    meta = load_model(tmp_path / "again")[1]
    assert [layer["from"] for layer in meta["layers"][:2]] == ["init-from"] * 2
    assert meta["config"]["activation"] == "relu"


def test_a_model_started_from_a_kaldi_network_keeps_the_stores_feature_settings(tiny_store, tmp_path):
    """A Kaldi transform records no feature settings: a model started from a Kaldi .dbn takes the
    store's, so that its export writes cmvn_opts, delta_opts and the feature config as the
    model's own does (it wrote none of them), and later stores are checked against them."""
    from asr_init.models.export_kaldi import export_kaldi
    from asr_init.models.nnet1 import read_nnet, write_nnet

    finetune(tiny_store, FinetuneConfig(**(QUICK | {"max_epochs": 1})), tmp_path / "m")
    files = export_kaldi(tmp_path / "m", tmp_path / "k")["files"]
    # nnet-copy --remove-last-components=2: the hidden layers as a Kaldi DBN
    write_nnet(tmp_path / "k" / "2.dbn", read_nnet(tmp_path / "k" / "final.nnet")[:-2])
    cfg = FinetuneConfig(max_epochs=1, batch_size=32, stats_frames=200, dbn=str(tmp_path / "k" / "2.dbn"))
    finetune(tiny_store, cfg, tmp_path / "f")
    features = load_model(tmp_path / "f")[1]["pipeline"]["features"]
    assert features is not None and features == load_model(tmp_path / "m")[1]["pipeline"]["features"]
    assert export_kaldi(tmp_path / "f", tmp_path / "fk")["files"] == files and "cmvn_opts" in files


def test_pruning_takes_batch_norm_and_targets_from_the_model_and_refuses_others_given(blob_store, tmp_path):
    """--sparsity (and so 'asr-init prune') fine-tunes the whole --init-from model: its batch
    norm and its targets come with it; a --targets or --batch-norm that contradicts it is refused."""
    tiny = dict(layers=1, hidden=8, splice=0, max_epochs=1, stats_frames=100)
    finetune(blob_store, FinetuneConfig(**tiny, batch_norm=True, targets="phones"), tmp_path / "bn")
    finetune(blob_store, FinetuneConfig(**tiny), tmp_path / "plain")
    pruned = dict(max_epochs=1, stats_frames=100, sparsity=0.5)
    finetune(blob_store, FinetuneConfig(**pruned, init_from=str(tmp_path / "bn")), tmp_path / "pruned")
    model, meta = load_model(tmp_path / "pruned")
    assert meta["config"]["batch_norm"] and model.norms is not None and meta["targets"] == "phones"
    for given, source in (({"targets": "states"}, "bn"), ({"batch_norm": True}, "plain")):
        with pytest.raises(UserError, match="fine-tune it with the same --targets and --batch-norm setting"):
            finetune(blob_store, FinetuneConfig(**pruned, **given, init_from=str(tmp_path / source)), tmp_path / "x")


def test_end_to_end_cli(kaldi_dir, tmp_path):
    store, dbn, model = tmp_path / "store", tmp_path / "dbn", tmp_path / "model"
    steps = [
        ["extract", str(kaldi_dir), "--out", str(store), "--jobs", "1"],
        [
            "pretrain",
            str(store),
            "--out",
            str(dbn),
            "--layers",
            "2",
            "--hidden",
            "32",
            "--epochs",
            "1",
            "--batch-size",
            "64",
        ],
        ["finetune", str(store), "--out", str(model), "--dbn", str(dbn), "--max-epochs", "3", "--batch-size", "64"],
        ["evaluate", str(store), "--model", str(model), "--lm-weights", "1,2", "--penalties", "0,2"],
    ]
    for args in steps:
        res = runner.invoke(app, args)
        assert res.exit_code == 0, (args[0], res.output)
    result = json.loads((model / "eval-test" / "results.json").read_text())
    assert 0 <= result["frame_acc_phones"] <= 1 and 0 <= result["frame_acc_states"] <= result["frame_acc_phones"]
    assert result["per"] == pytest.approx(
        (result["substitutions"] + result["deletions"] + result["insertions"]) / result["ref_phones"]
    )
    assert result["lm_weight"] in (1, 2) and result["insertion_penalty"] in (0, 2) and len(result["tuning_grid"]) == 4
    assert (model / "eval-test" / "confusion.png").stat().st_size > 10_000
    assert "phone error rate" in res.output
    # Every stage records the same versions/environment record; extract, which does not use
    # torch, its version only (importing torch would take longer than extracting an hour).
    from asr_init.environment import environment

    env = environment()
    for path in (store / "config.json", store / "summary.json"):
        versions = json.loads(path.read_text())["versions"]
        assert set(versions) == set(env) - {"torch_build", "devices", "threads"}, path
        assert versions["torch"] == torch.__version__ and versions["soxr"] == env["soxr"] is not None
    for path in (dbn / "pretrain.json", model / "finetune.json", model / "eval-test" / "results.json"):
        versions = json.loads(path.read_text())["versions"]
        assert set(versions) == set(env), path
        assert versions["torch"] == torch.__version__ and versions["threads"] == torch.get_num_threads(), path
        assert versions["torch_build"] == ("CPU" if torch.version.cuda is None else f"CUDA {torch.version.cuda}")


def test_defaults_depend_on_the_starting_point():
    """From a DBN: Kaldi's lr 0.008 without momentum; from random weights: 0.0004 with 0.9."""
    scratch, pretrained = FinetuneConfig(), FinetuneConfig(dbn="dbn-folder")
    assert (scratch.lr, scratch.momentum) == (0.0004, 0.9)
    assert (pretrained.lr, pretrained.momentum) == (0.008, 0.0)
    assert (FinetuneConfig(lr=0.01, momentum=0.5).lr, FinetuneConfig(lr=0.01, momentum=0.5).momentum) == (0.01, 0.5)
    again = FinetuneConfig.from_dict(scratch.to_dict())
    assert (again.lr, again.momentum) == (0.0004, 0.9)
    pruned = scratch.starting(init_from="model", sparsity=0.5)  # prune's runs: the defaults of a trained start
    assert (pruned.lr, pruned.momentum) == (0.008, 0.0)
    given = FinetuneConfig(lr=0.01).starting(init_from="model", sparsity=0.5)
    assert (given.lr, given.momentum) == (0.01, 0.0)  # a value given stays
    assert (again.starting(sparsity=0.5).lr, pruned.starting(init_from=None, sparsity=0).lr) == (0.0004, 0.0004)


def test_warns_when_training_sits_at_chance(blob_store, tmp_path):
    """Saturated sigmoid layers and a tiny step: the train accuracy stays at the majority
    class's share, and the warning names the saturated layers and the options."""
    args = [
        "finetune",
        str(blob_store),
        "--layers",
        "2",
        "--hidden",
        "32",
        "--splice",
        "1",
        "--batch-size",
        "32",
        "--max-epochs",
        "1",
    ]
    stuck = runner.invoke(app, args + ["--out", str(tmp_path / "stuck"), "--init", "large", "--lr", "1e-7"])
    assert stuck.exit_code == 0, stuck.output
    text = _text(stuck)
    assert "warning: epoch 1: train frame accuracy" in text and "is at chance" in text
    assert "saturated layers (share of units) 1: " in text and "2: " in text
    assert "lower --lr (now 1e-07) or start from a DBN (--dbn)" in text and "plateau" not in text
    flat = runner.invoke(app, args + ["--out", str(tmp_path / "flat"), "--init", "zeros", "--lr", "1e-7"])
    text = _text(flat)
    assert "no layer has over 10 % saturated units" in text and "plateau of the class priors" in text
    assert "raise --momentum (now 0.9) or --lr (now 1e-07)" in text and "lower --lr" not in text
    fine = runner.invoke(app, args + ["--out", str(tmp_path / "fine"), "--lr", "0.02", "--momentum", "0"])
    assert fine.exit_code == 0 and "at chance" not in _text(fine)


def test_models_refuse_stores_with_other_feature_settings(tmp_path):
    """A model trained on 16 kHz features is not applied to 8 kHz frames (same dimension,
    other filterbank): evaluate, finetune --dbn and finetune --init-from say so in one line."""
    from conftest import write_kaldi_dir

    from asr_init.features.config import ExtractConfig
    from asr_init.features.extract import extract
    from asr_init.training.config import PretrainConfig
    from asr_init.training.pretrain import pretrain

    corpus = write_kaldi_dir(tmp_path / "corpus", speakers=5, utts_per_speaker=3, sr=8000)
    split = dict(jobs=1, dev_fraction=0.2, test_fraction=0.2)
    extract(corpus, tmp_path / "s8", ExtractConfig(**split))
    extract(corpus, tmp_path / "s16", ExtractConfig(**split, sample_rate=16000))
    pretrain(
        tmp_path / "s16",
        PretrainConfig(layers=1, hidden=16, splice=1, epochs=1, batch_size=32, stats_frames=200),
        tmp_path / "dbn16",
    )
    finetune(tmp_path / "s16", FinetuneConfig(**(QUICK | {"max_epochs": 1})), tmp_path / "dnn16")
    store8 = FeatureStore(tmp_path / "s8")
    assert FeatureStore(tmp_path / "s16").dim == store8.dim == 39  # only the settings tell them apart
    _, meta = load_model(tmp_path / "dnn16")
    assert meta["pipeline"]["features"]["sample_rate"] == 16000 and meta["pipeline"]["features"]["high_freq"] == 8000.0

    expected = (
        "was trained on features with sample rate 16000 Hz, high freq 8000 Hz, but store {store} has sample rate "
        "8000 Hz, high freq 4000 Hz; extract the corpus with --sample-rate 16000 --high-freq 8000 "
        "to use this model on it"
    )
    for args, where in [
        (["evaluate", str(tmp_path / "s8"), "--model", str(tmp_path / "dnn16")], f"model {tmp_path / 'dnn16'}"),
        (
            ["finetune", str(tmp_path / "s8"), "--out", str(tmp_path / "x"), "--dbn", str(tmp_path / "dbn16")],
            f"DBN {tmp_path / 'dbn16'}",
        ),
        (
            [
                "finetune",
                str(tmp_path / "s8"),
                "--out",
                str(tmp_path / "y"),
                "--init-from",
                str(tmp_path / "dnn16"),
                "--reuse-layers",
                "1",
                "--layers",
                "2",
                "--hidden",
                "32",
                "--splice",
                "1",
            ],
            f"model {tmp_path / 'dnn16'}",
        ),
    ]:
        res = runner.invoke(app, args)
        assert res.exit_code == 1, res.output
        errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
        assert errors == [f"error: {where} " + expected.format(store=tmp_path / "s8")], res.output
    # The same model on a store with its own settings is accepted.
    res = runner.invoke(app, ["evaluate", str(tmp_path / "s16"), "--model", str(tmp_path / "dnn16"), "--frames-only"])
    assert res.exit_code == 0, res.output


def test_pipeline_records_feature_settings_and_reads_old_records(blob_store, tiny_store):
    store = FeatureStore(tiny_store)
    pipe = FeaturePipeline.from_store(store, 2)
    assert pipe.feature_config.sample_rate == 16000 and pipe.feature_config.high_freq == 8000.0
    assert FeaturePipeline.from_dict(pipe.to_dict()) == pipe
    old = {k: v for k, v in pipe.to_dict().items() if k != "features"}  # a model saved before settings were recorded
    assert FeaturePipeline.from_dict(old).feature_config is None
    FeaturePipeline.from_dict(old).check_store(store, "model old")  # checked on dimension only: no error
    assert FeatureStore(blob_store).feature_config is None  # a store made without extract records none


# --- sums read every N steps (as on a GPU), run here on the CPU ---------------------------

EVERY_7 = Strategy(read_every=7)


def _numbers(out):
    rows = read_csv(out / "train.csv")
    return [{k: v for k, v in r.items() if k not in ("seconds", "frames_per_s")} for r in rows]


def test_reading_every_n_steps_gives_the_log_read_every_step_bit_for_bit(blob_store, tmp_path):
    cfg = FinetuneConfig(**(QUICK | {"grad_clip": 50.0, "max_norm": 3.0}))
    finetune(blob_store, cfg, tmp_path / "host")
    finetune(blob_store, cfg, tmp_path / "device", strategy=EVERY_7)
    assert _numbers(tmp_path / "device") == _numbers(tmp_path / "host")
    a, b = load_model(tmp_path / "host")[0].state_dict(), load_model(tmp_path / "device")[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("first, second", [(EVERY_7, EVERY_7), (EVERY_7, Strategy()), (Strategy(), EVERY_7)])
def test_resume_on_either_read_interval_equals_uninterrupted(blob_store, tmp_path, first, second):
    cfg = FinetuneConfig(**QUICK)
    finetune(blob_store, cfg, tmp_path / "full")
    with pytest.raises(Interrupted):
        finetune(blob_store, cfg, tmp_path / "cut", interrupt_after=40, strategy=first)
    finetune(blob_store, cfg, tmp_path / "cut", resume=True, strategy=second)
    assert _numbers(tmp_path / "cut") == _numbers(tmp_path / "full")


def test_a_diverged_run_stops_at_the_next_read_naming_the_step(blob_store, tmp_path):
    """Read every step the run stops at the step whose loss is not finite; read every 7 it
    stops at the next read and names the same step; no checkpoint is written."""
    cfg = FinetuneConfig(**(QUICK | {"lr": 1e34, "buffer_frames": 45}))  # short last batches in every buffer
    with pytest.raises(UserError) as host:
        finetune(blob_store, cfg, tmp_path / "host")
    with pytest.raises(UserError) as device:
        finetune(blob_store, cfg, tmp_path / "device", strategy=EVERY_7)
    want = " ".join(str(host.value).split())
    frames = int(want.split(" after ")[1].split(" frames")[0].replace(",", ""))
    assert "fine-tuning loss became" in want and "in epoch 1 after" in want and "lower --lr" in want
    assert frames % 32 != 0  # short batches went before the step that diverged
    assert want.split(" in epoch")[1] == " ".join(str(device.value).split()).split(" in epoch")[1]
    assert not list((tmp_path / "device").glob("*.pt"))


def test_resume_with_more_epochs_continues_a_finished_run(blob_store, tmp_path):
    """--resume --max-epochs 3 on a finished 2-epoch run: the model and log of a 3-epoch run, and
    finetune.config.json records --max-epochs 3 (it kept 2). Without --resume the larger --max-epochs
    is refused, saying so (it said the settings matched)."""
    cfg = QUICK | {"schedule": "constant"}
    finetune(blob_store, FinetuneConfig(**(cfg | {"max_epochs": 2})), tmp_path / "a")
    with pytest.raises(UserError, match="holds a finished fine-tuning run of 2 epochs: add --resume to continue it to "
                                        "--max-epochs 3, or --force to start over"):  # fmt: skip
        finetune(blob_store, FinetuneConfig(**(cfg | {"max_epochs": 3})), tmp_path / "a")
    summary = finetune(blob_store, FinetuneConfig(**(cfg | {"max_epochs": 3})), tmp_path / "a", resume=True)
    finetune(blob_store, FinetuneConfig(**(cfg | {"max_epochs": 3})), tmp_path / "b")
    assert summary["epochs"] == 3 and _numbers(tmp_path / "a") == _numbers(tmp_path / "b")
    assert json.loads((tmp_path / "a" / "finetune.config.json").read_text())["config"]["max_epochs"] == 3
    a, b = load_model(tmp_path / "a")[0].state_dict(), load_model(tmp_path / "b")[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_continuation_interrupted_leaves_the_record_of_the_finished_run(blob_store, tmp_path):
    """finetune.config.json took the new --max-epochs when the continuation started: interrupted, it named
    3 epochs beside a finetune.json and model.pt of 2. It takes them with the continued run's summary."""
    cfg = QUICK | {"schedule": "constant"}
    finetune(blob_store, FinetuneConfig(**(cfg | {"max_epochs": 2})), tmp_path / "a")
    record = (tmp_path / "a" / "finetune.config.json").read_text()
    with pytest.raises(Interrupted):
        finetune(blob_store, FinetuneConfig(**(cfg | {"max_epochs": 3})), tmp_path / "a", resume=True,
                 interrupt_after=3)  # fmt: skip
    assert (tmp_path / "a" / "finetune.config.json").read_text() == record
    assert finetune(blob_store, FinetuneConfig(**(cfg | {"max_epochs": 3})), tmp_path / "a", resume=True)["epochs"] == 3
    assert json.loads((tmp_path / "a" / "finetune.config.json").read_text())["config"]["max_epochs"] == 3


def test_the_settings_line_says_1_epoch_not_1_epochs(blob_store, tmp_path):
    """The line a run starts with said "up to 1 epochs" of --max-epochs 1."""
    args = ["finetune", str(blob_store), "--layers", "1", "--hidden", "8", "--splice", "0", "--stats-frames", "100"]
    one = runner.invoke(app, [*args, "--out", str(tmp_path / "a"), "--max-epochs", "1"])
    assert one.exit_code == 0 and ", batch 256, up to 1 epoch, fp32 on " in _text(one), one.output
    two = runner.invoke(app, [*args, "--out", str(tmp_path / "b"), "--max-epochs", "2"])
    assert two.exit_code == 0 and ", batch 256, up to 2 epochs, fp32 on " in _text(two), two.output


def test_fewer_epochs_than_the_run_has_trained_are_refused(blob_store, tmp_path):
    """--resume --max-epochs 1 of a run stopped in epoch 2 reported it finished, a model of neither
    length; a finished 2-epoch run re-run with --max-epochs 1 said it matched. Both are refused."""
    cfg = QUICK | {"schedule": "constant", "max_epochs": 2}
    with pytest.raises(Interrupted):
        finetune(blob_store, FinetuneConfig(**cfg), tmp_path / "a", interrupt_after=60)
    assert load_checkpoint(tmp_path / "a" / "checkpoint.pt")["position"]["epoch"] == 2
    fewer = FinetuneConfig(**(cfg | {"max_epochs": 1}))
    said = r"the fine-tuning run in .*a has reached epoch 2, past --max-epochs 1: give --max-epochs 2 or more to go on"
    with pytest.raises(UserError, match=said):
        finetune(blob_store, fewer, tmp_path / "a", resume=True)
    assert not (tmp_path / "a" / "model.pt").exists()
    finetune(blob_store, FinetuneConfig(**cfg), tmp_path / "a", resume=True)
    with pytest.raises(UserError, match="has reached epoch 2, past --max-epochs 1"):
        finetune(blob_store, FinetuneConfig(**(cfg | {"max_epochs": 1})), tmp_path / "a")


def test_the_same_dbn_by_another_path_resumes_and_is_found_finished(blob_store, tmp_path, monkeypatch):
    """--dbn names a folder by a path relative to the folder finetune runs from: the same DBN
    named from another folder (or absolute) is the same run, whose identity its dbn.pt's digest
    gives; it used to be refused as other settings ('dbn: 'dbn' then, '/abs/dbn' now'), with
    --force, which throws the run away, as the way on. Another DBN is still refused."""
    store = FeatureStore(blob_store)
    pipe, gen = FeaturePipeline.from_store(store, splice=1), torch.Generator().manual_seed(0)
    layers = [(torch.randn(16, pipe.dim, generator=gen) * 0.1, torch.zeros(16))]
    (tmp_path / "dbn").mkdir()
    save_dbn(tmp_path / "dbn" / "dbn.pt", layers, pipe, store.phones, store.states, "gauss")
    cfg = dict(batch_size=64, max_epochs=1, stats_frames=100)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Interrupted):
        finetune(blob_store, FinetuneConfig(dbn="dbn", **cfg), tmp_path / "ft", interrupt_after=2)
    summary = finetune(blob_store, FinetuneConfig(dbn=str(tmp_path / "dbn"), **cfg), tmp_path / "ft", resume=True)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert finetune(blob_store, FinetuneConfig(dbn="../dbn", **cfg), tmp_path / "ft")["epochs"] == summary["epochs"]
    layers[0] = (layers[0][0] * 2, layers[0][1])
    save_dbn(tmp_path / "dbn" / "dbn.pt", layers, pipe, store.phones, store.states, "gauss")
    with pytest.raises(UserError, match="the --dbn DBN changed since"):
        finetune(blob_store, FinetuneConfig(dbn="../dbn", **cfg), tmp_path / "ft")


def test_a_record_without_identities_compares_the_dbn_by_path(blob_store, tmp_path):
    """A finished run whose record holds no identities of its inputs (an older asr-init's) keeps
    comparing --dbn by its path: nothing else tells another DBN from the same."""
    store = FeatureStore(blob_store)
    pipe, gen = FeaturePipeline.from_store(store, splice=1), torch.Generator().manual_seed(0)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        layers = [(torch.randn(16, pipe.dim, generator=gen) * 0.1, torch.zeros(16))]
        save_dbn(tmp_path / name / "dbn.pt", layers, pipe, store.phones, store.states, "gauss")
    cfg = dict(batch_size=64, max_epochs=1, stats_frames=100)
    finetune(blob_store, FinetuneConfig(dbn=str(tmp_path / "a"), **cfg), tmp_path / "ft")
    record = json.loads((tmp_path / "ft" / "finetune.config.json").read_text())
    del record["inputs"]
    (tmp_path / "ft" / "finetune.config.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match=r"made with other settings \(dbn: "):
        finetune(blob_store, FinetuneConfig(dbn=str(tmp_path / "b"), **cfg), tmp_path / "ft")


def _starting_networks(blob_store, root) -> dict:
    """A run's options for each kind of network it starts from, and the files holding that network."""
    from conftest import write_tiny_model

    from asr_init.models.export_kaldi import export_kaldi
    from asr_init.models.nnet1 import read_nnet, write_nnet

    store = FeatureStore(blob_store)
    pipe = FeaturePipeline.from_store(store, splice=0)
    (root / "dbn").mkdir()
    save_dbn(root / "dbn" / "dbn.pt", [(torch.randn(8, pipe.dim) * 0.1, torch.zeros(8))], pipe, store.phones,
             store.states, "gauss")  # fmt: skip
    model = write_tiny_model(blob_store, root / "model")
    export_kaldi(model, root / "exp")
    write_nnet(root / "exp" / "1.dbn", read_nnet(root / "exp" / "final.nnet")[:-2])
    return {
        "dbn": ({"dbn": str(root / "dbn")}, [root / "dbn" / "dbn.pt"]),
        "kaldi dbn": (
            {"dbn": str(root / "exp" / "1.dbn")},
            [root / "exp" / "1.dbn", root / "exp" / "final.feature_transform"],
        ),
        "init-from": (
            {"init_from": str(model), "reuse_layers": 1, "layers": 1, "hidden": 8, "splice": 0},
            [model / "model.pt"],
        ),
        "pruned": ({"init_from": str(model), "sparsity": 0.5}, [model / "model.pt"]),
    }


def test_the_starting_network_is_read_once_per_run(blob_store, tmp_path, monkeypatch):
    """--dbn (asr-init's or a Kaldi nnet1 file) or --init-from (reused layers, or pruned whole) is
    read once: the pipeline, the layers and a pruned run's masks all take it from there."""
    import asr_init.models.nnet1 as nnet1

    starts = _starting_networks(blob_store, tmp_path)
    reads: list[Path] = []
    torch_load, read_nnet = torch.load, nnet1.read_nnet
    monkeypatch.setattr(torch, "load", lambda path, *a, **k: reads.append(Path(path)) or torch_load(path, *a, **k))
    monkeypatch.setattr(nnet1, "read_nnet", lambda path, *a, **k: reads.append(Path(path)) or read_nnet(path, *a, **k))
    for name, (options, files) in starts.items():
        reads.clear()
        config = FinetuneConfig(**options, batch_size=32, max_frames=64, max_epochs=1, stats_frames=50)
        finetune(blob_store, config, tmp_path / "runs" / name.replace(" ", "-"))
        assert [p for p in reads if p in files] == files, name


_START = {"epoch": 1, "batch": 0}  # where a run's first segment begins


@pytest.mark.parametrize(
    "field, value, said",
    [
        ("segments", "abc", 'segments must be a list of at most 10,000 segments or left out, not "abc"'),
        ("segments", {"processes": 2}, "segments must be a list"),
        ("segments", None, "segments must be a list"),
        ("segments", [5], "segments[0] must be an object, not 5"),
        ("segments", [{"epoch": 1}], "segments[0].processes must be an integer >= 1, not missing"),
        ("segments", [{"processes": -3, **_START}], "segments[0].processes must be an integer >= 1, not -3"),
        ("segments", [{"processes": 1, **_START}] * 10_001, "segments must be a list of at most"),
        ("epoch", "x", 'epoch must be an integer >= 1, not "x"'),
        ("batch", -1, "batch must be an integer >= 0, not -1"),
    ],
)
def test_a_damaged_position_in_the_checkpoint_is_refused_on_resume(blob_store, tmp_path, field, value, said):
    """A finished run's checkpoint.pt edited to hold a position TrainState never writes: --resume with more
    epochs failed with a TypeError, KeyError or AttributeError, or printed a run on -3 processes."""
    cfg = dict(layers=1, hidden=8, splice=0, batch_size=64, stats_frames=100, schedule="constant")
    finetune(blob_store, FinetuneConfig(**cfg, max_epochs=1), tmp_path / "a")
    path = tmp_path / "a" / "checkpoint.pt"
    ckpt = load_checkpoint(path)
    ckpt["position"][field] = value
    torch.save(ckpt, path)
    with pytest.raises(UserError) as caught:
        finetune(blob_store, FinetuneConfig(**cfg, max_epochs=2), tmp_path / "a", resume=True)
    message = str(caught.value)
    assert message.startswith(f"{path} is damaged: its position.{said}"), message
    assert message.endswith("; delete it to start that stage again") and "\n" not in message, message
    assert json.loads((tmp_path / "a" / "finetune.json").read_text())["epochs"] == 1
