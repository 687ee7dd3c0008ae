"""The training skeleton pre-training and fine-tuning share.

Both stages run epochs of mini-batches from a resumable position, time them, check after
every step that training has not diverged (or, where a step leaves its figures on the
device so as not to wait for it, at the stage's `sync` before every checkpoint), show one
progress bar, and on SIGINT/SIGTERM write a checkpoint and raise `Interrupted`. They
differ in their step and in what happens at an epoch's start and end, which a `Trainer`
subclass supplies (as icefall's train.py splits `train_one_epoch`, `compute_validation_loss`, `save_checkpoint`).

On several processes (distributed.py) every process runs this loop over its rows of the
same mini-batches and keeps the same state; rank 0 alone writes checkpoints and logs, and
the processes agree after every batch whether to stop.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from rich.progress import TextColumn

from asr_init.errors import UserError
from asr_init.io import save_checkpoint
from asr_init.progress import progress_bar
from asr_init.training.distributed import Dist
from asr_init.training.interrupts import Interrupted, StopFlag


def decides_on_device(device: torch.device) -> bool:
    """Whether a stage keeps its per-step figures (losses, sums, guard decisions) on the
    device and reads them back only now and then: on a GPU, where reading a number waits
    for every queued kernel and leaves the GPU idle while the next step is queued. On the
    CPU a read costs nothing and the host decides after every step."""
    return device.type == "cuda"


@dataclass
class TrainState:
    """Where a run stands; plain numbers, saved in every checkpoint."""

    epoch: int = 1  # the epoch in progress (1-based)
    batch: int = 0  # mini-batches done in it
    frames: int = 0  # frames seen in all epochs
    seconds: float = 0.0  # training time in all epochs
    epoch_frames: int = 0
    epoch_seconds: float = 0.0
    stopped: bool = False  # the schedule ended training early

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)

    def next_epoch(self) -> None:
        self.epoch += 1
        self.batch = 0
        self.epoch_frames = 0
        self.epoch_seconds = 0.0


@dataclass
class Step:
    """What one mini-batch did: its frame count and the loss to check for finiteness
    (on several processes: of the global batch, the same on every process)."""

    frames: int
    value: float | None  # None: left on the device, checked by the stage's `sync`
    extra: Any = None  # what the stage's `record` needs (e.g. the RBM's guard result)


class Trainer(ABC):
    """Runs `epochs` epochs from `state`; subclasses define the stage.

    Subclasses set `epochs`, `state`, `checkpoint_path`, `bar_label` and `bar_field` and
    implement `batches`, `step`, `diverged` and `state_dict`; the hooks `start_epoch`,
    `record`, `after_batch`, `end_epoch` and `write_logs` default to doing nothing. `dist`
    is the single process unless the stage sets it.
    """

    epochs: int
    state: TrainState
    checkpoint_path: Path
    dist: Dist = Dist()
    bar_field = "loss"  # the running figure the progress bar shows
    bar_per_epoch = False  # one bar per epoch (fine-tuning) or one for all epochs (an RBM layer)

    # --- what a stage supplies --------------------------------------------------------

    @abstractmethod
    def batches(self, epoch: int, skip: int) -> Iterable:
        """The epoch's mini-batches after the first `skip` (resumption)."""

    @abstractmethod
    def step(self, batch) -> Step:
        """Train on one mini-batch."""

    @abstractmethod
    def diverged(self, step: Step) -> UserError:
        """The error to raise when a step's value is not finite."""

    @abstractmethod
    def state_dict(self) -> dict:
        """Everything the checkpoint holds (weights, optimiser, RNG, schedule, `state`)."""

    def start_epoch(self) -> None:  # noqa: B027 - an optional hook
        """Before an epoch's first batch (not called again when resuming inside it)."""

    def record(self, step: Step) -> None:  # noqa: B027 - an optional hook
        """Account a finite step; `state` does not count it yet."""

    def after_batch(self) -> None:  # noqa: B027 - an optional hook
        """After `state` counted the batch (interval logs)."""

    def end_epoch(self) -> None:  # noqa: B027 - an optional hook
        """After an epoch's last batch, before the checkpoint."""

    def write_logs(self) -> None:  # noqa: B027 - an optional hook
        """After a checkpoint was written (rank 0 only)."""

    def sync(self) -> None:  # noqa: B027 - an optional hook
        """Bring figures kept on the device to the host and raise `diverged`'s error if
        training diverged since the last sync; called before every checkpoint."""

    @abstractmethod
    def bar_total(self) -> int:
        """Frames the progress bar counts to: one epoch, or all of them."""

    def bar_value(self) -> str:
        return "-"

    # --- the skeleton ---------------------------------------------------------------------

    def save(self, path: Path | None = None) -> dict:
        """Write the checkpoint atomically (rank 0), then the logs; returns what was written.

        The other processes wait until it is written: then none of them can exit (and make
        torchrun stop rank 0) before the checkpoint is complete."""
        self.sync()
        ckpt = self.state_dict()
        if self.dist.is_main:
            save_checkpoint(ckpt, path or self.checkpoint_path)
            self.write_logs()
        self.dist.barrier()
        return ckpt

    def interrupted(self, signum: int) -> Interrupted:
        return Interrupted(
            f"stopped by signal {signum} in {self.where()} after {self.state.frames:,} frames; "
            f"state saved to {self.checkpoint_path}; continue with --resume"
        )

    def where(self) -> str:
        return f"epoch {self.state.epoch}"

    def run(self, flag: StopFlag) -> None:
        """Train until `epochs` epochs are done or the schedule stops; checkpoint after every epoch."""
        with progress_bar(TextColumn(f"{self.bar_field} " + "{task.fields[value]}")) as bar:
            task = None
            if not self.bar_per_epoch:
                task = bar.add_task(
                    self.bar_label, total=self.bar_total(), value="-", unit="frames", completed=self.state.frames
                )
            while self.state.epoch <= self.epochs and not self.state.stopped:
                if self.bar_per_epoch:
                    label = f"{self.bar_label} {self.state.epoch}/{self.epochs}"
                    task = bar.add_task(
                        label, total=self.bar_total(), value="-", unit="frames", completed=self.state.epoch_frames
                    )
                self._train_one_epoch(flag, bar, task)
                if self.bar_per_epoch:
                    bar.remove_task(task)
                self.end_epoch()
                self.state.next_epoch()
                self.save()

    def _train_one_epoch(self, flag: StopFlag, bar, task) -> None:
        state = self.state
        if state.batch == 0:
            self.start_epoch()
        t_last = time.perf_counter()
        for batch in self.batches(state.epoch, state.batch):
            step = self.step(batch)
            now = time.perf_counter()
            state.seconds += now - t_last
            state.epoch_seconds += now - t_last
            t_last = now
            if step.value is not None and not math.isfinite(step.value):
                raise self.diverged(step)
            self.record(step)
            state.frames += step.frames
            state.epoch_frames += step.frames
            state.batch += 1
            self.after_batch()
            bar.update(task, advance=step.frames, value=self.bar_value())
            flag.tick()
            signum = self._agreed_signal(flag)
            if signum:
                self.save()
                raise self.interrupted(signum)
        if decides_on_device(self.dist.device):  # the epoch's time includes the work still queued
            torch.cuda.synchronize(self.dist.device)
            wait = time.perf_counter() - t_last
            state.seconds += wait
            state.epoch_seconds += wait

    def _agreed_signal(self, flag: StopFlag) -> int:
        """A signal to any process stops all after the same batch. On several GPUs the
        processes agree every AGREE_EVERY batches only: each agreement is a collective that
        waits for the step (one process alone asks itself, which costs nothing)."""
        dist = self.dist
        if dist.is_distributed and decides_on_device(dist.device) and self.state.batch % AGREE_EVERY:
            return 0
        return dist.max(flag.signal or 0)


AGREE_EVERY = 16
