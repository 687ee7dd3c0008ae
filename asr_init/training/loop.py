"""The training skeleton pre-training and fine-tuning share.

Both stages run epochs of mini-batches from a resumable position, time them, read the
figures their steps leave where they ran every `Strategy.read_every` steps and before every
checkpoint (`sync`, which raises if training diverged), show one progress bar, and on
SIGINT/SIGTERM write a checkpoint and raise `Interrupted`. They differ in their step and in
what happens at an epoch's start and end, which a `Trainer` subclass supplies (as icefall's
train.py splits `train_one_epoch`, `compute_validation_loss`, `save_checkpoint`).

On several processes (distributed.py) every process runs this loop over its rows of the
same mini-batches and keeps the same state; rank 0 alone writes checkpoints and logs, and
the processes agree at every read whether to stop.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from rich.progress import TextColumn

from asr_init.errors import UserError
from asr_init.folders import differences
from asr_init.io import save_checkpoint
from asr_init.models.dnn import check_finite
from asr_init.progress import console, counted, progress_bar
from asr_init.records import ABSENT, BOOLEAN, NUMBER, Kind, at_least, check_record, record
from asr_init.training.distributed import Dist
from asr_init.training.interrupts import Interrupted, StopFlag

READ_EVERY = 200  # steps between the host's reads on a GPU
MAX_SEGMENTS = 10_000  # a run's parts on different process counts a checkpoint may record


_SEGMENT = record(processes=at_least(1), epoch=at_least(1), batch=at_least(0))
_SEGMENTS = Kind(f"a list of at most {MAX_SEGMENTS:,} segments",
                 lambda v: isinstance(v, list) and len(v) <= MAX_SEGMENTS, item=_SEGMENT)  # fmt: skip
_COUNT = at_least(0) | ABSENT
_SECONDS = Kind("a number >= 0", lambda v: NUMBER.test(v) and not isinstance(v, bool) and v >= 0) | ABSENT
# TrainState.state_dict(); a checkpoint of an older asr-init lacks the fields after `batch`
_POSITION = record(epoch=at_least(1), batch=at_least(0), frames=_COUNT, seconds=_SECONDS, epoch_frames=_COUNT,
                   epoch_seconds=_SECONDS, stopped=BOOLEAN | ABSENT, segments=_SEGMENTS | ABSENT)  # fmt: skip


@dataclass(frozen=True)
class Strategy:
    """How a stage's steps run where they run.

    `read_every`: steps between the host's reads of the sums and decisions a step leaves on
    its device: 1 on a CPU, where a read costs nothing; READ_EVERY on a GPU, where a read waits
    for every queued kernel. `capture(body, state, what)`: records a step as a CUDA graph
    (cuda_graphs.capture_checked), or None for eager steps."""

    read_every: int = 1
    capture: Callable | None = None

    @classmethod
    def for_device(cls, device: torch.device, graphs: bool = True) -> Strategy:
        if device.type != "cuda":
            return cls()
        from asr_init.cuda_graphs import capture_checked

        return cls(READ_EVERY, capture_checked if graphs else None)


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
    # The process count of each part of the run: {"processes", "epoch", "batch"} where it began
    # (a checkpoint of an older asr-init has none: the parts from its resumption on are recorded).
    segments: list[dict] = field(default_factory=list)

    def state_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def begun(position: dict) -> int:
        """The epochs a checkpoint's `position` (a state_dict) has trained, the one in progress counted."""
        return position.get("epoch", 1) - 1 + (position.get("batch", 0) > 0)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)

    def count(self, frames: int, seconds: float, batches: int = 1) -> None:
        """Add a step's (or a wait's) frames, seconds and batches."""
        self.frames += frames
        self.epoch_frames += frames
        self.batch += batches
        self.seconds += seconds
        self.epoch_seconds += seconds

    def go_on_with(self, processes: int) -> int | None:
        """Record that training goes on here with `processes` processes: a new segment where the
        count is not the last segment's. Returns the count it had before, where it changed."""
        before = self.segments[-1]["processes"] if self.segments else None
        if before != processes:
            self.segments.append({"processes": processes, "epoch": self.epoch, "batch": self.batch})
        return before if before not in (None, processes) else None

    def next_epoch(self) -> None:
        self.epoch, self.batch, self.epoch_frames, self.epoch_seconds = self.epoch + 1, 0, 0, 0.0


