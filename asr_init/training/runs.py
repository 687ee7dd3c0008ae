"""Run folders of the training stages: one writer at a time, settings and input identities
recorded, finished runs recognised, changed inputs and other runs refused."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from asr_init.errors import UserError
from asr_init.io import LOCK_NAME, lock_or_refuse, read_json, refuse_output_over_inputs, write_json_atomic
from asr_init.training.distributed import Dist


@contextmanager
def run_folder(
    out_dir: Path,
    stage: str,
    settings: dict,
    force: bool,
    finished: tuple[str, ...],
    started: tuple[str, ...],
    neutral: tuple[str, ...] = ("device",),
    inputs: dict[str, Path | str | None] | None = None,
    dist: Dist | None = None,
) -> Iterator[dict | None]:
    """Hold `out_dir` for one training run; yields the summary if that run already finished.

    An output that is, contains or lies inside one of `inputs` is refused before anything is
    touched. The folder is locked for the run (`.lock` holds the owner's pid; an flock dies
    with its process, so the lock of a killed run is taken over). `settings` ({"store": ..., "config":
    {...}, "inputs": {name: identity}}) is written to STAGE.config.json. A folder holding a
    started run (files matching `started`) with other settings (apart from the `neutral`
    config keys, which may change between a run and its resumption) or made from inputs
    that have changed since is refused, as is a folder holding anything else; `force`
    empties it first. A run that never wrote a checkpoint is replaced by the new settings.
    The run is finished when STAGE.json and `finished` exist.

    On several processes (`dist`), rank 0 alone does all this and holds the lock; the
    others get its verdict (the summary, None, or its error).
    """
    out_dir = Path(out_dir)

    def hold(held: ExitStack) -> dict | None:
        refuse_output_over_inputs(out_dir, inputs or {})
        _make_folder(out_dir)
        held.enter_context(_locked(out_dir))
        if force:
            _empty(out_dir)
        return _prepare(out_dir, stage, settings, finished, started, neutral)

    with ExitStack() as held:
        yield (dist or Dist()).from_main(lambda: hold(held))


def _make_folder(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file, not a folder; choose another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the output folder {out_dir} ({exc.strerror})") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise UserError(f"the output folder {out_dir} is not writable; choose another --out")


@contextmanager
def _locked(out_dir: Path) -> Iterator[None]:
    """An exclusive flock on OUT/.lock, which holds the owner's pid for the message."""
    path = out_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        lock_or_refuse(fd, out_dir)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # the file stays (unlinking it would let two runs lock two files)
    finally:
        os.close(fd)


def _empty(out_dir: Path) -> None:
    for child in out_dir.iterdir():
        if child.name == LOCK_NAME:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _prepare(
    out_dir: Path,
    stage: str,
    settings: dict,
    finished: tuple[str, ...],
    started: tuple[str, ...],
    neutral: tuple[str, ...],
) -> dict | None:
    cfg_path = out_dir / f"{stage}.config.json"
    has_run = any(any(out_dir.glob(pattern)) for pattern in started + finished)
    if cfg_path.exists() and has_run:
        old = read_json(cfg_path)
        _refuse_other_settings(out_dir, stage, old, settings, neutral)
        _refuse_changed_inputs(out_dir, stage, old.get("inputs", {}), settings.get("inputs", {}))
        if all((out_dir / name).exists() for name in (f"{stage}.json", *finished)):
            return read_json(out_dir / f"{stage}.json")
    elif cfg_path.exists():  # a run that stopped before its first checkpoint: nothing to keep
        _empty(out_dir)
    elif any(child.name != LOCK_NAME for child in out_dir.iterdir()):
        raise UserError(f"output {out_dir} exists and is not a {stage} run; use --force or choose another --out")
    write_json_atomic(cfg_path, settings)
    return None


def _refuse_other_settings(out_dir: Path, stage: str, old: dict, new: dict, neutral: tuple[str, ...]) -> None:
    comparable = [
        {k: v for k, v in s["config"].items() if k not in neutral} | {"store": s["store"]} for s in (old, new)
    ]
    if comparable[0] != comparable[1]:
        diff = sorted(k for k in comparable[1] if comparable[0].get(k) != comparable[1][k])
        raise UserError(
            f"{out_dir} holds a {stage} run with other settings ({', '.join(diff)}); "
            "use --force to start over or choose another --out"
        )


def _refuse_changed_inputs(out_dir: Path, stage: str, old: dict, new: dict) -> None:
    for name, identity in new.items():
        if name in old and old[name] != identity:
            raise UserError(
                f"the {name} changed since {out_dir} was made from it (identity {old[name]} then, {identity} now); "
                f"its {stage} outputs would mix the two: use --force to start over or choose another --out"
            )
