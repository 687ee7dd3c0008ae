"""A deep belief network: the stack of pre-trained RBM layers, saved as `dbn.pt`.

`dbn.pt` holds the hidden layers as (W (out, in), b (out,)) pairs, the feature pipeline
(splice, normalisation statistics, squash), the label inventories of the store and the
activation. It is all the fine-tuning stage needs to build its network.

A Kaldi nnet1 network file (steps/nnet/pretrain_dbn.sh's N.dbn, train.sh's final.nnet) with
its feature transform is read in its place wherever a DBN or model folder is (nnet1.py).
"""

from __future__ import annotations

from pathlib import Path

import torch

from asr_init.features.pipeline import FeaturePipeline
from asr_init.io import load_typed_checkpoint, save_checkpoint

Stack = list[tuple[torch.Tensor, torch.Tensor]]


def propagate(x: torch.Tensor, stack: Stack) -> torch.Tensor:
    """Mean-field hidden probabilities of `x` (B, in) through sigmoid layers."""
    for w, b in stack:
        x = torch.addmm(b, x, w.T).sigmoid_()
    return x


def save_dbn(
    path: Path, stack: Stack, pipeline: FeaturePipeline, phones: list[str], states: list[str], visible: str
) -> None:
    save_checkpoint(
        {
            "format": "asr-init-dbn-1",
            "layers": [{"W": w.detach().cpu().contiguous(), "b": b.detach().cpu().contiguous()} for w, b in stack],
            "pipeline": pipeline.to_dict(),
            "phones": phones,
            "states": states,
            "activation": "sigmoid",
            "visible": visible,
        },
        path,
    )


def load_dbn(model_dir: Path, feature_transform: str | Path | None = None) -> dict:
    """The contents of MODEL_DIR/dbn.pt, checked; or, for a Kaldi nnet1 DBN file, the same
    record made from it and its feature transform (given, or final.feature_transform beside it)."""
    if Path(model_dir).is_file():
        from asr_init.models.nnet1 import kaldi_dbn

        return kaldi_dbn(Path(model_dir), feature_transform)
    return load_typed_checkpoint(Path(model_dir) / "dbn.pt", "asr-init-dbn-1", "asr-init pretrain")


def load_stack(model_dir: Path, feature_transform: str | Path | None = None) -> tuple[Stack, FeaturePipeline, str]:
    """(hidden layers, pipeline, activation) of a pretrain or finetune output folder, or of a
    Kaldi nnet1 network file (its hidden layers; the feature transform as for `load_dbn`)."""
    model_dir = Path(model_dir)
    if model_dir.is_file():
        from asr_init.models.nnet1 import load_kaldi_network

        net = load_kaldi_network(model_dir, feature_transform)
        return net.hidden, net.pipeline, net.activation
    if (model_dir / "model.pt").exists():
        from asr_init.models.dnn import load_model

        model, meta = load_model(model_dir)
        return model.hidden_stack(), FeaturePipeline.from_dict(meta["pipeline"]), meta["config"]["activation"]
    dbn = load_dbn(model_dir)
    stack = [(layer["W"], layer["b"]) for layer in dbn["layers"]]
    return stack, FeaturePipeline.from_dict(dbn["pipeline"]), dbn["activation"]
