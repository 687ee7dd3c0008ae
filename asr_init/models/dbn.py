"""A deep belief network: the stack of pre-trained RBM layers, saved as `dbn.pt`.

`dbn.pt` holds the hidden layers as (W (out, in), b (out,)) pairs, the feature pipeline
(splice, normalisation statistics, squash), the label inventories of the store and the
activation. It is all the fine-tuning stage needs to build its network.

A Kaldi nnet1 network file (steps/nnet/pretrain_dbn.sh's N.dbn, train.sh's final.nnet) with
its feature transform is read in its place wherever a DBN or model folder is (nnet1.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from asr_init.errors import UserError
from asr_init.features.pipeline import FeaturePipeline
from asr_init.io import save_checkpoint
from asr_init.models.dnn import DNN, check_finite, load_checked, load_model

Stack = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Source:
    """A network read to start another from (`load_stack`, `dbn_source`): its hidden layers as
    (W (out, in), b (out,)) CPU tensors, its feature pipeline and activation; for an asr-init
    model folder also the whole DNN and its model.pt meta record (a pruned run takes all of it)."""

    layers: Stack
    pipeline: FeaturePipeline
    activation: str
    model: DNN | None = None
    meta: dict | None = None


def propagate(x: torch.Tensor, stack: Stack) -> torch.Tensor:
    """Mean-field hidden probabilities of `x` (B, in) through sigmoid layers."""
    for w, b in stack:
        x = torch.addmm(b, x, w.T).sigmoid_()
    return x


def dbn_record(stack: Stack, pipeline: FeaturePipeline, phones: list[str], states: list[str], visible: str) -> dict:
    """What dbn.pt holds (`load_dbn` returns it): the sigmoid layers as (W, b) CPU tensors, the
    pipeline, the store's label inventories and the first layer's visible units."""
    return {
        "format": "asr-init-dbn-1",
        "layers": [{"W": w.detach().cpu().contiguous(), "b": b.detach().cpu().contiguous()} for w, b in stack],
        "pipeline": pipeline.to_dict(),
        "phones": phones,
        "states": states,
        "activation": "sigmoid",
        "visible": visible,
    }


def save_dbn(
    path: Path, stack: Stack, pipeline: FeaturePipeline, phones: list[str], states: list[str], visible: str
) -> None:
    save_checkpoint(dbn_record(stack, pipeline, phones, states, visible), path)


def load_dbn(model_dir: Path, feature_transform: str | Path | None = None, option: str = "--dbn") -> dict:
    """The contents of MODEL_DIR/dbn.pt, checked: a file with missing records, or layers whose
    shapes do not chain (W (out, in), b (out,), each layer's in the previous one's out, the
    first one's in the pipeline's width), is a UserError naming it. For a Kaldi nnet1 DBN file,
    the same record made from it and its feature transform (given, or final.feature_transform
    beside it)."""
    if not Path(model_dir).exists():
        raise UserError(
            f"{option} {model_dir} does not exist; {option} takes a pretrain output folder or a Kaldi nnet1 .dbn file"
        )
    if not Path(model_dir).is_dir():  # a Kaldi file; a pipe or a device is refused where it is read
        from asr_init.models.nnet1 import kaldi_dbn

        refuse_checkpoint_file(Path(model_dir), option)

        return kaldi_dbn(Path(model_dir), feature_transform)
    return load_checked(Path(model_dir) / "dbn.pt", "asr-init-dbn-1", "asr-init pretrain", _checked_dbn)


def refuse_checkpoint_file(path: Path, option: str) -> None:
    """A UserError if `path`, given where a run folder or a Kaldi nnet1 file is taken, is an asr-init
    checkpoint (dbn.pt, model.pt: a zip file, as torch.save writes it) rather than its folder.
    Only a regular file is looked into: a FIFO would block the read (nnet1 refuses it)."""
    if not path.is_file():
        return
    with open(path, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":
            return
    raise UserError(f"{option} {path} is an asr-init checkpoint file, not a Kaldi nnet1 file; give the run folder "
                    f"holding it ({option} {path.parent})")  # fmt: skip


def _checked_dbn(dbn: dict) -> dict:
    layers = dbn["layers"]
    if not isinstance(layers, list) or not layers:
        raise UserError("it has no layers")
    width = FeaturePipeline.from_dict(dbn["pipeline"]).dim
    for k, layer in enumerate(layers, 1):
        w, b = layer["W"], layer["b"]
        if not isinstance(w, torch.Tensor) or not isinstance(b, torch.Tensor) or w.dim() != 2 or b.dim() != 1:
            raise UserError(f"layer {k} is not a 2-D weight W and a 1-D bias b")
        if w.shape[1] != width or b.shape[0] != w.shape[0]:
            raise UserError(
                f"layer {k} has W of shape {tuple(w.shape)} and b of shape {tuple(b.shape)}, but its input is "
                f"{width} wide ({'the feature pipeline' if k == 1 else f'layer {k - 1}'})"
            )
        width = w.shape[0]
        check_finite(f"layer {k}'s W", w)
        check_finite(f"layer {k}'s b", b)
    if not isinstance(dbn["phones"], list) or not isinstance(dbn["states"], list) or dbn["activation"] != "sigmoid":
        raise UserError("its phones, states or activation records are malformed")
    return dbn


def dbn_source(model_dir: Path, feature_transform: str | Path | None = None, option: str = "--dbn") -> Source:
    """`load_dbn`'s DBN (a pretrain output folder or a Kaldi nnet1 DBN file) as a Source."""
    dbn = load_dbn(model_dir, feature_transform, option)
    stack = [(layer["W"], layer["b"]) for layer in dbn["layers"]]
    return Source(stack, FeaturePipeline.from_dict(dbn["pipeline"]), dbn["activation"])


