"""Output folders: one protocol for every command that writes one, and the locks readers hold.

A folder OUT is written under an exclusive lock on PARENT/.OUT.lock (the writer's pid in
it); a stage that reads a store, a DBN or a model holds a shared lock on the same file while
it reads (`reading`), so that `--force` cannot replace a folder a running stage reads and two
commands cannot write one folder. `output_folder`:

1. refuses an OUT that is a file, or that is, contains or lies inside one of the command's
   inputs (every file and folder it reads), before anything is touched;
2. takes the lock and removes the temporaries OUT.tmp-PID and OUT.old-PID of dead processes;
3. compares the settings with those OUT records: the same settings and a finished OUT leave
   nothing to do; other settings, or an unfinished OUT, are refused without `force`, naming
   the settings that differ;
4. builds a complete output (a corpus, a store, evaluation results) in OUT.tmp-PID and swaps
   it in atomically (OUT -> OUT.old-PID, OUT.tmp-PID -> OUT, then OUT.old-PID is removed), so
   an interruption leaves the old OUT or the new one; a training run is built in OUT itself
   (`in_place`), where its checkpoints accumulate and from where it resumes.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import os
import shutil
import signal
import stat
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path

from asr_init.errors import UserError
from asr_init.io import check_writable_folder, is_digits, read_json, resolved, write_json_atomic
from asr_init.records import check_record

_HELD: set[int] = set()  # the descriptors of the locks this process holds


def _drop_inherited_locks() -> None:
    """In a forked child (a pool worker): close its copies of the parent's lock descriptors, so
    that a lock is its holder's alone. A flock belongs to the open file, which fork shares: a child
    keeping a copy would hold the lock after its parent ended, until the child's last thread ended."""
    held = list(_HELD)
    _HELD.clear()  # first: a failed close below must not leave a descriptor number to close again later
    for fd in held:
        with suppress(OSError):
            os.close(fd)


os.register_at_fork(after_in_child=_drop_inherited_locks)


def lock_path(folder: Path) -> Path:
    """The lock file of FOLDER, named after the folder it is (through links), not after the path given."""
    folder = Path(os.path.realpath(folder))
    return folder.parent / f".{folder.name}.lock"


