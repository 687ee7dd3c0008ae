"""Files every stage writes and reads: atomic writes, checkpoints, JSON, CSV, output folders.

Everything a later run depends on is written to a temporary name in the same folder and
renamed into place, so an interruption at any moment leaves either the old file or the
new one, never half of one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import pickle
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from asr_init.errors import UserError

MAX_FILE_OFFSET = 2**63 - 1  # the largest byte offset a file can have (off_t)


def atomic_write(path: Path, write) -> None:
    """Call `write(fh)` on a temporary file beside `path` (binary), fsync it, then rename it
    into place; on any failure the temporary file is removed and `path` is untouched. The file
    gets the permissions the umask gives a new file (mkstemp alone would make it 0600)."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise naming_file(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(exc, OSError):
            raise naming_file(exc, path) from None
        raise


def naming_file(exc: OSError, path: Path) -> OSError:
    """`exc` with the file it concerns: a failed write (ENOSPC) carries no file name, and
    mkstemp's names a random temporary name; the error should name `path`."""
    if exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror, str(path))  # OSError() picks the subclass of the errno


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_checkpoint(obj: Any, path: Path) -> None:
    """torch.save into memory, then written atomically: a full disk is an OSError naming the
    file (torch's own writer reports it as "unexpected pos"), and the old checkpoint stays."""
    import torch  # here, not above: the CLI's --help and the config modules stay light

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, lambda fh: fh.write(buffer.getbuffer()))


def load_checkpoint(path: Path, advice: str = "it cannot be used; make it again with the stage that wrote it") -> Any:
    """torch.load on the CPU with weights_only=True: tensors, numbers, strings, lists and
    dicts only, so no file can run code when it is read. A missing or corrupt file, a path that
    is not a regular file (`check_regular_file`: a FIFO would block the read, /dev/zero fill the
    memory), or a file that holds other objects, is a UserError naming it; `advice` ends the
    message for a damaged file (a run's own partial checkpoint may be deleted, an input must be
    re-made)."""
    import torch

    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint {path} does not exist")
    check_regular_file(path, "checkpoint", advice)
    _check_records(path, advice)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(
            f"checkpoint {path} holds objects other than tensors and plain data, which asr-init does not "
            f"load (no file may run code when it is read); it was not read ({str(exc).splitlines()[0]})"
        ) from None
    except Exception as exc:  # torch raises many types for a damaged file
        raise UserError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc}); {advice}") from None


def _check_records(path: Path, advice: str) -> None:
    """Refuse a checkpoint whose records could unpack to more than the file holds: torch.save
    writes a zip archive of uncompressed records, so a record that is compressed, or larger
    than the file, was not written by it (a kilobyte that would inflate to gigabytes). Checked
    in the zip directory, before anything is read."""
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"checkpoint {path} is not a torch.save file ({exc}); {advice}") from None
    size = path.stat().st_size
    for info in records:
        if info.compress_type != zipfile.ZIP_STORED or info.file_size > size:
            raise UserError(
                f"checkpoint {path} holds a record {info.filename} of {info.file_size:,} bytes packed into "
                f"{info.compress_size:,}; torch.save stores records uncompressed, so the file was not written by "
                f"it and was not read; {advice}"
            )


def load_run_checkpoint(path: Path) -> Any:
    """A run's own checkpoint (a finished layer, a partial epoch) to resume from, or None
    where there is none; a damaged one may be deleted to redo that stage."""
    return load_checkpoint(path, "delete it to start that stage again") if Path(path).exists() else None


def load_typed_checkpoint(path: Path, fmt: str, what: str) -> dict:
    """A checkpoint dict whose "format" is `fmt`; `what` names the command that writes it."""
    path = Path(path)
    if not path.exists():
        if not path.parent.exists():
            raise UserError(f"{path.parent} does not exist; give an '{what}' output folder (one holding {path.name})")
        if not path.parent.is_dir():  # a Kaldi network, say, where the folder was asked for; or a pipe
            kind = "a file" if path.parent.is_file() else "a pipe, a socket or a device"
            raise UserError(f"{path.parent} is {kind}, not an '{what}' output folder (one holding {path.name})")
        raise UserError(f"{path.parent} has no {path.name} (is it a finished '{what}' output folder?)")
    obj = load_checkpoint(path, f"it is damaged and cannot be used; make it again with '{what}'")
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise UserError(f"{path} is not a {fmt} file (written by '{what}')")
    return obj


def is_digits(text: str) -> bool:
    """Whether `text` is a whole number of ASCII digits, one int() reads (str.isdigit alone also
    takes '²' or '١', which int() refuses or Kaldi does not write)."""
    return text.isascii() and text.isdigit()


def read_number(text: str) -> float:
    """`text` as C's strtod reads a whole field: float() but for what it alone takes (Unicode digits
    and spaces, '1_000'), which is a ValueError, as a value that is no number is."""
    if not text.isascii() or "_" in text:
        raise ValueError(text)
    return float(text)


def unique(items, what: str) -> dict:
    """{key: value} of (key, where, value) items, `where` naming the line or entry; a key
    given twice is a UserError naming both places (the last one would otherwise win silently)."""
    out: dict = {}
    places: dict = {}
    for key, where, value in items:
        if key in out:
            raise UserError(f"{what} {key} is given twice, at {places[key]} and at {where}; each may be given once")
        out[key], places[key] = value, where
    return out


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    """Write rows (dicts) as CSV with a fixed column order, atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _fmt(row.get(k)) for k in columns} for row in rows)
    data = buf.getvalue().encode()
    atomic_write(path, lambda fh: fh.write(data))


def read_csv(path: Path) -> list[dict]:
    """The rows of a CSV file (UTF-8 text: `read_text`), each a dict by column; a file the csv module
    cannot read (a cell past its field size limit) is a UserError naming it."""
    try:
        return list(csv.DictReader(io.StringIO(read_text(path), newline="")))
    except csv.Error as exc:
        raise UserError(f"{path} is not a CSV log asr-init wrote ({exc})") from None


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def write_json_atomic(path: Path, data: Any) -> None:
    """JSON with sorted keys and a final newline, written atomically."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda fh: fh.write(text.encode()))


