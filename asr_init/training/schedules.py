"""Learning-rate schedules of fine-tuning, one interface for all (as speechbrain's NewBobScheduler).

A schedule knows the rate of the current epoch (`lr`), is told the dev loss after every
epoch (`step`), and says whether that epoch is accepted and whether training stops. Its
state is plain data (`state_dict` / `load_state_dict`) so it travels in checkpoints. The
training loop never branches on a schedule's name: `make_schedule` is the only place
that reads it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

SCHEDULES = ("newbob", "constant", "exponential")


@dataclass
class Schedule:
    """Base: keeps the best dev loss and a history row per epoch; the rate never changes."""

    lr: float
    best: float = math.inf
    epoch: int = 0
    history: list = field(default_factory=list)

    rolls_back = False  # a rejected epoch's weights are replaced by the best ones

    def start(self, initial_loss: float) -> None:
        """The dev loss before training: an epoch is accepted when it beats the best so far."""
        self.best = initial_loss

    def step(self, loss: float) -> tuple[bool, bool]:
        """After an epoch with dev `loss`: (accepted, stop). Sets `lr` for the next epoch."""
        self.epoch += 1
        before = self.best
        accepted = loss < self.best or self._forced()
        if accepted:
            self.best = loss
        rel = (before - self.best) / before if before not in (0, math.inf) else 1.0
        stop = self._next(rel)
        self.history.append(
            {"epoch": self.epoch, "loss": loss, "accepted": accepted, "rel_impr": rel, "next_lr": self.lr, "stop": stop}
        )
        return accepted, stop

    def _next(self, rel: float) -> bool:
        """Update `lr` after an epoch whose relative improvement was `rel`; True to stop."""
        return False

    def _forced(self) -> bool:
        """Whether this epoch is accepted even if it did not improve the dev loss."""
        return False

    def state_dict(self) -> dict:
        return asdict(self) | {"history": list(self.history)}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


@dataclass
class Constant(Schedule):
    """The same rate every epoch; training runs to --max-epochs, the best dev epoch is kept."""


@dataclass
class Exponential(Schedule):
    """lr_e = lr_1 * decay^(e-1); runs to --max-epochs, the best dev epoch is kept."""

    decay: float = 0.5
    initial: float | None = None

    def __post_init__(self) -> None:
        if self.initial is None:
            self.initial = self.lr

    def _next(self, rel: float) -> bool:
        self.lr = self.initial * self.decay**self.epoch
        return False


@dataclass
class Newbob(Schedule):
    """Kaldi nnet1's newbob (steps/nnet/train_scheduler.sh) on a dev loss, lower is better.

    An epoch is accepted when it lowers the dev loss, and always within the first
    `keep_lr_epochs` or `min_epochs` epochs (Kaldi's keep_lr_iters, min_iters); a rejected
    epoch rolls the weights back to the last accepted ones. rel = (loss_before -
    loss_after) / loss_before. Within `keep_lr_epochs` the rate stays. Once halving is on and
    rel < `end_halving` training stops, or, within `min_epochs`, goes on without halving;
    when rel < `start_halving` halving turns on; while it is on, lr is multiplied by `factor`
    after every epoch.
    """

    start_halving: float = 0.01
    end_halving: float = 0.001
    factor: float = 0.5
    min_epochs: int = 0
    keep_lr_epochs: int = 0
    halving: bool = False

    rolls_back = True

    def _forced(self) -> bool:
        return self.epoch <= max(self.keep_lr_epochs, self.min_epochs)

    def _next(self, rel: float) -> bool:
        if self.epoch <= self.keep_lr_epochs:
            return False
        if self.halving and rel < self.end_halving:
            return self.epoch > self.min_epochs
        if rel < self.start_halving:
            self.halving = True
        if self.halving:
            self.lr *= self.factor
        return False


def make_schedule(name: str, settings: dict) -> Schedule:
    """The schedule called `name`; `settings` (the fine-tuning config as a dict) give its
    initial rate `lr` and what it uses (decay; start_halving, end_halving, halving_factor,
    min_epochs)."""
    lr = settings["lr"]
    if name == "newbob":
        same = ("start_halving", "end_halving", "min_epochs", "keep_lr_epochs")  # a Newbob field of the same name
        return Newbob(lr, factor=settings["halving_factor"], **{key: settings[key] for key in same})
    if name == "exponential":
        return Exponential(lr, decay=settings["decay"])
    if name == "constant":
        return Constant(lr)
    raise ValueError(f"unknown schedule {name!r}; valid: {', '.join(SCHEDULES)}")
