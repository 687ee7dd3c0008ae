"""The DNN frame classifier of the hybrid DNN-HMM: hidden layers + a softmax output.

Hidden layers come from a DBN (`dbn.pt`), from another trained model (the lower K
layers, `--init-from`), or from an initialisation method, so that pre-trained and
non-pre-trained networks are the same code path. The model folder holds `model.pt`:
the state dict, the config, the feature pipeline, the label inventories and the class
priors for hybrid decoding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from asr_init.errors import UserError
from asr_init.features.store import TARGET_KINDS
from asr_init.io import load_typed_checkpoint, save_checkpoint
from asr_init.models.config import ACTIVATIONS

_ACT = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}


class DNN(nn.Module):
    """Fully connected network: input (B, in) -> logits (B, outputs).

    With `batch_norm` each hidden layer normalises its net input over the mini-batch before
    the non-linearity (Ioffe & Szegedy's place): the net input is what decides whether a
    sigmoid unit works in its non-linear region, and a normalisation right after the affine
    transform folds into it exactly at inference (`hidden_stack`)."""

    def __init__(self, input_dim: int, hidden: list[int], outputs: int, activation: str = "sigmoid",
                 dropout: float = 0.0, batch_norm: bool = False):  # fmt: skip
        super().__init__()
        if activation not in ACTIVATIONS:
            raise UserError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
        self.activation = activation
        sizes = [input_dim] + list(hidden)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(b) for b in sizes[1:]) if batch_norm else None
        self.act = _ACT[activation]()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.output = nn.Linear(sizes[-1], outputs)

    def net_input(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Hidden layer i's net input (batch-normalised where the network has batch norm). A
        training batch of under two frames (an epoch's or a process's last rows) has no batch
        statistics: the running ones normalise it, and it does not update them."""
        z = self.hidden[i](x)
        if self.norms is None:
            return z
        bn = self.norms[i]
        if bn.training and len(z) < 2:
            return nn.functional.batch_norm(z, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        return bn(z)

    def forward(self, x: torch.Tensor, keep: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Logits; with `keep`, the hidden activations are appended to it (for statistics)."""
        for i in range(len(self.hidden)):
            x = self.act(self.net_input(i, x))
            if keep is not None:
                keep.append(x)
            x = self.drop(x)
        return self.output(x)

    def hidden_stack(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each hidden layer as one affine map (W, b), a batch norm folded in with its running
        statistics: gamma (W x + b - mu) / sqrt(var + eps) + beta."""
        out = []
        for i, layer in enumerate(self.hidden):
            w, b = layer.weight.detach().double().cpu(), layer.bias.detach().double().cpu()
            if self.norms is not None:
                bn = self.norms[i]
                scale = bn.weight.detach().double().cpu() / (bn.running_var.double().cpu() + bn.eps).sqrt()
                w = w * scale[:, None]
                b = (b - bn.running_mean.double().cpu()) * scale + bn.bias.detach().double().cpu()
            out.append((w.float(), b.float()))
        return out


def save_model(model_dir: Path, model: DNN, meta: dict) -> None:
    """model.pt: state dict plus `meta` (config, pipeline, labels, priors)."""
    save_checkpoint(
        {"format": "asr-init-dnn-1", "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "meta": meta},
        Path(model_dir) / "model.pt",
    )


def load_model(model_dir: Path, device: str | torch.device = "cpu") -> tuple[DNN, dict]:
    """The DNN of MODEL_DIR/model.pt and its meta record. A file whose records are missing or
    disagree (weights of other shapes than the layer sizes, priors not one per class, a
    pipeline of another width) is a UserError naming it."""
    model, meta = load_checked(Path(model_dir) / "model.pt", "asr-init-dnn-1", "asr-init finetune", _build)
    return model.to(device).eval(), meta


def load_checked(path: Path, fmt: str, what: str, build: Callable[[dict], tuple | dict]) -> tuple | dict:
    """`build` of the `fmt` checkpoint at `path`, which `what` (a command) writes. A record that
    `build` finds missing, malformed or disagreeing is a UserError naming the file."""
    ckpt = load_typed_checkpoint(path, fmt, what)
    try:
        return build(ckpt)
    except UserError as exc:
        raise UserError(f"{path} is inconsistent: {exc}; it cannot be used (re-run '{what}')") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        found = f"has no {exc}" if isinstance(exc, KeyError) else f"holds a malformed record ({exc})"
        raise UserError(f"{path} {found}; it cannot be used (re-run '{what}')") from None


def _build(ckpt: dict) -> tuple[DNN, dict]:
    """Build the model of a model.pt checkpoint, checking that its records agree."""
    from asr_init.features.pipeline import FeaturePipeline

    meta = ckpt["meta"]
    outputs = len(meta["outputs"])
    with torch.device("meta"):  # shapes only: the sizes a file records allocate nothing until its weights agree
        model = DNN(int(meta["input_dim"]), [int(h) for h in meta["hidden_sizes"]], outputs,
                    meta["config"]["activation"], batch_norm=bool(meta["config"].get("batch_norm", False)))  # fmt: skip
    pipeline = FeaturePipeline.from_dict(meta["pipeline"])
    if pipeline.dim != model.hidden[0].in_features:
        raise UserError(f"its feature pipeline gives {pipeline.dim} inputs but input_dim is {meta['input_dim']}")
    if len(meta["priors"]) != outputs:
        raise UserError(f"it has {len(meta['priors'])} class priors for {outputs} output classes")
    priors = [float(p) for p in meta["priors"]]
    bad = [i for i, p in enumerate(priors) if not (math.isfinite(p) and p >= 0)]
    if bad or not sum(priors) > 0:
        what = f"class {bad[0]} has a prior of {priors[bad[0]]}" if bad else "its class priors are all 0"
        raise UserError(f"{what}; priors are relative frequencies (finite, at least 0, not all 0)")
    if meta["targets"] not in TARGET_KINDS or not isinstance(meta["phones"], list):
        raise UserError(f"its targets {meta['targets']!r} or phone list are malformed")
    _check_state_dict(model.state_dict(), ckpt["state_dict"])
    model.to_empty(device="cpu").load_state_dict(ckpt["state_dict"])
    return model, meta


def _check_state_dict(expected: dict[str, torch.Tensor], got: dict) -> None:
    """Raise UserError naming the first weight that is missing, unexpected or of another shape."""
    if not isinstance(got, dict):
        raise UserError("its state_dict is not a dict of tensors")
    for name, want in expected.items():
        have = got.get(name)
        if not isinstance(have, torch.Tensor):
            raise UserError(f"weight {name} is missing")
        if have.shape != want.shape:
            raise UserError(
                f"weight {name} has shape {tuple(have.shape)}, but the layer sizes it records need {tuple(want.shape)}"
            )
    extra = sorted(set(got) - set(expected))
    if extra:
        raise UserError(f"it holds weights {', '.join(extra)} that its layer sizes do not have")
    for name in expected:
        check_finite(f"weight {name}", got[name])


def check_finite(name: str, tensor: torch.Tensor) -> None:
    """Raise UserError where a floating-point tensor holds NaN or an infinity (an edited or damaged
    file): the network would turn every frame into NaN, and decoding would score garbage."""
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        first = tensor.flatten()[~torch.isfinite(tensor.flatten())][0]
        raise UserError(f"{name} holds NaN or infinite values (such as {float(first)})")