def read_text(path: Path) -> str:
    """The text of a file asr-init wrote, which is UTF-8: a file that is not (damaged, or written
    by another program) is a UserError naming it and its first byte that is not, and so is a path
    that is not a regular file (`check_regular_file`). A missing file is FileNotFoundError."""
    check_regular_file(path, advice="asr-init writes a regular file there; make it again with the command that did")
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at byte offset {exc.start})") from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(read_text(path))
    except FileNotFoundError:
        raise UserError(f"{path} is missing") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except UserError:  # read_text's (a UserError is a ValueError)
        raise
    except ValueError as exc:  # an integer of more digits than Python converts
        raise UserError(f"{path} is not a record asr-init wrote ({exc})") from None
    except RecursionError:
        raise UserError(f"{path} is not a record asr-init wrote (JSON nested too deeply)") from None


def check_regular_file(path: Path, what: str = "", advice: str | None = None) -> None:
    """Raise a UserError naming `path` (`what` says what it is, e.g. "label list") where it is not a
    regular file once symlinks are followed: a FIFO would block a read and a device such as /dev/zero
    never end one (its memory grows until the process is killed). Every reader of a file, asr-init's
    own included, checks here first, so its size bounds what is read. A missing path passes: the
    reader names it in its own words. `advice` ends the message for a file asr-init wrote (a store's
    shard, a checkpoint: make it again); without it, the path is the user's: a folder is told to give
    the file in it, anything else to save its content to a file."""
    name = f"{what} {path}" if what else str(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UserError(f"cannot read {name}: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"{name} is a folder; {advice or 'give the file in it'}")
    if not stat.S_ISREG(mode):
        advice = advice or "save its content to a file and give that"
        raise UserError(f"{name} is not a regular file (a pipe or a device?); {advice}")


def read_regular_file(path: Path, what: str = "") -> bytes:
    """The bytes of an input file, which must be a regular file (`check_regular_file`); a missing
    file, or one that cannot be read, is a UserError naming it."""
    check_regular_file(path, what)
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise UserError(f"cannot read {f'{what} {path}' if what else path}: {exc.strerror}") from None


def resolved(path: Path, what: str) -> Path:
    """`path` made absolute with its symbolic links followed (Path.resolve); a path through a
    symlink loop (a link that leads, through others, back to itself) is a UserError naming it as
    `what` (e.g. "--out"), where Python raises RuntimeError."""
    try:
        return Path(path).resolve()
    except RuntimeError:  # Python before 3.13; a later one returns the path with the loop in it
        raise UserError(f"{what} {path} lies on a symlink loop; remove the loop or give another path") from None


def check_writable_folder(folder: Path, option: str = "--out", why: str | None = None) -> None:
    """Raise a UserError unless files can be created in `folder`, or, where it does not exist
    yet, in the nearest folder above it (where it will be made). Checked by creating and
    deleting a temporary file, the only test that holds for every user, ACL and file system
    (a read-only mount included); run before any work, so that a run does not fail at its end."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{option} {folder}: {existing} is a file, not a folder; choose another {option}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".asr-init-probe-", dir=existing)
    except OSError as exc:
        raise UserError(
            f"{why + ': ' if why else ''}cannot write to folder {existing} ({exc.strerror}); "
            f"choose another {option} or make the folder writable"
        ) from None
    os.close(fd)
    os.remove(probe)


def check_output_file(path: Path, option: str) -> None:
    """Raise a UserError unless `path` can be written as a file: its folder exists (it is not
    made, as cp or tee make none) and is writable, and `path` is not a folder, nor anything but a
    regular file (the file is written by a rename, which would replace a link, a pipe or a device)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder; give a file name")
    if os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode):
        raise UserError(f"{option} {path} is not a regular file (a link, a pipe or a device); give a file name")
    if not path.parent.is_dir():
        raise UserError(f"{option} {path}: the folder {path.parent} does not exist; create it first or choose another")
    check_writable_folder(path.parent, option)


def digest(paths: list[Path]) -> str:
    """The identity of a set of files: the first 16 hex digits of a SHA-256 over their names
    and contents (a missing file counts as empty, and so does one that is not a regular file:
    a FIFO or a device is refused where it is read, not read here without end), so any edit or
    rewrite changes it."""
    h = hashlib.sha256()
    for path in paths:
        path = Path(path)
        h.update(path.name.encode() + b"\0")
        if path.is_file():
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        h.update(b"\0")
    return h.hexdigest()[:16]


def read_count(text: str, limit: int) -> int | None:
    """`text`, a whole number in ASCII digits (is_digits), as an int, or None where it is not one; a
    number above `limit` is `limit + 1`, its digits past as many as `limit` has never converted (int()
    refuses more than 4,300 and takes time quadratic in their number). Every reader of a count, an id
    or an offset in a text field reads it here, and compares it with `limit`."""
    if not is_digits(text):
        return None
    digits = text.lstrip("0") or "0"
    return limit + 1 if len(digits) > len(str(limit)) else min(int(digits), limit + 1)
