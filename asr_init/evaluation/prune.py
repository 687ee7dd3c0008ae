"""`asr-init prune`: magnitude pruning of a fine-tuned model at several sparsities.

For each sparsity, `finetune --init-from MODEL --sparsity S` takes the whole network (softmax
too), zeroes that share of its hidden weights by magnitude (per layer, or over all of them
with --prune-scope global), and fine-tunes it with the pruned weights held at zero; each
result is a model folder like any other (evaluate, export-kaldi). The dense model and every
pruned one are evaluated, on the run's --device, on the test split (on dev where the store
has none, as an import-kaldi store of Kaldi's train and cv sets); OUT holds prune.json,
prune.csv and sparsity.png (state frame accuracy against sparsity), each naming the split.
"""

from __future__ import annotations

from pathlib import Path

from asr_init.config import check_device
from asr_init.errors import UserError
from asr_init.evaluation.config import MODEL_DECIDES, EvalConfig
from asr_init.evaluation.evaluate import evaluate
from asr_init.features.store import FeatureStore, store_identity
from asr_init.folders import output_folder, reading, terminate_as_interrupt
from asr_init.io import digest, read_json, write_csv, write_json_atomic
from asr_init.models.export_kaldi import training_store_path
from asr_init.records import ABSENT, INTEGER, NULL, NUMBER, TEXT, each, record
from asr_init.training.config import FinetuneConfig
from asr_init.training.distributed import distributed
from asr_init.training.finetune import DEVICE_NEUTRAL, finetune, input_pipeline, read_source
from asr_init.training.interrupts import Interrupted
from asr_init.training.loop import already_finished

_KINDS = ("states", "phones", "pdfs")  # the frame accuracies a row gives, where the store has the targets
# what prune sets for each fine-tuning run itself: not a setting of the prune run (whatever a caller's config holds)
_PER_RUN = ("init_from", "sparsity", "reuse_layers")


def prune(model: Path, out: Path, config: FinetuneConfig, sparsities: list[float], store: Path | None = None,
          force: bool = False) -> dict:  # fmt: skip
    """Prune `model` at each of `sparsities` into OUT/sparsity-S; returns the summary. `config` holds
    the settings of each sparsity's fine-tuning (prune sets its sparsity, init_from and reuse_layers);
    an lr and momentum it took by default are a trained model's (STARTING_POINT_DEFAULTS["dbn"], the
    CLI's), whatever sparsity it was made with (FinetuneConfig.starting). Ctrl-C or SIGTERM at any
    point raises Interrupted (a fine-tuning run checkpoints first; what is finished is kept): prune
    has no --resume, the same command again continues."""
    again = "run the same prune command again to continue"
    with terminate_as_interrupt():
        try:
            return _prune(Path(model), Path(out), config, sparsities, store, force)
        except Interrupted as exc:
            raise Interrupted(exc.what, again) from None
        except KeyboardInterrupt:
            raise Interrupted(f"prune stopped by a signal; what {out} holds is kept", again) from None


def _prune(model: Path, out: Path, config: FinetuneConfig, sparsities: list[float], store: Path | None,
           force: bool) -> dict:  # fmt: skip
    if not sparsities or any(not 0 < s < 1 for s in sparsities):
        raise UserError(f"invalid --sparsity {sparsities}: each share must be in (0, 1)")
    with reading(model):  # a fine-tuning run still writing MODEL is named by its lock, as every command names it
        _check_model(model)
    store = Path(store) if store else training_store_path(model)
    if store is None:
        raise UserError(f"{model} has no finetune.json naming its store; give --store")
    features = FeatureStore(store)

    def pruned(share: float) -> FinetuneConfig:  # the fine-tuning run of one sparsity
        return config.starting(init_from=str(model), sparsity=share, reuse_layers=0)

    pruned(sparsities[0]).validate()  # a bad option is refused before the dense model is evaluated
    source = read_source(pruned(sparsities[0]))  # MODEL, read once for every sparsity
    input_pipeline(pruned(sparsities[0]), features, source)  # a --targets or --batch-norm MODEL contradicts: refused
    settings = {"model": str(model.resolve()), "store": str(Path(store).resolve()), "sparsities": sparsities,
                "config": {k: v for k, v in pruned(sparsities[0]).to_dict().items()
                           if k not in (*MODEL_DECIDES, *_PER_RUN)},
                "inputs": {"model": digest([model / "model.pt"]), "feature store": store_identity(store)}}  # fmt: skip
    inputs = {"model folder": model, "feature store": store}
    check_device(config.device)
    split = "test" if features.split("test") else "dev"  # Kaldi's cv set where there is no test set
    evaluation = EvalConfig(split=split, device=config.device)
    dist = distributed(config.device)  # under torchrun the fine-tuning is shared; rank 0 evaluates and writes
    with output_folder(out, settings, record="prune.config.json", finished=("prune.json",), force=force,
                       inputs=inputs, in_place=True, started=("sparsity-*", "dense-eval"), summary="prune.json",
                       what="a prune run", dist=dist, summary_fields=_summary_fields,
                       neutral=DEVICE_NEUTRAL) as output:  # fmt: skip
        if already_finished(out, output.done, False, False, "prune run", ""):
            return output.done
        rows = [dist.from_main(lambda: _evaluated(store, model, out / "dense-eval", 0.0, evaluation))]
        for share in sparsities:  # each a finetune run of its own: an interrupted one resumes, a finished one is kept
            run = sparsity_folder(out, share)
            finetune(
                store, pruned(share), run, resume=dist.from_main((run / "finetune.config.json").exists), source=source
            )
            rows.append(dist.from_main(lambda run=run, share=share: _evaluated(store, run, None, share, evaluation)))
        summary = {"model": str(model.resolve()), "store": str(store.resolve()), "scope": config.prune_scope,
                   "split": split, "rows": rows}  # fmt: skip
        if dist.is_main:
            write_csv(out / "prune.csv", rows, list(rows[0]))
            _plot(rows, out / "sparsity.png", model, split)
            write_json_atomic(out / "prune.json", summary)  # last: it marks the run finished
    return summary


