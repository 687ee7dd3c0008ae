"""model.pt and dbn.pt whose records are missing or disagree: one UserError naming the file."""

import pytest
import torch
from conftest import write_tiny_model

from asr_init.errors import UserError
from asr_init.features.pipeline import FeaturePipeline
from asr_init.features.store import FeatureStore
from asr_init.io import load_checkpoint, save_checkpoint
from asr_init.models.dbn import load_dbn, load_stack, save_dbn
from asr_init.models.dnn import load_model


@pytest.fixture
def model_dir(blob_store, tmp_path):
    return write_tiny_model(blob_store, tmp_path / "model")


def _rewrite(path, change):
    ckpt = load_checkpoint(path)
    change(ckpt)
    save_checkpoint(ckpt, path)


def test_tiny_model_loads(model_dir):
    model, meta = load_model(model_dir)
    assert model.hidden[0].weight.shape == (8, 39) and meta["targets"] == "states"


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["meta"].pop("priors"), r"model\.pt has no 'priors'"),
        (lambda c: c.pop("state_dict"), r"model\.pt has no 'state_dict'"),
        (lambda c: c["state_dict"].pop("output.bias"), r"model\.pt is inconsistent: weight output\.bias is missing"),
        (
            lambda c: c["state_dict"].update({"hidden.0.weight": torch.zeros(8, 40)}),
            r"model\.pt is inconsistent: weight hidden\.0\.weight has shape \(8, 40\), but .* \(8, 39\)",
        ),
        (lambda c: c["meta"].update(hidden_sizes=[8, 8]), r"model\.pt is inconsistent: weight hidden\.1\.weight"),
        (lambda c: c["meta"].update(input_dim=40), r"model\.pt is inconsistent: its feature pipeline gives 39 inputs"),
        (lambda c: c["meta"].update(priors=[0.5, 0.5]), r"model\.pt is inconsistent: it has 2 class priors for 12"),
        (lambda c: c["meta"]["config"].update(activation="bogus"), r"model\.pt is inconsistent: unknown activation"),
        (
            lambda c: c["state_dict"]["hidden.0.weight"].view(-1)[5].fill_(float("nan")),
            r"model\.pt is inconsistent: weight hidden\.0\.weight holds NaN or infinite values \(such as nan\)",
        ),
        (
            lambda c: c["state_dict"]["output.bias"].view(-1)[0].fill_(float("-inf")),
            r"model\.pt is inconsistent: weight output\.bias holds NaN or infinite values \(such as -inf\)",
        ),
        (
            lambda c: c["meta"]["priors"].__setitem__(3, float("nan")),
            r"model\.pt is inconsistent: class 3 has a prior of nan; priors are relative frequencies",
        ),
        (
            lambda c: c["meta"]["priors"].__setitem__(2, -0.5),
            r"model\.pt is inconsistent: class 2 has a prior of -0\.5",
        ),
        (
            lambda c: c["meta"]["pipeline"]["std"].__setitem__(4, 0.0),
            r"model\.pt is inconsistent: its feature pipeline's normalisation gives dimension 4 a mean of .* and a "
            r"standard deviation of 0\.0",
        ),
        (
            lambda c: c["meta"]["pipeline"]["mean"].__setitem__(1, float("inf")),
            r"model\.pt is inconsistent: its feature pipeline's normalisation gives dimension 1 a mean of inf",
        ),
        (
            lambda c: c["meta"]["pipeline"].update(splice=40000),
            r"model\.pt is inconsistent: its feature pipeline splices 40000 frames either side; asr-init splices 0 to "
            r"100 \(--splice\)",
        ),
        (
            lambda c: c["meta"]["pipeline"].update(splice=-1),
            r"model\.pt is inconsistent: its feature pipeline splices -1 frames either side",
        ),
    ],
)
def test_damaged_model_file(model_dir, change, message):
    _rewrite(model_dir / "model.pt", change)
    with pytest.raises(UserError, match=message):
        load_model(model_dir)
    with pytest.raises(UserError, match=message):
        load_stack(model_dir)  # what inspect --model and finetune --init-from read


