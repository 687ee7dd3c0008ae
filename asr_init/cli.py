"""The `asr-init` command line: a thin Typer layer over the stage functions.

A stage command's options are derived from its config dataclass (`command`): a field's
default, help and flag are written once, in the config. Results go to stdout, progress and
messages to stderr; a `UserError` is one 'error:' line on stderr with exit status 1.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import inspect
import os
import sys
import typing
from pathlib import Path

import typer
from rich.markup import escape

from asr_init.config import DEVICE_HELP, option_flag
from asr_init.corpora.config import SynthConfig
from asr_init.errors import UserError
from asr_init.evaluation.config import MODEL_DECIDES, EvalConfig
from asr_init.features.config import ExtractConfig, KaldiImportConfig
from asr_init.models.config import InspectConfig
from asr_init.progress import console, results
from asr_init.training.config import STARTING_POINT_DEFAULTS, FinetuneConfig, PretrainConfig

EPILOG = (
    "The whole chain on the embedded corpus ('extract CORPUS' for your own data):\n\n"
    "  asr-init extract --out results/store\n"
    "  asr-init pretrain results/store --out results/dbn\n"
    "  asr-init finetune results/store --dbn results/dbn --out results/dnn\n"
    "  asr-init evaluate results/store --model results/dnn\n"
    "  asr-init report results\n\n"
    "'asr-init COMMAND --help' for options, 'asr-init --version' for bug reports."
)


def _classic_help() -> None:
    """Help in the usual notation: an argument in the usage line as STORE ([STORE] when
    optional), flags without a value type, a path as <path>, <file> or <dir>. (Typer 0.29 writes
    {STORE}, `<bool>`, and `<Path>` for a value read by a parser, as paths are: _path.)"""
    from typer import core

    def usage_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")

    def value_type(self, ctx):
        return None if self.is_flag else original(self, ctx)

    def path_type(self, ctx):  # Typer names a parser's value by its annotation (<Path>): name _path's as Typer does
        parser = getattr(getattr(getattr(self, "type_descriptor", None), "parameter_info", None), "parser", None)
        if not isinstance(parser, functools.partial) or parser.func is not _path:  # a list: each value a path
            return original_type(self, ctx)
        return {None: "<path>", True: "<dir>", False: "<file>"}[parser.keywords.get("folder")]

    if hasattr(core.TyperArgument, "_usage_display_name") and hasattr(core.TyperOption, "display_type_rich"):
        original, original_type = core.TyperOption.display_type_rich, core._TyperParameter.display_type
        core.TyperArgument._usage_display_name = usage_name
        core.TyperOption.display_type_rich = value_type
        core._TyperParameter.display_type = path_type


def _command_name(ctx) -> str:
    """'asr-init' and the command names of the click context `ctx` ('asr-init bench extract'), however
    the program was started (`python -m asr_init.cli` too)."""
    names = []
    while ctx.parent is not None:
        names.insert(0, ctx.info_name)
        ctx = ctx.parent
    return " ".join(["asr-init", *names])


def _one_line_usage_errors() -> None:
    """A mistyped option (`--samples 1e10`, `--lr abc`, an unknown option) gives one `error:`
    line naming the option, as every other bad input does, instead of Typer's usage box; the
    exit status stays 2, a usage error's."""
    from typer import rich_utils

    def one_line(exc) -> None:
        if type(exc).__name__ == "NoArgsIsHelpError" or int(os.environ.get("LOCAL_RANK", "0")) > 0:
            return  # under torchrun a machine's first process alone says it, as user_errors does
        ctx = getattr(exc, "ctx", None)
        where = f" ('{_command_name(ctx)} --help' for options)" if ctx is not None else ""
        message = exc.format_message().rstrip(".")
        print(_one_line(f"error: {message[:1].lower()}{message[1:]}{where}"), file=sys.stderr)

    rich_utils.rich_format_error = one_line


