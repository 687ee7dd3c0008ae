"""The `asr-init` command line: a thin Typer layer over the stage functions.

Commands parse and check arguments, build a config and call a library function; a
`UserError` is printed as one line on stderr with exit status 1.
"""

from __future__ import annotations

import errno
import functools
from pathlib import Path

import typer
from rich.markup import escape

from asr_init.config import default
from asr_init.corpora.config import SynthConfig
from asr_init.errors import UserError
from asr_init.evaluation.config import EvalConfig
from asr_init.features.config import ExtractConfig, KaldiImportConfig
from asr_init.models.config import InspectConfig
from asr_init.progress import console
from asr_init.training.config import FinetuneConfig, PretrainConfig

# The front page of `asr-init --help`: commands are registered in pipeline order (the
# order Typer lists them), each with a one-line summary, and the epilogue shows the chain.
EPILOG = (
    "The whole chain on the embedded corpus ('extract CORPUS' for your own data):\n\n"
    "  asr-init extract --out results/store\n"
    "  asr-init pretrain results/store --out results/dbn\n"
    "  asr-init finetune results/store --dbn results/dbn --out results/dnn\n"
    "  asr-init evaluate results/store --model results/dnn\n"
    "  asr-init report results\n\n"
    "'asr-init COMMAND --help' for options, 'asr-init --version' for bug reports."
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train hybrid DNN-HMM acoustic models and measure what weight initialisation does.",
    epilog=EPILOG,
)


def _print_version(value: bool) -> None:
    """`--version`: package, torch version and build, usable devices, threads; then exit."""
    if not value:
        return
    from asr_init.environment import environment, version_text

    typer.echo(version_text(environment()))
    raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print asr-init's version, the torch version and build (CPU / CUDA), "
        "usable devices and thread count, then exit.",
    ),
) -> None:
    """Train hybrid DNN-HMM acoustic models and measure what weight initialisation does."""


# File-system errors that are the machine's state, not a bug: each is reported in one line
# naming the file, with what to do about it.
_FS_ERRORS = {
    errno.ENOSPC: "free some space and run the command again",
    errno.EDQUOT: "free some space (the disk quota is reached) and run the command again",
    errno.EFBIG: "the file system does not take files this large; choose an output on another one",
    errno.EACCES: "check the permissions, or choose another output folder",
    errno.EPERM: "check the permissions, or choose another output folder",
    errno.EROFS: "choose an output folder on a writable file system",
    errno.EEXIST: "remove it or choose another output path",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder; give a file name",
}


def _print_error(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)


