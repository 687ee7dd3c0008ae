"""Atomic checkpoints and CSV logs.

Everything a later run depends on is written to a temporary name in the same folder and
renamed into place, so an interruption at any moment leaves either the old file or the
new one, never half of one.
"""

from __future__ import annotations

import csv
import io
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import UserError


def _atomic_write(path: Path, write) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_checkpoint(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, then rename."""
    _atomic_write(path, lambda fh: torch.save(obj, fh))


def load_checkpoint(path: Path) -> Any:
    """torch.load on the CPU with weights_only=True: tensors, numbers, strings, lists and
    dicts only, so no file can run code when it is read. A missing or corrupt file, or one
    that holds other objects, is a UserError naming it."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(f"checkpoint {path} holds objects other than tensors and plain data, which asr-init does not "
                        f"load (no file may run code when it is read); it was not read ({str(exc).splitlines()[0]})") from None
    except Exception as exc:  # torch raises many types for a damaged file
        raise UserError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc}); delete it to start that stage again") from None


def load_typed_checkpoint(path: Path, fmt: str, what: str) -> dict:
    """A checkpoint dict whose "format" is `fmt`; `what` names the command that writes it."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path.parent} has no {path.name} (is it a finished '{what}' output folder?)")
    obj = load_checkpoint(path)
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise UserError(f"{path} is not a {fmt} file (written by '{what}')")
    return obj


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    """Write rows (dicts) as CSV with a fixed column order, atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in columns})
    data = buf.getvalue().encode()
    _atomic_write(path, lambda fh: fh.write(data))


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value