_classic_help()
_one_line_usage_errors()
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, epilog=EPILOG,
                  help="Train hybrid DNN-HMM acoustic models and measure what weight initialisation does.")  # fmt: skip
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print speed and memory figures.")


def _print_version(value: bool) -> None:
    if value:
        from asr_init.environment import environment, version_text

        typer.echo(version_text(environment()))
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True,
        help="Print asr-init's version, the torch version and build, usable devices and thread count, then exit.",
    ),
) -> None:  # fmt: skip
    """Train hybrid DNN-HMM acoustic models and measure what weight initialisation does."""


# File-system errors that are the machine's state, not a bug: one line naming the file, with what to do.
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
    errno.ENAMETOOLONG: "choose a shorter name",
}


def _one_line(message: str) -> str:
    """A message as one line: a line break in a value it quotes (a path, an option's value) is shown as \\n."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


def _error(message: str) -> None:
    console.print(f"[bold red]error:[/] {escape(_one_line(message))}", highlight=False, soft_wrap=True, emoji=False)


def user_errors(func):
    """Report UserError, the file-system errors of _FS_ERRORS (a full disk, a read-only folder),
    numbers too large to use and a failed allocation as one 'error: ...' line with exit status 1. Ctrl-C or SIGTERM
    at any point (a training stage writes its checkpoint first) says 'interrupted' and exits
    with 130. Under torchrun only a machine's first process (LOCAL_RANK 0) prints: an error found
    before the processes meet is found by each of them."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from asr_init.folders import terminate_as_interrupt
        from asr_init.training.interrupts import Interrupted

        if int(os.environ.get("LOCAL_RANK", "0")) > 0:
            console.quiet = results.quiet = True
        try:  # under torchrun SIGTERM keeps its default action: a rank blocked in a collective must still end
            with terminate_as_interrupt(enabled=int(os.environ.get("WORLD_SIZE", "1")) == 1):
                return func(*args, **kwargs)
        except UserError as exc:
            _error(str(exc))
        except OSError as exc:
            if exc.errno not in _FS_ERRORS:
                raise
            _error(f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}; {_FS_ERRORS[exc.errno]}")
        except OverflowError as exc:
            _error(f"a value is too large to use ({exc}); give a smaller one")
        except (MemoryError, RuntimeError) as exc:  # numpy's MemoryError; torch's allocators raise RuntimeError
            said = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if isinstance(exc, RuntimeError) and not any(s in said for s in ("can't allocate memory", "out of memory")):
                raise
            _error(f"not enough memory ({said}); give smaller sizes (for training --hidden, --layers, --batch-size, "
                   "--splice) or run where there is more")  # fmt: skip
        except (KeyboardInterrupt, Interrupted) as exc:
            console.print(f"[bold red]interrupted[/]{': ' + escape(str(exc)) if str(exc) else ''}")
            raise typer.Exit(130) from None
        raise typer.Exit(1)

    return wrapper


# --- options derived from the config dataclasses -----------------------------------------

_P = inspect.Parameter


def _path(text: str | Path, exists: bool = False, folder: bool | None = None) -> Path:
    """The value of a path argument or option: an empty one is refused (Path('') is '.', a folder
    the user did not name); with `exists` it must exist, and be a folder (`folder` True) or not
    one (False). A typer.BadParameter is one 'error:' line naming the option."""
    if isinstance(text, Path):  # a default
        return text
    if not text.strip():
        raise typer.BadParameter(f"{'an empty path' if not text else repr(text) + ' is only white space'}; name "
                                 "a file or folder")  # fmt: skip
    path = Path(text)
    try:
        if exists and not path.exists():
            raise typer.BadParameter(f"{text} does not exist")
        if exists and folder is not None and path.is_dir() != folder:
            raise typer.BadParameter(f"{text} is a {'file, not a folder' if folder else 'folder, not a file'}")
    except OSError as exc:  # a name too long for the file system, a link loop: parsed before user_errors' care
        raise typer.BadParameter(f"{text}: {exc.strerror or exc}") from None
    return path