def user_errors(func):
    """Report UserError, and the file-system errors of _FS_ERRORS (a full disk, a read-only
    folder), as one 'error: ...' line with exit status 1 (tracebacks are for bugs). Files
    written atomically and checkpoints are whole after such an error: a run can be repeated
    (a training stage resumed with --resume)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            _print_error(escape(str(exc)))
            raise typer.Exit(1) from None
        except OSError as exc:
            if exc.errno not in _FS_ERRORS:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            _print_error(escape(f"{where}{exc.strerror or exc}; {_FS_ERRORS[exc.errno]}"))
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            console.print("[bold red]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper


def _speakers(value: str) -> list[str]:
    return [s for s in (value or "").split(",") if s]


@app.command(short_help="Synthesise the embedded eSpeak NG corpus (audio + alignments).")
@user_errors
def synth(
    out: Path = typer.Argument(..., help="Folder to write the Kaldi-style corpus into."),
    hours: float = typer.Option(default(SynthConfig, "hours"), help="Amount of speech to generate."),
    seed: int = typer.Option(default(SynthConfig, "seed"), help="Seed for speakers, sentences and noise."),
    speakers: int = typer.Option(default(SynthConfig, "speakers"), help="Number of distinct synthetic speakers."),
    snr: float | None = typer.Option(
        default(SynthConfig, "snr_db"), help="Additive noise SNR in dB; --no-noise for clean speech."
    ),
    no_noise: bool = typer.Option(False, "--no-noise", help="Generate clean speech."),
    jobs: int = typer.Option(default(SynthConfig, "jobs"), help="Worker processes."),
):
    """Generate the embedded eSpeak NG corpus (audio + exact phone alignments)."""
    from asr_init.corpora.synth import synthesize_corpus

    cfg = SynthConfig(hours=hours, seed=seed, speakers=speakers, snr_db=None if no_noise else snr, jobs=jobs)
    path = synthesize_corpus(out, cfg)
    console.print(f"[green]wrote corpus to {path}")


@app.command(short_help="Audio + alignments -> feature store (MFCC frames, targets).")
@user_errors
def extract(
    corpus: Path | None = typer.Argument(
        None, help="Corpus folder (Kaldi data dir, TIMIT, or audio + TextGrids); default: the embedded corpus."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Feature store folder to write."),
    sample_rate: int | None = typer.Option(
        default(ExtractConfig, "sample_rate"),
        "--sample-rate",
        help="Sample rate of the features in Hz; files at other rates are "
        "resampled. Default: the rate most of the corpus's files have, at most 16000.",
    ),
    low_freq: float = typer.Option(
        default(ExtractConfig, "low_freq"), "--low-freq", help="Lower edge of the mel filterbank in Hz."
    ),
    high_freq: float | None = typer.Option(
        default(ExtractConfig, "high_freq"),
        "--high-freq",
        help="Upper edge of the mel filterbank in Hz (default: the Nyquist frequency, half the sample rate).",
    ),
    cmvn: str = typer.Option(
        default(ExtractConfig, "cmvn"), help="Mean/variance normalisation: speaker, utterance or none."
    ),
    dev_fraction: float = typer.Option(
        default(ExtractConfig, "dev_fraction"), help="Fraction of speakers for dev (when no lists are given)."
    ),
    test_fraction: float = typer.Option(default(ExtractConfig, "test_fraction"), help="Fraction of speakers for test."),
    dev_speakers: str = typer.Option(
        ",".join(default(ExtractConfig, "dev_speakers")), help="Comma-separated dev speakers (overrides fractions)."
    ),
    test_speakers: str = typer.Option(
        ",".join(default(ExtractConfig, "test_speakers")), help="Comma-separated test speakers."
    ),
    phones: Path | None = typer.Option(
        default(ExtractConfig, "phones"),
        exists=True,
        dir_okay=False,
        help="Label list; a label outside it is an error.",
    ),
    phone_map: Path | None = typer.Option(
        default(ExtractConfig, "phone_map"),
        exists=True,
        dir_okay=False,
        help="Folding map 'from to' applied to the labels; a label outside it is an error.",
    ),
    ctm: Path | None = typer.Option(
        default(ExtractConfig, "ctm"),
        exists=True,
        dir_okay=False,
        help="Phone CTM of a Kaldi data dir (default DIR/phones.ctm).",
    ),
    tier: str = typer.Option(default(ExtractConfig, "tier"), help="TextGrid tier holding the phone labels."),
    include_sa: bool = typer.Option(default(ExtractConfig, "include_sa"), help="TIMIT: keep the SA sentences."),
    skip_bad: bool = typer.Option(
        default(ExtractConfig, "skip_bad"),
        help="Skip utterances with bad audio or alignments and report them, instead of stopping.",
    ),
    seed: int = typer.Option(
        default(ExtractConfig, "seed"), help="Seed for the speaker split (and the embedded corpus)."
    ),
    hours: float = typer.Option(default(SynthConfig, "hours"), help="Embedded corpus: hours of speech."),
    jobs: int = typer.Option(default(ExtractConfig, "jobs"), help="Worker processes."),
    force: bool = typer.Option(False, help="Replace an existing output folder."),
):
    """Turn audio + alignments into normalised MFCC frames with phone/state targets."""
    from asr_init.config import DATA_DIR
    from asr_init.corpora.synth import default_corpus
    from asr_init.features.extract import extract as run_extract
    from asr_init.features.extract import summary_table

    cfg = ExtractConfig(
        sample_rate=sample_rate,
        low_freq=low_freq,
        high_freq=high_freq,
        cmvn=cmvn,
        dev_fraction=dev_fraction,
        test_fraction=test_fraction,
        dev_speakers=_speakers(dev_speakers),
        test_speakers=_speakers(test_speakers),
        seed=seed,
        phones=str(phones) if phones else None,
        phone_map=str(phone_map) if phone_map else None,
        ctm=str(ctm) if ctm else None,
        tier=tier,
        include_sa=include_sa,
        skip_bad=skip_bad,
        jobs=jobs,
    )
    cfg.validate()
    if corpus is None:
        corpus = default_corpus(SynthConfig(hours=hours, seed=seed, jobs=jobs))
        if cfg.phones is None:
            cfg.phones = str(DATA_DIR / "phones39.txt")
    console.print(f"extract {corpus} -> {out}: {cfg.to_dict()}", highlight=False)
    summary = run_extract(corpus, out, cfg, force=force)
    console.print(summary_table(summary))
    console.print(
        f"{summary['hours']:.3f} h extracted at {summary['x_real_time']:.0f}x real time; "
        f"{len(summary['skipped'])} utterance(s) skipped"
    )
    if "sample_rate" not in summary:  # a store made before the rate was recorded in the summary
        return
    console.print(
        f"features at {summary['sample_rate']} Hz, mel bands {summary['low_freq']:g}-{summary['high_freq']:g} Hz; "
        f"{summary['resampled_utterances']} utterance(s) resampled (audio files by rate in Hz: "
        f"{', '.join(f'{r}: {n}' for r, n in summary['source_rates'].items())})",
        highlight=False,
    )


@app.command("import-kaldi", short_help="Kaldi feats + alignments -> feature store (no MFCCs).")
@user_errors
def import_kaldi_cmd(
    data_dir: Path = typer.Argument(
        ..., help="Kaldi data dir of the train set: feats.scp, utt2spk, and cmvn.scp if CMVN is applied."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Feature store folder to write."),
    ali: list[str] = typer.Option(
        [],
        "--ali",
        help="Pdf alignments (ali-to-pdf output): an archive (text or binary), a .scp, or a gzipped archive; "
        "repeat for several files. They may cover every split.",
    ),
    phone_ali: list[str] = typer.Option(
        [], "--phone-ali", help="Phone alignments (ali-to-phones --per-frame output), in the same forms as --ali."
    ),
    phones: Path | None = typer.Option(
        default(KaldiImportConfig, "phones"),
        exists=True,
        dir_okay=False,
        help="Kaldi's lang/phones.txt, to name the phone ids of --phone-ali.",
    ),
    num_pdfs: int | None = typer.Option(
        default(KaldiImportConfig, "num_pdfs"),
        "--num-pdfs",
        help="Pdfs of the tree (hmm-info final.mdl prints it); default: the highest pdf id in --ali + 1.",
    ),
    dev: Path | None = typer.Option(
        default(KaldiImportConfig, "dev"),
        help="Kaldi data dir of the dev set (train.sh's cross-validation dir); default: --dev-fraction.",
    ),
    test: Path | None = typer.Option(default(KaldiImportConfig, "test"), help="Kaldi data dir of a test set."),
    dev_fraction: float = typer.Option(
        default(KaldiImportConfig, "dev_fraction"), help="Without --dev: share of the train speakers that become dev."
    ),
    cmvn: bool | None = typer.Option(
        default(KaldiImportConfig, "cmvn"),
        "--cmvn/--no-cmvn",
        help="Apply each speaker's CMVN stats (cmvn.scp) as apply-cmvn does; default: when cmvn.scp exists.",
    ),
    norm_vars: bool = typer.Option(
        default(KaldiImportConfig, "norm_vars"), "--norm-vars", help="Normalise variances too (apply-cmvn --norm-vars)."
    ),
    seed: int = typer.Option(default(KaldiImportConfig, "seed"), help="Seed of the --dev-fraction speaker draw."),
    force: bool = typer.Option(False, help="Replace an existing output folder."),
):
    """Make a feature store from Kaldi's own features and alignments (a drop-in for steps/nnet)."""
    from asr_init.features.extract import summary_table
    from asr_init.features.kaldi import import_kaldi

    cfg = KaldiImportConfig(
        ali=list(ali),
        phone_ali=list(phone_ali),
        phones=str(phones) if phones else None,
        num_pdfs=num_pdfs,
        dev=str(dev) if dev else None,
        test=str(test) if test else None,
        dev_fraction=dev_fraction,
        cmvn=cmvn,
        norm_vars=norm_vars,
        seed=seed,
    )
    cfg.validate()
    console.print(f"import-kaldi {data_dir} -> {out}: {cfg.to_dict()}", highlight=False)
    summary = import_kaldi(data_dir, out, cfg, force=force)
    console.print(summary_table(summary))
    targets = ", ".join(f"{n} {kind}" for kind, n in summary.get("targets", {}).items())
    console.print(
        f"{summary['hours']:.3f} h imported ({targets}); "
        f"{len(summary['skipped'])} utterance(s) without alignment left out",
        highlight=False,
    )