def processes_in_words(segments: list[dict]) -> str:
    """The process counts of a run's `segments` (TrainState.segments), in order: "2", "2 then 1"."""
    return " then ".join(str(s["processes"]) for s in segments)


def already_finished(out_dir: Path, done: dict | None, more: bool, resume: bool, run: str, shortfall: str,
                     to: str = "") -> bool:  # fmt: skip
    """Whether OUT's finished `run` (its summary `done`) is the command's answer: it is, unless it
    trained fewer epochs than asked (`more`, the `shortfall` in words), which --resume continues
    (`to` what) and a command without --resume is refused for."""
    if more and not resume:
        raise UserError(
            f"{out_dir} holds a finished {run}{shortfall}: add --resume to continue it{to}, or --force to start over"
        )
    if done is not None and not more:
        console.print(f"[green]{out_dir} already holds a finished {run} with these settings")
        return True
    return False


def refuse_past(what: str, begun: int, option: str, asked: int) -> None:
    """A UserError where `what` has trained `begun` epochs (TrainState.begun) and `option` asks for fewer:
    going on would give a run of neither length, and calling it finished would be untrue."""
    if begun > asked:
        raise UserError(
            f"{what} has reached epoch {begun}, past {option} {asked}: give {option} {begun} or more to go on with it, "
            "or --force to start over"
        )


def check_own_checkpoint(ckpt, path: Path, config: dict, pipeline: dict, neutral: tuple[str, ...] = (),
                         keys: tuple[str, ...] = (), weights: tuple[str, ...] = ()) -> None:  # fmt: skip
    """Raise a UserError unless `ckpt`, read from `path` in a run folder, is this run's: a
    checkpoint copied there from another run (other sizes, settings or store) or from another
    stage would otherwise be resumed, or fail with a traceback. It must hold the records `keys`;
    its recorded config is compared with `config` (`neutral` keys left out, as the folder's record
    is) and its feature pipeline with `pipeline`; the tensors of its records `weights` must be finite
    (a run writes no checkpoint of a diverged state, so a NaN there is damage, not the learning rate)."""
    missing = [key for key in keys if key not in ckpt] if isinstance(ckpt, dict) else ["a dict"]
    if missing:
        raise UserError(
            f"{path} is not a checkpoint of this stage (it has no {missing[0]!r} record); delete it to start that "
            "stage again"
        )
    if "position" in keys:
        _check_position(ckpt, path)
    for key in weights:
        for name, tensor in ckpt[key].items() if isinstance(ckpt[key], dict) else ():
            if isinstance(tensor, torch.Tensor):
                try:
                    check_finite(f"{key} {name}", tensor)
                except UserError as exc:
                    raise UserError(f"{path} is damaged: its {exc}; delete it to start that stage again") from None
    diffs = []
    if isinstance(ckpt.get("config"), dict):
        diffs += differences({"config": ckpt["config"]}, {"config": config}, neutral)
    if ckpt.get("pipeline") is not None and ckpt["pipeline"] != pipeline:
        diffs.append("its feature pipeline (splice, or the normalisation statistics of its store)")
    if diffs:
        raise UserError(
            f"{path} is not a checkpoint of this run: it was written with other settings ({'; '.join(diffs)}); "
            "delete it to start that stage again, or use --force to start over"
        )


def _check_position(ckpt: dict, path: Path) -> None:
    """A UserError unless `ckpt["position"]` holds what TrainState.state_dict() writes (an older
    asr-init's fewer fields), each of its kind and size: an edited or damaged one would otherwise be
    resumed from, or fail with a traceback where a field is used."""
    try:
        check_record(path, ckpt, position=_POSITION)
    except UserError as exc:
        problem = str(exc).removeprefix(f"{path}: ")
        raise UserError(f"{path} is damaged: its {problem}; delete it to start that stage again") from None


