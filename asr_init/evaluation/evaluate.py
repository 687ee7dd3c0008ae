"""The `evaluate` stage: frame accuracy and phone error rate of a fine-tuned model.

Frame accuracy compares the DNN's best class per frame with the alignment, for every target
kind of the store that the model's outputs give: its own kind, and phones from states
(a state's phone) or from pdfs (each pdf mapped to the phone it is aligned with most often in
the train split, an import-kaldi store with phone alignments). The phone error rate comes
from hybrid decoding (decoding.py) wherever the store has phone alignments: the
language-model weight and phone insertion penalty are tuned on the dev split over a small
grid, then applied to the evaluated split; hypothesis and reference phone sequences
(repeats merged) are aligned by minimum edit distance: PER = (S + D + I) / N.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from asr_init.config import SPLITS, resolve_device
from asr_init.corpora.readers import merge_repeats
from asr_init.environment import environment
from asr_init.errors import UserError
from asr_init.evaluation.config import EvalConfig
from asr_init.evaluation.decoding import STATES, align_counts, decode, estimate_hmm, transcript_ids
from asr_init.features.pipeline import FeaturePipeline
from asr_init.features.store import FeatureStore, store_identity
from asr_init.folders import differences, output_folder, reading
from asr_init.io import digest, read_json, resolved, write_json_atomic
from asr_init.models.dnn import load_model
from asr_init.progress import console, progress_bar


def evaluate(store_path: Path, model_dir: Path, config: EvalConfig, out_dir: Path | None = None,
             force: bool = False) -> dict:  # fmt: skip
    """Evaluate a model on `config.split`; writes results.json and confusion.png to `out_dir`
    (default MODEL/eval-SPLIT). The same evaluation there (model folder, store, settings; the
    device aside) is made again, of a model fine-tuned further too; another is refused, naming
    the difference, unless `force`."""
    config.validate()
    out_dir = Path(out_dir) if out_dir else Path(model_dir) / f"eval-{config.split}"
    with reading(store_path, model_dir):
        store, device = FeatureStore(store_path), resolve_device(config.device, say=False)
        model, meta = load_model(model_dir, device)
        resolve_device(config.device)  # the line saying which, once the inputs have been read
        scorer = _Scorer(model, meta, store, config, device, Path(model_dir))
        inside = Path(model_dir).resolve() in resolved(out_dir, "--out").parents  # MODEL/eval-SPLIT, the default
        inputs = {"feature store": store.path, "--model folder": None if inside else model_dir}
        identities = {"feature store": store_identity(store.path), "model": digest([Path(model_dir) / "model.pt"])}
        settings = {"config": config.to_dict(), "inputs": identities}
        store_id = {"feature store": identities["feature store"]}  # model.pt's may change: made again
        compared = {"config": settings["config"], "model": str(Path(model_dir).resolve()),
                    "store": str(store.path.resolve()), "inputs": store_id}  # fmt: skip
        redo = force or _same_evaluation(out_dir, compared)
        with output_folder(out_dir, compared, record="results.json", finished=("results.json",), force=redo,
                           inputs=inputs, neutral=_NEUTRAL, what="evaluation results",
                           upgrade=lambda old: _older(old, compared)) as output:  # fmt: skip
            result = scorer.run(settings)
            write_json_atomic(output.path / "results.json", result)
            kind = "phones" if "phones" in result["frame_acc"] else meta["targets"]
            per = f", PER {result['per']:.1%}" if result["per"] is not None else ""
            title = f"{config.split}: frame {kind[:-1]} accuracy {result['frame_acc'][kind]:.1%}{per}"
            ref, hyp = scorer.frame_labels(kind)
            _plot_confusion(ref, hyp, store.labels(kind), output.path / "confusion.png", title)
    return result


_NEUTRAL = ("device",)  # where an evaluation runs is not another evaluation


def _same_evaluation(out_dir: Path, compared: dict) -> bool:
    """Whether OUT/results.json is an evaluation of `compared`'s model folder, store (its identity
    too) and settings, or one an older asr-init wrote: made again (the model may have been fine-tuned
    further), where output_folder refuses any other."""
    try:
        old = read_json(out_dir / "results.json") if (out_dir / "results.json").is_file() else None
    except (UserError, OSError):
        return False
    if not isinstance(old, dict):
        return False
    if "inputs" not in old:  # an older asr-init's results, which recorded no store: made again, as they were then
        return isinstance(old.get("frame_acc"), dict)
    if not isinstance(old["inputs"], dict):
        return False
    same_store = old["inputs"].get("feature store") == compared["inputs"]["feature store"]
    return same_store and not differences(old, {k: v for k, v in compared.items() if k != "inputs"}, _NEUTRAL)


def _older(old, compared: dict):
    """An older asr-init's results.json (no "inputs": it recorded no store identity) holds today's
    keys it lacks, as evaluation results it is; any other record as it is."""
    if isinstance(old, dict) and "inputs" not in old and isinstance(old.get("frame_acc"), dict):
        return {**{k: v for k, v in compared.items() if k != "inputs"}, **old}
    return old


class _Scorer:
    """The model's frame scores on a store: predicted classes, and phone log-likelihoods for decoding."""

    def __init__(self, model, meta: dict, store: FeatureStore, config: EvalConfig, device, model_dir: Path):
        self.model, self.meta, self.store, self.config, self.device = model, meta, store, config, device
        self.targets, self.model_dir = meta["targets"], model_dir
        _check_fits(store, meta, model_dir, config)
        self.decodes = config.decode and "phones" in store.target_kinds
        self.pdf_phone = _pdf_phones(store) if self.targets == "pdfs" and "phones" in store.target_kinds else None

    def kinds(self) -> list[str]:
        """The store's target kinds the model's outputs give (phones from pdfs: by the pdf_phone map,
        which the store's phone alignments give)."""
        derived = {"states": ["states", "phones"], "phones": ["phones"], "pdfs": ["pdfs", "phones"]}[self.targets]
        return [kind for kind in derived if kind in self.store.target_kinds]

    def run(self, settings: dict) -> dict:
        config, t0 = self.config, time.perf_counter()
        tuning = self.decodes and bool(self.store.split(config.tune_split))
        steps = len(self.store.split(config.split)) + len(self.store.split(config.tune_split)) * tuning
        steps += (len(config.lm_weights) * len(config.penalties)) * tuning + self.decodes
        with progress_bar() as bar:
            self._bar, self._task = bar, bar.add_task("evaluating", total=steps, unit="steps")
            hmm = estimate_hmm(self.store) if self.decodes else None
            tune, grid, best = self._tune(hmm)
            tune_seconds, t0 = time.perf_counter() - t0, time.perf_counter()
            self.scored = self._scores(config.split)
            forward_seconds, t0 = time.perf_counter() - t0, time.perf_counter()
            per = {"per": None, "substitutions": None, "deletions": None, "insertions": None, "ref_phones": None}
            if self.decodes:
                hyps = decode([s[0] for s in self.scored], hmm, best["lm_weight"], best["insertion_penalty"])
                per = phone_error_rate(hyps, _references(self.store, self.scored))
                bar.advance(self._task)
        frame_acc = {kind: float(np.mean(np.equal(*self.frame_labels(kind)))) for kind in self.kinds()}
        return {
            "split": config.split, "utterances": len(self.scored), "frames": sum(len(s[1]) for s in self.scored),
            "targets": self.targets, "frame_acc": frame_acc, "frame_acc_states": frame_acc.get("states"),
            "frame_acc_phones": frame_acc.get("phones"), "frame_acc_pdfs": frame_acc.get("pdfs"),
            "phones_from_pdfs": "each pdf counts as the phone it is aligned with most often in train"
            if self.pdf_phone is not None else None, **per,
            "lm_weight": best["lm_weight"], "insertion_penalty": best["insertion_penalty"],
            "tuned_on": config.tune_split if tune else None, "tune_per": best["per"], "tuning_grid": grid,
            "prior_scale": config.prior_scale, "decode_seconds": time.perf_counter() - t0,
            "forward_seconds": forward_seconds, "tune_seconds": tune_seconds, "model": str(self.model_dir.resolve()),
            "store": str(self.store.path.resolve()), "config": settings["config"], "inputs": settings["inputs"],
            "versions": environment(),
        }  # fmt: skip

    def frame_labels(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(reference, predicted) class ids of `kind` over every frame of the evaluated split."""
        ref = np.concatenate([np.asarray(self.store.targets(kind, rec)) for *_, rec in self.scored])
        pred = np.concatenate([pred for _, pred, _ in self.scored])
        if kind != self.targets:  # phones from states or pdfs
            pred = pred // STATES if self.targets == "states" else self.pdf_phone[pred]
        return ref.astype(np.int64), pred.astype(np.int64)

    def _scores(self, split: str) -> list[tuple[np.ndarray, np.ndarray, object]]:
        """Per utterance: (phone-state log-likelihoods (T, 3P) or None, predicted class, record)."""
        pipeline = FeaturePipeline.from_dict(self.meta["pipeline"])
        prior = torch.tensor(self.meta["priors"], dtype=torch.float32, device=self.device)
        out = []
        with torch.no_grad():
            for rec in self.store.split(split):
                logp = torch.log_softmax(self.model(pipeline.utterance(self.store.features(rec)).to(self.device)), 1)
                out.append((self._loglik(logp, prior) if self.decodes else None, logp.argmax(1).cpu().numpy(), rec))
                self._bar.advance(self._task)
        self.store.release()
        return out

    def _loglik(self, logp: torch.Tensor, prior: torch.Tensor) -> np.ndarray:
        """Scaled likelihoods log p(s|x) - alpha log p(s) per phone state (T, 3P): a phones or
        pdfs model's score of a phone is shared by its three states. A class of prior 0 (no train
        frame, --prior-floor 0) gets Kaldi's log-prior sqrt(FLT_MAX) (pdf-prior.cc): it never wins."""
        alpha = self.config.prior_scale
        if self.targets == "pdfs":  # a phone's posterior and prior: the sums over its pdfs
            index = torch.from_numpy(self.pdf_phone).to(logp.device)
            phones = len(self.store.phones)
            post = torch.zeros(len(logp), phones, device=logp.device).index_add_(1, index, logp.exp())
            prior = torch.zeros(phones, device=logp.device).index_add_(0, index, prior)
            logp = post.clamp(min=1e-30).log()
        log_prior = torch.where(prior > 0, prior.log(), math.sqrt(torch.finfo(torch.float32).max))
        ll = (logp - alpha * log_prior).cpu().numpy()
        return ll if self.targets == "states" else np.repeat(ll, STATES, axis=1)

    def _tune(self, hmm):
        """(tuning split's scores, grid of PERs, best grid point): the LM weight and insertion
        penalty with the lowest PER on the tuning split (1 and 0 without one; null when not decoding)."""
        config, store = self.config, self.store
        if not self.decodes:
            return [], [], {"lm_weight": None, "insertion_penalty": None, "per": None}
        if not store.split(config.tune_split):
            console.print(f"[yellow]warning: store {store.path} has no {config.tune_split} split to tune the LM weight "
                          f"and insertion penalty on: {config.split} is decoded with LM weight 1 and penalty 0 "
                          "(--tune-split names another split)", highlight=False)  # fmt: skip
            return [], [], {"lm_weight": 1.0, "insertion_penalty": 0.0, "per": None}
        tune = self._scores(config.tune_split)
        refs, grid = _references(store, tune), []
        for w in config.lm_weights:
            for pen in config.penalties:
                hyps = decode([t[0] for t in tune], hmm, w, pen)
                grid.append({"lm_weight": w, "insertion_penalty": pen, **phone_error_rate(hyps, refs)})
                self._bar.advance(self._task)
        return tune, grid, min(grid, key=lambda g: g["per"])


