"""Configuration records shared by the stages, with validation and JSON round-trips.

Each stage has one dataclass with defaults. `validate()` raises `UserError` naming the
bad field and value; `to_dict`/`from_dict` write and read the resolved config that every
output directory keeps, so a later stage never has to guess how an earlier one ran.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any, TypeVar

from .errors import UserError

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

    def validate(self) -> None:  # overridden where there is something to check
        return None

    def _check(self, condition: bool, field: str, why: str) -> None:
        if not condition:
            raise UserError(f"invalid {field}={getattr(self, field)!r}: {why}")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file in the same folder, then rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise UserError(f"{path} is missing") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None


def refuse_output_over_inputs(out_dir: Path, inputs: dict[str, Path | str | None]) -> None:
    """Raise if `out_dir` is, contains, or lies inside one of the named inputs: writing
    there (and --force deleting it first) would destroy what the run reads."""
    out = Path(out_dir).resolve()
    for name, path in inputs.items():
        if path is None:
            continue
        src = Path(path).resolve()
        relation = ("is" if out == src else "contains" if out in src.parents else
                    "lies inside" if src in out.parents else None)
        if relation:
            raise UserError(f"--out {out_dir} {relation} the {name} {path}; choose an output folder outside every "
                            "input (nothing was written or deleted)")


def prepare_run_dir(out_dir: Path, stage: str, settings: dict, force: bool, finished: tuple[str, ...],
                    neutral: tuple[str, ...] = ("device",), inputs: dict[str, Path | str | None] | None = None) -> dict | None:
    """Make `out_dir` ready for a training stage; returns the summary if it already finished.

    `settings` ({"store": ..., "config": {...}}) is written to STAGE.config.json. A folder
    holding a run with other settings (apart from the `neutral` keys, which may change
    between a run and its resumption) is refused, as is a folder holding anything else;
    `force` deletes it first. An output that is, contains or lies inside one of `inputs`
    is refused before anything is touched. The run is finished when STAGE.json and `finished` exist.
    """
    import shutil

    out_dir = Path(out_dir)
    refuse_output_over_inputs(out_dir, inputs or {})
    cfg_path = out_dir / f"{stage}.config.json"
    if out_dir.exists() and force:
        shutil.rmtree(out_dir)
    if cfg_path.exists():
        old = read_json(cfg_path)
        comparable = [{k: v for k, v in s["config"].items() if k not in neutral} | {"store": s["store"]} for s in (old, settings)]
        if comparable[0] != comparable[1]:
            diff = sorted(k for k in comparable[1] if comparable[0].get(k) != comparable[1][k])
            raise UserError(f"{out_dir} holds a {stage} run with other settings ({', '.join(diff)}); "
                            "use --force to start over or choose another --out")
        if all((out_dir / name).exists() for name in (f"{stage}.json", *finished)):
            return read_json(out_dir / f"{stage}.json")
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise UserError(f"output {out_dir} exists and is not a {stage} run; use --force or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(cfg_path, settings)
    return None