def sparsity_folder(out: Path, share: float) -> Path:
    """OUT/sparsity-S: the fine-tuning run of the share `share` (0.5 -> sparsity-0.5)."""
    return out / f"sparsity-{share:g}"


def _summary_fields(summary: dict) -> dict:
    """The fields of a finished run's prune.json that prune_table reads (its rows' are named after its split)."""
    split = summary.get("split", "test")  # a prune.json from before it was recorded: test
    accuracies = {f"{split}_{kind}": NUMBER | NULL | ABSENT for kind in _KINDS}
    row = record(sparsity=NUMBER, epochs=INTEGER, **{f"{split}_per": NUMBER | NULL}, **accuracies)
    return {"split": TEXT | ABSENT, "model": TEXT, "scope": TEXT, "rows": each(row)}


def _check_model(model: Path) -> None:
    """MODEL is a finished finetune folder, or a UserError says what it is."""
    takes = "prune takes a finished 'asr-init finetune' output folder"
    if not model.exists():
        raise UserError(f"MODEL {model} does not exist; {takes}")
    if model.is_file() and model.name == "model.pt":
        raise UserError(f"MODEL {model} is a file: {takes}; give its folder, {model.parent}")
    if not model.is_dir():
        raise UserError(f"MODEL {model} is a file: {takes} (a Kaldi network: fine-tune from it first, finetune "
                        f"--init-from {model} --reuse-layers N)")  # fmt: skip
    if (model / "model.pt").exists():  # a pipe or a device there is refused where it is read (io.load_checkpoint)
        return
    if (model / "finetune.config.json").exists() or (model / "checkpoint.pt").exists():
        raise UserError(
            f"MODEL {model} holds no model.pt: its fine-tuning run is unfinished; finish it with 'asr-init finetune "
            "--resume' first"
        )
    raise UserError(f"MODEL {model} holds no model.pt: {takes}")


def _evaluated(store: Path, model: Path, out: Path | None, share: float, config: EvalConfig) -> dict:
    """A row of prune.csv: the dense model (share 0), or a pruned one with its fine-tuning's figures."""
    ft = read_json(model / "finetune.json") if share else None
    result, split = evaluate(store, model, config, out), config.split
    accuracy = {
        f"{split}_{kind}": result.get(f"frame_acc_{kind}")
        for kind in _KINDS
        if kind != "pdfs" or result.get("frame_acc_pdfs") is not None
    }  # no pdfs: a prune.csv's columns as ever
    return {"sparsity": share, "model": str(model.resolve()), **accuracy, f"{split}_per": result["per"],
            "epochs": ft["epochs"] if ft else 0, "best_dev_acc": ft["best_dev_acc"] if ft else None}  # fmt: skip


def _plot(rows: list[dict], path: Path, model: Path, split: str) -> None:
    from asr_init.plots import label_axes, plt, save

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for kind in _KINDS:
        key = f"{split}_{kind}"
        points = [(100 * r["sparsity"], 100 * r[key]) for r in rows if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points), "o-", label=kind)
    title = f"magnitude pruning of {model.name}"
    label_axes(ax, "pruned share of the hidden weights (%)", f"{split} frame accuracy (%)", title)
    ax.legend(fontsize=8)
    save(fig, path)


def prune_table(summary: dict):
    from rich.table import Table

    split = summary.get("split", "test")  # a prune.json from before it was recorded: test
    table = Table(title=f"pruning {summary['model']} ({summary['scope']})")
    kinds = [kind for kind in _KINDS if any(r.get(f"{split}_{kind}") is not None for r in summary["rows"])]
    for col in ("sparsity", "epochs", *(f"{split} {kind}" for kind in kinds), f"{split} PER"):
        table.add_column(col, justify="right")
    for r in summary["rows"]:
        cells = [*(r.get(f"{split}_{kind}") for kind in kinds), r[f"{split}_per"]]
        table.add_row(f"{r['sparsity']:.0%}", str(r["epochs"]), *("—" if v is None else f"{v:.2%}" for v in cells))
    return table
