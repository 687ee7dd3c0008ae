"""Shared plumbing for the recipe scripts: scale settings and a runner for CLI commands.

A recipe is a list of `asr-init` command lines. `run_commands` executes them through
the real CLI entry point (in worker processes, so that two runs share the two cores),
skips a command whose output is already complete, and appends each executed command
with its wall time to RESULTS/commands.jsonl and each stage's wall time to
RESULTS/stages.jsonl, which the report reads. Ctrl-C or SIGTERM stops a recipe run by `run_recipe`
at once: the workers are killed (their commands resume or run again next time), one `interrupted`
line, exit status 130.

Environment: RESULTS (output folder, default results), QUICK (non-empty: tiny scale),
JOBS (parallel commands, default: 2 or the number of cores if fewer), DEVICE (cpu or
cuda, default cpu; on cuda the full scale runs full epochs: no --max-frames cuts).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from asr_init.features.extract import end_pool, pool_map
from asr_init.folders import terminate_as_interrupt

RESULTS = Path(os.environ.get("RESULTS", "results"))
QUICK = bool(os.environ.get("QUICK"))
JOBS = max(1, int(os.environ.get("JOBS", min(2, os.cpu_count() or 1))))
STORE = RESULTS / "store"
DEVICE = os.environ.get("DEVICE") or "cpu"

# Every recipe reads its sizes from here: one place to see what "full" and "quick" mean.
SCALE = {
    "full": {
        "seeds": [0, 1, 2],
        "layer1_hidden": 512,
        "layer1_frames": 100_000,
        "layer1_report": 4_000,
        "layer1_rates": 2,  # learning rates per visible type, of recipe 1's two
        "dbn_layers": 3,
        "dbn_hidden": 1024,
        "dbn_frames": 60_000,
        "dbn_report": 4_000,
        "nopre_layers": 2,
        "nopre_hidden": 256,
        "nopre_epochs": 5,
        "nopre_frames": 150_000,
        "deep_layers": 6,
        "deep_hidden": 1024,
        "deep_epochs": 3,
        "deep_frames": 100_000,
        # Recipe 3 pre-trains with every default; fine-tuning 6 x 1024 for full epochs takes about
        # 100 s an epoch on 2 cores, so here it is cut (None: the default, as on a GPU).
        "am_layers": 6,
        "am_hidden": 1024,
        "am_pre_epochs": None,
        "am_max_epochs": 4,
        "am_fine_frames": 100_000,
        # Recipe 4 (the remedies): the same budget for every row, 3 epochs of 60,000 frames (27 runs of
        # 6 x 1024 and their evaluations in about 40 minutes: make recipes stays under 2 hours).
        "rem_layers": 6,
        "rem_hidden": 1024,
        "rem_seeds": [0, 1],
        "rem_epochs": 3,
        "rem_frames": 60_000,
        # Recipe 6 (FSDD, 79,000 train frames): whole epochs at the widths users train.
        "fsdd_inits": None,  # None: every init and the sweep of recipe 1
        "fsdd_hidden": 1024,
        "fsdd_dbn_layers": 3,
        "fsdd_am_layers": 6,
        "fsdd_max_epochs": 10,
        "fsdd_report": 4_000,
    },
    "quick": {
        "seeds": [0, 1],
        "layer1_hidden": 32,
        "layer1_frames": 3_000,
        "layer1_report": 500,
        "layer1_rates": 1,
        "dbn_layers": 2,
        "dbn_hidden": 32,
        "dbn_frames": 2_000,
        "dbn_report": 500,
        "nopre_layers": 2,
        "nopre_hidden": 32,
        "nopre_epochs": 2,
        "nopre_frames": 3_000,
        "deep_layers": 3,
        "deep_hidden": 64,
        "deep_epochs": 1,
        "deep_frames": 3_000,
        "am_layers": 2,
        "am_hidden": 64,
        "am_pre_epochs": 1,
        "am_max_epochs": 3,
        "am_fine_frames": None,
        "rem_layers": 2,
        "rem_hidden": 64,
        "rem_seeds": [0],
        "rem_epochs": 1,
        "rem_frames": 3_000,
        "fsdd_inits": ["optimal", "xavier-normal", "hinton", "optimal:0.5", "optimal:2"],
        "fsdd_hidden": 32,
        "fsdd_dbn_layers": 2,
        "fsdd_am_layers": 2,
        "fsdd_max_epochs": 2,
        "fsdd_report": 500,
    },
}["quick" if QUICK else "full"]
if DEVICE.startswith("cuda") and not QUICK:  # a GPU affords full epochs where 2 CPU cores cut them
    SCALE.update(
        layer1_frames=None,
        dbn_frames=None,
        nopre_frames=None,
        deep_frames=None,
        am_max_epochs=None,
        am_fine_frames=None,
        rem_frames=None,
    )


def cut(option: str, value: int | None) -> list[str]:
    """[option, value], or nothing where the scale leaves the setting at its default."""
    return [] if value is None else [option, str(value)]


def on_device(args: list[str]) -> list[str]:
    """A training or evaluation command line with --device appended when DEVICE is not cpu."""
    return args if DEVICE == "cpu" else [*args, "--device", DEVICE]


def steps_on_device(*steps: list[tuple[list[str], Path | None]]) -> list[list[tuple[list[str], Path | None]]]:
    """Each list of (command line, done marker) with `on_device` applied to every command."""
    return [[(on_device(args), done) for args, done in step] for step in steps]


def corpus_or_skip(out: Path, variable: str, recipe: str, what: str) -> Path | None:
    """The corpus folder named by environment variable `variable` for a recipe on an outside
    corpus, or None after writing OUT/SKIPPED.txt and saying so (the report reads it)."""
    out.mkdir(parents=True, exist_ok=True)
    given = os.environ.get(variable)
    if not given:
        (out / "SKIPPED.txt").write_text(f"{recipe} skipped: no {what} given (run with {variable}=DIR)\n", "utf-8")
        print(f"{recipe}: skipped, no {what} given (make recipes {variable}=DIR)")
        return None
    (out / "SKIPPED.txt").unlink(missing_ok=True)
    return Path(given)


def label(init: str) -> str:
    """A folder name for an init spec: optimal:1.392 -> optimal_1.392."""
    return init.replace(":", "_")


_POOLS: dict = {}


def _pool(jobs: int) -> ProcessPoolExecutor:
    """`jobs` worker processes, started once per recipe script and kept for all its stages:
    each worker imports torch (and torch's compiler, which an optimiser loads) once, not once a stage."""
    if jobs not in _POOLS:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        _POOLS[jobs] = ProcessPoolExecutor(jobs, get_context("spawn"), _worker_init, (threads,))
    return _POOLS[jobs]


def _worker_init(threads: int) -> None:
    """A worker leaves Ctrl-C and SIGTERM to the recipe, which kills it: they stay blocked (pending) in it
    and every thread it starts, whatever handler a command sets, so that its command never answers them."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    import torch

    torch.set_num_threads(threads)


def run_recipe(main) -> None:
    """Run a recipe's `main()`; Ctrl-C or SIGTERM ends its workers and the recipe with one `interrupted`
    line and exit status 130 (a re-run skips every command that finished)."""
    try:
        with terminate_as_interrupt():
            main()
    except BaseException as exc:  # the workers' queued commands are not run
        for pool in _POOLS.values():
            end_pool(pool)
        if not isinstance(exc, KeyboardInterrupt):
            raise
        print("interrupted", file=sys.stderr, flush=True)
        raise SystemExit(130) from None


def _failed_marker(done: str | None) -> Path | None:
    return Path(done).parent / "failed.json" if done else None


def _finished(done: str | None) -> bool:
    """Complete, or failed before (deterministic runs fail the same way again)."""
    return bool(done) and (Path(done).exists() or _failed_marker(done).exists())


def _run_one(task: tuple[str, list[str], str | None]) -> dict:
    stage, args, done = task
    command = "asr-init " + " ".join(shlex.quote(a) for a in args)
    if _finished(done):
        return {"stage": stage, "command": command, "skipped": True, "exit": 0, "seconds": 0.0}
    from typer.main import get_command

    from asr_init.cli import app

    t0 = time.perf_counter()
    try:
        get_command(app).main(args=args, prog_name="asr-init", standalone_mode=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return {"stage": stage, "command": command, "skipped": False, "exit": code, "seconds": time.perf_counter() - t0}


def run_commands(
    stage: str, commands: list[tuple[list[str], str | None]], jobs: int = JOBS, allow_fail: bool = False
) -> list[dict]:
    """Run `asr-init` command lines (args, done-marker path); stop the recipe if one fails,
    unless `allow_fail` (a failed run is then a result the report shows)."""
    import multiprocessing

    if multiprocessing.parent_process() is not None:  # a recipe without a __main__ guard re-run by a worker
        raise RuntimeError(
            "run_commands called inside a worker process; guard the recipe with if __name__ == '__main__'"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    tasks = [(stage, args, str(done) if done else None) for args, done in commands]
    todo = sum(1 for _, d in commands if not _finished(str(d) if d else None))
    print(f"== {stage}: {len(tasks)} command(s), {todo} to run, {jobs} at a time", flush=True)
    t0 = time.perf_counter()
    if jobs == 1 or todo <= 1:
        results = []
        for task in tasks:
            results.append(_run_one(task))
            if results[-1]["exit"] == 130:  # a command run here was interrupted (it said so): so is the recipe
                raise SystemExit(130)
    else:
        results = []
        for i, r in enumerate(pool_map(_pool(jobs), _run_one, tasks, chunksize=1), 1):
            results.append(r)
            if not r["skipped"]:
                print(f"  [{i}/{len(tasks)}] {r['seconds']:6.1f} s  exit {r['exit']}  {r['command']}", flush=True)
    with open(RESULTS / "commands.jsonl", "a") as fh:
        for r in results:
            if not r["skipped"]:
                fh.write(json.dumps(r) + "\n")
    failed = [r for r in results if r["exit"] != 0]
    wall = time.perf_counter() - t0
    print(f"== {stage}: done in {wall:.1f} s", flush=True)
    if any(not r["skipped"] for r in results):
        with open(RESULTS / "stages.jsonl", "a") as fh:
            fh.write(
                json.dumps(
                    {
                        "stage": stage,
                        "wall_s": wall,
                        "commands": sum(not r["skipped"] for r in results),
                        "command_s": sum(r["seconds"] for r in results),
                        "jobs": jobs,
                    }
                )
                + "\n"
            )
    for r, (_, _, done) in zip(results, tasks):
        if r["exit"] != 0 and allow_fail and done:
            Path(done).parent.mkdir(parents=True, exist_ok=True)
            _failed_marker(done).write_text(json.dumps(r) + "\n")
    for r in failed:
        print(
            f"{'failed (kept as a result)' if allow_fail else 'FAILED'} (exit {r['exit']}): {r['command']}",
            file=sys.stderr,
        )
    if failed and not allow_fail:
        raise SystemExit(1)
    return results


def write_manifest(recipe: str, commands: list[tuple[list[str], str | None]]) -> None:
    """RESULTS/<recipe>/commands.txt: the exact command lines of a recipe, for the report."""
    folder = RESULTS / recipe
    folder.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps({"quick": QUICK, "device": DEVICE, "scale": SCALE}, indent=1))
    (folder / "commands.txt").write_text(
        "".join("asr-init " + " ".join(shlex.quote(a) for a in args) + "\n" for args, _ in commands), "utf-8"
    )  # the report reads UTF-8 whatever the locale
