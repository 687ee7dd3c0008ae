"""Training runs that have not finished: which stage, where it stopped, and the command that continues it.

A pre-training or fine-tuning run writes its settings record (pretrain.config.json,
finetune.config.json) when it starts and its summary (pretrain.json, finetune.json) last: a
folder holding the first and not the second is unfinished. Its checkpoints say where it stopped:
a pre-training run's finished layers rbmN.pt and the layer in progress rbmN.partial.pt, a
fine-tuning run's checkpoint.pt, each with its position (the epoch in progress, the batches and
frames done in it). A prune run, likewise (prune.config.json, prune.json), is where its fine-tuning
runs (OUT/sparsity-S) stand. The command that continues a run names every path absolute, so that it
runs from any folder; a prune run's, its prune command, resumes its fine-tuning runs.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from pathlib import Path

from asr_init.config import LIMITS, typed_words
from asr_init.errors import UserError
from asr_init.evaluation.prune import sparsity_folder
from asr_init.io import load_run_checkpoint
from asr_init.progress import counted
from asr_init.records import INTEGER, NUMBER, TEXT, check_record, each, read_record, record
from asr_init.reporting.logs import recorded_path
from asr_init.training.config import FinetuneConfig, PretrainConfig
from asr_init.training.finetune import SOURCE_PATHS

# stage: (its settings record, its summary, written last, its config)
STAGES = {
    "pretrain": ("pretrain.config.json", "pretrain.json", PretrainConfig),
    "finetune": ("finetune.config.json", "finetune.json", FinetuneConfig),
    "prune": ("prune.config.json", "prune.json", FinetuneConfig),
}
_POSITION = record(epoch=INTEGER, batch=INTEGER, epoch_frames=INTEGER)


def is_unfinished(folder: Path, stage: str) -> bool:
    """Whether `folder` holds `stage`'s settings record and not its summary."""
    settings, summary, _ = STAGES[stage]
    return (folder / settings).is_file() and not (folder / summary).exists()


def unfinished_runs(found) -> dict[str, list[Path]]:
    """The unfinished runs of each stage among the folders `found(name)` gives, those holding a file `name`;
    a fine-tuning run of an unfinished prune run (OUT/sparsity-S) is that prune run's, which its command resumes."""
    runs = {stage: [p for p in found(settings) if is_unfinished(p, stage)] for stage, (settings, *_) in STAGES.items()}
    runs["finetune"] = [p for p in runs["finetune"] if p.parent not in runs["prune"]]
    return runs


def unfinished_lines(folder: Path, stage: str) -> list[str]:
    """Markdown lines on the unfinished run in `folder`: where it stopped, then the command that continues it;
    a run whose recorded settings this asr-init refuses (an older one took them) is listed with the reason."""
    path = folder / STAGES[stage][0]
    fields = dict(model=TEXT, store=TEXT, sparsities=each(NUMBER)) if stage == "prune" else dict(store=TEXT)
    rec = read_record(path, **fields)
    config, refused = _recorded_config(STAGES[stage][2], path, rec)
    if refused is not None:
        return [
            f"Unfinished; its recorded settings are refused by this asr-init ({refused}), so no command here "
            "continues it: continue it with the asr-init that started it, or start it again with --force.",
            "",
        ]
    if stage == "prune":
        stopped, command = _prune(path, rec, config)
    else:
        stopped = _pretrain_stop(folder, config) if stage == "pretrain" else _finetune_stop(folder, config)
        out = os.path.abspath(folder)
        # shlex.join: the shell reads the line back as these words, whatever a record holds
        command = shlex.join(["asr-init", stage, rec["store"], "--out", out, "--resume", *_options(config, folder)])
    return [f"Unfinished: {stopped}. Continue it with:", "", "```sh", command, "```", ""]


def _recorded_config(cls, path: Path, rec: dict):
    """(the config of the settings record `rec` read from `path`, None), or (None, why this asr-init refuses
    it) where each field is of its kind but a value lies beyond today's bounds (an older asr-init may have
    taken it: --cd-k 200). A field of another kind, and --layers or --hidden beyond their limits (sizes the
    report would build), are a UserError naming the file, as for a damaged record."""
    try:
        return cls.from_record(path, rec), None
    except UserError as exc:
        refused = str(exc).removeprefix(f"{path}: config: ")
        if refused == str(exc):  # a field of another kind
            raise
    layers, hidden = rec["config"].get("layers"), rec["config"].get("hidden", [])
    if (layers or 0) > LIMITS["layers"] or max(hidden, default=0) > LIMITS["hidden"]:
        raise UserError(f"{path}: config: {refused}") from None
    return None, refused