def phone_error_rate(hyps: list[list[int]], refs: list[list[int]]) -> dict:
    s = d = i = n = 0
    for hyp, ref in zip(hyps, refs):
        ds, dd, di = align_counts(merge_repeats(ref), merge_repeats(hyp))
        s, d, i, n = s + ds, d + dd, i + di, n + len(merge_repeats(ref))
    return {"per": (s + d + i) / max(n, 1), "substitutions": s, "deletions": d, "insertions": i, "ref_phones": n}


def _pdf_phones(store: FeatureStore) -> np.ndarray:
    """(pdfs,) the phone each pdf is aligned with most often in the train split (a pdf never
    seen there: the most frequent phone)."""
    pdfs, phones = len(store.labels("pdfs")), len(store.phones)
    joint = np.zeros((pdfs, phones))
    for rec in store.split("train"):
        np.add.at(joint, (np.asarray(store.targets("pdfs", rec)), np.asarray(store.targets("phones", rec))), 1)
    store.release()
    seen = joint.sum(1) > 0
    return np.where(seen, joint.argmax(1), joint.sum(0).argmax()).astype(np.int64)


def _first_difference(model: list[str], store: list[str]) -> str:
    """Where the model's labels and the store's part, by id (the line's number in phones.txt,
    states.txt or pdfs.txt): "differing first at id 6: 'b_0' in the model, 'c_0' in the store"."""
    at = next((i for i, (a, b) in enumerate(zip(model, store)) if a != b), min(len(model), len(store)))
    ours, theirs = (repr(labels[at]) if at < len(labels) else "none" for labels in (model, store))
    return f"differing first at id {at}: {ours} in the model, {theirs} in the store"


