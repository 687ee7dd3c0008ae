"""Where do the hidden units' net inputs fall? The paper's argument, checked on data.

For each layer of a stack, on a sample of frames: the mean and std of the net input,
the fraction of net inputs in the non-linear region (|f''| at least half its maximum:
0.407 <= |z| <= 2.793 for the sigmoid, 0.203 <= |z| <= 1.396 for tanh), and the fraction
of saturated outputs (`saturated_mask`: sigmoid output < 0.05 or > 0.95; tanh beyond +-0.9,
the same region of the underlying logistic; ReLU output 0, a dead unit).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from asr_init.models.optimal_spread import nonlinear_region


@dataclass(frozen=True)
class NetInputStats:
    layer: int
    mean: float
    std: float
    nonlinear: float  # fraction of net inputs with |f''| >= max/2
    saturated: float  # fraction of saturated outputs (saturated_mask)


def activate(net: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "sigmoid":
        return torch.sigmoid(net)
    if activation == "tanh":
        return torch.tanh(net)
    if activation == "relu":
        return torch.relu(net)
    raise ValueError(f"unknown activation {activation!r}; valid: sigmoid, tanh, relu")


# What `saturated_mask` counts as saturated, per activation, in words (inspect's caption).
SATURATED = {
    "sigmoid": "outputs below 0.05 or above 0.95",
    "tanh": "outputs beyond ±0.9",
    "relu": "outputs at 0 (dead units)",
}
# What `net_input_stats` counts as the non-linear region, in the words of the inspect caption.
NONLINEAR = {"sigmoid": "where |f''| >= max/2", "tanh": "where |f''| >= max/2", "relu": "within 1e-3 of the kink at 0"}


def saturated_mask(out: torch.Tensor, activation: str) -> torch.Tensor:
    """Which outputs are saturated (`SATURATED`): a sigmoid output below 0.05 or above 0.95, a
    tanh output beyond +-0.9 (the same region of the underlying logistic), a ReLU output at 0 (dead)."""
    if activation == "sigmoid":
        return (out < 0.05) | (out > 0.95)
    if activation == "tanh":
        return out.abs() > 0.9
    if activation == "relu":
        return out <= 0
    raise ValueError(f"unknown activation {activation!r}; valid: sigmoid, tanh, relu")


def net_input_stats(net: torch.Tensor, activation: str, layer: int = 1) -> NetInputStats:
    """Statistics of a (frames, units) block of net inputs."""
    net = net.detach().double()
    if activation == "relu":
        nonlinear = float((net.abs() < 1e-3).double().mean())  # the kink is ReLU's only non-linearity
    else:
        a, b = nonlinear_region(activation)
        mag = net.abs()
        nonlinear = float(((mag >= a) & (mag <= b)).double().mean())
    saturated = float(saturated_mask(activate(net, activation), activation).double().mean())
    return NetInputStats(layer, float(net.mean()), float(net.std()), nonlinear, saturated)


def stack_stats(
    x: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]], activation: str = "sigmoid"
) -> list[NetInputStats]:
    """Per-layer stats for inputs `x` (frames, dim) through (weight (out, in), bias (out,)) layers."""
    rows = []
    h = x
    with torch.no_grad():
        for i, (w, b) in enumerate(layers, 1):
            net = h @ w.T + b
            rows.append(net_input_stats(net, activation, i))
            h = activate(net, activation)
    return rows


def inspect_network(store_path, model, config):
    """`asr-init inspect`: a table of where each layer's net inputs fall on a sample of the
    store's frames, for a pretrain/finetune folder `model` or for `config.init` layers."""
    from rich.table import Table

    from asr_init.features.pipeline import FeaturePipeline, sample_frames
    from asr_init.features.store import FeatureStore
    from asr_init.folders import reading
    from asr_init.models.init import init_stack

    config.validate()
    with reading(store_path, model):
        store, results = FeatureStore(store_path), None
        if model is not None:
            from asr_init.models.dbn import load_stack

            source = load_stack(model, option="--model")
            stack, pipeline, activation = source.layers, source.pipeline, source.activation
            pipeline.check_store(store, str(model))
        else:
            pipeline, activation = FeaturePipeline.from_store(store, config.splice), config.activation
        x = sample_frames(store, pipeline, config.split, config.frames, config.seed)
    if model is None:
        sizes = [pipeline.dim] + config.sizes
        stack, results = init_stack(sizes, config.init, torch.Generator().manual_seed(config.seed), activation, x)
    table = Table(title=f"net inputs on {len(x):,} {config.split} frames ({model or config.init})")
    for col in ("layer", "in→out", "w std", "D", "net mean", "net std", "non-lin", "satur"):
        table.add_column(col, justify="right")
    for i, (row, (w, _)) in enumerate(zip(stack_stats(x, stack, activation), stack)):
        spread = f"{results[i].spread:.3f}" if results else "-"
        table.add_row(str(row.layer), f"{w.shape[1]}→{w.shape[0]}", f"{float(w.std()):.4f}", spread,
                      f"{row.mean:+.3f}", f"{row.std:.3f}", f"{row.nonlinear:.1%}", f"{row.saturated:.1%}")  # fmt: skip
    table.caption = (
        "D: net-input spread the weights give for N(0,1) inputs (optimal-data: for the measured inputs); non-lin: "
        f"share of net inputs {NONLINEAR[activation]}; satur: share of {activation} {SATURATED[activation]}"
    )
    return table
