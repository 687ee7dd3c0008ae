"""Names the models accept, and the settings of `asr-init inspect`: one home for each default."""

from __future__ import annotations

from dataclasses import dataclass

from asr_init.config import SEED_RANGE, ConfigBase, check_limits, option

ACTIVATIONS = ("sigmoid", "tanh", "relu")  # of hidden units (DNN)
VISIBLE_TYPES = ("gauss", "bernoulli")  # of an RBM's visible units


@dataclass
class InspectConfig(ConfigBase):
    """Settings of `asr-init inspect` (see `asr-init inspect --help`); the network's shape
    (init, layers, hidden, splice, activation) is used only without a model folder."""

    init: str = option("optimal", "Initialisation method (see 'asr-init inits').")
    layers: int = option(3, "Number of hidden layers (with --init).")
    hidden: int = option(1024, "Units per hidden layer (with --init).")
    splice: int = option(5, "Context frames each side (with --init).")
    activation: str = option("sigmoid", "sigmoid, tanh or relu (with --init).")
    frames: int = option(5000, "Number of frames to sample.")
    split: str = option("train", "Split to sample from.")
    seed: int = option(0, "Seed for the weights and the frame sample.")
    from_model: bool = False  # set by the CLI when --model is given

    def validate(self) -> None:
        from asr_init.config import SPLITS
        from asr_init.models.init import parse_init

        self._check(self.frames >= 1, "frames", "--frames must be at least 1")
        self._check(0 <= self.seed < 2**32, "seed", SEED_RANGE)
        self._check(self.split in SPLITS, "split", f"--split must be one of {', '.join(SPLITS)}")
        check_limits(self)
        if self.from_model:
            return
        parse_init(self.init)
        self._check(self.layers >= 1, "layers", "--layers must be at least 1")
        self._check(self.hidden >= 1, "hidden", "--hidden must be at least 1")
        self._check(self.splice >= 0, "splice", "--splice must be at least 0")
        self._check(
            self.activation in ACTIVATIONS, "activation", f"--activation must be one of {', '.join(ACTIVATIONS)}"
        )
