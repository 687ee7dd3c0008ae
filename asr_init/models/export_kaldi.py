"""The `export-kaldi` stage: a fine-tuned model as the files Kaldi's nnet1 decoding reads.

Into the output folder (steps/nnet/decode.sh's model dir):

    final.nnet               the network: <AffineTransform> <Sigmoid> ... <AffineTransform> <Softmax>
    final.feature_transform  the input pipeline: <Splice> <AddShift> <Rescale> (nnet1.py)
    ali_train_pdf.counts     the class frame counts of the train split, whose relative
                             frequencies are the model's priors (nnet-forward --class-frame-counts)
    cmvn_opts                the apply-cmvn options the store was made with (where it applied CMVN):
                             decode.sh applies them to its features
    delta_opts               the add-deltas options (stores extracted with Kaldi's features):
                             decode.sh adds deltas after CMVN, as extract did
    conf/mfcc.conf           compute-mfcc-feats' options (conf/fbank.conf: compute-fbank-feats'),
                             for steps/make_mfcc.sh (make_fbank.sh) to make the model's features
    export.json              what was exported from what

so that `nnet-forward --feature-transform=final.feature_transform --class-frame-counts=
ali_train_pdf.counts final.nnet FEATS ark:- | latgen-faster-mapped final.mdl HCLG.fst ...`
decodes with the model. That needs targets that are the pdfs of Kaldi's tree: a model
trained on an `import-kaldi` store with pdf targets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asr_init.environment import environment
from asr_init.errors import UserError
from asr_init.features.kaldi import OWN_STATS_HINT
from asr_init.features.pipeline import FeaturePipeline
from asr_init.folders import reading, refuse_output_over_inputs
from asr_init.io import atomic_write, read_json, write_json_atomic
from asr_init.models.dnn import load_model
from asr_init.models.nnet1 import network_components, transform_components, write_nnet
from asr_init.progress import console
from asr_init.records import ABSENT, NULL, TEXT, at_least, check_record

FILES = ("final.nnet", "final.feature_transform", "ali_train_pdf.counts", "cmvn_opts", "delta_opts", "conf/mfcc.conf",
         "conf/fbank.conf")  # fmt: skip


def training_store_path(model_dir: Path) -> Path | None:
    """The path of the store the model was fine-tuned on, from finetune.json (None if not recorded)."""
    try:
        return Path(read_json(Path(model_dir) / "finetune.json")["store"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _training_store(model_dir: Path, path: Path | None):
    """The store the model was fine-tuned on, or None when it is gone. A store at that path
    that is not the one the model was trained on (finetune.config.json records its identity)
    is refused: its counts and cmvn_opts would not be the model's."""
    from asr_init.features.store import FeatureStore, store_identity

    if path is None:
        return None
    try:
        store = FeatureStore(path)
    except UserError:
        return None
    try:
        recorded = read_json(Path(model_dir) / "finetune.config.json")["inputs"]["feature store"]
    except (OSError, ValueError, KeyError, TypeError):
        recorded = None
    if recorded is not None and recorded != store_identity(path):
        raise UserError(
            f"the feature store {path} is no longer the one {model_dir} was fine-tuned on (it was re-made or "
            "changed since); its class counts and cmvn_opts would not fit the model, so nothing was exported: "
            "restore that store, or fine-tune again on the new one"
        )
    return store


def class_counts(meta: dict, store) -> tuple[np.ndarray, str]:
    """(counts, where from): the train split's frame count per class, floored as fine-tuning
    floored them, when the store is there and gives the model's priors; else the priors
    themselves (nnet-forward normalises the vector, so either gives the same log-priors)."""
    priors = np.asarray(meta["priors"], dtype=np.float64)
    targets = meta["targets"]
    if store is not None and targets in store.target_kinds and store.labels(targets) == meta["outputs"]:
        counts = store.class_counts(targets, "train", meta["config"].get("prior_floor", 1.0))
        if np.allclose(counts / counts.sum(), priors, rtol=1e-6, atol=0):
            return counts, f"train split of {store.path}"
    return priors, "the model's priors"


def _vector_text(values: np.ndarray) -> bytes:
    """A Kaldi text vector, as analyze-counts --binary=false writes it."""
    return (" [ " + " ".join(f"{v:.10g}" for v in values) + " ]\n").encode()


