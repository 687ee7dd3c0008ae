"""The Kaldi workflow end to end: kaldiio-written feats and alignments -> import-kaldi ->
pretrain -> finetune -> export-kaldi, and a Kaldi .dbn back into finetune --dbn."""

import json

import kaldiio
import numpy as np
from conftest import write_kaldi_features
from typer.testing import CliRunner

from asr_init.cli import app
from asr_init.models.dnn import load_model
from asr_init.models.nnet1 import read_nnet, write_nnet

runner = CliRunner()


def _run(args):
    res = runner.invoke(app, args)
    assert res.exit_code == 0, (args[0], res.output)
    return " ".join(res.output.split())


def test_kaldi_features_and_alignments_to_a_kaldi_nnet1_model(tmp_path):
    train = write_kaldi_features(tmp_path / "data" / "train", speakers=4, num_pdfs=6)
    cv = write_kaldi_features(tmp_path / "data" / "cv", speakers=2, num_pdfs=6, seed=1, prefix="cv")
    kaldiio.save_ark(str(tmp_path / "pdf.ark"), train["pdfs"] | cv["pdfs"])
    store, dbn, dnn, exp = (tmp_path / name for name in ("store", "dbn", "dnn", "exp"))
    _run(
        ["import-kaldi", str(tmp_path / "data" / "train"), "--dev", str(tmp_path / "data" / "cv")]
        + ["--ali", str(tmp_path / "pdf.ark"), "--num-pdfs", "7", "--norm-vars", "--out", str(store)]
    )
    _run(
        ["pretrain", str(store), "--out", str(dbn), "--layers", "1", "--hidden", "16", "--splice", "2"]
        + ["--epochs", "1", "--batch-size", "32"]
    )
    _run(["finetune", str(store), "--out", str(dnn), "--dbn", str(dbn), "--max-epochs", "2", "--batch-size", "32"])
    model, meta = load_model(dnn)
    assert meta["targets"] == "pdfs" and meta["outputs"] == [str(i) for i in range(7)]  # the tree's 7 pdfs
    out = _run(["export-kaldi", str(dnn), "--out", str(exp)])
    assert "wrote final.nnet, final.feature_transform, ali_train_pdf.counts, cmvn_opts (binary)" in out
    assert "warning" not in out
    assert (exp / "cmvn_opts").read_text() == "--norm-means=true --norm-vars=true\n"
    counts = np.array((exp / "ali_train_pdf.counts").read_text().split()[1:-1], float)
    expected = np.bincount(np.concatenate(list(train["pdfs"].values())), minlength=7)
    # pdf 6 never occurs: 0, as analyze-counts writes it, so that nnet-forward never decodes it (it was floored
    # at 1, the smallest prior of all, which gave that pdf the largest likelihood of every frame)
    assert expected[6] == 0 and meta["priors"][6] == 0 and min(meta["priors"][:6]) > 0
    np.testing.assert_array_equal(counts, expected)
    network = read_nnet(exp / "final.nnet")
    assert [(c.kind, c.output_dim) for c in network][-2:] == [("AffineTransform", 7), ("Softmax", 7)]
    summary = json.loads((exp / "export.json").read_text())
    assert summary["counts_from"].startswith("train split of") and summary["targets"] == "pdfs"

    # The exported hidden layers as a Kaldi DBN (what pretrain_dbn.sh writes) start a new fine-tuning.
    (tmp_path / "kaldi").mkdir()
    write_nnet(tmp_path / "kaldi" / "2.dbn", network[:-2])
    _run(
        ["finetune", str(store), "--out", str(tmp_path / "dnn2"), "--dbn", str(tmp_path / "kaldi" / "2.dbn")]
        + ["--feature-transform", str(exp / "final.feature_transform"), "--max-epochs", "1", "--batch-size", "32"]
    )
    again, meta2 = load_model(tmp_path / "dnn2")
    assert meta2["layers"][0]["from"] == "dbn" and meta2["hidden_sizes"] == [16]
    assert meta2["pipeline"]["splice"] == 2
    res = runner.invoke(app, ["evaluate", str(store), "--model", str(dnn), "--split", "dev"])
    text = " ".join(res.output.split())
    assert res.exit_code == 0 and "frame accuracy, pdfs" in text and "phone error rate" not in text, res.output
