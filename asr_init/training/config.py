"""Settings of `asr-init pretrain` and `asr-init finetune`: the one home of every training
default, read by the CLI (this module imports nothing heavy, so `asr-init --help` stays fast)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from asr_init.config import ConfigBase, check_device
from asr_init.models.config import ACTIVATIONS, VISIBLE_TYPES
from asr_init.training.schedules import SCHEDULES

PRECISIONS = ("fp32", "tf32", "bf16")  # of the matrix products (training/precision.py)


@dataclass
class PretrainConfig(ConfigBase):
    """Settings of `asr-init pretrain` (see `asr-init pretrain --help`)."""

    init: str = "optimal"
    layers: int = 6
    hidden: int = 1024
    splice: int = 5
    cd_k: int = 1
    batch_size: int = 256
    epochs: int = 2
    epochs_gauss: int | None = None  # None: 2 x epochs
    lr: float = 0.04  # Kaldi's 0.4 saturates 1024-unit layers within ten batches (see rbm.py)
    lr_gauss: float = 0.01
    momentum_start: float = 0.5
    momentum_end: float = 0.9
    momentum_frames: int = 1_000_000
    l2: float = 0.0002
    visible: str = "gauss"
    seed: int = 0
    device: str = "cpu"
    max_frames: int | None = None  # per epoch
    report_every: int = 50_000
    buffer_frames: int = 200_000
    stats_frames: int = 2000
    sat_guard: float = 0.1  # saturation guard of Bernoulli layers: share of saturated hidden probabilities; 0 = off
    precision: str = "fp32"  # of the CD products: fp32, tf32 or bf16 (see training/precision.py)
    cuda_graphs: bool = True  # capture the CD step as a CUDA graph on a GPU (models/cd_device.py)

    def validate(self) -> None:
        from asr_init.models.init import parse_init  # torch: only when a run starts

        parse_init(self.init)
        self._check(self.layers >= 1, "layers", "must be at least 1")
        self._check(self.hidden >= 1, "hidden", "must be at least 1")
        self._check(self.splice >= 0, "splice", "must be >= 0")
        self._check(self.cd_k >= 1, "cd_k", "must be at least 1")
        self._check(self.batch_size >= 1, "batch_size", "must be at least 1")
        self._check(self.epochs >= 1, "epochs", "must be at least 1")
        self._check(self.epochs_gauss is None or self.epochs_gauss >= 1, "epochs_gauss", "must be at least 1")
        self._check(self.lr > 0 and math.isfinite(self.lr), "lr", "must be positive")
        self._check(self.lr_gauss > 0 and math.isfinite(self.lr_gauss), "lr_gauss", "must be positive")
        self._check(0 <= self.momentum_start < 1, "momentum_start", "must be in [0, 1)")
        self._check(0 <= self.momentum_end < 1, "momentum_end", "must be in [0, 1)")
        self._check(0 <= self.l2 < math.inf, "l2", "must be a finite number >= 0")
        self._check(self.visible in VISIBLE_TYPES, "visible", f"must be one of {', '.join(VISIBLE_TYPES)}")
        self._check(
            self.max_frames is None or self.max_frames >= self.batch_size, "max_frames", "must be at least one batch"
        )
        self._check(self.report_every >= 1, "report_every", "must be positive")
        self._check(self.momentum_frames >= 0, "momentum_frames", "must be >= 0 (0: no ramp, momentum_end at once)")
        self._check(self.buffer_frames >= self.batch_size, "buffer_frames", "must be at least one batch (--batch-size)")
        self._check(self.seed >= 0, "seed", "--seed must be at least 0")
        self._check(0 <= self.sat_guard < 1, "sat_guard", "must be in [0, 1) (0 switches the guard off)")

        check_device(self.device)
        self._check(self.precision in PRECISIONS, "precision", f"--precision must be one of {', '.join(PRECISIONS)}")

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


# Learning rate and momentum by starting point, chosen at 6 x 1024 sigmoid units on the
# 1-hour store. From a DBN, Kaldi nnet1's lr 0.008 on the summed gradient, no momentum.
# From random weights (no --dbn, or --init-from) that step saturates a deep sigmoid network
# within an epoch and smaller steps without momentum leave it on the plateau of the
# class priors, where newbob stops it; lr 0.0004 with momentum 0.9 (an effective step of
# 0.004) from the `optimal` initialisation leaves the plateau in the second epoch, where
# the same from `xavier-normal` stays on it (measured at 6 x 1024, see the README).
STARTING_POINT_DEFAULTS = {"dbn": {"lr": 0.008, "momentum": 0.0}, "scratch": {"lr": 0.0004, "momentum": 0.9}}


TARGETS = ("states", "phones", "pdfs")  # pdfs: Kaldi tied states, from an import-kaldi store


@dataclass
class FinetuneConfig(ConfigBase):
    """Settings of `asr-init finetune` (see `asr-init finetune --help`)."""

    targets: str | None = None  # None: the store's first kind (states from extract, pdfs from import-kaldi)
    init: str = "optimal"  # hidden layers without --dbn (and above --reuse-layers); see STARTING_POINT_DEFAULTS
    output_init: str = "small-xavier"  # the softmax layer; "same" = --init
    layers: int = 6
    hidden: int = 1024
    activation: str = "sigmoid"
    splice: int = 5
    lr: float | None = None  # None: 0.008 from a DBN, 0.0004 from scratch (see STARTING_POINT_DEFAULTS)
    batch_size: int = 256
    momentum: float | None = None  # None: 0 from a DBN, 0.9 from scratch
    l2: float = 0.0
    dropout: float = 0.0
    max_norm: float | None = None
    grad_clip: float | None = None
    schedule: str = "newbob"
    decay: float = 0.5  # exponential schedule: lr *= decay every epoch
    max_epochs: int = 20
    min_epochs: int = 1
    start_halving: float = 0.01
    end_halving: float = 0.001
    halving_factor: float = 0.5
    seed: int = 0
    device: str = "cpu"
    max_frames: int | None = None
    buffer_frames: int = 200_000
    prior_floor: float = 1.0  # minimum count per class when computing priors
    dbn: str | None = None  # a pretrain folder, or a Kaldi nnet1 .dbn file
    init_from: str | None = None  # a pretrain/finetune folder, or a Kaldi nnet1 .nnet file
    feature_transform: str | None = None  # Kaldi's feature_transform for a --dbn/--init-from nnet1 file
    precision: str = "fp32"  # of the products: fp32, tf32 or bf16 (see training/precision.py)
    cuda_graphs: bool = True  # replay the step as a CUDA graph on a GPU (finetune._GraphedStep)
    reuse_layers: int = 0
    stats_frames: int = 2000

    def __post_init__(self) -> None:
        start = "dbn" if self.dbn else "scratch"
        if self.lr is None:
            self.lr = STARTING_POINT_DEFAULTS[start]["lr"]
        if self.momentum is None:
            self.momentum = STARTING_POINT_DEFAULTS[start]["momentum"]

    def validate(self) -> None:
        from asr_init.models.init import parse_init  # torch: only when a run starts

        self._check(self.targets is None or self.targets in TARGETS, "targets", f"must be one of {', '.join(TARGETS)}")
        parse_init(self.init)
        if self.output_init != "same":
            parse_init(self.output_init)
        self._check(self.activation in ACTIVATIONS, "activation", f"must be one of {', '.join(ACTIVATIONS)}")
        self._check(self.layers >= 1, "layers", "must be at least 1")
        self._check(self.hidden >= 1, "hidden", "must be at least 1")
        self._check(0 < self.lr < math.inf, "lr", "must be a finite number > 0")
        self._check(self.batch_size >= 1, "batch_size", "must be positive")
        self._check(0 <= self.momentum < 1, "momentum", "must be in [0, 1)")
        self._check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")
        self._check(0 <= self.l2 < math.inf, "l2", "must be a finite number >= 0")
        self._check(self.max_norm is None or 0 < self.max_norm < math.inf, "max_norm", "must be a finite number > 0")
        self._check(
            self.grad_clip is None or 0 < self.grad_clip < math.inf,
            "grad_clip",
            "must be a finite number > 0 (a gradient norm; leave --grad-clip out for no clipping)",
        )
        self._check(0 < self.decay < math.inf, "decay", "must be a finite number > 0")
        self._check(self.schedule in SCHEDULES, "schedule", f"must be one of {', '.join(SCHEDULES)}")
        self._check(self.max_epochs >= 1, "max_epochs", "must be at least 1")
        self._check(self.min_epochs >= 1, "min_epochs", "must be at least 1")
        self._check(self.min_epochs <= self.max_epochs, "min_epochs", f"must be at most --max-epochs {self.max_epochs}")
        self._check(self.buffer_frames >= self.batch_size, "buffer_frames", "must be at least one batch (--batch-size)")
        self._check(self.seed >= 0, "seed", "--seed must be at least 0")
        self._check(self.reuse_layers >= 0, "reuse_layers", "must be >= 0")
        self._check(self.reuse_layers == 0 or self.init_from is not None, "reuse_layers", "needs --init-from MODEL")
        self._check(self.dbn is None or self.init_from is None, "init_from", "cannot be combined with --dbn")
        self._check(
            self.feature_transform is None or self.dbn is not None or self.init_from is not None,
            "feature_transform",
            "belongs to a Kaldi nnet1 file given as --dbn or --init-from",
        )
        self._check(
            self.dbn is None or self.activation == "sigmoid",
            "activation",
            "a DBN's layers are sigmoid; use --activation sigmoid with --dbn",
        )
        self._check(
            self.max_frames is None or self.max_frames >= self.batch_size, "max_frames", "must be at least one batch"
        )

        check_device(self.device)
        self._check(self.precision in PRECISIONS, "precision", f"--precision must be one of {', '.join(PRECISIONS)}")
