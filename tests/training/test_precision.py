"""--precision: tf32 is fp32 on a CPU; bf16 fine-tuning and pre-training train in mixed precision."""

import pytest
import torch
from typer.testing import CliRunner

from asr_init.cli import app
from asr_init.io import load_checkpoint, read_csv
from asr_init.models.dnn import load_model
from asr_init.models.rbm import RBM, ContrastiveDivergence, UniformSource
from asr_init.training.config import FinetuneConfig, PretrainConfig
from asr_init.training.finetune import finetune
from asr_init.training.precision import forward_precision, matmul_precision
from asr_init.training.pretrain import pretrain

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


def test_tf32_covers_the_work_before_the_first_step(blob_store, tmp_path, monkeypatch):
    """With --precision tf32 the products before training (fine-tuning's epoch-0 dev loss, which
    newbob compares epoch 1 with; each RBM layer's initialisation) run under the TF32 switch too."""
    import asr_init.training.finetune as finetune_module
    import asr_init.training.pretrain as pretrain_module

    seen = []

    def recording(real):
        def wrapper(*args, **kwargs):
            seen.append(torch.backends.cuda.matmul.allow_tf32)
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(finetune_module, "evaluate_split", recording(finetune_module.evaluate_split))
    monkeypatch.setattr(pretrain_module, "init_weight_", recording(pretrain_module.init_weight_))
    finetune(blob_store, FinetuneConfig(**QUICK, precision="tf32"), tmp_path / "dnn")
    pretrain(blob_store, PretrainConfig(layers=2, hidden=16, epochs=1, stats_frames=100, precision="tf32"),
             tmp_path / "dbn")  # fmt: skip
    assert len(seen) >= 2 + 2 and all(seen)  # dev at epochs 0, 1, 2; two layers' initialisations
    assert not torch.backends.cuda.matmul.allow_tf32  # put back after the runs


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
        ("pretrain", "fp16", "invalid --precision fp16: must be one of fp32, tf32, bf16"),
        ("finetune", "fp16", "invalid --precision fp16: must be one of fp32, tf32, bf16"),
    ):
        result = runner.invoke(app, [command, str(blob_store), "--out", str(tmp_path / command), "--precision", value])
        lines = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert result.exit_code == 1 and len(lines) == 1 and says in " ".join(result.output.split()), result.output
        assert not (tmp_path / command).exists()


def test_bf16_cd_step_rounds_the_products_and_keeps_float32_parameters():
    """Against the float32 step on the same data: bfloat16 inputs change the numbers by
    about their rounding (2^-8), not more, and the parameters and momentum stay float32."""
    g = torch.Generator().manual_seed(0)
    data = torch.randn(40 * 64, 39, generator=g) @ torch.randn(39, 39, generator=g) * 0.3
    rbms = {}
    for bf16 in (False, True):
        rbm = RBM(39, 128, "gauss")
        torch.nn.init.normal_(rbm.Wt, 0, 1.40784 / 39**0.5, generator=torch.Generator().manual_seed(1))
        cd = ContrastiveDivergence(rbm, UniformSource(2), 0.01, 64, l2=2e-4, bf16=bf16)
        errors = []
        for i in range(40):
            cd.step(data[i * 64 : (i + 1) * 64], 0.5)
            errors.append(cd.read().error_sum)
        rbms[bf16] = (rbm, errors)
    (a, err_a), (b, err_b) = rbms[False], rbms[True]
    assert b.theta.dtype == torch.float32 and b.dtheta.dtype == torch.float32
    assert not torch.equal(a.theta, b.theta)
    assert err_b[-1] < err_b[0] / 2  # it learns
    assert sum(err_b[-10:]) == pytest.approx(sum(err_a[-10:]), rel=0.005)
    assert float((a.W - b.W).abs().max() / a.W.abs().max()) < 0.01


def test_bf16_pretraining_runs_and_stays_close_to_fp32(tiny_store, tmp_path):
    cfg = dict(layers=2, hidden=32, epochs=1, epochs_gauss=2, batch_size=64, report_every=500, stats_frames=300)
    for precision in ("fp32", "bf16"):
        pretrain(tiny_store, PretrainConfig(**cfg, precision=precision), tmp_path / precision)
    end = {
        p: [float(r["train_recon"]) for r in read_csv(tmp_path / p / "recon.csv") if r["kind"] == "epoch_end"]
        for p in ("fp32", "bf16")
    }
    assert len(end["bf16"]) == 3 and end["bf16"] == pytest.approx(end["fp32"], rel=0.03)
    layers = load_checkpoint(tmp_path / "bf16" / "dbn.pt")["layers"]
    assert all(layer["W"].dtype == torch.float32 for layer in layers)
