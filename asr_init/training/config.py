"""Settings of `asr-init pretrain` and `asr-init finetune`: the one home of every training
default and option (the CLI derives its options from these fields; this module imports
nothing heavy, so `asr-init --help` stays fast)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from asr_init.config import DEVICE_HELP, HIDDEN_HELP, SEED_RANGE, ConfigBase, Widths, check_device, check_limits, option
from asr_init.models.config import ACTIVATIONS, VISIBLE_TYPES
from asr_init.training.schedules import SCHEDULES

# A learning rate multiplies float32 parameters: one that float32 cannot hold would overflow inside torch.
MAX_LR = 3.4e38
LR_RANGE = "must be a finite number > 0 that float32 holds (at most 3.4e38)"
# The weight decay scales float32 parameters in every update: a value that float32 cannot hold overflowed inside
# torch. 1 is far above any recipe's (Kaldi's RBM default 0.0002, fine-tuning 0).
MAX_L2 = 1.0
L2_RANGE = f"must be a finite number >= 0 and at most {MAX_L2:g} (a weight decay; recipes use 0.0002 or less)"
# A class's frame count in the priors: beyond float64's reach their sum is inf and every prior 0.
MAX_PRIOR_FLOOR = 1e12  # said in the message
PRECISIONS = ("fp32", "tf32", "bf16")  # of the matrix products (training/precision.py)
_PRECISION = (
    "Precision of the products: fp32; tf32 (TensorFloat-32 on CUDA; a CPU computes fp32); bf16 (bfloat16 inputs, "
    "float32 accumulation; parameters and updates stay float32)."
)


@dataclass
class PretrainConfig(Widths, ConfigBase):
    """Settings of `asr-init pretrain`."""

    init: str = option("optimal", "Initialisation method for every layer (see 'asr-init inits').")
    layers: int | None = option(None, "Number of RBM layers (default 6, or as many as --hidden lists).")
    hidden: list[int] = option([1024], HIDDEN_HELP)
    splice: int = option(5, "Context frames on each side (+-K).")
    cd_k: int = option(1, "Gibbs steps of contrastive divergence.", "--cd-k")
    batch_size: int = option(256, "Mini-batch size in frames.")
    epochs: int = option(2, "Epochs per Bernoulli-Bernoulli layer.")
    epochs_gauss: int | None = option(None, "Epochs of the Gaussian first layer (default 2 x --epochs).")
    lr: float = option(
        0.04,
        "Learning rate of Bernoulli-Bernoulli layers (scaled by 1 - momentum); Kaldi's 0.4 saturates 1024-unit "
        "layers (the saturation guard then lowers it).",
    )
    lr_gauss: float = option(0.01, "Learning rate of the Gaussian-Bernoulli layer.")
    momentum_start: float = option(0.5, "Momentum at the start of each layer.")
    momentum_end: float = option(0.9, "Momentum after the ramp.")
    momentum_frames: int = option(1_000_000, "Frames over which momentum ramps up linearly.")
    l2: float = option(0.0002, "L2 weight penalty.")
    visible: str = option("gauss", "First-layer visible units: gauss or bernoulli (inputs squashed to (0,1)).")
    seed: int = option(0, "Seed for weights, sampling and frame order.")
    device: str = option("auto", DEVICE_HELP)
    max_frames: int | None = option(None, "Cut each epoch after this many frames (quick runs).")
    report_every: int = option(50_000, "Frames between log rows.")
    buffer_frames: int = option(200_000, "Frames in the shuffling buffer (bounds memory).")
    stats_frames: int = option(2000, "Frames sampled for the net-input and reconstruction statistics of each epoch.")
    sat_guard: float = option(
        0.1,
        "Saturation guard of Bernoulli layers: when more than this share of a mini-batch's hidden probabilities is "
        "within 0.05 of 0 or 1, rescale the weights to spread D*, halve the learning rate and reset the momentum; "
        "0 switches it off.",
    )
    precision: str = option("fp32", _PRECISION)
    cuda_graphs: bool = option(True, "On a GPU, replay each layer's CD step as a CUDA graph (checked first).")

    def validate(self) -> None:
        from asr_init.models.init import parse_init  # torch: only when a run starts

        check_limits(self)  # first: the widths' check lists every layer
        self._check_parse("init", parse_init)
        self._check_widths()
        for name in ("cd_k", "batch_size", "epochs", "report_every", "stats_frames"):
            self._check(getattr(self, name) >= 1, name, "must be at least 1")
        self._check(self.splice >= 0, "splice", "must be >= 0")
        self._check(self.epochs_gauss is None or self.epochs_gauss >= 1, "epochs_gauss", "must be at least 1")
        self._check(0 < self.lr <= MAX_LR, "lr", LR_RANGE)
        self._check(0 < self.lr_gauss <= MAX_LR, "lr_gauss", LR_RANGE)
        self._check(0 <= self.momentum_start < 1, "momentum_start", "must be in [0, 1)")
        self._check(0 <= self.momentum_end < 1, "momentum_end", "must be in [0, 1)")
        self._check(0 <= self.l2 <= MAX_L2, "l2", L2_RANGE)
        self._check(self.visible in VISIBLE_TYPES, "visible", f"must be one of {', '.join(VISIBLE_TYPES)}")
        self._check(
            self.max_frames is None or self.max_frames >= self.batch_size, "max_frames", "must be at least one batch"
        )
        self._check(self.momentum_frames >= 0, "momentum_frames", "must be >= 0 (0: no ramp, momentum_end at once)")
        self._check(self.buffer_frames >= self.batch_size, "buffer_frames", "must be at least one batch (--batch-size)")
        self._check(0 <= self.seed < 2**32, "seed", SEED_RANGE)
        self._check(0 <= self.sat_guard < 1, "sat_guard", "must be in [0, 1) (0 switches the guard off)")
        check_device(self.device)
        self._check(self.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}")

    def layer_epochs(self, layer: int) -> int:
        gauss = layer == 1 and self.visible == "gauss"
        return (self.epochs_gauss or 2 * self.epochs) if gauss else self.epochs

    def layer_lr(self, layer: int) -> float:
        return self.lr_gauss if layer == 1 and self.visible == "gauss" else self.lr

    def momentum(self, frames: int) -> float:
        """Linear ramp from momentum_start to momentum_end over momentum_frames frames."""
        if self.momentum_frames <= 0:
            return self.momentum_end
        t = min(1.0, frames / self.momentum_frames)
        return self.momentum_start + t * (self.momentum_end - self.momentum_start)


# Learning rate and momentum by starting point, chosen at 6 x 1024 sigmoid units on the 1-hour
# store (docs/findings.md): from a DBN, Kaldi nnet1's lr 0.008 on the summed gradient, no momentum;
# from random weights (no --dbn, or --init-from), lr 0.0004 with momentum 0.9.
STARTING_POINT_DEFAULTS = {"dbn": {"lr": 0.008, "momentum": 0.0}, "scratch": {"lr": 0.0004, "momentum": 0.9}}
EMPTY_PATH_HINTS = {
    "dbn": "give a pretrain output folder or a Kaldi nnet1 .dbn file, or leave --dbn out to start from --init",
    "init_from": "give a pretrain or finetune output folder or a Kaldi nnet1 file, or leave --init-from out",
    "feature_transform": "leave --feature-transform out for final.feature_transform beside the network file",
}
TARGETS = ("states", "phones", "pdfs")  # pdfs: Kaldi tied states, from an import-kaldi store


@dataclass
class FinetuneConfig(Widths, ConfigBase):
    """Settings of `asr-init finetune`."""

    dbn: str | None = option(
        None, "Start the hidden layers from this 'asr-init pretrain' folder, or a Kaldi nnet1 DBN file (N.dbn)."
    )
    init: str = option("optimal", "Initialisation of hidden layers not taken from --dbn/--init-from.")
    output_init: str = option("small-xavier", "Initialisation of the softmax layer; 'same' = --init.")
    init_from: str | None = option(
        None, "Take the lower --reuse-layers layers from this model folder, or a Kaldi nnet1 file (final.nnet)."
    )
    feature_transform: str | None = option(
        None,
        "Kaldi feature transform of a --dbn/--init-from nnet1 file (default: final.feature_transform beside it).",
        path=True,
    )
    reuse_layers: int = option(0, "How many lower layers to take from --init-from.")
    targets: str | None = option(
        None,
        "Output classes: states (3 per phone) or phones of an extract store; pdfs or phones of an import-kaldi "
        "store. Default: states, or pdfs for an import-kaldi store.",
    )
    layers: int | None = option(None, "Hidden layers without --dbn (default 6, or as many as --hidden lists).")
    hidden: list[int] = option([1024], HIDDEN_HELP + " Without --dbn.")
    activation: str = option("sigmoid", "sigmoid, tanh or relu (without --dbn).")
    splice: int = option(5, "Context frames each side (without --dbn/--init-from).")
    lr: float | None = option(
        None, "Initial learning rate, on the gradient summed over the mini-batch (default 0.008 with --dbn or "
        "--sparsity, 0.0004 from random weights)."
    )  # fmt: skip
    batch_size: int = option(256, "Mini-batch size in frames.")
    momentum: float | None = option(None, "SGD momentum (default 0 with --dbn or --sparsity, 0.9 from random weights).")
    l2: float = option(0.0, "L2 weight decay.")
    dropout: float = option(0.0, "Dropout on hidden activations.")
    sparsity: float = option(
        0.0, "Prune: start from the whole --init-from model (softmax too), zero this share of its hidden weights by "
        "magnitude and fine-tune with them held at zero.",
    )  # fmt: skip
    prune_scope: str = option(
        "layer", "Prune each hidden layer to --sparsity (layer) or all of them together (global)."
    )
    batch_norm: bool = option(
        False, "Batch-normalise each hidden layer's net input, before its non-linearity (folded into the affine "
        "transform at export).",
    )  # fmt: skip
    max_norm: float | None = option(None, "Max-norm constraint on each hidden unit's incoming weights.")
    grad_clip: float | None = option(None, "Clip the global gradient norm.")
    schedule: str = option("newbob", "newbob, constant or exponential.")
    decay: float = option(0.5, "Exponential schedule: lr factor per epoch.")
    max_epochs: int = option(20, "Maximum epochs (Kaldi's --max-iters); with --resume, continues a finished run.")
    min_epochs: int = option(0, "Newbob: epochs always accepted and never the last (Kaldi's --min-iters).")
    keep_lr_epochs: int = option(0, "Newbob: first epochs at the initial rate, always accepted (--keep-lr-iters).")
    start_halving: float = option(
        0.01, "Newbob: halve the rate from the epoch whose relative dev-loss gain is below this (--start-halving-impr)."
    )
    end_halving: float = option(0.001, "Newbob: stop when halving and the gain is below this (--end-halving-impr).")
    halving_factor: float = option(0.5, "Newbob: the factor of each halving (Kaldi's --halving-factor).")
    seed: int = option(0, "Seed for weights, frame order and dropout.")
    device: str = option("auto", DEVICE_HELP)
    max_frames: int | None = option(None, "Cut each epoch after this many frames.")
    buffer_frames: int = option(200_000, "Frames in the shuffling buffer.")
    prior_floor: float = option(
        1.0,
        "Smallest frame count of a class in the priors (Kaldi's class-frame-counts); a class without a train frame "
        "has prior 0 and is never decoded, as in Kaldi.",
    )
    stats_frames: int = option(2000, "Frames sampled for each epoch's saturation figures.")
    precision: str = option("fp32", _PRECISION.replace("bf16 (bfloat16 inputs", "bf16 (autocast: bfloat16 inputs"))
    cuda_graphs: bool = option(True, "On a GPU, replay the training step as a CUDA graph (not with --dropout).")

    def __post_init__(self) -> None:
        """An lr or momentum left at None is the starting point's (STARTING_POINT_DEFAULTS); which
        were is remembered, so that `starting` gives another starting point's."""
        super().__post_init__()
        start = "dbn" if self.dbn or self.sparsity > 0 else "scratch"  # a pruned model was trained already
        self._by_start = tuple(name for name in ("lr", "momentum") if getattr(self, name) is None)
        for name in self._by_start:
            setattr(self, name, STARTING_POINT_DEFAULTS[start][name])

    def starting(self, **changes) -> FinetuneConfig:
        """A copy with `changes` to where the run starts (dbn, init_from, sparsity, ...): an lr or
        momentum this config took by default is the new starting point's, one given stays (prune
        makes each sparsity's run so, from whatever sparsity its config was made with)."""
        return dataclasses.replace(self, **dict.fromkeys(self._by_start), **changes)

    def _check_source(self) -> None:
        """--init-from (with what it takes of MODEL), --dbn and --feature-transform go together; none is an
        empty path (which names nothing, and a run took for the option left out)."""
        self._check_paths(EMPTY_PATH_HINTS)
        self._check(self.reuse_layers == 0 or self.init_from is not None, "reuse_layers", "needs --init-from MODEL")
        self._check(self.init_from is None or self.reuse_layers > 0 or self.sparsity > 0, "init_from",
                    "takes MODEL's lower layers with --reuse-layers K, or all of it with --sparsity S (pruned); "
                    "alone it would take none")  # fmt: skip
        self._check(self.dbn is None or self.init_from is None, "init_from", "cannot be combined with --dbn")
        if self.sparsity > 0 and self.init_from:  # model.pt given for its folder: named so, not a network file
            from asr_init.models.dbn import refuse_checkpoint_file  # torch: only when a run starts

            refuse_checkpoint_file(Path(self.init_from), "--init-from")
        self._check(
            self.reuse_layers == 0 or self.sparsity == 0,
            "reuse_layers",
            "--sparsity takes the whole --init-from model (every layer, pruned); drop --reuse-layers",
        )
        self._check(
            self.feature_transform is None or self.dbn is not None or self.init_from is not None,
            "feature_transform",
            "belongs to a Kaldi nnet1 file given as --dbn or --init-from",
        )

    def _check_relu_spread(self) -> None:
        """--init and --output-init without a spread have no D* for ReLU: refused where they make a
        layer (not in a pruned run, which takes the whole model, nor --init where --reuse-layers
        takes every hidden layer and the softmax has its own --output-init)."""
        used = [] if self.sparsity > 0 else ["output_init"]
        if self.sparsity == 0 and (self.reuse_layers < len(self.sizes) or self.output_init == "same"):
            used.append("init")
        for name in used:
            spec = getattr(self, name)
            self._check(
                self.activation != "relu" or spec.split(":")[0] not in ("optimal", "optimal-data") or ":" in spec,
                name,
                "D* maximises E|f''(net)| of a sigmoid or tanh unit; a ReLU's f'' is zero but at 0, so it has no D*: "
                "give the spread (optimal:D) or choose another method (he-normal is ReLU's)",
            )

    def validate(self) -> None:
        from asr_init.models.init import parse_init  # torch: only when a run starts

        check_limits(self)  # first: the widths' check lists every layer
        self._check(self.targets is None or self.targets in TARGETS, "targets", f"must be one of {', '.join(TARGETS)}")
        self._check_parse("init", parse_init)
        if self.output_init != "same":
            self._check_parse("output_init", parse_init)
        self._check(self.activation in ACTIVATIONS, "activation", f"must be one of {', '.join(ACTIVATIONS)}")
        self._check_widths()
        for name in ("batch_size", "max_epochs", "stats_frames"):
            self._check(getattr(self, name) >= 1, name, "must be at least 1")
        for name in ("min_epochs", "keep_lr_epochs", "reuse_layers"):
            self._check(getattr(self, name) >= 0, name, "must be >= 0")
        self._check(0 < self.lr <= MAX_LR, "lr", LR_RANGE)
        for name in ("decay", "halving_factor"):  # the rate is multiplied by it: above 1, it would grow
            self._check(0 < getattr(self, name) <= 1, name, "must be in (0, 1]: the learning rate is multiplied by it")
        for name in ("start_halving", "end_halving"):
            self._check(0 <= getattr(self, name) < math.inf, name, "must be a finite number >= 0")
        self._check(0 <= self.l2 <= MAX_L2, "l2", L2_RANGE)
        self._check(
            0 <= self.prior_floor <= MAX_PRIOR_FLOOR,
            "prior_floor",
            "must be a finite number >= 0 and at most 1e12 (a count of frames)",
        )
        self._check(0 <= self.momentum < 1, "momentum", "must be in [0, 1)")
        self._check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")
        self._check(self.max_norm is None or 0 < self.max_norm < math.inf, "max_norm", "must be a finite number > 0")
        self._check(
            self.grad_clip is None or 0 < self.grad_clip < math.inf,
            "grad_clip",
            "must be a finite number > 0 (a gradient norm; leave --grad-clip out for no clipping)",
        )
        self._check(self.schedule in SCHEDULES, "schedule", f"must be one of {', '.join(SCHEDULES)}")
        self._check(self.min_epochs <= self.max_epochs, "min_epochs", f"must be at most --max-epochs {self.max_epochs}")
        self._check(self.buffer_frames >= self.batch_size, "buffer_frames", "must be at least one batch (--batch-size)")
        self._check(0 <= self.seed < 2**32, "seed", SEED_RANGE)
        self._check_source()
        self._check(
            self.dbn is None or self.activation == "sigmoid",
            "activation",
            "a DBN's layers are sigmoid; use --activation sigmoid with --dbn",
        )
        self._check(
            self.max_frames is None or self.max_frames >= self.batch_size, "max_frames", "must be at least one batch"
        )
        self._check_relu_spread()
        self._check(0 <= self.sparsity < 1, "sparsity", "must be in [0, 1)")
        self._check(self.prune_scope in ("layer", "global"), "prune_scope", "must be layer or global")
        self._check(
            self.sparsity == 0 or self.init_from is not None, "sparsity", "prunes a model: give --init-from MODEL"
        )
        self._check(self.sparsity == 0 or not Path(self.init_from).is_file(), "sparsity",
                    f"prunes a whole 'asr-init finetune' model folder (its output layer and priors too), and "
                    f"{self.init_from} is a network file: fine-tune from it first (--init-from {self.init_from} "
                    "--reuse-layers N)")  # fmt: skip
        check_device(self.device)
        self._check(self.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}")