def _check_fits(store: FeatureStore, meta: dict, model_dir: Path, config: EvalConfig) -> None:
    """The model's pipeline, classes and phones fit the store, and the split is there."""
    FeaturePipeline.from_dict(meta["pipeline"]).check_store(store, f"model {model_dir}")
    targets = meta["targets"]
    if targets not in store.target_kinds:
        raise UserError(
            f"model {model_dir} was trained on {targets}, but store {store.path} holds "
            f"{', '.join(store.target_kinds)}; evaluate it on a store with {targets} alignments"
        )
    if meta["outputs"] != store.labels(targets):
        raise UserError(
            f"model {model_dir} has {len(meta['outputs'])} {targets} but store {store.path} lists "
            f"{len(store.labels(targets))}, {_first_difference(meta['outputs'], store.labels(targets))}; evaluate "
            "on a store made with the same inventory"
        )
    if meta["phones"] and store.phones and meta["phones"] != store.phones:
        raise UserError(
            f"model {model_dir} was trained on {len(meta['phones'])} phones but store {store.path} has "
            f"{len(store.phones)}, {_first_difference(meta['phones'], store.phones)}; evaluate on a store "
            "extracted with the same phone set"
        )
    if not store.split(config.split):
        has = [split for split in SPLITS if store.split(split)]  # a held-out split first: dev, Kaldi's cv set
        raise UserError(f"store {store.path} has no {config.split} utterances (its splits: {', '.join(has)}); "
                        f"evaluate on one of them, e.g. --split {(has[1:] or has)[0]}")  # fmt: skip


