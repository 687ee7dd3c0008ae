"""What practitioners use instead of pre-training: per-layer widths, batch norm (folded at
export), the data-dependent initialisations (LSUV, Krähenbühl et al.'s), magnitude pruning."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from asr_init.cli import app
from asr_init.errors import UserError
from asr_init.models.dnn import DNN, load_model
from asr_init.models.init import InitContext, init_stack, init_weight_
from asr_init.models.optimal_spread import optimal_d
from asr_init.training.config import FinetuneConfig, PretrainConfig
from asr_init.training.finetune import finetune, magnitude_masks

runner = CliRunner()
FUNNEL = [64, 48, 32, 16]


def test_widths_per_layer_or_one_for_all():
    assert PretrainConfig(hidden=[64, 32]).sizes == [64, 32] and PretrainConfig().sizes == [1024] * 6
    assert FinetuneConfig(hidden=16, layers=3).sizes == [16, 16, 16]
    with pytest.raises(UserError, match="--hidden lists 2 widths; drop --layers or make it 2"):
        PretrainConfig(hidden=[64, 32], layers=3).validate()
    with pytest.raises(UserError, match="every width must be at least 1"):
        FinetuneConfig(hidden=[64, 0]).validate()


@pytest.mark.parametrize("spec,std", [("xavier-normal", lambda i, o: math.sqrt(2 / (i + o))),
                                      ("lecun-normal", lambda i, o: math.sqrt(1 / i)),
                                      ("he-normal", lambda i, o: math.sqrt(2 / i)),
                                      ("optimal", lambda i, o: optimal_d("sigmoid") / math.sqrt(i))])  # fmt: skip
def test_every_method_uses_each_layers_own_fan_in(spec, std):
    sizes = [429, 1024, 512, 256]
    layers, _ = init_stack(sizes, spec, torch.Generator().manual_seed(0))
    for (w, _), fan_in, fan_out in zip(layers, sizes, sizes[1:]):
        assert w.shape == (fan_out, fan_in)
        assert abs(float(w.std()) / std(fan_in, fan_out) - 1) < 0.03


def test_funnel_networks_pretrain_finetune_export_and_inspect(tiny_store, tmp_path):
    args = ["--hidden", ",".join(map(str, FUNNEL)), "--splice", "1"]
    for command in (
        ["pretrain", str(tiny_store), "--out", str(tmp_path / "dbn"), *args, "--epochs", "1", "--stats-frames", "200"],
        ["finetune", str(tiny_store), "--out", str(tmp_path / "dnn"), "--dbn", str(tmp_path / "dbn"),
         "--max-epochs", "1"],
        ["finetune", str(tiny_store), "--out", str(tmp_path / "scratch"), *args, "--max-epochs", "1"],
        ["export-kaldi", str(tmp_path / "dnn"), "--out", str(tmp_path / "exp")],
        ["inspect", str(tiny_store), *args],
    ):  # fmt: skip
        result = runner.invoke(app, command)
        assert result.exit_code == 0, (command[0], result.output)
    for model in ("dnn", "scratch"):
        _, meta = load_model(tmp_path / model)
        assert meta["hidden_sizes"] == FUNNEL
    dbn = json.loads((tmp_path / "dbn" / "pretrain.json").read_text())
    assert [(layer["n_visible"], layer["n_hidden"]) for layer in dbn["layers"]] == [
        (117, 64),
        (64, 48),
        (48, 32),
        (32, 16),
    ]
    assert json.loads((tmp_path / "exp" / "export.json").read_text())["hidden_sizes"] == FUNNEL
    assert "32→16" in " ".join(result.output.split())  # inspect's table


def test_lsuv_gives_unit_net_input_variance_on_the_batch_it_read():
    x = torch.randn(500, 40).double() * torch.linspace(0.2, 3, 40).double() + 0.5
    w = torch.empty(64, 40)
    res = init_weight_(w, "lsuv", torch.Generator().manual_seed(0), InitContext("sigmoid", inputs=x))
    assert abs(float((x @ w.double().T).var()) - 1) < 0.05 and abs(res.spread - 1) < 0.1
    with pytest.raises(UserError, match="reads a sample of the layer's inputs"):
        init_weight_(torch.empty(4, 3), "lsuv", torch.Generator())


def test_data_dependent_gives_each_unit_spread_d_and_mean_zero():
    x = torch.rand(800, 30).double() * 2 + 1  # inputs far from zero mean, as sigmoid outputs are
    w, b = torch.empty(50, 30), torch.zeros(50)
    init_weight_(w, "data-dependent", torch.Generator().manual_seed(1), InitContext("sigmoid", inputs=x, bias=b))
    net = x @ w.double().T + b.double()
    np.testing.assert_allclose(net.std(0).numpy(), optimal_d("sigmoid"), rtol=1e-3)
    np.testing.assert_allclose(net.mean(0).numpy(), 0, atol=1e-4)
    init_weight_(w, "data-dependent:0.5", torch.Generator().manual_seed(1), InitContext("relu", inputs=x, bias=b))
    np.testing.assert_allclose((x @ w.double().T).std(0).numpy(), 0.5, rtol=1e-3)
    with pytest.raises(UserError, match="no D\\* for ReLU"):
        init_weight_(w, "data-dependent", torch.Generator(), InitContext("relu", inputs=x, bias=b))


@pytest.mark.parametrize("init", ["lsuv", "data-dependent"])
def test_data_dependent_methods_in_pretrain_and_finetune(tiny_store, tmp_path, init):
    result = runner.invoke(app, ["pretrain", str(tiny_store), "--out", str(tmp_path / "dbn"), "--init", init,
                                 "--layers", "2", "--hidden", "32", "--epochs", "1", "--splice", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    layers = json.loads((tmp_path / "dbn" / "pretrain.json").read_text())["layers"]
    target = 1.0 if init == "lsuv" else optimal_d("sigmoid")
    assert all(abs(layer["D"] / target - 1) < 0.1 for layer in layers), layers  # measured on the sample it read
    summary = finetune(tiny_store, FinetuneConfig(init=init, layers=2, hidden=32, splice=1, max_epochs=1,
                                                  stats_frames=200), tmp_path / "dnn")  # fmt: skip
    assert [layer["init"] for layer in summary["layers"][:2]] == [init, init]


def test_batch_norm_folds_into_the_exported_affine_transforms(tiny_store, tmp_path):
    from nnet1_reference import nnet_forward, parse_nnet

    from asr_init.features.pipeline import FeaturePipeline
    from asr_init.models.export_kaldi import export_kaldi
    from asr_init.training.finetune import finetune as train

    config = FinetuneConfig(layers=2, hidden=32, splice=1, max_epochs=2, batch_norm=True, stats_frames=200)
    train(tiny_store, config, tmp_path / "dnn")
    model, meta = load_model(tmp_path / "dnn")
    assert model.norms is not None and float(model.norms[0].running_var.std()) > 0  # trained statistics
    export_kaldi(tmp_path / "dnn", tmp_path / "exp")
    network = parse_nnet((tmp_path / "exp" / "final.nnet").read_bytes())
    assert [c[0] for c in network] == ["<AffineTransform>", "<Sigmoid>"] * 2 + ["<AffineTransform>", "<Softmax>"]
    feats = np.random.default_rng(0).normal(0, 1, (60, 39)).astype(np.float32)
    with torch.no_grad():
        ours = torch.log_softmax(model(FeaturePipeline.from_dict(meta["pipeline"]).utterance(feats)), 1).numpy()
    theirs = nnet_forward(parse_nnet((tmp_path / "exp" / "final.feature_transform").read_bytes()), network, feats)
    assert np.abs(ours - theirs).max() < 1e-4


def test_dnn_with_batch_norm_normalises_the_net_input_before_the_non_linearity():
    model = DNN(5, [7], 3, batch_norm=True)
    model.train()
    x = torch.randn(256, 5) * 4 + 2
    z = model.net_input(0, x)
    assert torch.allclose(z.mean(0), torch.zeros(7), atol=1e-5) and torch.allclose(z.std(0), torch.ones(7), atol=1e-2)


def test_pruned_fine_tuning_applies_dropout(blob_store, tmp_path):
    """--dropout with --sparsity (or 'asr-init prune --dropout') drops hidden units as it does
    for any other fine-tuning run, instead of being recorded and ignored."""
    base = dict(layers=1, hidden=16, splice=0, max_epochs=1, stats_frames=100)
    finetune(blob_store, FinetuneConfig(**base), tmp_path / "dense")
    pruned = dict(max_epochs=1, stats_frames=100, init_from=str(tmp_path / "dense"), sparsity=0.5)
    finetune(blob_store, FinetuneConfig(**pruned), tmp_path / "plain")
    finetune(blob_store, FinetuneConfig(**pruned, dropout=0.5), tmp_path / "dropout")
    plain, _ = load_model(tmp_path / "plain")
    dropped, _ = load_model(tmp_path / "dropout")
    assert not torch.equal(plain.output.weight, dropped.output.weight)


def test_batch_norm_trains_on_a_mini_batch_of_one_frame(blob_store, tmp_path):
    """An epoch (or a buffer, or one process's rows of a batch under torchrun) whose last
    mini-batch holds one frame has no batch statistics: the running ones normalise it."""
    model = DNN(5, [7], 3, batch_norm=True)
    model.train()
    for rows in (1, 0):
        x = torch.randn(rows, 5)
        with torch.no_grad():
            want = model.eval()(x)
        assert torch.equal(model.train()(x), want)
    config = FinetuneConfig(layers=1, hidden=8, splice=0, batch_size=32, max_frames=33, max_epochs=1, batch_norm=True)
    summary = finetune(blob_store, config, tmp_path / "bn")
    assert summary["epochs"] == 1


def test_magnitude_masks_layer_and_global():
    weights = [torch.arange(1.0, 101.0).reshape(10, 10), torch.arange(1.0, 11.0).reshape(2, 5) * 100]
    layer = magnitude_masks(weights, 0.7, "layer")
    assert [int((m == 0).sum()) for m in layer] == [70, 7]
    assert layer[0].flatten()[:70].sum() == 0 and layer[0].flatten()[70:].all()
    glob = magnitude_masks(weights, 0.5, "global")  # the 55 smallest of 110 are all in the first matrix
    assert int((glob[0] == 0).sum()) == 55 and int(glob[1].sum()) == 10


def test_pruned_weights_stay_zero_through_fine_tuning_and_prune_writes_its_plot(tiny_store, tmp_path):
    finetune(tiny_store, FinetuneConfig(layers=2, hidden=32, splice=1, max_epochs=1, stats_frames=200),
             tmp_path / "dense")  # fmt: skip
    result = runner.invoke(app, ["prune", str(tmp_path / "dense"), "--out", str(tmp_path / "pruned"), "--sparsity",
                                 "0.5,0.9", "--max-epochs", "2", "--prune-scope", "global"])  # fmt: skip
    assert result.exit_code == 0, result.output
    before, _ = load_model(tmp_path / "dense")
    for share in (0.5, 0.9):
        pruned, meta = load_model(tmp_path / "pruned" / f"sparsity-{share:g}")
        zeros = sum(int((layer.weight == 0).sum()) for layer in pruned.hidden)
        total = sum(layer.weight.numel() for layer in pruned.hidden)
        assert abs(zeros / total - share) < 0.01  # the mask held through two epochs of SGD
        assert any(not torch.equal(a.weight[a.weight != 0], b.weight[a.weight != 0])
                   for a, b in zip(pruned.hidden, before.hidden))  # fmt: skip  # the rest was trained
        assert meta["config"]["sparsity"] == share and meta["config"]["lr"] == 0.008
    summary = json.loads((tmp_path / "pruned" / "prune.json").read_text())
    assert [r["sparsity"] for r in summary["rows"]] == [0.0, 0.5, 0.9] and summary["scope"] == "global"
    assert (tmp_path / "pruned" / "sparsity.png").read_bytes()[:4] == b"\x89PNG"
    assert "│      90% │" in result.output
    bad = runner.invoke(app, ["finetune", str(tiny_store), "--out", str(tmp_path / "x"), "--sparsity", "0.5"])
    assert bad.exit_code == 1 and "prunes a model: give --init-from MODEL" in bad.output
    # The output-folder protocol of every other command: the same settings again have nothing
    # to do, other settings are refused and named, and a folder asr-init did not make is kept.
    same = ["prune", str(tmp_path / "dense"), "--out", str(tmp_path / "pruned"), "--sparsity", "0.5,0.9",
            "--max-epochs", "2", "--prune-scope", "global"]  # fmt: skip
    again = runner.invoke(app, same)
    assert again.exit_code == 0 and json.loads((tmp_path / "pruned" / "prune.json").read_text()) == summary
    on_cpu = runner.invoke(app, [*same, "--device", "cpu"])  # the device is not a setting of the results
    assert on_cpu.exit_code == 0 and "already holds a finished prune run" in " ".join(on_cpu.output.split())
    for field, value, message in [  # an edited prune.json was a TypeError or a KeyError with a traceback
        ("rows", 5, "rows must be a list, not 5"),
        ("split", 4, "split must be a string or left out, not 4"),
        ("rows", [{"sparsity": 0.5, "epochs": 1}], "rows[0].test_per must be a number or null, not missing"),
    ]:
        (tmp_path / "pruned" / "prune.json").write_text(json.dumps(summary | {field: value}))
        edited = runner.invoke(app, same)
        (line,) = [line for line in edited.output.splitlines() if line.startswith("error:")]
        assert edited.exit_code == 1 and isinstance(edited.exception, SystemExit), edited.output
        assert f"prune.json: {message}; the record is damaged: use --force to make a prune run again" in line, line
    other = runner.invoke(app, ["prune", str(tmp_path / "dense"), "--out", str(tmp_path / "pruned"), "--sparsity",
                                "0.7"])  # fmt: skip
    assert other.exit_code == 1 and "made with other settings" in other.output and "sparsities" in other.output
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    foreign = runner.invoke(app, ["prune", str(tmp_path / "dense"), "--out", str(tmp_path / "mine"), "--force"])
    assert foreign.exit_code == 1 and "is not a prune run" in foreign.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_pruning_keeps_the_activation_of_the_model_it_prunes(blob_store, tmp_path):
    """A tanh (or ReLU) model pruned without --activation stays tanh: model.pt records the
    activation its weights were trained with, so evaluation gives the accuracy fine-tuning saw."""
    from asr_init.features.pipeline import FeaturePipeline
    from asr_init.features.store import FeatureStore
    from asr_init.training.finetune import evaluate_split

    base = dict(layers=2, hidden=16, splice=1, max_epochs=1, stats_frames=200)
    finetune(blob_store, FinetuneConfig(**base, activation="tanh", lr=0.002), tmp_path / "tanh")
    summary = finetune(blob_store, FinetuneConfig(max_epochs=1, init_from=str(tmp_path / "tanh"), sparsity=0.3),
                       tmp_path / "pruned")  # fmt: skip
    model, meta = load_model(tmp_path / "pruned")
    assert meta["config"]["activation"] == "tanh" and model.activation == "tanh"
    store = FeatureStore(blob_store)
    _, acc, _ = evaluate_split(model, store, FeaturePipeline.from_dict(meta["pipeline"]), "dev", "states", "cpu")
    assert acc == pytest.approx(summary["best_dev_acc"])


def test_pruning_a_kaldi_network_file_says_what_to_do(blob_store, tmp_path):
    """--init-from takes a Kaldi nnet1 file, but --sparsity prunes a whole model folder: one
    line saying so (it used to say the file had no model.pt)."""
    from conftest import write_tiny_model

    from asr_init.models.export_kaldi import export_kaldi

    export_kaldi(write_tiny_model(blob_store, tmp_path / "m"), tmp_path / "exp")
    nnet = tmp_path / "exp" / "final.nnet"
    with pytest.raises(UserError, match=rf"{nnet} is a network file: fine-tune from it first \(--init-from {nnet} "
                                        r"--reuse-layers N\)"):  # fmt: skip
        finetune(blob_store, FinetuneConfig(init_from=str(nnet), sparsity=0.5), tmp_path / "pruned")
    assert not (tmp_path / "pruned").exists()


def test_relu_without_d_star_is_refused_only_where_init_makes_a_layer(blob_store, tmp_path):
    """'--init optimal' (the default) has no D* for ReLU, but a pruned run takes every layer
    from the model, and --reuse-layers of all of them leaves only the softmax to
    --output-init: 'prune RELU_MODEL --activation relu' was refused over an --init it never uses."""
    relu = dict(activation="relu", layers=2, hidden=8)
    FinetuneConfig(init_from="m", sparsity=0.5, **relu).validate()
    FinetuneConfig(init_from="m", reuse_layers=2, **relu).validate()
    for used in (dict(reuse_layers=1), dict(reuse_layers=2, output_init="same"), {}):
        with pytest.raises(UserError, match="has no D"):
            FinetuneConfig(**(dict(init_from="m") if used else {}), **used, **relu).validate()
    finetune(blob_store, FinetuneConfig(**relu, splice=0, init="he-normal", max_epochs=1, stats_frames=100),
             tmp_path / "relu")  # fmt: skip
    pruned = FinetuneConfig(init_from=str(tmp_path / "relu"), sparsity=0.5, activation="relu", max_epochs=1,
                            stats_frames=100)  # fmt: skip
    assert finetune(blob_store, pruned, tmp_path / "pruned")["config"]["activation"] == "relu"


def test_reuse_layers_with_sparsity_is_refused_by_name():
    """--sparsity takes the whole --init-from model; a --reuse-layers K beside it was recorded
    in the config and ignored (every layer came from the model, pruned)."""
    with pytest.raises(UserError, match=r"invalid --reuse-layers 1: .*--sparsity takes the whole --init-from model"):
        FinetuneConfig(init_from="m", sparsity=0.5, reuse_layers=1).validate()


def test_the_training_plot_names_where_the_layers_came_from(blob_store, tmp_path, monkeypatch):
    """train.png's title named --init (default optimal) for a pruned model and for layers
    taken from --init-from, whose layers no --init made."""
    import asr_init.plots

    titles = []
    monkeypatch.setattr(asr_init.plots, "plot_training", lambda rows, path, title: titles.append(title))
    base = dict(layers=2, hidden=8, splice=0, max_epochs=1, stats_frames=100)
    finetune(blob_store, FinetuneConfig(**base, init="lsuv"), tmp_path / "dense")
    finetune(blob_store, FinetuneConfig(**base, init_from=str(tmp_path / "dense"), reuse_layers=1), tmp_path / "one")
    finetune(blob_store, FinetuneConfig(init_from=str(tmp_path / "dense"), sparsity=0.5, max_epochs=1,
                                        stats_frames=100), tmp_path / "pruned")  # fmt: skip
    assert titles == ["fine-tuning (lsuv, sigmoid)", "fine-tuning (layer 1 from dense, optimal, sigmoid)",
                      "fine-tuning (dense pruned to 50 %, sigmoid)"]  # fmt: skip


def test_the_settings_line_names_the_remedies_the_run_uses(blob_store, tmp_path):
    """The one line a run starts with named the shape, start and rate but none of --batch-norm,
    --dropout, --l2, --max-norm, --grad-clip, nor that a --sparsity run's start is pruned."""
    base = ["--layers", "1", "--hidden", "8", "--splice", "0", "--max-epochs", "1", "--stats-frames", "100"]
    result = runner.invoke(app, ["finetune", str(blob_store), "--out", str(tmp_path / "a"), *base, "--batch-norm",
                                 "--dropout", "0.2", "--max-norm", "2", "--grad-clip", "5"])  # fmt: skip
    line = " ".join(result.output.split())
    assert result.exit_code == 0 and "finetune: 1 x 8 sigmoid, batch norm, dropout 0.2, max-norm 2, grad-clip 5 " \
                                     "from init optimal," in line, line  # fmt: skip
    result = runner.invoke(app, ["finetune", str(blob_store), "--out", str(tmp_path / "b"), "--init-from",
                                 str(tmp_path / "a"), "--sparsity", "0.5", "--max-epochs", "1"])  # fmt: skip
    line = " ".join(result.output.split())
    assert result.exit_code == 0 and "sigmoid, batch norm from " in line and " pruned to 50 %, softmax" in line, line