def _prune(path: Path, rec: dict, config: FinetuneConfig) -> tuple[str, str]:
    """Where the prune run whose record `rec` is at `path` (its config `config`) stopped, and its command: run
    again, it resumes its fine-tuning runs. Its options leave out the fields prune sets for each run itself
    (--init-from, --sparsity, --reuse-layers)."""
    config = dataclasses.replace(config, init_from=None, sparsity=0.0, reuse_layers=0)
    shares = ",".join(map(str, rec["sparsities"]))
    out = os.path.abspath(path.parent)
    command = shlex.join(["asr-init", "prune", rec["model"], "--out", out, "--sparsity", shares, "--store",
                          rec["store"], *_options(config, path.parent)])  # fmt: skip
    return _prune_stop(path.parent, config, rec["sparsities"]), command


def _options(config, folder: Path) -> list[str]:
    """The words of every option whose recorded value is not its default, as typed; an input path the run
    was given relative to the folder it ran in made absolute (found as `recorded_path` finds it: a resumption
    compares the input's identity, so a wrong guess is refused)."""
    paths = {name: path for name in SOURCE_PATHS if (path := getattr(config, name, None))}
    config = dataclasses.replace(
        config, **{name: os.path.abspath(recorded_path(p, folder)) for name, p in paths.items()}
    )
    options = []
    for f in dataclasses.fields(config):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if "help" in f.metadata and getattr(config, f.name) != default:
            options += typed_words(config, f.name)
    return options


def _where(path: Path, epochs: str) -> str:
    """Where the checkpoint at `path` stands, of `epochs` (in words)."""
    ckpt = load_run_checkpoint(path)
    check_record(path, ckpt, position=_POSITION)
    epoch, batch, frames = (ckpt["position"][k] for k in ("epoch", "batch", "epoch_frames"))
    if batch == 0:
        return f"after epoch {epoch - 1} of {epochs}" if epoch > 1 else "before its first batch"
    return f"in epoch {epoch} of {epochs}, after {counted(batch, 'batch', 'batches')} ({frames:,} frames) of it"


def _pretrain_stop(folder: Path, config: PretrainConfig) -> str:
    """Which layers of the run in `folder` finished, and where the layer in progress stopped."""
    layers = len(config.sizes)
    done = next((n for n in range(layers) if not (folder / f"rbm{n + 1}.pt").is_file()), layers)
    before = f"layer 1 of {layers} finished" if done == 1 else f"layers 1-{done} of {layers} finished"
    if done == layers:
        return f"every layer of {layers} finished; the DBN (dbn.pt) and pretrain.json were not written"
    partial = folder / f"rbm{done + 1}.partial.pt"
    if not partial.is_file():
        return (before + "; " if done else "") + f"layer {done + 1} stopped before its first checkpoint"
    where = f"layer {done + 1} of {layers} stopped {_where(partial, counted(config.layer_epochs(done + 1), 'epoch'))}"
    return where + f" ({partial.name})" + (f"; {before}" if done else "")


def _prune_stop(folder: Path, config: FinetuneConfig, sparsities: list[float]) -> str:
    """Which fine-tuning runs of the prune run in `folder` finished, where the one in progress stopped,
    and which had not started (the first starts after the dense model's evaluation, dense-eval)."""
    runs = [sparsity_folder(folder, share) for share in sparsities]
    done = [run.name for run in runs if (run / "finetune.json").is_file()]
    waiting = [run.name for run in runs if not (run / "finetune.config.json").is_file()]
    if len(waiting) == len(runs):
        return "it stopped before its first fine-tuning run, in or after the dense model's evaluation (dense-eval)"
    if len(done) == len(runs):
        return f"every fine-tuning run ({', '.join(done)}) finished; prune.json was not written"
    parts = [f"{', '.join(done)} finished"] if done else []
    parts += [f"{run.name}: {_finetune_stop(run, config)}" for run in runs if is_unfinished(run, "finetune")]
    return "; ".join(parts + ([f"{', '.join(waiting)} not started"] if waiting else []))


def _finetune_stop(folder: Path, config: FinetuneConfig) -> str:
    """Where the fine-tuning run in `folder` stopped."""
    path = folder / "checkpoint.pt"
    if not path.is_file():
        return "it stopped before its first checkpoint"
    return f"it stopped {_where(path, 'at most ' + counted(config.max_epochs, 'epoch'))} (checkpoint.pt)"