def _references(store: FeatureStore, scored: list) -> list[list[int]]:
    index = {p: i for i, p in enumerate(store.phones)}
    return [transcript_ids(store, rec, index) for *_, rec in scored]


def _plot_confusion(ref: np.ndarray, hyp: np.ndarray, labels: list[str], path: Path, title: str) -> None:
    """The frame confusion matrix, rows normalised; of the 80 most frequent reference classes
    where there are more (a pdf inventory of thousands)."""
    from asr_init.plots import fixed_margins, plt, save

    top = np.argsort(-np.bincount(ref, minlength=len(labels)), kind="stable")[:80]
    index = np.full(len(labels), -1)
    index[top] = np.arange(len(top))
    keep = (index[ref] >= 0) & (index[hyp] >= 0)
    ref, hyp, labels = index[ref[keep]], index[hyp[keep]], [labels[i] for i in top]
    n = len(labels)
    cm = np.zeros((n, n))
    np.add.at(cm, (ref, hyp), 1)
    cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(9, 8))
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    ax.set_xlabel("predicted (frame)")
    ax.set_ylabel("reference (frame)")
    ax.set_title(title)
    room = 0.5 + 0.06 * max(map(len, labels), default=1)  # axis label + tick labels at 7 pt, ~0.06 in a character
    fixed_margins(fig, 1, 1, left=room, right=0.9, bottom=room, top=0.4)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the reference class's frames")
    save(fig, path, laid_out=True)


def results_table(result: dict):
    from rich.table import Table

    split, utterances, frames = result["split"], result["utterances"], result["frames"]
    table = Table(title=f"evaluation on {split} ({utterances} utterances, {frames:,} frames)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for kind, acc in result.get("frame_acc", {}).items():
        table.add_row(f"frame accuracy, {kind}", f"{acc:.2%}")
    if result["per"] is None:
        return table
    table.add_row("phone error rate", f"{result['per']:.2%}")
    table.add_row("  substitutions / deletions / insertions",
                  f"{result['substitutions']} / {result['deletions']} / {result['insertions']}")  # fmt: skip
    table.add_row("  reference phones", f"{result['ref_phones']}")
    tuned = f" (tuned on {result['tuned_on']}: PER {result['tune_per']:.2%})" if result["tuned_on"] else ""
    table.add_row("LM weight / insertion penalty", f"{result['lm_weight']:g} / {result['insertion_penalty']:g}{tuned}")
    table.add_row("decoding time", f"{result['decode_seconds']:.2f} s")
    return table