@pytest.fixture
def dbn_dir(blob_store, tmp_path):
    store = FeatureStore(blob_store)
    stack = [(torch.zeros(6, 39), torch.zeros(6)), (torch.zeros(5, 6), torch.zeros(5))]
    (tmp_path / "dbn").mkdir()
    save_dbn(
        tmp_path / "dbn" / "dbn.pt", stack, FeaturePipeline.from_store(store, 0), store.phones, store.states, "gauss"
    )
    return tmp_path / "dbn"


def test_dbn_loads(dbn_dir):
    assert [w.shape for w, _ in load_stack(dbn_dir).layers] == [(6, 39), (5, 6)]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.pop("pipeline"), r"dbn\.pt has no 'pipeline'"),
        (lambda c: c["layers"][1].pop("W"), r"dbn\.pt has no 'W'"),
        (
            lambda c: c["layers"][1].update(W=torch.zeros(5, 7)),
            r"dbn\.pt is inconsistent: layer 2 has W of shape \(5, 7\) and b of shape \(5,\), but its input is 6 wide "
            r"\(layer 1\)",
        ),
        (
            lambda c: c["layers"][0].update(b=torch.zeros(3)),
            r"dbn\.pt is inconsistent: layer 1 has W of shape \(6, 39\)",
        ),
        (lambda c: c.update(layers=[]), r"dbn\.pt is inconsistent: it has no layers"),
        (
            lambda c: c["layers"][1]["W"].view(-1)[3].fill_(float("inf")),
            r"dbn\.pt is inconsistent: layer 2's W holds NaN or infinite values \(such as inf\)",
        ),
        (
            lambda c: c["layers"][0]["b"].view(-1)[0].fill_(float("nan")),
            r"dbn\.pt is inconsistent: layer 1's b holds NaN or infinite values \(such as nan\)",
        ),
        (
            lambda c: c["pipeline"]["std"].__setitem__(0, float("nan")),
            r"dbn\.pt is inconsistent: its feature pipeline's normalisation gives dimension 0 a mean of",
        ),
        (
            lambda c: c["pipeline"].update(splice=101),
            r"dbn\.pt is inconsistent: its feature pipeline splices 101 frames either side; asr-init splices 0 to 100",
        ),
    ],
)
def test_damaged_dbn_file(dbn_dir, change, message):
    _rewrite(dbn_dir / "dbn.pt", change)
    with pytest.raises(UserError, match=message):
        load_dbn(dbn_dir)


def test_a_folder_without_a_finished_model_is_named_for_what_it_is(blob_store, tmp_path):
    """--init-from (and inspect --model) of a fine-tuning run stopped before its model.pt, or of an
    export-kaldi folder: the line says the folder holds neither model.pt nor dbn.pt and what to do;
    it used to ask whether an interrupted finetune run was a finished 'asr-init pretrain' folder."""
    from typer.testing import CliRunner

    from asr_init.cli import app
    from asr_init.training.config import FinetuneConfig
    from asr_init.training.finetune import finetune
    from asr_init.training.interrupts import Interrupted

    config = FinetuneConfig(layers=1, hidden=8, splice=0, max_epochs=1, batch_size=32, stats_frames=100)
    with pytest.raises(Interrupted):
        finetune(blob_store, config, tmp_path / "cut", interrupt_after=2)
    with pytest.raises(UserError) as err:
        load_stack(tmp_path / "cut")
    assert str(err.value) == (
        f"--init-from {tmp_path / 'cut'} holds neither model.pt nor dbn.pt: its run is unfinished; finish it with "
        "--resume first"
    )
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "final.nnet").write_bytes(b"")
    with pytest.raises(UserError, match=r"--init-from \S+exp holds neither model\.pt nor dbn\.pt: it is not a finished "
                       r"'asr-init finetune' or 'asr-init pretrain' output folder; give the Kaldi network file itself, "
                       r"--init-from \S+exp/final\.nnet$"):  # fmt: skip
        load_stack(tmp_path / "exp")
    args = ["inspect", str(blob_store), "--model", str(tmp_path / "cut"), "--frames", "10"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "--model" in result.output and "its run is unfinished" in result.output
