"""Configuration records shared by the stages, with validation and dict round-trips.

Each stage has one dataclass with defaults. `validate()` raises `UserError` naming the
bad value by the command-line option that sets it, as typed (`invalid --jobs 0: ...`);
`to_dict`/`from_dict` write and read the resolved config that every output directory
keeps, so a later stage never has to guess how an earlier one ran.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any, TypeVar

from asr_init.errors import UserError
from asr_init.io import is_digits, read_count
from asr_init.records import ABSENT, BOOLEAN, INTEGER, NULL, NUMBER, TEXT, check_record, each, record

DATA_DIR = Path(__file__).resolve().parent.parent / "data"

T = TypeVar("T", bound="ConfigBase")


class ConfigBase:
    """Mixin for stage configs: dict round-trip and field checks."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise UserError(f"unknown {cls.__name__} field(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        obj = cls(**data)
        obj.validate()
        return obj

    @classmethod
    def from_record(cls: type[T], path: Path, rec: dict[str, Any]) -> T:
        """The config that the settings record `rec`, read from `path`, holds in "config": each field of
        the kind its annotation names (`int | None`: an integer or null), within LIMITS and valid as the
        command would take it, else a UserError naming the file and the field. Fields this version does
        not know are left out, those the record lacks take their defaults; --device is not checked
        against this machine (a run recorded on a GPU is read on any)."""
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        check_record(path, rec, config=record(**{f.name: _KINDS[f.type] | ABSENT for f in fields}))
        config = cls(**{f.name: rec["config"][f.name] for f in fields if f.name in rec["config"]})
        try:
            check_limits(config)  # first: a check of the widths may list them all
            dataclasses.replace(config, device="cpu").validate()  # type: ignore[type-var]
        except UserError as e:
            raise UserError(f"{path}: config: {e}") from None
        return config

    def validate(self) -> None:  # overridden where there is something to check
        return None

    def _check(self, condition: bool, field: str, why: str) -> None:
        if not condition:
            raise UserError(f"invalid {as_typed(self, field)}: {why}")

    def _check_paths(self, hints: dict[str, str]) -> None:
        """Each field of `hints` (a path, or None where left out) names something: an empty or white-space
        one is Path("."), the current folder, which a run would read as the input the user did not name;
        its message ends with the field's hint where there is one."""
        for name, hint in hints.items():
            value = getattr(self, name)
            why = "an empty path names no file or folder" + (f"; {hint}" if hint else "")
            self._check(value is None or value.strip() != "", name, why)

    def _check_parse(self, field: str, parse) -> None:
        """`parse` of the field's value (a method spec such as --init's), its UserError named by the option."""
        try:
            parse(getattr(self, field))
        except UserError as exc:
            raise UserError(f"invalid {as_typed(self, field)}: {exc}") from None


def option_flag(f: dataclasses.Field) -> str:
    """The command-line option of config field `f`, as the CLI declares it (cli.py): the flag
    option() names (`--snr`, `--use-energy/--no-use-energy`), else the field's name with dashes,
    a switch that is on by default with its --no- form (`--cuda-graphs/--no-cuda-graphs`)."""
    if f.metadata.get("flag"):
        return f.metadata["flag"]
    name = "--" + f.name.replace("_", "-")
    return f"{name}/--no-{name[2:]}" if f.default is True else name


def typed_words(config, field: str) -> list[str]:
    """`config`'s field `field` as the words a user gives on the command line: `--jobs` `0`, `--hidden`
    `512,-5`, `--features` `mfcc`, `--norm-vars` (a switch names itself, in the form that gives its value)."""
    value = getattr(config, field)
    on, _, off = option_flag(next(f for f in dataclasses.fields(config) if f.name == field)).partition("/")
    if isinstance(value, bool):
        return [on if value or not off else off]
    items = value if isinstance(value, list) else [] if value is None else [value]
    return [on, ",".join(map(str, items))] if items else [on]


def as_typed(config, field: str) -> str:
    """`typed_words` as one line the shell reads back as those words: `--jobs 0`, `--features 'a b'`."""
    return shlex.join(typed_words(config, field))


# A config field's kind in a record, by its annotation (records.py).
_KINDS = {"int": INTEGER, "float": NUMBER, "str": TEXT, "bool": BOOLEAN, "list[int]": each(INTEGER)}
_KINDS |= {f"{name} | None": kind | NULL for name, kind in _KINDS.items()}

SPLITS = ("train", "dev", "test")
SEED_RANGE = "must be from 0 to 4294967295"
LIMITS = {"layers": 64, "hidden": 1 << 16, "splice": 100, "batch_size": 1 << 20, "stats_frames": 1 << 24, "jobs": 1024,
          "speakers": 10_000, "cd_k": 100}  # fmt: skip


def check_limits(config) -> None:
    """Refuse sizes beyond the stated LIMITS before anything is allocated or started (a --hidden
    of 10**9 would ask for gigabytes at once, a --jobs of 10**9 start processes until the machine
    has no more, a --cd-k of 10**5 hold that many Gibbs steps' samples of every mini-batch)."""
    for name, top in LIMITS.items():
        value = getattr(config, name, None)
        largest = max(value, default=0) if isinstance(value, list) else value
        if isinstance(largest, int) and largest > top:
            raise UserError(f"invalid {as_typed(config, name)}: at most {top:,}")


HIDDEN_HELP = "Units per hidden layer: one number for every layer, or one per layer (1024,1024,512,256)."


class Widths:
    """`layers` and `hidden` of a network's hidden layers: `hidden` one width for every layer
    (`layers` of them, DEFAULT_LAYERS when None) or one per layer, whose count `layers`, where
    given, must be. A plain int is one width."""

    DEFAULT_LAYERS = 6

    def __post_init__(self) -> None:
        if isinstance(self.hidden, int):
            self.hidden = [self.hidden]

    @property
    def sizes(self) -> list[int]:
        if len(self.hidden) == 1:
            return list(self.hidden) * (self.layers if self.layers is not None else self.DEFAULT_LAYERS)
        return list(self.hidden)

    def _check_widths(self) -> None:
        self._check(bool(self.hidden) and min(self.hidden) >= 1, "hidden", "every width must be at least 1")
        self._check(self.layers is None or self.layers >= 1, "layers", "must be at least 1")
        self._check(
            len(self.hidden) == 1 or self.layers in (None, len(self.hidden)),
            "layers",
            f"--hidden lists {len(self.hidden)} widths; drop --layers or make it {len(self.hidden)}",
        )


DEVICE_HELP = "auto (CUDA when usable, else the CPU), cpu, cuda or cuda:N."


def resolve_device(device: str, say: bool = True):
    """The torch.device `device` names; 'auto' is cuda when torch can use a CUDA device here,
    else the CPU, and (with `say`) one line tells which."""
    import torch

    if device != "auto":
        return torch.device(device)
    from asr_init.progress import console

    if torch.cuda.is_available():
        chosen = torch.device("cuda")
        why = torch.cuda.get_device_name(0)
    else:
        chosen = torch.device("cpu")
        why = "no usable CUDA device" if torch.version.cuda else "this torch is a CPU build"
    if say:
        console.print(f"device: {chosen.type} ({why}; --device cpu|cuda chooses)", highlight=False)
    return chosen


def check_device(device: str) -> None:
    """Raise UserError unless `device` is one this machine can run on: 'auto', 'cpu', or 'cuda' /
    'cuda:N' where torch sees a CUDA device (N below the device count). Every stage's config
    calls this from validate(), so a bad --device stops the run before it reads anything."""
    import torch

    name, _, index = str(device).partition(":")
    if name in ("cpu", "auto") and not index:
        return
    given = f"invalid --device {shlex.quote(str(device))}"
    if name != "cuda" or (index and not is_digits(index)):
        raise UserError(f"{given}: must be auto, cpu, cuda or cuda:N (an index of a CUDA device)")
    if not torch.cuda.is_available():
        raise UserError(f"{given}: CUDA is not available on this machine; use --device cpu")
    count = torch.cuda.device_count()
    if index and read_count(index, count) >= count:
        raise UserError(f"{given}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")


def option(default: Any, help: str, flag: str | None = None, **cli: Any) -> Any:
    """A config field that is also a command-line option: its default, its help and (where
    the field's name does not give it) its flag are written here, once; the CLI derives the
    option from the field (cli.py). `cli` holds further typer settings: repeat=True for an
    option given once per value (a list), path=True for an existing file."""
    meta = {"help": help, "flag": flag, **cli}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)