def export_kaldi(model_dir: Path, out_dir: Path, binary: bool = True, force: bool = False) -> dict:
    """Write MODEL_DIR's network, feature transform and counts into OUT_DIR; returns export.json.
    The model and its store are held shared while they are read, as a stage holds its inputs."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    store_path = training_store_path(model_dir)
    with reading(model_dir, store_path):
        return _export(model_dir, store_path, out_dir, binary, force)


def _export(model_dir: Path, store_path: Path | None, out_dir: Path, binary: bool, force: bool) -> dict:
    model, meta = load_model(model_dir)
    refuse_output_over_inputs(out_dir, {"model folder": model_dir, "training store": store_path})
    present = [name for name in FILES if (out_dir / name).exists()]
    if present and not force:
        raise UserError(
            f"{out_dir} already holds {', '.join(present)}; use --force to replace them or choose another --out"
        )
    pipeline = FeaturePipeline.from_dict(meta["pipeline"])
    network = network_components(
        model.hidden_stack(), (model.output.weight, model.output.bias), meta["config"]["activation"]
    )
    store = _training_store(model_dir, store_path)
    counts, counts_from = class_counts(meta, store)
    kaldi_store = store is not None and "kaldi" in store.config
    if kaldi_store:
        _check_kaldi_record(store)
    texts = _feature_files(pipeline, store if kaldi_store else None)

    out_dir.mkdir(parents=True, exist_ok=True)
    write_nnet(out_dir / "final.nnet", network, binary)
    write_nnet(out_dir / "final.feature_transform", transform_components(pipeline), binary)
    atomic_write(out_dir / "ali_train_pdf.counts", lambda fh: fh.write(_vector_text(counts)))
    for name in FILES[3:]:  # --force over another export: decode.sh must not apply what this model did not have
        if name in texts:
            (out_dir / name).parent.mkdir(exist_ok=True)
            atomic_write(out_dir / name, lambda fh, text=texts[name]: fh.write(text.encode()))
        elif (out_dir / name).exists():
            (out_dir / name).unlink()
    summary = {
        "model": str(model_dir.resolve()),
        "format": "binary" if binary else "text",
        "files": [name for name in FILES if (out_dir / name).exists()],
        "targets": meta["targets"],
        "outputs": len(meta["outputs"]),
        "input_dim": pipeline.base_dim,
        "splice": pipeline.splice,
        "network_input_dim": pipeline.dim,
        "hidden_sizes": meta["hidden_sizes"],
        "activation": meta["config"]["activation"],
        "counts_from": counts_from,
        "cmvn_opts": texts.get("cmvn_opts", "").strip() or None,
        "features": None if pipeline.feature_config is None else pipeline.feature_config.kind,
        "store": str(store.path) if store is not None else None,
        "versions": environment(),
    }
    write_json_atomic(out_dir / "export.json", summary)
    _warn_if_not_kaldi_pdfs(meta, store, kaldi_store)
    _warn_about_features(pipeline, store if kaldi_store else None)
    return summary


_KALDI_RECORD = {
    "cmvn_own_stats": at_least(0, "a whole number") | ABSENT,
    "cmvn_opts": TEXT | NULL | ABSENT,
}


def _check_kaldi_record(store) -> None:
    """A UserError, before anything is written, unless the fields of an import-kaldi store's
    config.json that export writes or prints hold what import-kaldi wrote there."""
    try:
        check_record(store.path / "config.json", store.config, **_KALDI_RECORD)
    except UserError as exc:
        raise UserError(f"{exc}; make the store again with 'asr-init import-kaldi'") from None


def _feature_files(pipeline: FeaturePipeline, kaldi_store) -> dict[str, str]:
    """The text of cmvn_opts, delta_opts and conf/*.conf for this model's features: an
    import-kaldi store's cmvn_opts, or what extract recorded of Kaldi's features."""
    if kaldi_store is not None:
        opts = kaldi_store.config.get("cmvn_opts")
        return {"cmvn_opts": opts + "\n"} if opts else {}
    features = pipeline.feature_config
    if features is None or features.kind == "librosa-mfcc":
        return {}
    conf = "conf/mfcc.conf" if features.kind == "kaldi-mfcc" else "conf/fbank.conf"
    return {name: text + "\n" for name, text in features.kaldi_opts().items()} | {conf: features.kaldi_conf()}


def _warn_about_features(pipeline: FeaturePipeline, kaldi_store) -> None:
    """What Kaldi must do to feed this model its frames, where the exported files cannot say it."""
    features = pipeline.feature_config
    if kaldi_store is not None:
        if kaldi_store.config.get("cmvn_own_stats", 0) > 0:
            console.print(
                f"[yellow]warning: {kaldi_store.config['cmvn_own_stats']:,} of the store's utterances were normalised "
                f"with their own stats in cmvn.scp, not their speaker's: {OWN_STATS_HINT}",
                highlight=False,
            )
        return
    if features is None:
        return
    if features.kind == "librosa-mfcc":
        console.print(
            "[yellow]warning: this model was trained on librosa's MFCCs, which no Kaldi tool computes: nnet-forward "
            "runs it only on frames asr-init made; extract with --features kaldi-mfcc for a model Kaldi can feed",
            highlight=False,
        )
    elif features.cmvn == "utterance":
        console.print(
            "[yellow]warning: the model's frames had per-utterance CMVN: make cmvn.scp with one entry per utterance "
            "(compute-cmvn-stats without --spk2utt, and utt2spk mapping each utterance to itself)",
            highlight=False,
        )


def _warn_if_not_kaldi_pdfs(meta: dict, store, kaldi_store: bool) -> None:
    """Kaldi's decoders need outputs that are its tree's pdfs, on Kaldi's own features."""
    if meta["targets"] == "pdfs" and (kaldi_store or store is None):
        if store is None:
            console.print(
                "[yellow]warning: the store this model was fine-tuned on is gone, so cmvn_opts could not be written; "
                "if the store applied CMVN, write the same apply-cmvn options into cmvn_opts by hand",
                highlight=False,
            )
        return
    # an import-kaldi store's other kind is Kaldi's phone ids; states and phones of extract are asr-init's
    outputs = "Kaldi's phone ids" if kaldi_store else f"asr-init's {meta['targets']}"
    if store is None and meta["targets"] == "phones":  # the store is gone: an extract's or an import-kaldi's
        outputs = "phones"
    console.print(
        f"[yellow]warning: this model's outputs are {outputs}, not the pdfs of a Kaldi tree; "
        "nnet-forward can run it, but latgen-faster-mapped needs a model fine-tuned on an 'asr-init import-kaldi' "
        "store with pdf alignments (--targets pdfs)",
        highlight=False,
    )
