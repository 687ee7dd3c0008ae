"""Graceful stops for training loops: SIGINT/SIGTERM set a flag, the loop checkpoints.

Shared by pre-training and fine-tuning: the loop finishes its mini-batch, writes a
resumable checkpoint and raises `Interrupted`; the CLI exits with status 130.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager


class Interrupted(Exception):
    """Training stopped by a signal after writing a resumable checkpoint: `what` happened, and
    `how` to continue (the command that ran it says, where it is not the stage's --resume)."""

    def __init__(self, what: str, how: str = "continue with --resume"):
        super().__init__(f"{what}; {how}")
        self.what = what


class StopFlag:
    """Set by SIGINT/SIGTERM (or, in tests, after `countdown` mini-batches)."""

    def __init__(self, countdown: int | None = None):
        self.signal: int | None = None
        self.countdown = countdown

    def tick(self) -> None:
        """Call once per mini-batch."""
        if self.countdown is not None:
            self.countdown -= 1
            if self.countdown <= 0:
                self.signal = signal.SIGINT

    def __call__(self, signum, _frame) -> None:
        self.signal = signum


@contextmanager
def catch_signals(flag: StopFlag):
    """Route SIGINT and SIGTERM to `flag` inside the block; restore the handlers after. A signal
    that came after the loop's last look at the flag is not lost: the block's end raises
    KeyboardInterrupt (in one process; under torchrun every rank must agree on a stop)."""
    previous = {s: signal.signal(s, flag) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if flag.signal is not None and flag.countdown is None and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        raise KeyboardInterrupt
