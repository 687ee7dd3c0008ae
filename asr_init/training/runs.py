"""Run folders of the training stages: settings recorded, finished runs recognised, others refused."""

from __future__ import annotations

from pathlib import Path

from asr_init.errors import UserError
from asr_init.io import read_json, refuse_output_over_inputs, write_json_atomic


def prepare_run_dir(
    out_dir: Path,
    stage: str,
    settings: dict,
    force: bool,
    finished: tuple[str, ...],
    neutral: tuple[str, ...] = ("device",),
    inputs: dict[str, Path | str | None] | None = None,
) -> dict | None:
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
        comparable = [
            {k: v for k, v in s["config"].items() if k not in neutral} | {"store": s["store"]} for s in (old, settings)
        ]
        if comparable[0] != comparable[1]:
            diff = sorted(k for k in comparable[1] if comparable[0].get(k) != comparable[1][k])
            raise UserError(
                f"{out_dir} holds a {stage} run with other settings ({', '.join(diff)}); "
                "use --force to start over or choose another --out"
            )
        if all((out_dir / name).exists() for name in (f"{stage}.json", *finished)):
            return read_json(out_dir / f"{stage}.json")
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise UserError(f"output {out_dir} exists and is not a {stage} run; use --force or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(cfg_path, settings)
    return None