def load_stack(model_dir: Path, feature_transform: str | Path | None = None, option: str = "--init-from") -> Source:
    """The Source of a pretrain or finetune output folder (a finetune one's whole model too), or
    of a Kaldi nnet1 network file (its hidden layers; the feature transform as for `load_dbn`)."""
    model_dir = Path(model_dir)
    if not model_dir.exists():
        raise UserError(
            f"{option} {model_dir} does not exist; {option} takes a pretrain or finetune output folder or a Kaldi "
            "nnet1 .nnet file"
        )
    if not model_dir.is_dir():  # as in load_dbn
        from asr_init.models.nnet1 import load_kaldi_network

        refuse_checkpoint_file(model_dir, option)

        net = load_kaldi_network(model_dir, feature_transform)
        return Source(net.hidden, net.pipeline, net.activation)
    if (model_dir / "model.pt").exists():
        model, meta = load_model(model_dir)
        pipeline = FeaturePipeline.from_dict(meta["pipeline"])
        return Source(model.hidden_stack(), pipeline, meta["config"]["activation"], model, meta)
    if not (model_dir / "dbn.pt").exists():
        _refuse_unfinished(model_dir, option)
    return dbn_source(model_dir, option=option)


def _refuse_unfinished(folder: Path, option: str) -> None:
    """A folder given for a model that holds neither model.pt nor dbn.pt: a run stopped before
    writing one, or an export-kaldi folder (its network file is what to give)."""
    if any((folder / name).exists() for name in ("checkpoint.pt", "finetune.config.json", "pretrain.config.json")):
        raise UserError(
            f"{option} {folder} holds neither model.pt nor dbn.pt: its run is unfinished; finish it with --resume first"
        )
    network = folder / "final.nnet"
    hint = f"; give the Kaldi network file itself, {option} {network}" if network.is_file() else ""
    raise UserError(
        f"{option} {folder} holds neither model.pt nor dbn.pt: it is not a finished 'asr-init finetune' or "
        f"'asr-init pretrain' output folder{hint}"
    )
