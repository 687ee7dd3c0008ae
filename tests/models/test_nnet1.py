"""Kaldi nnet1 export and import: files read back by a reader written here from Kaldi's format
documentation (not asr-init's), the forward pass of Kaldi's nnet-forward redone in numpy, and
round trips."""

import json
import re

import numpy as np
import pytest
import torch
from nnet1_reference import nnet_forward, parse_nnet
from typer.testing import CliRunner

from asr_init.cli import app
from asr_init.errors import UserError
from asr_init.features.pipeline import FeaturePipeline
from asr_init.models.dnn import DNN, load_model, save_model
from asr_init.models.export_kaldi import export_kaldi
from asr_init.models.nnet1 import Component, affine, load_kaldi_network, read_nnet, write_nnet

runner = CliRunner()

# ------------------------------------------------------------------ fixtures


def make_model(path, activation="sigmoid", splice=2, dim=13, hidden=(24, 16), outputs=9, seed=0, features=None):
    """A model folder as finetune writes one, with random weights and input statistics (and
    the FeatureConfig `features` of the frames it was trained on)."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    mean, std = rng.normal(0, 2, dim).tolist(), rng.uniform(0.5, 3, dim).tolist()
    pipeline = FeaturePipeline(splice, tuple(mean), tuple(std), feature_config=features)
    model = DNN(pipeline.dim, list(hidden), outputs, activation)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    priors = rng.dirichlet(np.ones(outputs))
    meta = {
        "config": {"activation": activation, "prior_floor": 1.0},
        "pipeline": pipeline.to_dict(),
        "input_dim": pipeline.dim,
        "hidden_sizes": list(hidden),
        "targets": "pdfs",
        "outputs": [str(i) for i in range(outputs)],
        "phones": [],
        "states": [],
        "priors": priors.tolist(),
    }
    path.mkdir(parents=True)
    save_model(path, model, meta)
    return path


def model_log_posteriors(model_dir, feats: np.ndarray) -> np.ndarray:
    model, meta = load_model(model_dir)
    pipeline = FeaturePipeline.from_dict(meta["pipeline"])
    with torch.no_grad():
        return torch.log_softmax(model(pipeline.utterance(feats)), 1).numpy()


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_export_reproduces_the_model_in_text_and_binary(tmp_path, activation):
    model_dir = make_model(tmp_path / "model", activation)
    feats = np.random.default_rng(1).normal(0, 2, (40, 13)).astype(np.float32)
    expected = model_log_posteriors(model_dir, feats)
    parsed = {}
    for form in ("binary", "text"):
        out = tmp_path / form
        summary = export_kaldi(model_dir, out, binary=form == "binary")
        assert summary["files"] == ["final.nnet", "final.feature_transform", "ali_train_pdf.counts"]
        network = parse_nnet((out / "final.nnet").read_bytes())
        transform = parse_nnet((out / "final.feature_transform").read_bytes())
        act = {"sigmoid": "<Sigmoid>", "tanh": "<Tanh>", "relu": "<ParametricRelu>"}[activation]
        assert [c[0] for c in network] == ["<AffineTransform>", act] * 2 + ["<AffineTransform>", "<Softmax>"]
        assert [c[:3] for c in transform] == [("<Splice>", 65, 13), ("<AddShift>", 65, 65), ("<Rescale>", 65, 65)]
        assert transform[0][3].tolist() == [-2, -1, 0, 1, 2]
        got = nnet_forward(transform, network, feats)
        assert np.abs(got - expected).max() < 1e-4
        counts = (out / "ali_train_pdf.counts").read_text()
        assert counts.startswith(" [ ") and counts.endswith(" ]\n")  # Kaldi's text Vector<double>
        np.testing.assert_allclose(np.array(counts[3:-3].split(), float), load_model(model_dir)[1]["priors"])
        parsed[form] = network
    for (_, _, _, a), (_, _, _, b) in zip(parsed["binary"], parsed["text"]):  # 9 digits: text reads back exactly
        if a is not None:
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])


def test_export_writes_the_feature_options_kaldi_needs_to_make_the_models_frames(tmp_path):
    """A model trained on Kaldi's features exports steps/make_mfcc.sh's config and decode.sh's
    cmvn_opts and delta_opts; one on librosa's MFCCs none of them (and a warning), and --force
    over an earlier export removes what no longer applies."""
    from asr_init.features.frontend import FeatureConfig

    kaldi = FeatureConfig(sample_rate=8000, use_energy=False, dither=0.0, cmvn="speaker", norm_vars=True)
    model_dir = make_model(tmp_path / "kaldi", dim=39, splice=1, features=kaldi)
    summary = export_kaldi(model_dir, tmp_path / "exp")
    assert summary["files"] == ["final.nnet", "final.feature_transform", "ali_train_pdf.counts", "cmvn_opts",
                                "delta_opts", "conf/mfcc.conf"]  # fmt: skip
    assert (tmp_path / "exp" / "cmvn_opts").read_text() == "--norm-means=true --norm-vars=true\n"
    assert (tmp_path / "exp" / "delta_opts").read_text() == "--delta-order=2 --delta-window=2\n"
    conf = (tmp_path / "exp" / "conf" / "mfcc.conf").read_text().splitlines()
    for line in ("--sample-frequency=8000", "--use-energy=false", "--dither=0.0", "--num-ceps=13", "--num-mel-bins=23",
                 "--high-freq=4000.0", "--snip-edges=true", "--window-type=povey"):  # fmt: skip
        assert line in conf
    fbank_features = FeatureConfig(kind="kaldi-fbank", num_mel_bins=40, cmvn="none")
    fbank = make_model(tmp_path / "fbank", dim=120, splice=0, features=fbank_features)
    assert export_kaldi(fbank, tmp_path / "exp", force=True)["files"] == [
        "final.nnet", "final.feature_transform", "ali_train_pdf.counts", "delta_opts", "conf/fbank.conf"]  # fmt: skip
    assert not (tmp_path / "exp" / "cmvn_opts").exists() and not (tmp_path / "exp" / "conf" / "mfcc.conf").exists()
    librosa = make_model(tmp_path / "librosa", dim=39, splice=0, features=FeatureConfig(kind="librosa-mfcc"))
    res = runner.invoke(app, ["export-kaldi", str(librosa), "--out", str(tmp_path / "exp"), "--force"])
    assert res.exit_code == 0, res.output
    assert "trained on librosa's MFCCs, which no Kaldi tool computes" in " ".join(res.output.split())
    assert sorted(p.name for p in (tmp_path / "exp").rglob("*") if p.is_file()) == [
        "ali_train_pdf.counts", "export.json", "final.feature_transform", "final.nnet"]  # fmt: skip


def test_import_of_an_export_gives_back_identical_weights(tmp_path):
    model_dir = make_model(tmp_path / "model")
    model, meta = load_model(model_dir)
    for binary in (True, False):
        out = tmp_path / ("bin" if binary else "txt")
        export_kaldi(model_dir, out, binary=binary)
        net = load_kaldi_network(out / "final.nnet")  # final.feature_transform found beside it
        assert not net.folded and net.activation == "sigmoid"
        for (w, b), layer in zip(net.hidden, model.hidden):
            assert torch.equal(w, layer.weight.detach()) and torch.equal(b, layer.bias.detach())
        assert torch.equal(net.output[0], model.output.weight.detach())
        assert torch.equal(net.output[1], model.output.bias.detach())
        ours = FeaturePipeline.from_dict(meta["pipeline"])
        assert net.pipeline.splice == ours.splice and net.pipeline.squash == ours.squash
        np.testing.assert_allclose(net.pipeline.mean, ours.mean, rtol=1e-6)
        np.testing.assert_allclose(net.pipeline.std, ours.std, rtol=1e-6)
        assert [(c.kind, c.output_dim, c.input_dim) for c in read_nnet(out / "final.nnet")][-1] == ("Softmax", 9, 9)


def test_a_network_trained_without_a_feature_transform_reads_with_an_empty_one(tmp_path):
    """A network nnet-train-frmshuff trained without --feature-transform: an empty transform
    ('<Nnet> </Nnet>', nnet-info's 0 components) is the identity, as nnet-forward without one; it
    was refused as "holds no components", and with none beside the network the message says how."""
    export_kaldi(make_model(tmp_path / "model", splice=0), tmp_path / "exp", binary=False)
    (tmp_path / "exp" / "final.feature_transform").write_text("<Nnet> </Nnet>\n")
    net = load_kaldi_network(tmp_path / "exp" / "final.nnet")
    assert not net.folded and net.pipeline.splice == 0 and not net.pipeline.squash
    assert net.pipeline.mean == (0.0,) * 13 and net.pipeline.std == (1.0,) * 13
    for damaged in (b"", b"\0B", b"<Nnet> "):  # a failed copy is not an empty transform
        (tmp_path / "exp" / "final.feature_transform").write_bytes(damaged)
        with pytest.raises(UserError, match=r"holds no components \(an empty one is '<Nnet> </Nnet>'\)"):
            load_kaldi_network(tmp_path / "exp" / "final.nnet")
    (tmp_path / "exp" / "final.feature_transform").unlink()
    with pytest.raises(UserError, match="for a network trained without one, a file holding '<Nnet> </Nnet>'"):
        load_kaldi_network(tmp_path / "exp" / "final.nnet")


def test_a_kaldi_network_trained_with_dropout_reads_as_the_same_layers(tmp_path):
    """train.sh --proto-opts --with-dropout puts <Dropout> after each activation: nnet-forward
    passes through it, and so does the import (its rate in either of Kaldi's spellings)."""
    export_kaldi(make_model(tmp_path / "model"), tmp_path / "exp", binary=False)
    text = (tmp_path / "exp" / "final.nnet").read_text()
    rates = iter(["<DropoutRate> 0.2", "<DropoutRetention> 0.9"])
    dropped = re.sub(r"<Sigmoid> (\d+) \d+ \n<!EndOfComponent>", lambda m: f"{m[0]}\n<Dropout> {m[1]} {m[1]} "
                     f"{next(rates)} <!EndOfComponent>", text)  # fmt: skip
    assert dropped.count("<Dropout>") == 2
    (tmp_path / "exp" / "dropout.nnet").write_text(dropped)
    plain, net = (load_kaldi_network(tmp_path / "exp" / name) for name in ("final.nnet", "dropout.nnet"))
    assert net.activation == "sigmoid" and len(net.hidden) == len(plain.hidden) == 2
    for (w, b), (w0, b0) in zip([*net.hidden, net.output], [*plain.hidden, plain.output]):
        assert torch.equal(w, w0) and torch.equal(b, b0)


@pytest.mark.parametrize("tiled_negative", [False, True])
def test_kaldi_transform_normalising_each_offset_is_folded_into_layer_one(tmp_path, tiled_negative):
    """steps/nnet/train.sh's transforms normalise every spliced dimension with its own
    statistics; the imported pipeline plus the adjusted first layer compute the same thing. So
    does a transform that is tiled but scales by negative numbers (the pipeline's standard
    deviation is |1 / scale|: the sign was lost, and the network computed something else)."""
    rng = np.random.default_rng(3)
    d, k = 5, 2
    n = (2 * k + 1) * d
    shift, scale = rng.normal(0, 1, n), rng.uniform(0.3, 2, n)
    if tiled_negative:
        shift, scale = np.tile(shift[:d], 2 * k + 1), np.tile(scale[:d] * [1, -1, 1, -1, -1], 2 * k + 1)
    transform = [
        Component("Splice", n, d, {"offsets": np.arange(-k, k + 1, dtype=np.int32)}),
        Component("AddShift", n, n, {"shift": shift.astype(np.float32), "learn_rate_coef": 0.0}),
        Component("Rescale", n, n, {"scale": scale.astype(np.float32), "learn_rate_coef": 0.0}),
    ]
    layers = [affine(rng.normal(0, 0.3, (7, n)), rng.normal(0, 0.3, 7)), Component("Sigmoid", 7, 7)]
    layers += [affine(rng.normal(0, 0.3, (4, 7)), rng.normal(0, 0.3, 4)), Component("Softmax", 4, 4)]
    write_nnet(tmp_path / "feature_transform", transform, binary=False)
    write_nnet(tmp_path / "final.nnet", layers)
    net = load_kaldi_network(tmp_path / "final.nnet", tmp_path / "feature_transform")
    assert net.folded and net.pipeline.splice == k
    feats = rng.normal(0, 2, (30, d)).astype(np.float32)
    expected = nnet_forward(
        parse_nnet((tmp_path / "feature_transform").read_bytes()),
        parse_nnet((tmp_path / "final.nnet").read_bytes()),
        feats,
    )
    x = net.pipeline.utterance(feats).double()
    for w, b in net.hidden:
        x = torch.sigmoid(x @ w.double().T + b.double())
    got = torch.log_softmax(x @ net.output[0].double().T + net.output[1].double(), 1).numpy()
    assert np.abs(got - expected).max() < 1e-4


def test_malformed_and_unsupported_networks_give_one_error_line(blob_store, tmp_path):
    model_dir = make_model(tmp_path / "model", dim=39, splice=0)
    export_kaldi(model_dir, tmp_path / "exp")
    data = (tmp_path / "exp" / "final.nnet").read_bytes()
    (tmp_path / "exp" / "cut.nnet").write_bytes(data[: len(data) // 2])
    lstm = b"<Nnet> <LstmProjected> 4 4 <!EndOfComponent> </Nnet> "
    (tmp_path / "exp" / "lstm.nnet").write_bytes(lstm)
    nan_net = b"<Nnet> <AffineTransform> 2 2 [ 1 nan \n 0 1 ] [ 0 0 ] <Sigmoid> 2 2 </Nnet> "
    (tmp_path / "exp" / "nan.dbn").write_bytes(nan_net)
    (tmp_path / "exp" / "nan.feature_transform").write_bytes(b"<Nnet> <AddShift> 2 2 [ 0 0 ] </Nnet> ")
    cases = [
        (
            ["--init-from", str(tmp_path / "exp" / "cut.nnet"), "--reuse-layers", "1"],
            "is malformed: a 24 x 39 matrix of 3,744 bytes, but",
        ),
        (
            ["--init-from", str(tmp_path / "exp" / "lstm.nnet"), "--reuse-layers", "1"],
            "has a <LstmProjected> component",
        ),
        (["--dbn", str(tmp_path / "exp" / "final.nnet")], "ends in <Softmax>: it is a trained network, not a DBN"),
        (["--dbn", str(tmp_path / "exp" / "nan.dbn")], "component 1 (<AffineTransform>) has a non-finite value (nan)"),
    ]
    for args, message in cases:
        res = runner.invoke(app, ["finetune", str(blob_store), "--out", str(tmp_path / "ft"), *args])
        assert res.exit_code == 1, res.output
        errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and message in " ".join(res.output.split()), res.output
    (tmp_path / "lone").mkdir()
    (tmp_path / "lone" / "x.dbn").write_bytes(data)
    with pytest.raises(UserError, match="no feature transform for Kaldi network .* --feature-transform"):
        load_kaldi_network(tmp_path / "lone" / "x.dbn")
    export_kaldi(make_model(tmp_path / "relu", "relu"), tmp_path / "relu-exp", binary=False)
    text = (tmp_path / "relu-exp" / "final.nnet").read_text()
    assert (
        "<ParametricRelu> 24 24" in text
        and load_kaldi_network(tmp_path / "relu-exp" / "final.nnet").activation == "relu"
    )
    leaky = text.replace("[ 0 0 0", "[ 0.01 0.01 0.01", 1).replace("<Nnet> ", "<Nnet> <Dropout> 65 65 ", 1)
    (tmp_path / "relu-exp" / "final.nnet").write_text(leaky)  # numbered as in the file, the dropout counted
    with pytest.raises(UserError, match="<ParametricRelu> of component 3 is a leaky or learnt ReLU"):
        load_kaldi_network(tmp_path / "relu-exp" / "final.nnet")
    with pytest.raises(UserError, match="already holds final.nnet"):
        export_kaldi(model_dir, tmp_path / "exp")
    with pytest.raises(UserError, match="--out .* is the model folder"):
        export_kaldi(model_dir, model_dir, force=True)


def test_export_holds_the_model_and_its_store_as_a_stage_holds_its_inputs(blob_store, tmp_path):
    """export-kaldi read a model and store that extract --force (or a finetune run) could be
    replacing meanwhile: like every stage, it holds them shared, so a writer's hold refuses it."""
    from asr_init.folders import _locked

    model_dir = make_model(tmp_path / "model", dim=39, splice=0)
    (model_dir / "finetune.json").write_text(json.dumps({"store": str(blob_store)}))
    for held in (blob_store, model_dir):
        with _locked(held, True, "--out"), pytest.raises(UserError, match=f"input {held} is being written by"):
            export_kaldi(model_dir, tmp_path / "exp")
        assert not (tmp_path / "exp").exists()


def test_export_refuses_a_changed_training_store_and_an_out_over_it(blob_store, tmp_path):
    model_dir = make_model(tmp_path / "model", dim=39, splice=0)
    (model_dir / "finetune.json").write_text(json.dumps({"store": str(blob_store)}))
    (model_dir / "finetune.config.json").write_text(json.dumps({"inputs": {"feature store": "0123456789abcdef"}}))
    before = sorted(p.name for p in blob_store.rglob("*"))
    for out, message in [
        (tmp_path / "exp", f"the feature store {blob_store} is no longer the one"),
        (blob_store / "exp", f"--out {blob_store / 'exp'} lies inside the training store {blob_store}"),
    ]:
        res = runner.invoke(app, ["export-kaldi", str(model_dir), "--out", str(out)])
        assert res.exit_code == 1, res.output
        errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and message in " ".join(res.output.split()), res.output
        assert not (out / "final.nnet").exists()
    assert sorted(p.name for p in blob_store.rglob("*")) == before


def test_export_warns_that_phone_outputs_are_not_pdfs_naming_whose_phones_they_are(blob_store, tmp_path):
    """A phone model of an extract store has asr-init's phones; one of an import-kaldi store, Kaldi's phone ids."""
    import kaldiio
    from conftest import write_kaldi_features

    from asr_init.features.config import KaldiImportConfig
    from asr_init.features.kaldi import import_kaldi
    from asr_init.features.store import FeatureStore

    ref = write_kaldi_features(tmp_path / "data", speakers=3, utts_per_speaker=2)
    kaldiio.save_ark(str(tmp_path / "pdf.ark"), ref["pdfs"])
    kaldiio.save_ark(str(tmp_path / "phones.ark"), ref["phones"])
    config = KaldiImportConfig(ali=[str(tmp_path / "pdf.ark")], phone_ali=[str(tmp_path / "phones.ark")], num_pdfs=8)
    import_kaldi(tmp_path / "data", tmp_path / "kaldi", config)
    for store, said, not_said in [
        (blob_store, "this model's outputs are asr-init's phones, not the pdfs", "Kaldi's phone ids"),
        (tmp_path / "kaldi", "this model's outputs are Kaldi's phone ids, not the pdfs", "asr-init's"),
    ]:
        labels = FeatureStore(store).labels("phones")
        model_dir = make_model(tmp_path / f"{store.name}-model", outputs=len(labels))
        model, meta = load_model(model_dir)
        save_model(model_dir, model, meta | {"targets": "phones", "outputs": labels})
        (model_dir / "finetune.json").write_text(json.dumps({"store": str(store)}))
        res = runner.invoke(app, ["export-kaldi", str(model_dir), "--out", str(tmp_path / f"{store.name}-exp")])
        text = " ".join(res.output.split())
        assert res.exit_code == 0 and said in text and not_said not in text, res.output
    (model_dir / "finetune.json").write_text(json.dumps({"store": str(tmp_path / "gone")}))  # whose phones: unknown
    res = runner.invoke(app, ["export-kaldi", str(model_dir), "--out", str(tmp_path / "exp")])
    assert "this model's outputs are phones, not the pdfs" in " ".join(res.output.split()), res.output


def test_a_feature_transform_splicing_beyond_the_limit_or_not_minus_k_to_k_is_refused(blob_store, tmp_path):
    """A <Splice> of a few bytes may ask for +-40000 frames (gigabytes per mini-batch): it is held to
    --splice's limit before any frame is spliced; offsets that are not -K..K are refused, and a long
    list of them is shown by its ends."""
    d = 39
    for name, offsets in [("wide", np.arange(-101, 102)), ("stepped", np.arange(-300, 301, 2))]:
        n = len(offsets) * d
        transform = [Component("Splice", n, d, {"offsets": offsets.astype(np.int32)})]
        (tmp_path / name).mkdir()
        write_nnet(tmp_path / name / "final.feature_transform", transform)
        write_nnet(tmp_path / name / "1.dbn", [affine(np.zeros((2, n)), np.zeros(2)), Component("Sigmoid", 2, 2)])
    cases = {
        "wide": "feature transform {} splices 101 frames either side; asr-init splices 0 to 100 (--splice)",
        "stepped": "feature transform {} splices frames [-300, -298, -296, -294, -292, ..., 292, 294, 296, 298, 300] "
        "(301 offsets); asr-init splices a symmetric, contiguous context -K..K",
    }
    for name, message in cases.items():
        res = runner.invoke(app, ["finetune", str(blob_store), "--dbn", str(tmp_path / name / "1.dbn"),
                                  "--out", str(tmp_path / "ft")])  # fmt: skip
        errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
        expected = message.format(tmp_path / name / "final.feature_transform")
        assert res.exit_code == 1 and len(errors) == 1 and expected in " ".join(res.output.split()), res.output
        assert not (tmp_path / "ft").exists()


def test_a_feature_transform_with_a_component_it_cannot_hold_names_what_a_transform_may_hold(tmp_path):
    """An LDA <LinearTransform> (a marker asr-init reads nowhere) and an <AffineTransform> (one it reads in
    networks) in a feature transform are refused alike: the file is named as a feature transform and the
    message lists what a transform may hold, not the components of a network."""
    write_nnet(tmp_path / "1.dbn", [affine(np.zeros((2, 4)), np.zeros(2)), Component("Sigmoid", 2, 2)])
    (tmp_path / "lda.ft").write_text(
        "<Nnet> <LinearTransform> 4 4 [ 1 0 0 0 \n 0 1 0 0 \n 0 0 1 0 \n 0 0 0 1 ] </Nnet>"
    )
    write_nnet(tmp_path / "affine.ft", [affine(np.eye(4), np.zeros(4))])
    for name, marker in [("lda.ft", "<LinearTransform>"), ("affine.ft", "<AffineTransform>")]:
        with pytest.raises(UserError) as err:
            load_kaldi_network(tmp_path / "1.dbn", tmp_path / name)
        assert str(err.value) == (
            f"feature transform {tmp_path / name} has a {marker} component; asr-init reads feature transforms of "
            "<Splice>, <AddShift>, <Rescale> and a final <Sigmoid> (an LDA or MLLT <LinearTransform> is not read)"
        )


_SPLICE = Component("Splice", 429, 39, {"offsets": np.arange(-5, 6, dtype=np.int32)})


def _norm(kind, dim, value):
    key = "shift" if kind == "AddShift" else "scale"
    return Component(kind, dim, dim, {key: np.full(dim, value, np.float32), "learn_rate_coef": 0.0})


@pytest.mark.parametrize(
    "transform, said",
    [
        ([_SPLICE, _norm("Rescale", 429, 1e38)], "component 2 (<Rescale>) scales input 0 by 1e+38;"),
        ([_SPLICE, _norm("Rescale", 429, 1e-45)], "component 2 (<Rescale>) scales input 0 by 1.4013e-45;"),
        ([_norm("Rescale", 39, 1e-30), _SPLICE], "component 1 (<Rescale>) scales input 0 by 1e-30;"),
        ([_SPLICE, _norm("AddShift", 429, 3e38)], "component 2 (<AddShift>) shifts input 0 by 3e+38;"),
        (
            [_SPLICE, _norm("Rescale", 429, 1e10), _norm("Rescale", 429, 1e10)],
            "component 3 (<Rescale>) scales input 0 by 1e+20 (with the components before it);",
        ),
    ],
)
def test_a_feature_transform_whose_normalisation_gives_no_finite_inputs_is_refused_where_it_is_read(
    blob_store, tmp_path, transform, said
):
    """A <Rescale> of 1e38 made every input infinite, and fine-tuning blamed the learning rate for the
    NaN loss; one of 1e-45 (a standard deviation beyond float32) made every input 0. The transform is
    refused when it is read, naming it and the component, before the run's folder is made."""
    write_nnet(tmp_path / "final.feature_transform", transform)
    w = np.full((4, 429), 0.01, np.float32)
    write_nnet(tmp_path / "1.dbn", [affine(w, np.zeros(4)), Component("Sigmoid", 4, 4)])
    res = runner.invoke(app, ["finetune", str(blob_store), "--dbn", str(tmp_path / "1.dbn"),
                              "--out", str(tmp_path / "ft"), "--max-epochs", "1"])  # fmt: skip
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    text = " ".join(res.output.split())
    assert res.exit_code == 1 and len(errors) == 1, res.output
    assert f"error: feature transform {tmp_path / 'final.feature_transform'}: {said}" in text, res.output
    assert "scales of magnitude 8.7e-19 to 1.2e+18" in text and "--lr" not in text, res.output
    assert not (tmp_path / "ft").exists()


def test_a_feature_transform_at_the_normalisation_limits_is_read(tmp_path):
    """Scales of magnitude 2**-60 and 2**60 and shifts of +-2**60 are taken (beyond them, refused):
    a frame value up to 2**60 is then normalised to a finite float32."""
    scale = np.array([2.0**60, -(2.0**-60)] * 2, np.float32)
    transform = [
        Component("AddShift", 4, 4, {"shift": np.array([2.0**60, -(2.0**60), 0, 1], np.float32)}),
        Component("Rescale", 4, 4, {"scale": scale, "learn_rate_coef": 0.0}),
    ]
    write_nnet(tmp_path / "final.feature_transform", transform)
    write_nnet(tmp_path / "1.dbn", [affine(np.ones((2, 4)), np.zeros(2)), Component("Sigmoid", 2, 2)])
    assert load_kaldi_network(tmp_path / "1.dbn").pipeline.std[:2] == (2.0**-60, 2.0**60)
    transform[1].params["scale"][1] = np.nextafter(np.float32(-(2.0**-60)), np.float32(0))
    write_nnet(tmp_path / "final.feature_transform", transform)
    with pytest.raises(UserError, match=r"component 2 \(<Rescale>\) scales input 1 by -8\.67362e-19;"):
        load_kaldi_network(tmp_path / "1.dbn")


@pytest.mark.parametrize("bad", ["abc", [1, 2], -5, 1e308, True])
def test_a_kaldi_stores_bad_own_stats_count_is_refused_before_anything_is_written(kaldi_stores, tmp_path, bad):
    """cmvn_own_stats of an import-kaldi store's config.json "abc" or [1, 2] failed with a ValueError or
    TypeError after final.nnet was written; -5 and 1e308 were printed as counts of utterances."""
    import shutil

    from asr_init.features.store import FeatureStore

    store_path = tmp_path / "store"
    shutil.copytree(kaldi_stores["pdfs"], store_path)
    store = FeatureStore(store_path)
    pipeline, labels = FeaturePipeline.from_store(store, splice=0), store.labels("pdfs")
    meta = {"config": {"activation": "sigmoid"}, "pipeline": pipeline.to_dict(), "input_dim": pipeline.dim,
            "hidden_sizes": [8], "targets": "pdfs", "outputs": labels, "phones": store.phones, "states": store.states,
            "priors": [1 / len(labels)] * len(labels), "layers": []}  # fmt: skip
    (tmp_path / "m").mkdir()
    save_model(tmp_path / "m", DNN(pipeline.dim, [8], len(labels), "sigmoid"), meta)
    (tmp_path / "m" / "finetune.json").write_text(json.dumps({"store": str(store_path)}))
    assert export_kaldi(tmp_path / "m", tmp_path / "good")["store"] == str(store_path)
    config = json.loads((store_path / "config.json").read_text())
    (store_path / "config.json").write_text(json.dumps(config | {"cmvn_own_stats": bad}))
    with pytest.raises(UserError) as caught:
        export_kaldi(tmp_path / "m", tmp_path / "exp")
    assert str(caught.value) == (
        f"{store_path / 'config.json'}: cmvn_own_stats must be a whole number >= 0 or left out, not "
        f"{json.dumps(bad)}; make the store again with 'asr-init import-kaldi'"
    )
    assert not (tmp_path / "exp").exists()