def _path_kind(kind, extra: dict) -> dict:
    """`extra` (typer settings) with every value of a path kind (Path, Path | None, list[Path])
    read by _path: Typer's exists/dir_okay/file_okay become its checks."""
    if kind is not Path and Path not in typing.get_args(kind):
        return extra
    extra = dict(extra)
    exists, dirs, files = extra.pop("exists", False), extra.pop("dir_okay", True), extra.pop("file_okay", True)
    return extra | {"parser": functools.partial(_path, exists=exists, folder=None if dirs == files else dirs)}


def arg(name: str, help: str, default=..., kind=Path) -> inspect.Parameter:
    """A positional argument of a command."""
    default = typer.Argument(default, help=help, metavar=name.upper(), **_path_kind(kind, {}))
    return _P(name, _P.POSITIONAL_OR_KEYWORD, annotation=kind, default=default)


def opt(name: str, default, help: str, *decls: str, kind=None, **extra) -> inspect.Parameter:
    """An option of a command that no config holds (--out, --force, --resume, ...). A switch
    that is off by default is a plain flag (--force, no --no-force)."""
    kind = kind or type(default)
    if kind is bool and default is False and not decls:
        decls = ("--" + name.replace("_", "-"),)
    option = typer.Option(default, *decls, help=help, **_path_kind(kind, extra))
    return _P(name, _P.KEYWORD_ONLY, annotation=kind, default=option)


OUT = opt("out", ..., "Output folder.", "--out", "-o", kind=Path)
FORCE = opt("force", False, "Replace an existing output folder (not one a running command reads).")
RESUME = opt("resume", False, "Continue an interrupted run (or a finished one to more epochs).")
HOURS = opt("hours", None, f"Embedded corpus (no CORPUS): hours of speech (default {SynthConfig.hours:g}).",
            kind=float | None)  # fmt: skip


def config_options(config: type, helps: dict | None = None) -> list[inspect.Parameter]:
    """One option per field of `config` that has a help text (config.option), under the flag
    config.option_flag gives it, which validation errors name too; `helps` replaces the texts
    of the fields it names (a command that gives an option a meaning of its own). A field marked
    path (an existing file) or names_path (a path the stage checks) is read by _path."""
    hints, params = typing.get_type_hints(config), []
    for f in dataclasses.fields(config):
        if "help" not in f.metadata:
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        kind, extra = hints[f.name], {}
        if f.metadata.get("path"):
            kind, extra = Path | None, {"exists": True, "dir_okay": False}
        elif f.metadata.get("names_path"):  # a file or folder the stage checks itself (an empty name is refused)
            kind = list[Path] if f.metadata.get("repeat") else Path | None
        elif typing.get_origin(kind) is list and not f.metadata.get("repeat"):
            kind, default = str, ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)
        text = (helps or {}).get(f.name, f.metadata["help"])
        params.append(opt(f.name, default, text, option_flag(f), kind=kind, **extra))
    return params