@contextmanager
def _locked(folder: Path, exclusive: bool, option: str, wait: str | None = None) -> Iterator[None]:
    """A non-blocking flock on FOLDER's lock file, or a UserError naming the holder (with `wait`,
    a message: that message printed, then a wait for the holder to finish). A reader of a folder
    whose lock file cannot be made (a read-only place) reads without one: nothing can write
    there either."""
    path = lock_path(folder)
    try:  # never through a link: truncating the lock would empty whatever file it points to
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(f"lock file {path} is a symbolic link; remove it (asr-init makes its own)") from None
        if exclusive:
            raise UserError(f"cannot write beside {option} {folder} ({exc.strerror}); choose another") from None
        yield
        return
    _HELD.add(fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UserError(f"lock file {path} is not a regular file; remove it (asr-init makes its own)")
        mode, busy = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, False
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            owner, busy = os.pread(fd, 32, 0).decode(errors="replace").strip(), True
        if busy and wait is None:
            doing = f"written by another asr-init run (pid {owner})" if owner else "read by another asr-init run"
            raise UserError(f"{option} {folder} is being {doing}; wait for it to finish or choose another")
        if busy:
            from asr_init.progress import console

            console.print(wait)
            fcntl.flock(fd, mode)
        if exclusive:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            if exclusive and fd in _HELD:  # (a forked child that leaves the block holds nothing)
                os.ftruncate(fd, 0)  # the file stays: unlinking it would let two runs lock two files
    finally:
        if fd in _HELD:
            _HELD.discard(fd)
            os.close(fd)


@contextmanager
def taking_turns(folder: Path, message: str) -> Iterator[None]:
    """Hold FOLDER's lock alone, after whoever holds it (`message` printed while waiting): for
    the commands that make a shared folder (the embedded corpus) one after another."""
    _make(folder.parent)
    with _locked(folder, True, "folder", wait=message):
        yield


@contextmanager
def reading(*folders: Path | str | None) -> Iterator[None]:
    """Hold shared locks on the folders a stage reads (None and files are skipped)."""
    with ExitStack() as stack:
        for folder in folders:
            if folder is not None and Path(folder).is_dir():
                stack.enter_context(_locked(Path(folder), False, "input"))
        yield


def refuse_output_over_inputs(out: Path, inputs, option: str = "--out") -> None:
    """Raise if `out` (the command's `option`) is, contains, or lies inside one of the named inputs
    ({name: path} or (name, path) pairs): writing there (and --force deleting it first) would destroy
    what the command reads."""
    target = resolved(out, option)
    for name, path in inputs.items() if isinstance(inputs, dict) else inputs:
        if path is None:
            continue
        src = resolved(path, f"the {name}")
        relation = "is" if target == src else "contains" if target in src.parents else None
        relation = relation or ("lies inside" if src in target.parents else None)
        if relation:
            raise UserError(
                f"{option} {out} {relation} the {name} {path}; choose an output folder outside every input "
                "(nothing was written or deleted)"
            )


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Delete OUT.tmp-PID and OUT.old-PID folders of processes that no longer run (a killed
    command's); a living process's are never touched. A command killed between the two
    renames of its swap left no OUT: its OUT.old-PID, the output as it was, becomes OUT again
    rather than being deleted. Returns those deleted."""
    out = Path(out)
    removed = []
    for path in sorted(out.parent.glob(f"{glob.escape(out.name)}.*-*")) if out.parent.is_dir() else []:
        prefix, _, pid = path.name.rpartition("-")
        if prefix not in (f"{out.name}.tmp", f"{out.name}.old") or not is_digits(pid) or _alive(int(pid)):
            continue
        if prefix.endswith(".old") and not out.exists() and path.is_dir() and not path.is_symlink():
            os.replace(path, out)
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (a zombie has ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or not a pid): leave its folder alone
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@dataclass
class Output:
    """Where a command writes (OUT.tmp-PID, or OUT itself in place) and, when OUT already holds
    a finished output of the same settings, its record (the command then has nothing to do)."""

    path: Path
    done: dict | None = None


@contextmanager
def output_folder(out: Path, settings: dict, *, record: str, finished: tuple[str, ...], force: bool,
                  inputs=None, in_place: bool = False, started: tuple[str, ...] = (),
                  neutral: tuple[str, ...] = (), summary: str | None = None, what: str = "output",
                  upgrade=None, dist=None, summary_fields=None, option: str = "--out") -> Iterator[Output]:  # fmt: skip
    """Hold OUT for one command (see the module's protocol). `settings` are compared with the
    same keys of OUT/`record` (a nested "config" dict key by key, `neutral` ones left out; an
    "inputs" dict of identities names a changed input); `finished` files mark a complete OUT,
    whose `summary` file (default: `record`) is yielded as `done` (each of its `summary_fields`,
    those the command reads from it, of its records.Kind; or a function of the record giving
    them); `upgrade` turns a record an older asr-init wrote into today's form before they are
    compared. In place, `record` is written with `settings` at the start and `started` files mark
    a run that may be resumed. Messages name OUT as `option` (synth's is its argument, OUT).

    On several processes (`dist`), rank 0 alone does all this and holds the lock; the others
    get its verdict and write nothing."""
    given, out = out, Path(os.path.realpath(out))  # "sub/.." is the folder it names; a link, the folder it names
    with ExitStack() as held:

        def hold() -> Output:
            refuse_output_over_inputs(out, inputs or {}, option)
            if out == Path.cwd() or out in Path.cwd().parents:
                raise UserError(f"{option} {given} is the current folder or holds it; choose another {option}")
            if out.exists() and not out.is_dir():
                raise UserError(f"{option} {given} is a file, not a folder; choose another {option} (the file is kept)")
            _make(out.parent)
            if out.is_dir():  # what a user cannot change, a command does not replace
                check_writable_folder(out)
            held.enter_context(_locked(out, True, option))
            remove_stale_temporaries(out)
            rules = (record, finished, started, neutral, force, in_place, what, upgrade, option)
            if _existing(out, settings, *rules) is not None:
                return Output(out, _summary(out / (summary or record), what, summary_fields))
            if in_place:
                _make(out)
                write_json_atomic(out / record, settings)
                return Output(out)
            tmp = temporary(out)
            shutil.rmtree(tmp, ignore_errors=True)
            _make(tmp)
            return Output(tmp)

        output = dist.from_main(hold) if dist is not None else hold()
        if dist is not None and not dist.is_main:
            yield output
            return
        swap = not in_place and output.done is None
        try:
            with terminate_as_interrupt() if swap else nullcontext():
                yield output
        except BaseException:
            if swap:
                shutil.rmtree(output.path, ignore_errors=True)
            raise
        if swap:
            swap_in(output.path, out)


def temporary(out: Path) -> Path:
    """OUT.tmp-PID: where this process builds OUT (remove_stale_temporaries removes a dead one's)."""
    return out.with_name(f"{out.name}.tmp-{os.getpid()}")


def swap_in(built: Path, out: Path) -> None:
    """Put the folder `built` in OUT's place: OUT -> OUT.old-PID, `built` -> OUT, then the old one
    is removed, so an interruption leaves the old OUT or the new one (a killed swap's OUT.old-PID
    becomes OUT again in remove_stale_temporaries)."""
    old = out.with_name(f"{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(built, out)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def terminate_as_interrupt(enabled: bool = True) -> Iterator[None]:
    """SIGTERM stops this process as Ctrl-C does (KeyboardInterrupt) inside the block, so that
    what the block builds is cleaned up and the command says it was interrupted; a process forked
    meanwhile keeps SIGTERM's default action. A handler already set (by whoever runs asr-init, or
    an enclosing block) is left in place, and none is set where `enabled` is False."""
    owner = os.getpid()

    def handler(signum, frame) -> None:
        if os.getpid() != owner:  # a forked worker ends as SIGTERM's default ends it
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt

    if (not enabled or threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL):  # fmt: skip
        yield
        return
    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _make(folder: Path) -> None:
    check_writable_folder(folder)
    folder.mkdir(parents=True, exist_ok=True)


def _existing(out: Path, settings: dict, record: str, finished, started, neutral, force, in_place, what,
              upgrade, option):  # fmt: skip
    """True when OUT holds a finished output of these settings; None when the command may go
    on (nothing there, a run to resume, or `force`). Anything else is refused."""
    if not out.is_dir() or not any(child.name != ".lock" for child in out.iterdir()):
        return None
    old = _ours(out / record, settings, upgrade)
    if old is None:  # --force replaces only what an asr-init command made
        raise UserError(f"output {out} exists and is not {what}; choose another {option} (it is left as it is)")
    is_run = any(any(out.glob(p)) for p in (*started, *finished))
    if force or (in_place and not is_run):  # in place, replaced or stopped before its first checkpoint: emptied
        if in_place:
            _empty(out)
        return None
    diffs = differences(old, {k: v for k, v in settings.items() if k != "inputs"}, neutral)
    recorded = old.get("inputs", {})
    changed = [(name, recorded[name], identity) for name, identity in settings.get("inputs", {}).items()
               if name in recorded and recorded[name] != identity]  # fmt: skip
    if diffs:  # named first: another option (another input file given) changes an input's identity too; and
        # a setting read from an input (a pruned model's batch norm, a corpus's own rate) changes with it
        inputs = "; ".join(f"{name}: identity {then} then, {now} now" for name, then, now in changed)
        raise UserError(
            f"{out} holds {what} made with other settings ({'; '.join(diffs)})"
            f"{f' from other inputs ({inputs})' if inputs else ''}; use --force to replace it or choose another "
            f"{option}"
        )
    if changed:
        name, then, now = changed[0]
        raise UserError(
            f"the {name} changed since {out} was made from it (identity {then} then, {now} now); its outputs would "
            f"mix the two: use --force to start over or choose another {option}"
        )
    complete = all((out / name).exists() for name in finished)
    if complete or in_place:
        return True if complete else None
    raise UserError(f"output {out} is not a complete {what}; use --force to replace it or choose another {option}")


def _summary(path: Path, what: str, fields=None) -> dict:
    """A finished output's summary record, which a command reads its results from: an object whose
    `fields` are of their kinds (an edited record is one line naming the field, not a traceback)."""
    done = read_json(path)
    if not isinstance(done, dict):
        raise UserError(f"{path} is damaged (not a JSON object); use --force to make {what} again")
    if fields:
        try:
            check_record(path, done, **(fields(done) if callable(fields) else fields))
        except UserError as exc:
            raise UserError(f"{exc}; the record is damaged: use --force to make {what} again") from None
    return done


def _ours(record: Path, settings: dict, upgrade) -> dict | None:
    """The record an asr-init command wrote (upgraded to today's form), or None: a file of that
    name that is not JSON, or that lacks any of the keys the command records but its inputs'
    identities, which older records lack (a project's own config.json, a results.json of
    another tool), does not make its folder an asr-init output."""
    if not record.is_file():
        return None
    try:
        old = read_json(record)
        old = upgrade(old) if upgrade else old
    except (UserError, OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    ours = isinstance(old, dict) and set(settings) - {"inputs"} <= set(old)
    return old if ours and isinstance(old.get("inputs", {}), dict) else None


def differences(old: dict, new: dict, neutral: tuple[str, ...]) -> list[str]:
    """'name: then -> now' for every setting of `new` that `old` records otherwise (a dict's
    keys one by one, `neutral` ones left out), each value whole (two long paths can differ at their ends)."""
    diffs = []
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            diffs += [f"{k}: {before.get(k)!r} then, {v!r} now" for k, v in value.items()
                      if k not in neutral and before.get(k) != v]  # fmt: skip
        elif before != value:
            diffs.append(f"{key}: {before!r} then, {value!r} now")
    return diffs


def _empty(out: Path) -> None:
    for child in out.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
