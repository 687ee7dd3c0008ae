"""Names the models accept, and the settings of `asr-init inspect`: one home for each default."""

from __future__ import annotations

from dataclasses import dataclass

from asr_init.config import HIDDEN_HELP, SEED_RANGE, ConfigBase, Widths, check_limits, option

ACTIVATIONS = ("sigmoid", "tanh", "relu")  # of hidden units (DNN)
VISIBLE_TYPES = ("gauss", "bernoulli")  # of an RBM's visible units


@dataclass
class InspectConfig(Widths, ConfigBase):
    """Settings of `asr-init inspect` (see `asr-init inspect --help`); the network's shape
    (init, layers, hidden, splice, activation) is used only without a model folder."""

    DEFAULT_LAYERS = 3
    init: str = option("optimal", "Initialisation method (see 'asr-init inits').")
    layers: int | None = option(None, "Number of hidden layers with --init (default 3, or as many as --hidden lists).")
    hidden: list[int] = option([1024], HIDDEN_HELP + " With --init.")
    splice: int = option(5, "Context frames each side (with --init).")
    activation: str = option("sigmoid", "sigmoid, tanh or relu (with --init).")
    frames: int = option(5000, "Number of frames to sample.")
    split: str = option("train", "Split to sample from.")
    seed: int = option(0, "Seed for the weights and the frame sample.")
    from_model: bool = False  # set by the CLI when --model is given

    def validate(self) -> None:
        from asr_init.config import SPLITS
        from asr_init.models.init import parse_init

        self._check(self.frames >= 1, "frames", "must be at least 1")
        self._check(0 <= self.seed < 2**32, "seed", SEED_RANGE)
        self._check(self.split in SPLITS, "split", f"must be one of {', '.join(SPLITS)}")
        check_limits(self)
        if self.from_model:
            return
        self._check_parse("init", parse_init)
        self._check_widths()
        self._check(self.splice >= 0, "splice", "must be at least 0")
        self._check(self.activation in ACTIVATIONS, "activation", f"must be one of {', '.join(ACTIVATIONS)}")
