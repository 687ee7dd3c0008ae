"""Why layer 2 of a 6 x 1024 DBN saturated at Kaldi's lr 0.4: CD-1 variants on real frames.

    python recipes/layer2_collapse.py STORE PRETRAIN_DIR [--steps 600]

Takes the trained first layer of PRETRAIN_DIR (its rbm1.pt), computes the inputs a second
layer sees (hidden probabilities of 60,000 train frames), and trains a 1024-unit
Bernoulli layer on them from the same start with one thing changed at a time: the fast
step against the textbook CD-1 (`cd_step_reference`), the learning rate, the visible-bias
start, the initial weights, constant momentum, the mini-batch size, binary visible
samples, no L2, and the saturation guard. It prints, after 10 ... N mini-batches, the share
of saturated net inputs (|net| > 2.944) and the net-input std on the batch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from asr_init.errors import UserError
from asr_init.features.pipeline import FeaturePipeline, sample_frames
from asr_init.features.store import FeatureStore
from asr_init.io import load_checkpoint
from asr_init.models.init import InitContext, init_weight_, input_power
from asr_init.models.rbm import RBM, ContrastiveDivergence, UniformSource, cd_step_reference


def layer2_inputs(store: Path, pretrain_dir: Path, frames: int) -> torch.Tensor:
    ckpt = load_checkpoint(pretrain_dir / "rbm1.pt")
    pipeline = FeaturePipeline.from_dict(ckpt["pipeline"])
    x = sample_frames(FeatureStore(store), pipeline, "train", frames, seed=5)
    return torch.sigmoid(x @ ckpt["rbm"]["W"].T + ckpt["rbm"]["hb"])


def train(
    v: torch.Tensor,
    steps: int,
    lr: float = 0.4,
    init: str = "optimal",
    visible_bias: str = "logit",
    momentum: float | None = None,
    batch: int = 256,
    textbook: bool = False,
    binary: bool = False,
    l2: float = 2e-4,
    sat_limit: float = 0.0,
) -> list[str]:
    """Train from the same start with one change; returns 'batches:saturated/std' marks."""
    g = torch.Generator().manual_seed(2)
    w = torch.empty(1024, v.shape[1])
    init_weight_(w, init, g, InitContext("sigmoid", input_power(v[:2000])))
    rbm = RBM(v.shape[1], 1024, "bernoulli")
    rbm.Wt.copy_(w.T)
    if visible_bias == "logit":
        rbm.init_visible_bias_from_data(v.mean(0))
    ref = [
        rbm.W.clone(),
        rbm.hb.clone(),
        rbm.vb.clone(),
        torch.zeros_like(w),
        torch.zeros(1024),
        torch.zeros(v.shape[1]),
    ]
    uniforms, order, marks, frames, cd = UniformSource(7), torch.Generator().manual_seed(3), [], 0, None
    for step in range(1, steps + 1):
        v0 = v[torch.randint(0, len(v), (batch,), generator=order)]
        if binary:
            v0 = (torch.rand(v0.shape, generator=order) < v0).float()
        m = momentum if momentum is not None else 0.5 + 0.4 * min(1.0, frames / 1e6)  # pretrain's default ramp
        if textbook:
            *ref, _ = cd_step_reference(*ref, v0, lr, m, l2, uniforms)
            net = v0 @ ref[0].T + ref[1]
        else:
            cd = cd or ContrastiveDivergence(rbm, uniforms, lr, batch, l2=l2, sat_limit=sat_limit)
            cd.step(v0, m)
            cd.read()
            net = torch.addmm(rbm.hb, v0, rbm.Wt)
        frames += batch
        if step in (10, 25, 50) or step % 100 == 0:
            marks.append(f"{step}:{float((net.abs() > 2.944).float().mean()):.0%}/{float(net.std()):.1f}")
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("pretrain_dir", type=Path)
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args()
    if not (args.pretrain_dir / "rbm1.pt").is_file():
        raise SystemExit(
            f"error: {args.pretrain_dir / 'rbm1.pt'} does not exist; give a folder written by 'asr-init pretrain'"
        )
    try:
        v = layer2_inputs(args.store, args.pretrain_dir, 60_000)
    except UserError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(
        f"layer-2 input: {v.shape[1]} dims, mean {float(v.mean()):.3f}, "
        f"sum_i E[x_i^2] {float(v.pow(2).sum(1).mean()):.1f}, "
        f"sum_i var(x_i) {float(v.var(0).sum()):.1f}"
    )
    print("mini-batches:saturated share/net-input std")
    variants = {
        "fast step, lr 0.4": {},
        "textbook CD-1, lr 0.4": {"textbook": True},
        "lr 0.1": {"lr": 0.1},
        "lr 0.04": {"lr": 0.04},
        "visible bias 0": {"visible_bias": "zero"},
        "init kaldi (0.1)": {"init": "kaldi"},
        "init hinton (0.01)": {"init": "hinton"},
        "momentum 0.5 constant": {"momentum": 0.5},
        "batch 100 (Kaldi's)": {"batch": 100},
        "binary visible samples": {"binary": True},
        "no L2": {"l2": 0.0},
        "lr 0.4 + saturation guard": {"sat_limit": 0.1},
    }
    for name, change in variants.items():
        steps = args.steps * 256 // change.get("batch", 256)
        print(f"{name:28s}", " ".join(train(v, steps, **change)), flush=True)


if __name__ == "__main__":
    main()
