"""The DNN frame classifier of the hybrid DNN-HMM: hidden layers + a softmax output.

Hidden layers come from a DBN (`dbn.pt`), from another trained model (the lower K
layers, `--init-from`), or from an initialisation method, so that pre-trained and
non-pre-trained networks are the same code path. The model folder holds `model.pt`:
the state dict, the config, the feature pipeline, the label inventories and the class
priors for hybrid decoding.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from asr_init.errors import UserError
from asr_init.io import load_typed_checkpoint, save_checkpoint

ACTIVATIONS = ("sigmoid", "tanh", "relu")
_ACT = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}


class DNN(nn.Module):
    """Fully connected network: input (B, in) -> logits (B, outputs)."""

    def __init__(
        self, input_dim: int, hidden: list[int], outputs: int, activation: str = "sigmoid", dropout: float = 0.0
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise UserError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
        self.activation = activation
        sizes = [input_dim] + list(hidden)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.act = _ACT[activation]()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.output = nn.Linear(sizes[-1], outputs)

    def forward(self, x: torch.Tensor, keep: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Logits; with `keep`, the hidden activations are appended to it (for statistics)."""
        for layer in self.hidden:
            x = self.act(layer(x))
            if keep is not None:
                keep.append(x)
            x = self.drop(x)
        return self.output(x)

    def hidden_stack(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(layer.weight.detach().cpu(), layer.bias.detach().cpu()) for layer in self.hidden]


def save_model(model_dir: Path, model: DNN, meta: dict) -> None:
    """model.pt: state dict plus `meta` (config, pipeline, labels, priors)."""
    save_checkpoint(
        {"format": "asr-init-dnn-1", "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "meta": meta},
        Path(model_dir) / "model.pt",
    )


def load_model(model_dir: Path, device: str | torch.device = "cpu") -> tuple[DNN, dict]:
    ckpt = load_typed_checkpoint(Path(model_dir) / "model.pt", "asr-init-dnn-1", "asr-init finetune")
    meta = ckpt["meta"]
    cfg = meta["config"]
    model = DNN(meta["input_dim"], meta["hidden_sizes"], len(meta["outputs"]), cfg["activation"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), meta
