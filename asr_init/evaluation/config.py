"""Settings of `asr-init evaluate`: the one home of its defaults, read by the CLI."""

from __future__ import annotations

from dataclasses import dataclass

from asr_init.config import DEVICE_HELP, SPLITS, ConfigBase, check_device, option

# The largest prior scale, LM weight or penalty magnitude: far beyond any tuning grid, and small enough that every
# decoding score stays finite (alpha times a never-decoded class's log-prior sqrt(FLT_MAX) fits float32, and the
# best path's summed score stays far above decoding._NEG, -1e30).
MAX_WEIGHT = 1e6  # said in the messages


@dataclass
class EvalConfig(ConfigBase):
    """Settings of `asr-init evaluate`."""

    split: str = option("test", "Split to evaluate.")
    tune_split: str = option("dev", "Split on which the LM weight and insertion penalty are tuned.")
    prior_scale: float = option(1.0, "alpha in log p(s|x) - alpha log p(s).")
    lm_weights: list[float] = option([1.0, 2.0, 4.0, 8.0, 16.0], "LM weights tried on the tuning split.")
    penalties: list[float] = option(
        [-16.0, -8.0, -4.0, -2.0, 0.0, 2.0, 4.0], "Phone insertion penalties (cost per phone) tried on the tuning split"
    )
    device: str = option("auto", DEVICE_HELP)
    decode: bool = option(True, "Decode for the phone error rate, or frame accuracy only.", "--decode/--frames-only")

    def validate(self) -> None:
        self._check(self.split in SPLITS, "split", f"must be one of {', '.join(SPLITS)}")
        self._check(self.tune_split in SPLITS, "tune_split", f"must be one of {', '.join(SPLITS)}")
        why = "(larger ones overflow the decoding scores)"
        self._check(
            0 <= self.prior_scale <= MAX_WEIGHT, "prior_scale", f"must be a finite number >= 0 and at most 1e6 {why}"
        )
        for name in ("lm_weights", "penalties"):
            self._check(bool(getattr(self, name)), name, "must list at least one value")
        self._check(all(0 <= w <= MAX_WEIGHT for w in self.lm_weights), "lm_weights",
                    f"each must be a finite number >= 0 and at most 1e6 {why}")  # fmt: skip
        self._check(all(abs(p) <= MAX_WEIGHT for p in self.penalties), "penalties",
                    f"each must be a finite number from -1e6 to 1e6 {why}")  # fmt: skip
        check_device(self.device)


# Settings a pruned network takes from prune's MODEL, whatever its config says: neither options nor records of prune
# (targets and batch norm left at None and False are the model's own: finetune.input_pipeline).
MODEL_DECIDES = ("activation", "layers", "hidden", "splice", "init", "output_init", "targets", "batch_norm")