@app.command("optimal-d", short_help="The optimal net-input spread D* (quadrature, Monte Carlo).")
@user_errors
def optimal_d_cmd(
    activation: str = typer.Option("sigmoid", help="sigmoid or tanh."),
    criterion: str = typer.Option("abs", help="abs: E|f''|, the paper's; square: E\\[f''^2]."),
    samples: int = typer.Option(1_000_000, help="Monte Carlo sample size."),
    seed: int = typer.Option(0, help="Monte Carlo seed."),
    plot: Path | None = typer.Option(None, help="Write a PNG of |f''|, the N(0, D*^2) density and J(D)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the figures as JSON."),
):
    """Compute the optimal net-input spread D* (quadrature and Monte Carlo)."""
    from asr_init.io import check_output_file
    from asr_init.models.optimal_spread import plot_spread, spread_report

    if seed < 0:
        raise UserError(f"invalid --seed {seed}: must be at least 0")
    for path, option in ((plot, "--plot"), (json_out, "--json")):
        if path is not None:
            check_output_file(path, option)

    r = spread_report(activation, criterion, samples, seed)
    console.print(
        escape(
            f"activation {r.activation}, criterion {r.criterion}: "
            f"J(D) = E[{'|f″(z)|' if r.criterion == 'abs' else 'f″(z)²'}], z ~ N(0, D²)"
        ),
        highlight=False,
    )
    console.print(f"D* (quadrature)        = {r.d_star:.5f}   J(D*) = {r.j_star:.6g}", highlight=False)
    console.print(f"D  (Monte Carlo, n={r.mc_samples:,}, seed {seed}) = {r.d_mc:.5f}", highlight=False)
    console.print(f"paper's D              = {r.paper_d:.4g}   relative loss of J: {r.paper_loss:.2e}", highlight=False)
    console.print(f"weights: sigma = D* / sqrt(N), e.g. N = 429 -> sigma = {r.d_star / 429**0.5:.5f}", highlight=False)
    if plot is not None:
        plot_spread(r, plot)
        console.print(f"wrote {plot}")
    if json_out is not None:
        from asr_init.io import write_json_atomic

        write_json_atomic(json_out, r.to_dict())


