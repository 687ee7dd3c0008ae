"""Records as asr-init writes them: the JSON objects of run folders and stores, read with each field
a command uses checked for its kind, so that a record edited or damaged by hand is one error line
naming the file and the field (`best_dev_acc must be a number, not "x"`), not a traceback where the
value is used."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asr_init.errors import UserError
from asr_init.io import read_json

_ABSENT = object()  # a field a record leaves out


@dataclass(frozen=True)
class Kind:
    """What a field of a record must hold, `what` naming it in the error; where it holds an object,
    its `fields` are checked in turn, and `item` is what each element of a list or each value of an
    object must hold. `a | b` holds either (`| NULL`: or null; `| ABSENT`: or the field left out)."""

    what: str
    test: Callable[[Any], bool]
    fields: dict = field(default_factory=dict)
    item: Kind | None = None

    def __or__(self, other: Kind) -> Kind:
        either = lambda v: self.test(v) or other.test(v)  # noqa: E731
        return Kind(f"{self.what} or {other.what}", either, self.fields | other.fields, self.item or other.item)


NUMBER = Kind("a number", lambda v: isinstance(v, float) or (type(v) is int and abs(v) <= 2**53))  # a float holds it
INTEGER = Kind("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
TEXT = Kind("a string", lambda v: isinstance(v, str))
BOOLEAN = Kind("true or false", lambda v: isinstance(v, bool))
NULL = Kind("null", lambda v: v is None)
ABSENT = Kind("left out", lambda v: v is _ABSENT)


def at_least(low: int, what: str = "an integer") -> Kind:
    """An integer (not a bool) of at least `low`, named `what` in messages."""
    return Kind(f"{what} >= {low}", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low)


def record(**fields: Kind) -> Kind:
    """An object with these fields (others are not looked at)."""
    return Kind("an object", lambda v: isinstance(v, dict), fields)


def each(item: Kind, container: type = list) -> Kind:
    """A list (container=dict: an object) each element (value) of which is `item`."""
    return Kind("a list" if container is list else "an object", lambda v: isinstance(v, container), item=item)


def _check(path: Path | str, name: str, value: Any, kind: Kind) -> None:
    if not kind.test(value):
        got = "missing" if value is _ABSENT else json.dumps(value)[:40]
        raise UserError(f"{path}: {name or 'the record'} must be {kind.what}, not {got}")
    if isinstance(value, list | dict) and kind.item is not None:
        for key, v in value.items() if isinstance(value, dict) else enumerate(value):
            _check(path, _field(name, key), v, kind.item)
    for key, sub in kind.fields.items() if isinstance(value, dict) else ():
        _check(path, _field(name, key), value.get(key, _ABSENT), sub)


def _field(name: str, key: str | int) -> str:
    """How an error names `key` of the value `name`: best_epoch, frame_acc.states, layers[0], splits["a b"]."""
    if isinstance(key, str) and key.isidentifier():
        return f"{name}.{key}" if name else key
    return f"{name}[{json.dumps(key)}]"


def read_record(path: Path, **fields: Kind) -> dict:
    """The JSON object at `path`, each of `fields` (those the report reads) of its kind: a record that
    holds another type there (a string, null, a list or a bool where a number is formatted) is a
    UserError naming the file and the field, before the report writes anything."""
    data = read_json(path)
    check_record(path, data, **fields)
    return data


def check_record(path: Path, data: Any, **fields: Kind) -> None:
    """`read_record`'s check of `data`, the record read from `path`."""
    _check(path, "", data, record(**fields))


def read_record_if(path: Path, **fields: Kind) -> dict | None:
    """`read_record`, or None where there is no file at `path`."""
    return read_record(path, **fields) if path.exists() else None