def comma_list(text: str, item: type, flag: str, expected: str = "values") -> list:
    """The comma-separated `item`s of `text` (empty entries skipped), or a UserError naming `flag`."""
    try:
        return [item(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"invalid {flag} {text!r}: expected comma-separated {expected}") from None


def make_config(config: type, values: dict):
    """`config` from the options' values (taken out of `values`): comma lists split, paths (and lists of them) as
    text."""
    hints, kwargs = typing.get_type_hints(config), {}
    for f in dataclasses.fields(config):
        if f.name not in values:
            continue
        value = values.pop(f.name)
        if isinstance(value, str) and typing.get_origin(hints[f.name]) is list:
            value = comma_list(value, typing.get_args(hints[f.name])[0], option_flag(f))
        if isinstance(value, list) and value and isinstance(value[0], Path):
            value = [str(v) for v in value]
        kwargs[f.name] = str(value) if isinstance(value, Path) else value
    return config(**kwargs)


def command(name: str, short_help: str, config: type | None, *params: inspect.Parameter, group=app,
            exclude: dict | None = None, helps: dict | None = None, shared: bool = False):  # fmt: skip
    """Register the decorated `run(cfg, **params)` as command `name`: its `params`, then one
    option per field of `config` but those of `exclude`, which the command sets (to these values),
    with the help texts of `helps` where the command gives a field its own meaning. A command
    whose work the processes of a torchrun share (`shared`: it calls `distributed()`) runs under
    torchrun; another is refused there, as each process would do the whole of it."""
    exclude = exclude or {}

    def register(run):
        def cli(ctx: typer.Context, **values):
            world = int(os.environ.get("WORLD_SIZE", "1"))
            if world > 1 and not shared:
                raise UserError(f"{_command_name(ctx)} does not share its work among processes (WORLD_SIZE is "
                                f"{world}): run it without torchrun")  # fmt: skip
            values.update(exclude)
            return run(make_config(config, values), **values) if config else run(**values)

        options = [p for p in config_options(config, helps) if p.name not in exclude] if config else []
        context = _P("ctx", _P.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
        cli.__signature__ = inspect.Signature([context, *params, *options])
        cli.__doc__ = run.__doc__
        group.command(name, short_help=short_help)(user_errors(cli))
        return run

    return register


# --- the pipeline ------------------------------------------------------------------------


@command("synth", "Synthesise the embedded eSpeak NG corpus (audio + alignments).", SynthConfig,
         arg("out", "Folder to write the Kaldi-style corpus into."),
         opt("no_noise", False, "Generate clean speech.", "--no-noise"), FORCE)  # fmt: skip
def synth(cfg: SynthConfig, out: Path, no_noise: bool, force: bool) -> None:
    """Generate the embedded eSpeak NG corpus (audio + exact phone alignments)."""
    from asr_init.corpora.synth import synthesize_corpus

    path = synthesize_corpus(out, dataclasses.replace(cfg, snr_db=None) if no_noise else cfg, force)
    results.print(f"corpus in {path}")


@command("extract", "Audio + alignments -> feature store (MFCC/fbank, targets).", ExtractConfig,
         arg("corpus", "Corpus folder (Kaldi data dir, TIMIT, or audio + TextGrids); default: the embedded corpus.",
             None, Path | None),
         OUT, HOURS, FORCE)  # fmt: skip
def extract(cfg: ExtractConfig, corpus: Path | None, out: Path, hours: float | None, force: bool) -> None:
    """Turn audio + alignments into normalised feature frames with phone/state targets."""
    from asr_init.features.extract import extract as run
    from asr_init.features.extract import summary_table

    cfg.validate()
    summary = run(_corpus(corpus, hours, cfg.seed, cfg.jobs), out, cfg, force=force)
    kind = summary.get("features", "librosa-mfcc")  # a store made before --features: librosa's
    results.print(summary_table(summary))
    results.print(
        f"{summary['hours']:,.3f} h extracted at {summary['x_real_time']:,.0f}x real time, {kind} at "
        f"{summary['sample_rate']:,} Hz (mel bands {summary['low_freq']:g}-{summary['high_freq']:g} Hz); "
        f"{len(summary['skipped'])} utterances skipped, {summary['resampled_utterances']:,} resampled (recordings "
        f"by rate in Hz: {', '.join(f'{r}: {n:,}' for r, n in summary['source_rates'].items())})",
        highlight=False,
    )


def _corpus(corpus: Path | None, hours: float | None, seed: int, jobs: int) -> Path:
    """CORPUS, or without it the embedded corpus of `hours` (made on first use); --hours with
    CORPUS is refused: it would be ignored, the corpus being extracted whole."""
    from asr_init.corpora.synth import default_corpus

    if corpus is not None and hours is not None:
        raise UserError(f"--hours {hours:g} sizes the embedded corpus, not CORPUS {corpus}, which is extracted whole; "
                        "leave --hours out")  # fmt: skip
    if corpus is not None:
        return corpus
    return default_corpus(SynthConfig(hours=SynthConfig.hours if hours is None else hours, seed=seed, jobs=jobs))


@command("import-kaldi", "Kaldi feats + alignments -> feature store (no MFCCs).", KaldiImportConfig,
         arg("data_dir", "Kaldi data dir of the train set: feats.scp, utt2spk, and cmvn.scp if CMVN is applied."),
         OUT, FORCE)  # fmt: skip
def import_kaldi(cfg: KaldiImportConfig, data_dir: Path, out: Path, force: bool) -> None:
    """Make a feature store from Kaldi's own features and alignments (a drop-in for steps/nnet)."""
    from asr_init.features.extract import summary_table
    from asr_init.features.kaldi import import_kaldi as run

    summary = run(data_dir, out, cfg, force=force)
    results.print(summary_table(summary))
    targets = ", ".join(f"{n:,} {kind}" for kind, n in summary.get("targets", {}).items())
    results.print(f"{summary['hours']:,.3f} h imported ({targets}); {len(summary['skipped'])} utterance(s) left out")


@command("optimal-d", "The optimal net-input spread D* (quadrature, Monte Carlo).", None,
         opt("activation", "sigmoid", "sigmoid or tanh."),
         opt("criterion", "abs", "abs: E|f''|, the paper's; square: E\\[f''^2]."),
         opt("samples", 1_000_000, "Monte Carlo sample size (100 to 100,000,000)."),
         opt("seed", 0, "Monte Carlo seed."),
         opt("plot", None, "Write a PNG of |f''|, the N(0, D*^2) density and J(D).", kind=Path | None),
         opt("json_out", None, "Write the figures as JSON.", "--json", kind=Path | None))  # fmt: skip
def optimal_d(activation: str, criterion: str, samples: int, seed: int, plot: Path | None, json_out: Path | None):
    """Compute the optimal net-input spread D* (quadrature and Monte Carlo)."""
    from asr_init.io import check_output_file, write_json_atomic
    from asr_init.models.optimal_spread import check_monte_carlo, plot_spread, spread_report

    check_monte_carlo(samples, seed)
    for path, option in ((plot, "--plot"), (json_out, "--json")):
        if path is not None:
            check_output_file(path, option)
    if plot is not None and plot.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise UserError(f"--plot {plot}: name a .png, .pdf or .svg file (its suffix is the format)")
    r = spread_report(activation, criterion, samples, seed)
    objective = "|f″(z)|" if r.criterion == "abs" else "f″(z)²"
    lines = [f"activation {r.activation}, criterion {r.criterion}: J(D) = E[{objective}], z ~ N(0, D²)",
             f"D* (quadrature)        = {r.d_star:.5f}   J(D*) = {r.j_star:.6g}",
             f"D  (Monte Carlo, n={r.mc_samples:,}, seed {seed}) = {r.d_mc:.5f}",
             f"paper's D              = {r.paper_d:.4g}   relative loss of J: {r.paper_loss:.2e}",
             f"weights: sigma = D* / sqrt(N), e.g. N = 429 -> sigma = {r.d_star / 429**0.5:.5f}"]  # fmt: skip
    results.print(escape("\n".join(lines)), highlight=False)
    if plot is not None:
        plot_spread(r, plot)
        console.print(f"wrote {plot}")
    if json_out is not None:
        write_json_atomic(json_out, dataclasses.asdict(r))


@command("inits", "List the initialisation methods and their formulas.", None)
def inits() -> None:
    """List the initialisation methods with their formulas."""
    from rich.table import Table

    from asr_init.models.init import METHODS

    table = Table(title="initialisation methods (--init NAME or NAME:PARAM)")
    for column in ("name", "parameter", "formula"):
        table.add_column(column)
    for m in METHODS.values():
        param = "" if m.param is None else (m.param if m.param_required else f"[{m.param}]")
        table.add_row(m.name, escape(param), escape(m.formula))
    results.print(table)


@command("inspect", "Where a network's net inputs fall on real frames.", InspectConfig,
         arg("store", "Feature store to draw frames from."),
         opt("model", None, "A pretrain or finetune output folder instead of --init.", kind=Path | None))  # fmt: skip
def inspect_(cfg: InspectConfig, store: Path, model: Path | None) -> None:
    """Show where each layer's net inputs fall: non-linear region or saturated."""
    from asr_init.models.nonlinearity import inspect_network

    cfg.from_model = model is not None
    results.print(inspect_network(store, model, cfg))


STORE = arg("store", "Feature store written by 'asr-init extract' or 'import-kaldi'.")


@command("pretrain", "Layer-wise RBM pre-training of a DBN.", PretrainConfig, STORE, OUT, RESUME, FORCE, shared=True)
def pretrain(cfg: PretrainConfig, store: Path, out: Path, resume: bool, force: bool) -> None:
    """Layer-wise RBM pre-training of a DBN, logging reconstruction error."""
    from asr_init.training.pretrain import pretrain as run

    summary = run(store, cfg, out, resume=resume, force=force)
    for i in summary["layers"]:
        results.print(f"layer {i['layer']}: {i['n_visible']}→{i['n_hidden']} {i['visible']}, init {i['init']}: sigma "
                      f"{i['sigma']:.4f}, D {i['D']:.3f}, {i['seconds']:,.1f} s", highlight=False)  # fmt: skip
    results.print(f"DBN in {out / 'dbn.pt'}; logs in {out / 'recon.csv'}, plot {out / 'recon.png'}", highlight=False)


@command("finetune", "Fine-tune the DNN frame classifier (DBN or any --init).", FinetuneConfig, STORE, OUT, RESUME,
         FORCE, shared=True)  # fmt: skip
def finetune(cfg: FinetuneConfig, store: Path, out: Path, resume: bool, force: bool) -> None:
    """Fine-tune a DNN frame classifier (from a DBN, or from any --init)."""
    from asr_init.training.finetune import finetune as run

    s = run(store, cfg, out, resume=resume, force=force)
    results.print(f"best epoch {s['best_epoch']}: dev cross-entropy {s['best_dev_loss']:.4f}, dev frame accuracy "
                  f"{s['best_dev_acc']:.2%}; model in {out / 'model.pt'}", highlight=False)  # fmt: skip


@command("evaluate", "Frame accuracy and phone error rate of a model.", EvalConfig,
         arg("store", "Feature store to evaluate on."),
         opt("model", ..., "Folder written by 'asr-init finetune'.", kind=Path),
         opt("out", None, "Where to write results.json and confusion.png (default MODEL/eval-SPLIT).", "--out", "-o",
             kind=Path | None),
         opt("force", False, "Replace another evaluation (of another store, split, model or settings) in the output "
             "folder."))  # fmt: skip
def evaluate(cfg: EvalConfig, store: Path, model: Path, out: Path | None, force: bool) -> None:
    """Frame accuracy of every target kind the model gives, and the phone error rate by hybrid
    Viterbi decoding where the store has phone alignments."""
    from asr_init.evaluation.evaluate import evaluate as run
    from asr_init.evaluation.evaluate import results_table

    result = run(store, model, cfg, out, force)
    results.print(results_table(result))
    console.print(f"wrote {(out or model / f'eval-{cfg.split}') / 'results.json'} and confusion.png")


_PRUNED = STARTING_POINT_DEFAULTS["dbn"]  # a pruned model is trained already: fine-tuned as from a DBN
PRUNE_HELPS = {
    "lr": f"Initial learning rate of each sparsity's fine-tuning, on the gradient summed over the mini-batch "
    f"(default {_PRUNED['lr']:g}).",
    "momentum": f"SGD momentum of each sparsity's fine-tuning (default {_PRUNED['momentum']:g}).",
    "max_epochs": "Maximum epochs of each sparsity's fine-tuning (Kaldi's --max-iters); another value for a finished "
    "prune run is refused, --force starts it over.",
}


@command(
    "prune",
    "Magnitude pruning at several sparsities, fine-tuned masked.",
    FinetuneConfig,
    arg("model", "Folder written by 'asr-init finetune': the network to prune."),
    OUT,
    opt("sparsities", "0.5,0.7,0.9", "Shares of the hidden weights to prune, comma-separated.", "--sparsity"),
    opt(
        "store",
        None,
        "Feature store each pruned model is fine-tuned on (its train and dev splits) and every model "
        "is evaluated on (test, else dev); default: the one MODEL was fine-tuned on.",
        kind=Path | None,
    ),
    FORCE,
    exclude={
        "sparsity": 0.5,
        "init_from": None,
        "reuse_layers": 0,
        "dbn": None,
        "feature_transform": None,
        **{name: getattr(FinetuneConfig(), name) for name in MODEL_DECIDES},  # not prune's options
    },
    helps=PRUNE_HELPS,
    shared=True,
)  # 0.5: any share; MODEL's own shape, splice and activation are what it prunes
def prune(cfg: FinetuneConfig, model: Path, out: Path, sparsities: str, store: Path | None, force: bool) -> None:
    """Prune MODEL's hidden layers by magnitude to each sparsity, fine-tune each with its mask
    held, evaluate each on test (dev where the store has none); prune.json, prune.csv and
    sparsity.png in OUT."""
    from asr_init.evaluation.prune import prune as run
    from asr_init.evaluation.prune import prune_table

    shares = comma_list(sparsities, float, "--sparsity", "shares such as 0.5,0.7,0.9")
    summary = run(model, out, cfg, shares, store, force)
    results.print(prune_table(summary))


@command("export-kaldi", "A model as Kaldi nnet1 files (final.nnet, counts).", None,
         arg("model", "Folder written by 'asr-init finetune'."),
         opt("out", ..., "Folder to write final.nnet, final.feature_transform, ... into.", "--out", "-o", kind=Path),
         opt("text", False, "Write the nnet1 files as text instead of binary.", "--text"),
         opt("force", False, "Replace exported files already in --out."))  # fmt: skip
def export_kaldi(model: Path, out: Path, text: bool, force: bool) -> None:
    """Write a fine-tuned model as Kaldi nnet1 files for nnet-forward and latgen-faster-mapped."""
    from asr_init.models.export_kaldi import export_kaldi as run

    s = run(model, out, binary=not text, force=force)
    results.print(f"wrote {', '.join(s['files'])} ({s['format']}) to {out}: {s['network_input_dim']} inputs, hidden "
                  f"{s['hidden_sizes']}, {s['outputs']} {s['targets']}", highlight=False)  # fmt: skip


@command("report", "REPORT.md with tables and plots from the logs.", None,
         arg("results_dir", "A folder of runs: the recipes' output, or your own run folders.", Path("results")),
         opt("best_init", False, "Only print the initialisation that converged fastest in recipe 1."))  # fmt: skip
def report(results_dir: Path, best_init: bool) -> None:
    """Write RESULTS/REPORT.md: tables, plots and conclusions from the logs of the runs found."""
    from asr_init.reporting.report import fastest_init, write_report

    if best_init:
        results.print(fastest_init(results_dir))
        return
    console.print(f"[green]wrote {write_report(results_dir)}")


# --- benchmarks --------------------------------------------------------------------------

app.add_typer(bench_app, name="bench", short_help="Speed, memory and multi-process scaling benchmarks.")
DEVICE, PRECISION = opt("device", "auto", DEVICE_HELP), opt("precision", "fp32", "fp32, tf32 or bf16.")
BATCHES = opt("batch_size", [256, 1024], "Mini-batch sizes (repeat the option for several).", kind=list[int])


@command("extract", "Extraction speed as x real time, with peak memory.", None,
         arg("corpus", "Corpus to extract; default: the embedded corpus.", None, Path | None), HOURS,
         opt("jobs", 2, "Worker processes."),
         opt("features", ExtractConfig.features, "kaldi-mfcc, kaldi-fbank or librosa-mfcc."),
         opt("runs", 3, "Extractions to time; the median is the figure."), group=bench_app)  # fmt: skip
def bench_extract(corpus: Path | None, hours: float | None, jobs: int, features: str, runs: int) -> None:
    """Extraction speed as x real time and frames/s, with peak memory."""
    from asr_init.bench import BenchConfig
    from asr_init.bench import bench_extract as run

    config = ExtractConfig(jobs=jobs, features=features)
    config.validate()  # before the embedded corpus is made
    BenchConfig(runs=runs).validate()
    run(_corpus(corpus, hours, SynthConfig.seed, jobs), config, runs)


@command("pretrain", "CD-1 frames/s against the same-run matmul ceiling; peak memory.", None,
         opt("store", [], "Feature store(s) for the real-data and memory figures; default: embedded-corpus stores of "
             "0.25 h and 1 h (made on first use).", kind=list[Path]),
         DEVICE, opt("seconds", 8.0, "Seconds of training per throughput figure, in 0.4 s windows each paired with "
                     "a 0.4 s window of the matmul ceiling."),
         opt("buffer_frames", 50_000, "Shuffling buffer for the memory runs."), BATCHES, PRECISION,
         group=bench_app)  # fmt: skip
def bench_pretrain(store, device, seconds, buffer_frames, batch_size, precision) -> None:
    """CD-1 frames/s against the same-run matmul ceiling; peak memory for two store sizes."""
    from asr_init.bench import bench_pretrain as run

    run(list(store), device, seconds, buffer_frames, tuple(batch_size), precision)


@command("finetune", "Fine-tuning frames/s against the same-run matmul ceiling.", None,
         opt("layers", 6, "Hidden layers."), opt("hidden", 1024, "Units per hidden layer."),
         opt("outputs", 117, "Output classes (39 phones x 3 states)."), BATCHES, DEVICE, PRECISION,
         opt("seconds", 4.0, "Seconds of training to measure, in 0.4 s windows each paired with a 0.4 s window of "
             "the matmul ceiling."), group=bench_app)  # fmt: skip
def bench_finetune(layers, hidden, outputs, batch_size, device, precision, seconds) -> None:
    """Fine-tuning frames/s against the same-run matmul ceiling."""
    from asr_init.bench import bench_finetune as run

    run(layers, hidden, 429, outputs, tuple(batch_size), seconds, device, precision)


@command("distributed", "Pre-training and fine-tuning frames/s on 1 and N processes.", None,
         opt("store", None, "Feature store; default: the 1 h embedded-corpus store (made on first use).",
             kind=Path | None, exists=True, file_okay=False),
         opt("processes", "1,2", "Process counts to compare, the first being the baseline."),
         opt("frames", 50_000, "Frames each stage trains on per measurement."),
         opt("hidden", 1024, "Units per hidden layer."), opt("batch_size", 256, "Global mini-batch size."),
         group=bench_app)  # fmt: skip
def bench_distributed(store, processes: str, frames: int, hidden: int, batch_size: int) -> None:
    """Pre-training and fine-tuning frames/s on 1 and N CPU processes (1 thread each) and the scaling efficiency."""
    from asr_init.bench import bench_distributed as run

    counts = comma_list(processes, int, "--processes", "counts such as 1,2")
    run(store, tuple(counts), frames, hidden, batch_size)


def main() -> None:  # console entry point
    app()


if __name__ == "__main__":
    main()