@app.command(short_help="List the initialisation methods and their formulas.")
@user_errors
def inits():
    """List the initialisation methods with their formulas."""
    from rich.markup import escape
    from rich.table import Table

    from asr_init.models.init import METHODS

    table = Table(title="initialisation methods (--init NAME or NAME:PARAM)")
    table.add_column("name")
    table.add_column("parameter")
    table.add_column("formula")
    for m in METHODS.values():
        param = "" if m.param is None else (m.param if m.param_required else f"[{m.param}]")
        table.add_row(m.name, escape(param), escape(m.formula))
    console.print(table)


@app.command(short_help="Where a network's net inputs fall on real frames.")
@user_errors
def inspect(
    store: Path = typer.Argument(..., help="Feature store to draw frames from."),
    init: str = typer.Option(default(InspectConfig, "init"), help="Initialisation method (see 'asr-init inits')."),
    model: Path | None = typer.Option(None, help="A pretrain or finetune output folder instead of --init."),
    layers: int = typer.Option(default(InspectConfig, "layers"), help="Number of hidden layers (with --init)."),
    hidden: int = typer.Option(default(InspectConfig, "hidden"), help="Units per hidden layer (with --init)."),
    splice: int = typer.Option(default(InspectConfig, "splice"), help="Context frames each side (with --init)."),
    activation: str = typer.Option(default(InspectConfig, "activation"), help="sigmoid, tanh or relu (with --init)."),
    frames: int = typer.Option(default(InspectConfig, "frames"), help="Number of frames to sample."),
    split: str = typer.Option(default(InspectConfig, "split"), help="Split to sample from."),
    seed: int = typer.Option(default(InspectConfig, "seed"), help="Seed for the weights and the frame sample."),
):
    """Show where each layer's net inputs fall: non-linear region or saturated."""
    import torch
    from rich.table import Table

    from asr_init.features.pipeline import FeaturePipeline, sample_frames
    from asr_init.features.store import FeatureStore
    from asr_init.models.init import init_stack
    from asr_init.models.nonlinearity import stack_stats

    InspectConfig(init, layers, hidden, splice, activation, frames, split, seed, model is not None).validate()
    fs = FeatureStore(store)
    if model is not None:
        from asr_init.models.dbn import load_stack

        stack, pipeline, activation = load_stack(model, option="--model")
        pipeline.check_store(fs, str(model))
        results = None
    else:
        pipeline = FeaturePipeline.from_store(fs, splice)
    x = sample_frames(fs, pipeline, split, frames, seed)
    if model is None:
        stack, results = init_stack(
            [pipeline.dim] + [hidden] * layers, init, torch.Generator().manual_seed(seed), activation, x
        )
    rows = stack_stats(x, stack, activation)
    table = Table(title=f"net inputs on {len(x):,} {split} frames ({init if model is None else model})")
    for col in ("layer", "in→out", "w std", "D", "net mean", "net std", "non-lin", "satur"):
        table.add_column(col, justify="right")
    for i, (row, (w, _)) in enumerate(zip(rows, stack)):
        d = f"{results[i].spread:.3f}" if results else "-"
        table.add_row(
            str(row.layer),
            f"{w.shape[1]}→{w.shape[0]}",
            f"{float(w.std()):.4f}",
            d,
            f"{row.mean:+.3f}",
            f"{row.std:.3f}",
            f"{row.nonlinear:.1%}",
            f"{row.saturated:.1%}",
        )
    console.print(table)
    console.print(
        "D: net-input spread the weights give for N(0,1) inputs (optimal-data: for the measured inputs); "
        "non-lin: share of net inputs where |f''| >= max/2; satur: share of outputs within 0.05 of 0 or 1"
    )


