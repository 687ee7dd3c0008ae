"""`asr-init prune`: magnitude pruning of a fine-tuned model at several sparsities.

For each sparsity, `finetune --init-from MODEL --sparsity S` takes the whole network (softmax
too), zeroes that share of its hidden weights by magnitude (per layer, or over all of them
with --prune-scope global), and fine-tunes it with the pruned weights held at zero; each
result is a model folder like any other (evaluate, export-kaldi). The dense model and every
pruned one are evaluated on the test split; OUT holds prune.json, prune.csv and
sparsity.png (test state frame accuracy against sparsity).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from asr_init.config import check_device
from asr_init.errors import UserError
from asr_init.evaluation.config import EvalConfig
from asr_init.evaluation.evaluate import evaluate
from asr_init.folders import output_folder
from asr_init.io import digest, write_csv, write_json_atomic
from asr_init.training.config import FinetuneConfig
from asr_init.training.distributed import distributed
from asr_init.training.finetune import finetune


def prune(model: Path, out: Path, config: FinetuneConfig, sparsities: list[float], store: Path | None = None,
          force: bool = False) -> dict:  # fmt: skip
    """Prune `model` at each of `sparsities` into OUT/sparsity-S; returns the summary."""
    model, out = Path(model), Path(out)
    if not sparsities or any(not 0 < s < 1 for s in sparsities):
        raise UserError(f"invalid --sparsity {sparsities}: each share must be in (0, 1)")
    store = Path(store) if store else _training_store(model)
    settings = {"model": str(model.resolve()), "store": str(Path(store).resolve()), "sparsities": sparsities,
                "config": config.to_dict(), "inputs": {"model": digest([model / "model.pt"])}}  # fmt: skip
    inputs = {"model folder": model, "feature store": store}
    check_device(config.device)
    dist = distributed(config.device)  # under torchrun the fine-tuning is shared; rank 0 evaluates and writes
    with output_folder(out, settings, record="prune.config.json", finished=("prune.json",), force=force,
                       inputs=inputs, in_place=True, started=("sparsity-*", "dense-eval"), summary="prune.json",
                       what="a prune run", dist=dist) as output:  # fmt: skip
        if output.done is not None:
            return output.done
        rows = [dist.from_main(lambda: _evaluated(store, model, out / "dense-eval", 0.0))]
        for share in sparsities:  # each a finetune run of its own: an interrupted one resumes, a finished one is kept
            run = out / f"sparsity-{share:g}"
            pruned = dataclasses.replace(config, init_from=str(model), sparsity=share, reuse_layers=0)
            finetune(store, pruned, run, resume=dist.from_main((run / "finetune.config.json").exists))
            rows.append(dist.from_main(lambda run=run, share=share: _evaluated(store, run, None, share)))
        summary = {"model": str(model.resolve()), "store": str(store), "scope": config.prune_scope, "rows": rows}
        if dist.is_main:
            write_csv(out / "prune.csv", rows, list(rows[0]))
            _plot(rows, out / "sparsity.png", model)
            write_json_atomic(out / "prune.json", summary)  # last: it marks the run finished
    return summary


def _training_store(model: Path) -> Path:
    try:
        return Path(json.loads((model / "finetune.json").read_text())["store"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{model} has no finetune.json naming its store; give --store") from None


def _evaluated(store: Path, model: Path, out: Path | None, share: float) -> dict:
    """A row of prune.csv: the dense model (share 0), or a pruned one with its fine-tuning's figures."""
    ft = json.loads((model / "finetune.json").read_text()) if share else None
    result = evaluate(store, model, EvalConfig(), out)
    return {"sparsity": share, "model": str(model), "test_states": result.get("frame_acc_states"),
            "test_phones": result.get("frame_acc_phones"), "test_per": result["per"],
            "epochs": ft["epochs"] if ft else 0, "best_dev_acc": ft["best_dev_acc"] if ft else None}  # fmt: skip


def _plot(rows: list[dict], path: Path, model: Path) -> None:
    from asr_init.plots import plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for key, label in (("test_states", "states"), ("test_phones", "phones")):
        points = [(100 * r["sparsity"], 100 * r[key]) for r in rows if r[key] is not None]
        if points:
            ax.plot(*zip(*points), "o-", label=label)
    ax.set_xlabel("pruned share of the hidden weights (%)")
    ax.set_ylabel("test frame accuracy (%)")
    ax.set_title(f"magnitude pruning of {model.name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def prune_table(summary: dict):
    from rich.table import Table

    table = Table(title=f"pruning {summary['model']} ({summary['scope']})")
    for col in ("sparsity", "epochs", "test states", "test phones", "test PER"):
        table.add_column(col, justify="right")
    for r in summary["rows"]:
        cells = [r["test_states"], r["test_phones"], r["test_per"]]
        table.add_row(f"{r['sparsity']:.0%}", str(r["epochs"]), *("—" if v is None else f"{v:.2%}" for v in cells))
    return table
