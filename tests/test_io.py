"""Checkpoints are read as data only: a file whose pickle would run code is refused, unread."""

import os

import pytest
import torch
from typer.testing import CliRunner

from asr_init.cli import app
from asr_init.errors import UserError
from asr_init.io import load_checkpoint, save_checkpoint


class _RunsCode:
    """Unpickling this object would call os.system (what a hostile model.pt could do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_checkpoint_round_trip_of_plain_data(tmp_path):
    state = {
        "W": torch.arange(6.0).reshape(2, 3),
        "rows": [{"epoch": 1, "loss": 0.5}],
        "rng": {"state": 2**100},
        "name": "rbm",
        "flag": True,
        "none": None,
        "pair": (1, 2.0),
    }
    save_checkpoint(state, tmp_path / "ok.pt")
    again = load_checkpoint(tmp_path / "ok.pt")
    assert torch.equal(again["W"], state["W"]) and again["rng"]["state"] == 2**100 and again["pair"] == (1, 2.0)


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"format": "asr-init-model", "payload": _RunsCode(marker)}, tmp_path / "evil.pt")
    with pytest.raises(UserError) as err:
        load_checkpoint(tmp_path / "evil.pt")
    assert "holds objects other than tensors and plain data" in str(err.value) and "evil.pt" in str(err.value)
    assert not marker.exists()


def test_evaluate_refuses_a_hostile_model_with_one_error_line(blob_store, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    marker = tmp_path / "ran"
    torch.save({"format": "asr-init-model", "payload": _RunsCode(marker)}, model / "model.pt")
    result = CliRunner().invoke(app, ["evaluate", str(blob_store), "--model", str(model)])
    assert result.exit_code == 1 and not marker.exists()
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[0].startswith("error:") and "model.pt" in " ".join(result.output.split())


def test_force_never_deletes_an_input(tiny_store, tmp_path):
    """--out on (or around, or inside) an input is refused before anything is deleted."""
    runner = CliRunner()
    before = sorted(p.name for p in tiny_store.iterdir())
    for out in (tiny_store, tiny_store / "dbn", tiny_store.parent):
        result = runner.invoke(app, ["pretrain", str(tiny_store), "--out", str(out), "--force", "--layers", "1"])
        text = " ".join(result.output.split())
        assert result.exit_code == 1 and "the feature store" in text and "nothing was written or deleted" in text
        assert any(word in text for word in ("is the", "contains the", "lies inside the"))
    assert sorted(p.name for p in tiny_store.iterdir()) == before
    dbn = tmp_path / "dbn"
    from asr_init.training.config import PretrainConfig
    from asr_init.training.pretrain import pretrain

    pretrain(tiny_store, PretrainConfig(layers=1, hidden=16, epochs_gauss=1, max_frames=256, stats_frames=100), dbn)
    result = runner.invoke(app, ["finetune", str(tiny_store), "--dbn", str(dbn), "--out", str(dbn), "--force"])
    assert result.exit_code == 1 and "is the --dbn folder" in " ".join(result.output.split())
    assert (dbn / "dbn.pt").exists()


def test_extract_refuses_an_output_inside_the_corpus(kaldi_dir):
    result = CliRunner().invoke(app, ["extract", str(kaldi_dir), "--out", str(kaldi_dir / "store"), "--force"])
    assert result.exit_code == 1 and "lies inside the corpus" in " ".join(result.output.split())
    assert not (kaldi_dir / "store").exists()


def test_evaluate_out_refuses_the_store_and_the_model_folder(blob_store, tmp_path):
    from asr_init.training.config import FinetuneConfig
    from asr_init.training.finetune import finetune

    model = tmp_path / "m"
    finetune(
        blob_store, FinetuneConfig(layers=1, hidden=16, splice=1, batch_size=32, max_epochs=1, stats_frames=100), model
    )
    before = sorted(p.name for p in blob_store.iterdir())
    runner = CliRunner()
    for out, what in (
        (blob_store, "the feature store"),
        (model, "the --model folder"),
        (tmp_path, "the --model folder"),
    ):
        result = runner.invoke(
            app, ["evaluate", str(blob_store), "--model", str(model), "--out", str(out), "--frames-only"]
        )
        assert result.exit_code == 1 and what in " ".join(result.output.split()), result.output
    assert sorted(p.name for p in blob_store.iterdir()) == before
    ok = runner.invoke(app, ["evaluate", str(blob_store), "--model", str(model), "--frames-only"])
    assert ok.exit_code == 0 and (model / "eval-test" / "results.json").exists()


def test_a_folder_given_for_a_text_file_is_named_a_folder(tmp_path):
    from asr_init.io import read_regular_file

    with pytest.raises(UserError, match=f"label list {tmp_path} is a folder; give the file in it"):
        read_regular_file(tmp_path, "label list")


def test_a_record_or_log_that_is_not_utf8_is_a_user_error_naming_it(tmp_path):
    """read_json and read_csv, which every command reads its records and logs with: a file that is not
    UTF-8 text (a byte of Latin-1 in it) is a UserError naming it and the byte (it was a UnicodeDecodeError)."""
    from asr_init.io import read_csv, read_json

    for read, name in ((read_json, "a.json"), (read_csv, "a.csv")):
        (tmp_path / name).write_bytes(b'{"caf\xe9": 1}\n')
        with pytest.raises(UserError, match=f"^{tmp_path / name} is not UTF-8 text \\(byte 0xe9 at byte offset 5\\)$"):
            read(tmp_path / name)


def test_a_csv_log_the_csv_module_cannot_read_is_a_user_error_naming_it(tmp_path):
    """A cell past the csv module's field size limit (128 KiB): a UserError naming the file (it was
    csv.Error's traceback)."""
    from asr_init.io import read_csv

    (tmp_path / "long.csv").write_text('a,b\n1,"' + "x" * 200_000 + '"\n')
    with pytest.raises(UserError, match=f"^{tmp_path / 'long.csv'} is not a CSV log asr-init wrote"):
        read_csv(tmp_path / "long.csv")


def test_a_record_holding_an_integer_python_does_not_convert_is_a_user_error_naming_it(tmp_path):
    """An integer literal of more than 4,300 digits: a UserError naming the file (it was a ValueError
    that is not a JSONDecodeError)."""
    from asr_init.io import read_json

    (tmp_path / "r.json").write_text('{"epochs": 1' + "0" * 5000 + "}")
    with pytest.raises(UserError, match=f"^{tmp_path / 'r.json'} is not a record asr-init wrote"):
        read_json(tmp_path / "r.json")
