"""Rich progress bars with rate and ETA, and one console for messages.

Messages go through `console` (stderr) so they print above a live bar instead of breaking
it; results through `results` (stdout), so that `asr-init inits > methods.txt` holds them.
Bars are shown on a terminal and stay quiet (no control codes) when output is piped,
as in CI logs.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

# progress and messages (no automatic colouring of numbers, paths, "(s)")
console = Console(stderr=True, highlight=False)
console.soft_wrap = not console.is_terminal  # a log file or a pipe gets each message on one line, as grep needs
results = Console(soft_wrap=True, highlight=False)  # what a command produces: tables and figures, on stdout


class RateColumn(ProgressColumn):
    """Items per second, with the task's `unit` field (e.g. "frames")."""

    def render(self, task) -> Text:
        speed = task.speed
        text = "?" if speed is None else f"{speed / 1e3:.1f}k" if speed >= 1e4 else f"{speed:.1f}"
        return Text(f"{text} {task.fields.get('unit', 'it')}/s", style="progress.data.speed")


class CountColumn(ProgressColumn):
    """Done/total with thousands separators (290,415, not 290415)."""

    def render(self, task) -> Text:
        total = "?" if task.total is None else f"{int(task.total):,}"
        return Text(f"{int(task.completed):,}/{total}", style="progress.download")


def progress_bar(*extra: ProgressColumn | str) -> Progress:
    """A progress bar: description, bar, done/total, rate, elapsed, ETA, plus `extra` columns."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        CountColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        *extra,
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )


def counted(n: int, noun: str, plural: str = "") -> str:
    """`n` and its noun, singular where `n` is 1: "1 epoch", "2 epochs", "3 batches" (plural given)."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
