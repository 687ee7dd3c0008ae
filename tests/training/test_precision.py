"""--precision: tf32 is fp32 on a CPU, bf16 fine-tuning trains in mixed precision, pre-training refuses bf16."""

import pytest
import torch
from typer.testing import CliRunner

from asr_init.cli import app
from asr_init.models.dnn import load_model
from asr_init.training.config import FinetuneConfig
from asr_init.training.finetune import finetune
from asr_init.training.precision import forward_precision, matmul_precision

QUICK = dict(layers=2, hidden=32, splice=1, batch_size=32, max_epochs=2, stats_frames=200)


def _weights(folder):
    model, _ = load_model(folder)
    return [p.detach().clone() for p in model.parameters()]


def test_tf32_on_a_cpu_is_fp32_bit_for_bit_and_bf16_stays_close(blob_store, tmp_path):
    runs = {}
    for precision in ("fp32", "tf32", "bf16"):
        summary = finetune(blob_store, FinetuneConfig(**QUICK, precision=precision), tmp_path / precision)
        runs[precision] = (summary, _weights(tmp_path / precision))
    fp32, tf32, bf16 = runs["fp32"][1], runs["tf32"][1], runs["bf16"][1]
    assert all(torch.equal(a, b) for a, b in zip(fp32, tf32))
    assert all(p.dtype == torch.float32 for p in bf16)  # parameters stay float32
    assert not all(torch.equal(a, b) for a, b in zip(fp32, bf16))  # the products did run in bfloat16
    drift = max(float((a - b).abs().max() / a.abs().max()) for a, b in zip(fp32, bf16))
    assert drift < 0.05
    assert runs["bf16"][0]["best_dev_acc"] == pytest.approx(runs["fp32"][0]["best_dev_acc"], abs=0.03)


def test_precision_contexts_restore_the_tf32_switch_and_autocast_only_for_bf16():
    before = torch.backends.cuda.matmul.allow_tf32
    with matmul_precision("tf32"):
        assert torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cuda.matmul.allow_tf32 == before
    x = torch.randn(4, 8)
    w = torch.randn(8, 3)
    with forward_precision("bf16", torch.device("cpu")):
        assert (x @ w).dtype == torch.bfloat16
    with forward_precision("fp32", torch.device("cpu")):
        assert (x @ w).dtype == torch.float32
    with pytest.raises(ValueError, match="valid: fp32, tf32, bf16"), matmul_precision("fp16"):
        pass


def test_bad_precision_is_one_error_line(blob_store, tmp_path):
    runner = CliRunner()
    for command, value, says in (
        ("pretrain", "bf16", "fp32 or tf32 for pre-training"),
        ("finetune", "fp16", "--precision must be one of fp32, tf32, bf16"),
    ):
        result = runner.invoke(app, [command, str(blob_store), "--out", str(tmp_path / command), "--precision", value])
        lines = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert result.exit_code == 1 and len(lines) == 1 and says in " ".join(result.output.split()), result.output
        assert not (tmp_path / command).exists()