class Trainer(ABC):
    """Runs `epochs` epochs from `state`; subclasses define the stage.

    Subclasses set `epochs`, `state`, `checkpoint_path`, `bar_label`, `bar_frames` and `strategy`
    and implement `batches`, `step`, `sync` and `state_dict`; the hooks
    `start_epoch`, `after_batch`, `end_epoch` and `write_logs` default to doing nothing.
    `dist` is the single process unless the stage sets it.
    """

    epochs: int
    state: TrainState
    checkpoint_path: Path
    bar_frames: int  # frames the progress bar counts to: one epoch, or all of them
    strategy: Strategy = Strategy()
    dist: Dist = Dist()
    bar_field = "loss"  # the running figure the progress bar shows
    bar_per_epoch = False  # one bar per epoch (fine-tuning) or one for all epochs (an RBM layer)
    stage = "this run"  # what `state` covers, where the messages name it: a run, or one layer of it
    unread = 0  # steps since the last sync

    @abstractmethod
    def batches(self, epoch: int, skip: int) -> Iterable:
        """The epoch's mini-batches after the first `skip` (resumption)."""

    @abstractmethod
    def step(self, batch) -> int:
        """Train on one mini-batch; returns its (global) frame count."""

    @abstractmethod
    def sync(self) -> None:
        """Read the figures of the steps since the last sync and raise a UserError if one diverged."""

    @abstractmethod
    def state_dict(self) -> dict:
        """Everything the checkpoint holds (weights, optimiser, RNG, schedule, `state`)."""

    def start_epoch(self) -> None:  # noqa: B027 - an optional hook
        """Before an epoch's first batch (not called again when resuming inside it)."""

    def after_batch(self) -> None:  # noqa: B027 - an optional hook
        """After `state` counted the batch (interval logs)."""

    def end_epoch(self) -> None:  # noqa: B027 - an optional hook
        """After an epoch's last batch, before the checkpoint."""

    def write_logs(self) -> None:  # noqa: B027 - an optional hook
        """After a checkpoint was written (rank 0 only)."""

    def bar_value(self) -> str:
        return "-"

    def where(self) -> str:
        return f"epoch {self.state.epoch} after {self.state.epoch_frames:,} frames"

    def save(self, path: Path | None = None) -> dict:
        """Read the steps' figures, write the checkpoint atomically (rank 0), then the logs;
        returns what was written. The other processes wait until it is written: then none of
        them can exit (and make torchrun stop rank 0) before the checkpoint is complete."""
        self._read()
        ckpt = self.state_dict()
        if self.dist.is_main:
            save_checkpoint(ckpt, path or self.checkpoint_path)
            self.write_logs()
        self.dist.barrier()
        return ckpt

    def run(self, flag: StopFlag) -> None:
        """Train until `epochs` epochs are done or the schedule stops; checkpoint after every epoch."""
        before = self.state.go_on_with(self.dist.world)
        if before is not None:
            so_far = processes_in_words(self.state.segments)
            console.print(f"the run goes on with {counted(self.dist.world, 'process', 'processes')} where it had "
                          f"{before} (processes so far in {self.stage}: {so_far})")  # fmt: skip
        with progress_bar(TextColumn(f"{self.bar_field} " + "{task.fields[value]}")) as bar:
            task = None
            if not self.bar_per_epoch:
                task = bar.add_task(self.bar_label, total=self.bar_frames, value="-", unit="frames",
                                    completed=self.state.frames)  # fmt: skip
            while self.state.epoch <= self.epochs and not self.state.stopped:
                if self.bar_per_epoch:
                    label, done = f"{self.bar_label} {self.state.epoch}/{self.epochs}", self.state.epoch_frames
                    task = bar.add_task(label, total=self.bar_frames, value="-", unit="frames", completed=done)
                self._train_one_epoch(flag, bar, task)
                if self.bar_per_epoch:
                    bar.remove_task(task)
                self._read()
                self.end_epoch()
                self.state.next_epoch()
                self.save()

    def _train_one_epoch(self, flag: StopFlag, bar, task) -> None:
        state = self.state
        if state.batch == 0:
            self.start_epoch()
        t_last = time.perf_counter()
        for batch in self.batches(state.epoch, state.batch):
            frames = self.step(batch)
            now = time.perf_counter()
            state.count(frames, now - t_last)
            t_last = now
            self.unread += 1
            if self.unread >= self.strategy.read_every:
                self._read()
            self.after_batch()
            bar.update(task, advance=frames, value=self.bar_value())
            flag.tick()
            signum = self.dist.max(flag.signal or 0) if self.unread == 0 or not self.dist.is_distributed else 0
            if signum:  # a signal to any process stops all after the same batch
                self.save()
                where = self.where()
                raise Interrupted(f"stopped by signal {signum} in {where}; state saved to {self.checkpoint_path}")
        if self.dist.device.type == "cuda":  # the epoch's time includes the work still queued
            torch.cuda.synchronize(self.dist.device)
            state.count(0, time.perf_counter() - t_last, batches=0)

    def _read(self) -> None:
        self.unread = 0
        self.sync()
