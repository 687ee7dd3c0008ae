"""Evaluating a model of Kaldi pdfs: frame accuracy on pdfs and, where the store has phone
alignments, on phones and the phone error rate through the pdf -> phone map."""

import json

import kaldiio
import numpy as np
from conftest import write_kaldi_features
from typer.testing import CliRunner

from asr_init.cli import app
from asr_init.evaluation.evaluate import _pdf_phones
from asr_init.features.config import KaldiImportConfig
from asr_init.features.kaldi import import_kaldi
from asr_init.features.store import FeatureStore
from asr_init.training.config import FinetuneConfig
from asr_init.training.finetune import finetune


def test_a_pdf_model_gets_phone_accuracy_and_per_through_the_pdf_phone_map(tmp_path):
    ref = write_kaldi_features(tmp_path / "data", speakers=5, utts_per_speaker=4)
    kaldiio.save_ark(str(tmp_path / "pdf.ark"), ref["pdfs"])
    kaldiio.save_ark(str(tmp_path / "phones.ark"), ref["phones"])
    config = KaldiImportConfig(ali=[str(tmp_path / "pdf.ark")], phone_ali=[str(tmp_path / "phones.ark")],
                               num_pdfs=8, dev_fraction=0.2)  # fmt: skip
    import_kaldi(tmp_path / "data", tmp_path / "store", config)
    store = FeatureStore(tmp_path / "store")
    # write_kaldi_features puts pdf p in phone 1 + p // 2: the map read off the train alignments.
    np.testing.assert_array_equal(_pdf_phones(store), [1 + p // 2 for p in range(8)])
    small = FinetuneConfig(layers=1, hidden=16, splice=1, batch_size=32, max_epochs=3, lr=0.004, momentum=0.5)
    finetune(tmp_path / "store", small, tmp_path / "dnn")
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "store"), "--model", str(tmp_path / "dnn"),
                                      "--split", "dev", "--tune-split", "dev"])  # fmt: skip
    assert result.exit_code == 0, result.output
    got = json.loads((tmp_path / "dnn" / "eval-dev" / "results.json").read_text())
    assert got["targets"] == "pdfs" and got["phones_from_pdfs"] and got["per"] is not None
    # A frame whose pdf is right has its phone right too; the blobs are separable, so well above chance.
    assert got["frame_acc_phones"] >= got["frame_acc_pdfs"] > 0.5
    assert 0 <= got["per"] < 1 and got["ref_phones"] > 0
    assert "phone error rate" in result.output
    pruned = CliRunner().invoke(app, ["prune", str(tmp_path / "dnn"), "--out", str(tmp_path / "pruned"), "--sparsity",
                                      "0.5", "--max-epochs", "1"])  # fmt: skip
    assert pruned.exit_code == 0, pruned.output
    rows = json.loads((tmp_path / "pruned" / "prune.json").read_text())["rows"]  # the model's own pdfs, and phones
    assert [r["dev_pdfs"] for r in rows][0] == got["frame_acc_pdfs"] and all(r["dev_pdfs"] > 0.3 for r in rows)
    assert all(r["dev_phones"] is not None and r["dev_states"] is None for r in rows)
    assert "dev pdfs" in pruned.output and "dev states" not in pruned.output
    # No test split to tune on (Kaldi's train and cv sets): decoded untuned, and said so.
    evaluate = ["evaluate", str(tmp_path / "store"), "--model", str(tmp_path / "dnn"), "--split", "dev"]
    untuned = CliRunner().invoke(app, [*evaluate, "--tune-split", "test", "--out", str(tmp_path / "u")])
    assert untuned.exit_code == 0, untuned.output
    assert "has no test split to tune the LM weight and insertion penalty on: dev is decoded with LM weight 1" in (
        " ".join(untuned.output.split())
    )
    got = json.loads((tmp_path / "u" / "results.json").read_text())
    assert got["tuned_on"] is None and (got["lm_weight"], got["insertion_penalty"]) == (1.0, 0.0) and got["per"] >= 0
    # --frames-only decodes nothing: no LM weight or penalty is recorded as used.
    frames = CliRunner().invoke(app, [*evaluate, "--frames-only", "--out", str(tmp_path / "f")])
    got = json.loads((tmp_path / "f" / "results.json").read_text())
    assert (
        frames.exit_code == 0 and got["per"] is None and got["lm_weight"] is None and got["insertion_penalty"] is None
    )