@app.command(short_help="Layer-wise RBM pre-training of a DBN.")
@user_errors
def pretrain(
    store: Path = typer.Argument(..., help="Feature store written by 'asr-init extract'."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for checkpoints, logs and the DBN."),
    init: str = typer.Option(
        default(PretrainConfig, "init"), help="Initialisation method for every layer (see 'asr-init inits')."
    ),
    layers: int = typer.Option(default(PretrainConfig, "layers"), help="Number of RBM layers."),
    hidden: int = typer.Option(default(PretrainConfig, "hidden"), help="Hidden units per layer."),
    splice: int = typer.Option(default(PretrainConfig, "splice"), help="Context frames on each side (+-K)."),
    cd_k: int = typer.Option(default(PretrainConfig, "cd_k"), "--cd-k", help="Gibbs steps of contrastive divergence."),
    batch_size: int = typer.Option(default(PretrainConfig, "batch_size"), help="Mini-batch size in frames."),
    epochs: int = typer.Option(default(PretrainConfig, "epochs"), help="Epochs per Bernoulli-Bernoulli layer."),
    epochs_gauss: int | None = typer.Option(
        default(PretrainConfig, "epochs_gauss"), help="Epochs of the Gaussian first layer (default 2 x --epochs)."
    ),
    lr: float = typer.Option(
        default(PretrainConfig, "lr"),
        help="Learning rate of Bernoulli-Bernoulli layers (scaled by 1 - momentum); "
        "Kaldi's 0.4 saturates 1024-unit layers (the saturation guard then lowers it).",
    ),
    lr_gauss: float = typer.Option(
        default(PretrainConfig, "lr_gauss"), help="Learning rate of the Gaussian-Bernoulli layer."
    ),
    momentum_start: float = typer.Option(
        default(PretrainConfig, "momentum_start"), help="Momentum at the start of each layer."
    ),
    momentum_end: float = typer.Option(default(PretrainConfig, "momentum_end"), help="Momentum after the ramp."),
    momentum_frames: int = typer.Option(
        default(PretrainConfig, "momentum_frames"), help="Frames over which momentum ramps up linearly."
    ),
    l2: float = typer.Option(default(PretrainConfig, "l2"), help="L2 weight penalty."),
    visible: str = typer.Option(
        default(PretrainConfig, "visible"),
        help="First-layer visible units: gauss or bernoulli (inputs squashed to (0,1)).",
    ),
    seed: int = typer.Option(default(PretrainConfig, "seed"), help="Seed for weights, sampling and frame order."),
    device: str = typer.Option(default(PretrainConfig, "device"), help="cpu or cuda."),
    max_frames: int | None = typer.Option(
        default(PretrainConfig, "max_frames"), help="Cut each epoch after this many frames (quick runs)."
    ),
    report_every: int = typer.Option(default(PretrainConfig, "report_every"), help="Frames between log rows."),
    buffer_frames: int = typer.Option(
        default(PretrainConfig, "buffer_frames"), help="Frames in the shuffling buffer (bounds memory)."
    ),
    sat_guard: float = typer.Option(
        default(PretrainConfig, "sat_guard"),
        help="Saturation guard of Bernoulli layers: when more than this share of a mini-batch's hidden "
        "probabilities is within 0.05 of 0 or 1, rescale the weights to spread D*, halve "
        "the learning rate and reset the momentum; 0 switches it off.",
    ),
    precision: str = typer.Option(
        default(PretrainConfig, "precision"),
        help="Precision of the CD products: fp32; tf32 (TensorFloat-32 on CUDA; a CPU computes fp32); or bf16 "
        "(bfloat16 inputs, float32 accumulation; parameters and updates stay float32).",
    ),
    cuda_graphs: bool = typer.Option(
        default(PretrainConfig, "cuda_graphs"),
        help="On a GPU, replay each layer's CD step as a CUDA graph (checked against an eager step first).",
    ),
    resume: bool = typer.Option(False, help="Continue an interrupted layer from its checkpoint."),
    force: bool = typer.Option(False, help="Delete an existing output folder and start over."),
):
    """Layer-wise RBM pre-training of a DBN, logging reconstruction error."""
    from asr_init.training.interrupts import Interrupted
    from asr_init.training.pretrain import pretrain as run_pretrain

    cfg = PretrainConfig(
        init=init,
        layers=layers,
        hidden=hidden,
        splice=splice,
        cd_k=cd_k,
        batch_size=batch_size,
        epochs=epochs,
        epochs_gauss=epochs_gauss,
        lr=lr,
        lr_gauss=lr_gauss,
        momentum_start=momentum_start,
        momentum_end=momentum_end,
        momentum_frames=momentum_frames,
        l2=l2,
        visible=visible,
        seed=seed,
        device=device,
        max_frames=max_frames,
        report_every=report_every,
        buffer_frames=buffer_frames,
        sat_guard=sat_guard,
        precision=precision,
        cuda_graphs=cuda_graphs,
    )
    try:
        summary = run_pretrain(store, cfg, out, resume=resume, force=force)
    except Interrupted as exc:
        console.print(f"[bold red]interrupted:[/] {exc}")
        raise typer.Exit(130) from None
    for info in summary["layers"]:
        console.print(
            f"layer {info['layer']}: {info['n_visible']}→{info['n_hidden']} {info['visible']}, init {info['init']}: "
            f"sigma {info['sigma']:.4f}, D {info['D']:.3f}, {info['seconds']:.1f} s",
            highlight=False,
        )
    console.print(f"[green]DBN written to {out / 'dbn.pt'}; logs in {out / 'recon.csv'}, plot {out / 'recon.png'}")


@app.command(short_help="Fine-tune the DNN frame classifier (DBN or any --init).")
@user_errors
def finetune(
    store: Path = typer.Argument(..., help="Feature store written by 'asr-init extract'."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for the model, logs and plots."),
    dbn: Path | None = typer.Option(
        default(FinetuneConfig, "dbn"),
        help="Start the hidden layers from this 'asr-init pretrain' folder, or a Kaldi nnet1 DBN file (N.dbn).",
    ),
    init: str = typer.Option(
        default(FinetuneConfig, "init"), help="Initialisation of hidden layers not taken from --dbn/--init-from."
    ),
    output_init: str = typer.Option(
        default(FinetuneConfig, "output_init"), help="Initialisation of the softmax layer; 'same' = --init."
    ),
    init_from: Path | None = typer.Option(
        default(FinetuneConfig, "init_from"),
        help="Take the lower --reuse-layers layers from this model folder, or a Kaldi nnet1 file (final.nnet).",
    ),
    feature_transform: Path | None = typer.Option(
        default(FinetuneConfig, "feature_transform"),
        exists=True,
        dir_okay=False,
        help="Kaldi feature transform of a --dbn/--init-from nnet1 file (default: final.feature_transform beside it).",
    ),
    reuse_layers: int = typer.Option(
        default(FinetuneConfig, "reuse_layers"), help="How many lower layers to take from --init-from."
    ),
    targets: str | None = typer.Option(
        default(FinetuneConfig, "targets"),
        help="Output classes: states (3 per phone) or phones of an extract store; pdfs or phones of an import-kaldi "
        "store. Default: states, or pdfs for an import-kaldi store.",
    ),
    layers: int = typer.Option(default(FinetuneConfig, "layers"), help="Hidden layers (without --dbn)."),
    hidden: int = typer.Option(default(FinetuneConfig, "hidden"), help="Units per hidden layer (without --dbn)."),
    activation: str = typer.Option(
        default(FinetuneConfig, "activation"), help="sigmoid, tanh or relu (without --dbn)."
    ),
    splice: int = typer.Option(
        default(FinetuneConfig, "splice"), help="Context frames each side (without --dbn/--init-from)."
    ),
    lr: float | None = typer.Option(
        default(FinetuneConfig, "lr"),
        help="Initial learning rate, on the gradient summed over the mini-batch "
        "(default 0.008 with --dbn, 0.0004 without).",
    ),
    batch_size: int = typer.Option(default(FinetuneConfig, "batch_size"), help="Mini-batch size in frames."),
    momentum: float | None = typer.Option(
        default(FinetuneConfig, "momentum"), help="SGD momentum (default 0 with --dbn, 0.9 without)."
    ),
    l2: float = typer.Option(default(FinetuneConfig, "l2"), help="L2 weight decay."),
    dropout: float = typer.Option(default(FinetuneConfig, "dropout"), help="Dropout on hidden activations."),
    max_norm: float | None = typer.Option(
        default(FinetuneConfig, "max_norm"), help="Max-norm constraint on each hidden unit's incoming weights."
    ),
    grad_clip: float | None = typer.Option(default(FinetuneConfig, "grad_clip"), help="Clip the global gradient norm."),
    schedule: str = typer.Option(default(FinetuneConfig, "schedule"), help="newbob, constant or exponential."),
    decay: float = typer.Option(default(FinetuneConfig, "decay"), help="Exponential schedule: lr factor per epoch."),
    max_epochs: int = typer.Option(default(FinetuneConfig, "max_epochs"), help="Maximum epochs."),
    min_epochs: int = typer.Option(
        default(FinetuneConfig, "min_epochs"), help="Newbob never stops before this many epochs."
    ),
    seed: int = typer.Option(default(FinetuneConfig, "seed"), help="Seed for weights, frame order and dropout."),
    device: str = typer.Option(default(FinetuneConfig, "device"), help="cpu or cuda."),
    max_frames: int | None = typer.Option(
        default(FinetuneConfig, "max_frames"), help="Cut each epoch after this many frames."
    ),
    buffer_frames: int = typer.Option(default(FinetuneConfig, "buffer_frames"), help="Frames in the shuffling buffer."),
    precision: str = typer.Option(
        default(FinetuneConfig, "precision"),
        help="Precision of the products: fp32; tf32 (TensorFloat-32 on CUDA; a CPU computes fp32); bf16 (forward "
        "and loss under bfloat16 autocast, parameters and update in fp32).",
    ),
    cuda_graphs: bool = typer.Option(
        default(FinetuneConfig, "cuda_graphs"),
        help="On a GPU, replay the training step as a CUDA graph (checked against an eager step first; "
        "not with --dropout).",
    ),
    resume: bool = typer.Option(False, help="Continue an interrupted run."),
    force: bool = typer.Option(False, help="Delete an existing output folder and start over."),
):
    """Fine-tune a DNN frame classifier (from a DBN, or from any --init)."""
    from asr_init.training.finetune import finetune as run_finetune
    from asr_init.training.interrupts import Interrupted

    cfg = FinetuneConfig(
        targets=targets,
        init=init,
        output_init=output_init,
        layers=layers,
        hidden=hidden,
        activation=activation,
        splice=splice,
        lr=lr,
        batch_size=batch_size,
        momentum=momentum,
        l2=l2,
        dropout=dropout,
        max_norm=max_norm,
        grad_clip=grad_clip,
        schedule=schedule,
        decay=decay,
        max_epochs=max_epochs,
        min_epochs=min_epochs,
        seed=seed,
        device=device,
        max_frames=max_frames,
        precision=precision,
        cuda_graphs=cuda_graphs,
        buffer_frames=buffer_frames,
        dbn=str(dbn) if dbn else None,
        init_from=str(init_from) if init_from else None,
        feature_transform=str(feature_transform) if feature_transform else None,
        reuse_layers=reuse_layers,
    )
    try:
        summary = run_finetune(store, cfg, out, resume=resume, force=force)
    except Interrupted as exc:
        console.print(f"[bold red]interrupted:[/] {exc}")
        raise typer.Exit(130) from None
    console.print(
        f"[green]best epoch {summary['best_epoch']}: dev cross-entropy {summary['best_dev_loss']:.4f}, "
        f"dev frame accuracy {summary['best_dev_acc']:.2%}; model in {out / 'model.pt'}"
    )


@app.command(short_help="Frame accuracy and phone error rate of a model.")
@user_errors
def evaluate(
    store: Path = typer.Argument(..., help="Feature store to evaluate on."),
    model: Path = typer.Option(..., help="Folder written by 'asr-init finetune'."),
    split: str = typer.Option(default(EvalConfig, "split"), help="Split to evaluate."),
    tune_split: str = typer.Option(
        default(EvalConfig, "tune_split"), help="Split on which the LM weight and insertion penalty are tuned."
    ),
    prior_scale: float = typer.Option(default(EvalConfig, "prior_scale"), help="alpha in log p(s|x) - alpha log p(s)."),
    lm_weights: str = typer.Option(
        ",".join(f"{x:g}" for x in default(EvalConfig, "lm_weights")), help="LM weights tried on the tuning split."
    ),
    penalties: str = typer.Option(
        ",".join(f"{x:g}" for x in default(EvalConfig, "penalties")),
        help="Phone insertion penalties (cost per phone) tried on the tuning split.",
    ),
    out: Path | None = typer.Option(
        None, help="Where to write results.json and confusion.png (default MODEL/eval-SPLIT)."
    ),
    frames_only: bool = typer.Option(False, help="Frame accuracy only: skip decoding (no phone error rate)."),
    device: str = typer.Option(default(EvalConfig, "device"), help="cpu or cuda."),
):
    """Frame accuracy (states, phones) and phone error rate by hybrid Viterbi decoding."""
    from asr_init.evaluation.evaluate import evaluate as run_evaluate
    from asr_init.evaluation.evaluate import results_table

    def floats(text: str, name: str) -> list[float]:
        try:
            return [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise UserError(f"invalid --{name} {text!r}: expected comma-separated numbers") from None

    cfg = EvalConfig(
        split=split,
        tune_split=tune_split,
        prior_scale=prior_scale,
        lm_weights=floats(lm_weights, "lm-weights"),
        penalties=floats(penalties, "penalties"),
        device=device,
        decode=not frames_only,
    )
    result = run_evaluate(store, model, cfg, out)
    console.print(results_table(result))
    console.print(f"wrote {(out or model / f'eval-{split}') / 'results.json'} and confusion.png")


@app.command("export-kaldi", short_help="A model as Kaldi nnet1 files (final.nnet, counts).")
@user_errors
def export_kaldi_cmd(
    model: Path = typer.Argument(..., help="Folder written by 'asr-init finetune'."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write final.nnet, final.feature_transform, ... into."),
    text: bool = typer.Option(False, "--text", help="Write the nnet1 files as text instead of binary."),
    force: bool = typer.Option(False, help="Replace exported files already in --out."),
):
    """Write a fine-tuned model as Kaldi nnet1 files for nnet-forward and latgen-faster-mapped."""
    from asr_init.models.export_kaldi import export_kaldi

    summary = export_kaldi(model, out, binary=not text, force=force)
    console.print(
        f"[green]wrote {', '.join(summary['files'])} ({summary['format']}) to {out}: "
        f"{summary['network_input_dim']} inputs, hidden {summary['hidden_sizes']}, "
        f"{summary['outputs']} {summary['targets']}"
    )


@app.command(short_help="REPORT.md with tables and plots from the logs.")
@user_errors
def report(
    results: Path = typer.Argument(Path("results"), help="The recipes' output folder."),
    best_init: bool = typer.Option(False, help="Only print the initialisation that converged fastest in recipe 1."),
):
    """Write RESULTS/REPORT.md: tables, plots and conclusions from the recipes' logs."""
    from asr_init.reporting.conclusions import best_pretraining_init
    from asr_init.reporting.report import write_report

    if not results.is_dir():
        raise UserError(f"results folder {results} does not exist (run 'make recipes' first)")
    if best_init:
        print(best_pretraining_init(results / "paper"))
        return
    path = write_report(results)
    console.print(f"[green]wrote {path}")


bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print speed and memory figures.")
app.add_typer(bench_app, name="bench", short_help="Speed, memory and multi-process scaling benchmarks.")


@bench_app.command("extract")
@user_errors
def bench_extract_cmd(
    corpus: Path | None = typer.Argument(None, help="Corpus to extract; default: the embedded corpus."),
    hours: float = typer.Option(1.0, help="Embedded corpus: hours of speech."),
    jobs: int = typer.Option(2, help="Worker processes."),
):
    """Extraction speed as x real time and frames/s, with peak memory."""
    from asr_init.bench import bench_extract
    from asr_init.corpora.synth import default_corpus

    if corpus is None:
        corpus = default_corpus(SynthConfig(hours=hours, jobs=jobs))
    bench_extract(corpus, jobs)


@bench_app.command("pretrain")
@user_errors
def bench_pretrain_cmd(
    store: list[Path] = typer.Option(
        [],
        "--store",
        help="Feature store(s) for the real-data and memory figures; "
        "default: embedded-corpus stores of 0.25 h and 1 h (made on first use).",
    ),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    seconds: float = typer.Option(
        8.0,
        help="Seconds of training per throughput figure, in 0.4 s windows each "
        "paired with a 0.4 s window of the matmul ceiling.",
    ),
    buffer_frames: int = typer.Option(50_000, help="Shuffling buffer for the memory runs."),
    batch_size: list[int] = typer.Option([256, 1024], help="Mini-batch sizes (repeat the option for several)."),
    precision: str = typer.Option("fp32", help="fp32, tf32 or bf16 (as pretrain --precision)."),
):
    """CD-1 frames/s against the same-run matmul ceiling; peak memory for two store sizes."""
    from asr_init.bench import bench_pretrain
    from asr_init.config import check_device
    from asr_init.training.config import PRECISIONS

    check_device(device)  # before the default stores are extracted
    if precision not in PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    stores = list(store) or [_bench_store(0.25), _bench_store(1.0)]
    bench_pretrain(stores, device, seconds, buffer_frames, tuple(batch_size), precision)


@bench_app.command("finetune")
@user_errors
def bench_finetune_cmd(
    layers: int = typer.Option(6, help="Hidden layers."),
    hidden: int = typer.Option(1024, help="Units per hidden layer."),
    outputs: int = typer.Option(117, help="Output classes (39 phones x 3 states)."),
    batch_size: list[int] = typer.Option([256, 1024], help="Mini-batch sizes (repeat the option for several)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    precision: str = typer.Option("fp32", help="fp32, tf32 or bf16 (as finetune --precision)."),
    seconds: float = typer.Option(
        4.0,
        help="Seconds of training to measure, in 0.4 s windows each paired with a 0.4 s window of the matmul ceiling.",
    ),
):
    """Fine-tuning frames/s against the same-run matmul ceiling."""
    from asr_init.bench import bench_finetune
    from asr_init.training.config import PRECISIONS

    if precision not in PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")

    bench_finetune(layers, hidden, 429, outputs, tuple(batch_size), seconds, device, precision)


@bench_app.command("distributed")
@user_errors
def bench_distributed_cmd(
    store: Path | None = typer.Option(
        None,
        exists=True,
        file_okay=False,
        help="Feature store; default: the 1 h embedded-corpus store (made on first use).",
    ),
    processes: str = typer.Option("1,2", help="Process counts to compare, the first being the baseline."),
    frames: int = typer.Option(50_000, help="Frames each stage trains on per measurement."),
    hidden: int = typer.Option(1024, help="Units per hidden layer."),
    batch_size: int = typer.Option(256, help="Global mini-batch size."),
):
    """Pre-training and fine-tuning frames/s on 1 and N CPU processes (1 thread each) and the scaling efficiency."""
    from asr_init.bench import bench_distributed

    try:
        counts = tuple(int(n) for n in processes.split(","))
    except ValueError:
        raise UserError(f"invalid --processes {processes!r}: expected comma-separated counts such as 1,2") from None
    if not counts or min(counts) < 1:
        raise UserError(f"invalid --processes {processes!r}: counts must be at least 1")
    bench_distributed(store or _bench_store(1.0), counts, frames, hidden, batch_size)


def _bench_store(hours: float) -> Path:
    """An embedded-corpus feature store in the cache, extracted on first use."""
    from asr_init.config import DATA_DIR
    from asr_init.corpora.synth import cache_dir, default_corpus
    from asr_init.features.extract import extract as run_extract

    corpus = default_corpus(SynthConfig(hours=hours))
    out = cache_dir() / f"store-{corpus.name}"
    run_extract(corpus, out, ExtractConfig(phones=str(DATA_DIR / "phones39.txt")))
    return out


def main() -> None:  # console entry point
    app()


if __name__ == "__main__":
    main()
