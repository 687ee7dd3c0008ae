"""The `evaluate` stage: frame accuracy and phone error rate of a fine-tuned model.

Frame accuracy compares the DNN's best class per frame with the alignment (states, and
phones by mapping each state to its phone). The phone error rate comes from hybrid
decoding (decoding.py): the language-model weight and phone insertion penalty are
tuned on the dev split over a small grid, then applied to the evaluated split; the
hypothesis and reference phone sequences (consecutive repeats merged) are aligned by
minimum edit distance: PER = (S + D + I) / N.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from asr_init.corpora.readers import merge_repeats
from asr_init.environment import environment
from asr_init.errors import UserError
from asr_init.evaluation.config import EvalConfig
from asr_init.evaluation.decoding import STATES, align_counts, decode, estimate_hmm
from asr_init.features.pipeline import FeaturePipeline
from asr_init.features.store import FeatureStore, store_identity
from asr_init.io import check_writable_folder, digest, refuse_output_over_inputs, write_json_atomic
from asr_init.models.dnn import load_model


def _scores(model, meta, store: FeatureStore, split: str, prior_scale: float, device):
    """Per utterance: (state log-likelihoods (T, 3P), predicted class, reference states, phones)."""
    pipeline = FeaturePipeline.from_dict(meta["pipeline"])
    log_prior = torch.log(torch.tensor(meta["priors"], dtype=torch.float32, device=device))
    out = []
    with torch.no_grad():
        for rec in store.split(split):
            x = pipeline.utterance(store.features(rec)).to(device)
            logp = torch.log_softmax(model(x), 1)
            pred = logp.argmax(1).cpu().numpy()
            ll = (logp - prior_scale * log_prior).cpu().numpy()
            if meta["targets"] == "phones":  # one score per phone: every state of it shares it
                ll = np.repeat(ll, STATES, axis=1)
            out.append((ll, pred, np.asarray(store.state_targets(rec)), np.asarray(store.phone_targets(rec)), rec))
    store.release()
    return out


def phone_error_rate(hyps: list[list[int]], refs: list[list[int]]) -> dict:
    s = d = i = n = 0
    for hyp, ref in zip(hyps, refs):
        ds, dd, di = align_counts(merge_repeats(ref), merge_repeats(hyp))
        s, d, i, n = s + ds, d + dd, i + di, n + len(merge_repeats(ref))
    return {"per": (s + d + i) / max(n, 1), "substitutions": s, "deletions": d, "insertions": i, "ref_phones": n}


def _check_decodable(store: FeatureStore, meta: dict, model_dir: Path) -> None:
    """Refuse a store or model of Kaldi targets: asr-init's decoder knows only its own 3-state phone HMMs."""
    if "states" in store.target_kinds and meta["targets"] in ("states", "phones"):
        return
    why = (
        f"model {model_dir} was trained on Kaldi {meta['targets']}"
        if meta["targets"] not in ("states", "phones")
        else f"store {store.path} holds Kaldi targets ({', '.join(store.target_kinds)})"
    )
    raise UserError(
        f"evaluate decodes with asr-init's own phone HMMs (3 states per phone), and {why}; decode with Kaldi "
        f"instead: 'asr-init export-kaldi {model_dir} --out DIR', then nnet-forward | latgen-faster-mapped "
        "(README: Kaldi workflow)"
    )


def evaluate(store_path: Path, model_dir: Path, config: EvalConfig, out_dir: Path | None = None) -> dict:
    """Evaluate a model on `config.split`; writes results.json and confusion.png to out_dir."""
    config.validate()
    store = FeatureStore(store_path)
    device = torch.device(config.device)
    model, meta = load_model(model_dir, device)
    _check_model_fits_store(store, meta, model_dir, config)
    out_dir = _output_folder(store_path, model_dir, out_dir, config)
    hmm = estimate_hmm(store) if config.decode else None
    t0 = time.perf_counter()
    tune, grid, best = _tune_decoding(model, meta, store, hmm, config, device)
    tune_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    scored = _scores(model, meta, store, config.split, config.prior_scale, device)
    forward_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    if config.decode:
        hyps = decode([t[0] for t in scored], hmm, best["lm_weight"], best["insertion_penalty"])
        per = phone_error_rate(hyps, _references(store, scored))
    else:
        per = {"per": None, "substitutions": None, "deletions": None, "insertions": None, "ref_phones": None}
    decode_seconds = time.perf_counter() - t0
    pred_phone = np.concatenate([p // STATES if meta["targets"] == "states" else p for _, p, _, _, _ in scored])
    ref_phone = np.concatenate([ph for _, _, _, ph, _ in scored])
    result = {
        "split": config.split,
        "utterances": len(scored),
        "frames": len(ref_phone),
        "frame_acc_phones": float((pred_phone == ref_phone).mean()),
        "frame_acc_states": _state_accuracy(scored) if meta["targets"] == "states" else None,
        **per,
        "lm_weight": best["lm_weight"],
        "insertion_penalty": best["insertion_penalty"],
        "tuned_on": config.tune_split if tune else None,
        "tune_per": best["per"],
        "tuning_grid": grid,
        "prior_scale": config.prior_scale,
        "decode_seconds": decode_seconds,
        "forward_seconds": forward_seconds,
        "tune_seconds": tune_seconds,
        "model": str(model_dir),
        "store": str(store.path),
        # what was evaluated: digests of the store's metadata and of model.pt
        "inputs": {"feature store": store_identity(store.path), "model": digest([Path(model_dir) / "model.pt"])},
        "versions": environment(),
    }
    write_json_atomic(out_dir / "results.json", result)
    per_text = f", PER {per['per']:.1%}" if per["per"] is not None else ""
    title = f"{config.split}: frame phone accuracy {result['frame_acc_phones']:.1%}{per_text}"
    _plot_confusion(ref_phone, pred_phone, store.phones, out_dir / "confusion.png", title)
    return result


def _check_model_fits_store(store: FeatureStore, meta: dict, model_dir: Path, config: EvalConfig) -> None:
    _check_decodable(store, meta, model_dir)
    FeaturePipeline.from_dict(meta["pipeline"]).check_store(store, f"model {model_dir}")
    if meta["phones"] != store.phones:
        raise UserError(
            f"model {model_dir} was trained on phones {meta['phones'][:5]}... but store {store.path} "
            f"has {store.phones[:5]}...; evaluate on a store extracted with the same phone set"
        )
    if not store.split(config.split):
        raise UserError(f"store {store.path} has no {config.split} utterances")


def _output_folder(store_path: Path, model_dir: Path, out_dir: Path | None, config: EvalConfig) -> Path:
    """--out (default MODEL/eval-SPLIT), checked and created: never an input, a file or read-only."""
    out_dir = Path(out_dir) if out_dir else Path(model_dir) / f"eval-{config.split}"
    inside_model = Path(model_dir).resolve() in out_dir.resolve().parents  # MODEL/eval-SPLIT, the default
    refuse_output_over_inputs(
        out_dir, {"feature store": store_path, "--model folder": None if inside_model else model_dir}
    )
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(
            f"--out {out_dir} is an existing file, not a folder; choose another --out (the file was left as it is)"
        )
    check_writable_folder(out_dir, "--out")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _references(store: FeatureStore, scored: list) -> list[list[int]]:
    index = {p: i for i, p in enumerate(store.phones)}
    return [[index[p] for p in rec.transcript] for *_, rec in scored]


def _tune_decoding(model, meta: dict, store: FeatureStore, hmm, config: EvalConfig, device):
    """(tuning split's scores, grid of PERs, best grid point): the LM weight and insertion
    penalty with the lowest PER on `config.tune_split` (defaults when not decoding)."""
    tune = []
    if config.decode and store.split(config.tune_split):
        tune = _scores(model, meta, store, config.tune_split, config.prior_scale, device)
    grid = []
    if not tune:
        return tune, grid, {"lm_weight": 1.0, "insertion_penalty": 0.0, "per": None}
    refs = _references(store, tune)
    for w in config.lm_weights:
        for pen in config.penalties:
            hyps = decode([t[0] for t in tune], hmm, w, pen)
            grid.append({"lm_weight": w, "insertion_penalty": pen, **phone_error_rate(hyps, refs)})
    return tune, grid, min(grid, key=lambda g: g["per"])


def _state_accuracy(scored: list) -> float:
    pred = np.concatenate([p for _, p, _, _, _ in scored])
    ref = np.concatenate([s for _, _, s, _, _ in scored])
    return float(np.mean(pred == ref))


def _plot_confusion(ref: np.ndarray, hyp: np.ndarray, labels: list[str], path: Path, title: str) -> None:
    from asr_init.plots import plt

    n = len(labels)
    cm = np.zeros((n, n))
    np.add.at(cm, (ref, hyp), 1)
    cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(9, 8))
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    ax.set_xlabel("predicted phone (frame)")
    ax.set_ylabel("reference phone (frame)")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the reference phone's frames")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def results_table(result: dict):
    from rich.table import Table

    table = Table(
        title=f"evaluation on {result['split']} ({result['utterances']} utterances, {result['frames']:,} frames)"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    if result["frame_acc_states"] is not None:
        table.add_row("frame accuracy, states", f"{result['frame_acc_states']:.2%}")
    table.add_row("frame accuracy, phones", f"{result['frame_acc_phones']:.2%}")
    if result["per"] is None:
        return table
    table.add_row("phone error rate", f"{result['per']:.2%}")
    table.add_row(
        "  substitutions / deletions / insertions",
        f"{result['substitutions']} / {result['deletions']} / {result['insertions']}",
    )
    table.add_row("  reference phones", f"{result['ref_phones']}")
    table.add_row(
        "LM weight / insertion penalty",
        f"{result['lm_weight']:g} / {result['insertion_penalty']:g}"
        + (f" (tuned on {result['tuned_on']}: PER {result['tune_per']:.2%})" if result["tuned_on"] else ""),
    )
    table.add_row("decoding time", f"{result['decode_seconds']:.2f} s")
    return table
