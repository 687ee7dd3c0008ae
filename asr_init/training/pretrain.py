"""The `pretrain` stage: layer-wise RBM training of a DBN on a feature store.

Layer 1 is Gaussian-Bernoulli (or Bernoulli with `visible="bernoulli"`, inputs squashed
to (0, 1)); layers above are Bernoulli-Bernoulli and see the hidden probabilities of
the trained layers below, computed on the fly per mini-batch. Each layer starts from
`--init` (applied with the layer's real inputs for `optimal-data`), trains with CD-k and
the momentum ramp, logs reconstruction error every `report_every` frames and, at the
start and end of each epoch, where its net inputs fall and the train/dev reconstruction
error and free energy on fixed frame samples.

Output folder::

    pretrain.config.json   the resolved config and the store's identity (a re-run must match both)
    .lock                  held by the run writing the folder (its pid)
    rbmN.pt                finished layer N: RBM state, log rows, init info, pipeline (that layer only)
    rbmN.partial.pt        layer N in progress (epoch ends, Ctrl-C/SIGTERM): resumable
    dbn.pt                 the stacked DBN (see dbn.py)
    pretrain.json          config, pipeline, init method, D and sigma per layer, timings, versions
    recon.csv, recon.png   reconstruction error against frames seen
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from asr_init.environment import environment
from asr_init.errors import UserError
from asr_init.features.pipeline import FeaturePipeline, FrameBuffer, sample_frames
from asr_init.features.store import FeatureStore, store_identity
from asr_init.folders import output_folder, reading
from asr_init.io import load_run_checkpoint, write_csv, write_json_atomic
from asr_init.models.dbn import Stack, propagate, save_dbn
from asr_init.models.init import InitContext, init_weight_, input_power
from asr_init.models.nonlinearity import net_input_stats
from asr_init.models.rbm import RBM, BatchPart, CDReport, ContrastiveDivergence, UniformSource
from asr_init.progress import console, counted
from asr_init.records import INTEGER, NUMBER, TEXT, each, record
from asr_init.training.config import PretrainConfig
from asr_init.training.distributed import Dist, distributed
from asr_init.training.interrupts import StopFlag, catch_signals
from asr_init.training.loop import Strategy, Trainer, TrainState, already_finished, check_own_checkpoint, refuse_past
from asr_init.training.precision import matmul_precision

# The fields of a finished run's pretrain.json that a command run again reads (the CLI prints each layer's).
SUMMARY_FIELDS = {"layers": each(record(layer=INTEGER, n_visible=INTEGER, n_hidden=INTEGER, visible=TEXT, init=TEXT,
                                        sigma=NUMBER, D=NUMBER, seconds=NUMBER))}  # fmt: skip
CSV_COLUMNS = ["layer", "epoch", "frames", "kind", "recon_error", "lr", "momentum", "elapsed_s", "frames_per_s",
               "net_mean", "net_std", "nonlinear", "saturated", "train_recon", "dev_recon", "train_free_energy",
               "dev_free_energy", "input_var", "guard", "guard_scale"]  # fmt: skip
# May differ between a run and its resumption (more epochs: --resume goes on with the last layer).
RESUME_NEUTRAL = ("device", "report_every", "cuda_graphs", "epochs", "epochs_gauss")


def pretrain(store_path: Path, config: PretrainConfig, out_dir: Path, resume: bool = False, force: bool = False,
             interrupt_after: int | None = None, strategy: Strategy | None = None) -> dict:  # fmt: skip
    """Pre-train a DBN; returns the pretrain.json summary.

    Under torchrun the processes share every mini-batch (see distributed.py). `strategy`
    (default: Strategy.for_device) says how often the host reads the steps' figures and
    whether steps are CUDA graphs; `interrupt_after` (testing) acts as a signal arriving
    after that many mini-batches."""
    config.validate()
    dist = distributed(config.device)
    strategy = strategy or Strategy.for_device(dist.device, config.cuda_graphs and not dist.is_distributed)
    store = FeatureStore(store_path)
    pipeline = FeaturePipeline.from_store(store, config.splice, squash=config.visible == "bernoulli")
    if not store.split("train"):
        raise UserError(f"store {store.path} has no train utterances")
    settings = {"store": str(store.path.resolve()), "config": config.to_dict(),
                "inputs": {"feature store": store_identity(store.path)}}  # fmt: skip
    with reading(store.path), output_folder(
        out_dir, settings, record="pretrain.config.json", finished=("pretrain.json", "dbn.pt"), force=force,
        inputs={"feature store": store.path}, in_place=True, started=("rbm*.pt",), neutral=RESUME_NEUTRAL,
        summary="pretrain.json", what="a pretrain run", dist=dist, summary_fields=SUMMARY_FIELDS,
    ) as output:  # fmt: skip
        done = output.done
        if done is not None:
            _check_finished(config, done["layers"], out_dir, resume)
        more = done is not None and dist.from_main(lambda: _more_epochs(Path(out_dir), config, pipeline, resume))
        shortfall = " whose last layer trained fewer epochs than asked"
        if already_finished(out_dir, done, more, resume, "pre-training run", shortfall):
            return done
        if dist.is_distributed:
            console.print(f"{dist.world} processes share every batch of {config.batch_size} frames")
        run = _Run.open(config, store, pipeline, Path(out_dir), dist, strategy)
        finished = _finished_layers(run)
        had = {n: (ckpt["position"]["epoch"] - 1, _goes_on(config, n, ckpt, resume)) for n, ckpt in finished.items()}
        console.print(settings_line(config, pipeline, dist.device, had), highlight=False)
        return _train_layers(run, StopFlag(interrupt_after), resume, finished, settings if done is not None else None)


def settings_line(config: PretrainConfig, pipeline: FeaturePipeline, device,
                  had: dict[int, tuple[int, bool]] | None = None) -> str:  # fmt: skip
    """The settings the run uses, in one line (pretrain.config.json holds them all). `had`: the epochs
    each finished layer trained and whether it goes on (--resume, the last layer) or is reloaded as it is."""
    first = "Gaussian" if config.visible == "gauss" else "Bernoulli"
    sizes = config.sizes
    shape = f"{len(sizes)} x {sizes[0]}" if len(set(sizes)) == 1 else " / ".join(map(str, sizes))
    groups: list[list] = []  # [first layer, last layer, visible units, what it does]: layers 2-N share a group
    for layer in range(1, len(sizes) + 1):
        asked = f"{counted(config.layer_epochs(layer), 'epoch')} at lr {config.layer_lr(layer):g}"
        epochs, goes_on = (had or {}).get(layer, (None, False))
        what = asked if epochs is None else f"finished earlier with {counted(epochs, 'epoch')}, " + (
            f"continues to {asked}" if goes_on else "reloaded as it is")  # fmt: skip
        kind = first if layer == 1 else "Bernoulli"
        if layer > 2 and groups[-1][2:] == [kind, what]:
            groups[-1][1] = layer
        else:
            groups.append([layer, layer, kind, what])
    layers = "; ".join(f"layer{f' {a}' if a == b else f's {a}-{b}'} {kind}, {what}" for a, b, kind, what in groups)
    return (f"pretrain: {shape} RBMs on {pipeline.dim} inputs (splice +-{config.splice}), init {config.init}; "
            f"{layers}; CD-{config.cd_k}, batch {config.batch_size}, l2 {config.l2:g}, saturation guard "
            f"{config.sat_guard:g}, {config.precision} on {device}")  # fmt: skip


@dataclass
class _Run:
    """What every layer of one pre-training run shares."""

    config: PretrainConfig
    store: FeatureStore
    pipeline: FeaturePipeline
    out_dir: Path
    dist: Dist
    strategy: Strategy
    buffer: FrameBuffer
    train_sample: torch.Tensor  # fixed frames for the epoch statistics
    dev_sample: torch.Tensor | None
    stack: Stack = field(default_factory=list)  # the finished layers below
    rows: list[dict] = field(default_factory=list)  # log rows of the finished layers
    layer_info: list[dict] = field(default_factory=list)
    segments: list[dict] = field(default_factory=list)  # the process counts of the layers' segments, merged

    @classmethod
    def open(cls, config, store, pipeline, out_dir: Path, dist: Dist, strategy: Strategy) -> _Run:
        device, seed = dist.device, config.seed
        train = sample_frames(store, pipeline, "train", config.stats_frames, seed=seed + 1).to(device)
        dev = None
        if store.split("dev"):
            dev = sample_frames(store, pipeline, "dev", config.stats_frames, seed=seed + 2).to(device)
        buffer = FrameBuffer(store, store.split("train"), pipeline, config.batch_size, config.buffer_frames,
                             device=device, rank=dist.rank, world=dist.world)  # fmt: skip
        return cls(config, store, pipeline, out_dir, dist, strategy, buffer, train, dev)

    def layer_input(self, x: torch.Tensor) -> torch.Tensor:
        """Frames as the next layer sees them: through every finished layer."""
        return propagate(x, self.stack) if self.stack else x


def _layer_checkpoint(path: Path, config: PretrainConfig, pipeline: FeaturePipeline, layer: int) -> dict | None:
    """Layer `layer`'s checkpoint at `path` (finished or partial), None where there is none; one
    that is not this run's (copied from another run, or another layer's) is a UserError."""
    ckpt = load_run_checkpoint(path)
    if ckpt is not None:
        check_own_checkpoint(ckpt, path, config.to_dict(), pipeline.to_dict(), RESUME_NEUTRAL,
                             ("rbm", "position", "rows", "info"), ("rbm",))  # fmt: skip
        recorded = ckpt["info"].get("layer", layer) if isinstance(ckpt["info"], dict) else None
        if recorded != layer:
            raise UserError(
                f"{path} is not a checkpoint of layer {layer} (it holds layer {recorded}); delete it to start that "
                "layer again"
            )
    return ckpt


def _epochs_option(config: PretrainConfig, layer: int) -> str:
    """The option that sets layer `layer`'s epochs: --epochs-gauss (a Gaussian first layer) or --epochs."""
    gauss = layer == 1 and config.visible == "gauss"
    return "--epochs" if not gauss else "--epochs-gauss" + (" (2 x --epochs)" if config.epochs_gauss is None else "")


def _refuse_past(config: PretrainConfig, layer: int, begun: int, out_dir: Path) -> None:
    """refuse_past for layer `layer` of the run in `out_dir`, whose epochs `_epochs_option` sets."""
    refuse_past(f"layer {layer} of {out_dir}", begun, _epochs_option(config, layer), config.layer_epochs(layer))


def _check_finished(config: PretrainConfig, layers: list[dict], out_dir: Path, resume: bool) -> None:
    """A UserError where the finished run in `out_dir` (its summary's `layers`) is not what `config`
    makes: a layer trained more epochs than asked, or (without `resume`, which goes on with the last
    layer alone) a layer below the last trained other epochs than asked, as a run continued with
    --resume and more epochs has."""
    had = {i["layer"]: i["epochs"] for i in layers if isinstance(i.get("epochs"), int)}
    for layer, epochs in had.items():
        _refuse_past(config, layer, epochs, out_dir)
    other = [n for n, e in had.items() if n < len(config.sizes) and e != config.layer_epochs(n)]
    if other and not resume:
        said = [f"layer {n}: {counted(had[n], 'epoch')}, where {_epochs_option(config, n)} gives "
                f"{config.layer_epochs(n)}" for n in other]  # fmt: skip
        give = " ".join(dict.fromkeys(f"{_epochs_option(config, n).split()[0]} {had[n]}" for n in other))
        raise UserError(
            f"{out_dir} holds a finished pre-training run whose layers trained other epochs than these settings "
            f"give ({'; '.join(said)}): it is not the DBN this command makes; give {give} to take it as it is, "
            "or use --force to start over"
        )


def _more_epochs(out_dir: Path, config: PretrainConfig, pipeline: FeaturePipeline, resume: bool) -> bool:
    """Whether the finished last layer trained fewer epochs than `config` asks (--resume adds them;
    without it, a damaged layer checkpoint of a finished run is not this check's to report)."""
    last = len(config.sizes)
    try:
        ckpt = _layer_checkpoint(out_dir / f"rbm{last}.pt", config, pipeline, last)
    except UserError:
        if resume:
            raise
        return False
    return ckpt is not None and ckpt["position"]["epoch"] <= config.layer_epochs(last)


def _finished_layers(run: _Run) -> dict[int, dict]:
    """The checkpoints rbmN.pt of the layers finished earlier, by layer."""
    found = {}
    for layer in range(1, len(run.config.sizes) + 1):
        path = run.out_dir / f"rbm{layer}.pt"
        read = lambda path=path, layer=layer: _layer_checkpoint(path, run.config, run.pipeline, layer)  # noqa: E731
        ckpt = run.dist.from_main(read)
        if ckpt is not None:
            found[layer] = ckpt
    return found


def _goes_on(config: PretrainConfig, layer: int, ckpt: dict, resume: bool) -> bool:
    """Whether finished layer `layer` (its checkpoint `ckpt`) trains on: with `resume`, the last layer
    when it trained fewer epochs than asked."""
    last = layer == len(config.sizes)
    return resume and last and ckpt["position"]["epoch"] <= config.layer_epochs(layer)


def _train_layers(run: _Run, flag: StopFlag, resume: bool, finished: dict[int, dict], record: dict | None) -> dict:
    """Train (or load, when `finished` earlier) every layer in turn; write the DBN and the summary.
    With `resume`, a finished last layer trained for fewer epochs than asked goes on; `record`: the
    settings of a finished run that goes on, which pretrain.config.json takes with its summary."""
    torch.manual_seed(run.config.seed)  # nothing should use it; keeps any library default deterministic
    t_start = time.perf_counter()
    with catch_signals(flag), matmul_precision(run.config.precision):  # each layer's initialisation too
        for layer in range(1, len(run.config.sizes) + 1):
            ckpt = finished.get(layer)
            if ckpt is not None and _goes_on(run.config, layer, ckpt, resume):
                rbm, ckpt = _LayerTrainer(run, layer, resume, ckpt).train(flag)
            elif ckpt is not None:
                _refuse_past(run.config, layer, TrainState.begun(ckpt["position"]), run.out_dir)
                console.print(f"layer {layer}: finished earlier, loaded {run.out_dir / f'rbm{layer}.pt'}")
                rbm = RBM.from_state_dict(ckpt["rbm"], run.dist.device)
            else:
                rbm, ckpt = _LayerTrainer(run, layer, resume).train(flag)
            run.rows.extend(ckpt["rows"])
            run.layer_info.append(ckpt["info"])
            _add_segments(run.segments, layer, ckpt["position"].get("segments", []))
            run.stack.append((rbm.W.detach().clone(), rbm.hb.detach().clone()))
            if run.dist.is_main:
                write_csv(run.out_dir / "recon.csv", run.rows, CSV_COLUMNS)
    return run.dist.from_main(lambda: _write_outputs(run, time.perf_counter() - t_start, record))


def _add_segments(segments: list[dict], layer: int, more: list[dict]) -> None:
    """Add layer `layer`'s segments (TrainState.segments) to the run's, each with its layer; one
    on the count the run already had goes on with it."""
    for segment in more:
        if not segments or segments[-1]["processes"] != segment["processes"]:
            segments.append({"layer": layer, **{key: segment[key] for key in ("processes", "epoch", "batch")}})


def _write_outputs(run: _Run, wall_seconds: float, record: dict | None = None) -> dict:
    """dbn.pt, pretrain.json and recon.png of a finished run (and `record`, the settings of a finished
    run that went on, as pretrain.config.json); returns the summary."""
    config, out_dir = run.config, run.out_dir
    save_dbn(out_dir / "dbn.pt", run.stack, run.pipeline, run.store.phones, run.store.states, config.visible)
    summary = {
        "config": config.to_dict(),
        "store": str(run.store.path.resolve()),
        "pipeline": run.pipeline.to_dict(),
        "input_dim": run.pipeline.dim,
        "init": config.init,
        "layers": run.layer_info,
        "seconds": sum(i["seconds"] for i in run.layer_info),
        "wall_seconds_this_run": wall_seconds,
        "processes": run.dist.world,
        "processes_by_segment": run.segments,
        "versions": environment(),
    }
    from asr_init.plots import plot_recon

    plot_recon(run.rows, out_dir / "recon.png", title=f"RBM pre-training, init {config.init}")
    if record is not None:
        write_json_atomic(out_dir / "pretrain.config.json", record)
    write_json_atomic(out_dir / "pretrain.json", summary)  # last: the run is finished when it exists
    return summary


@dataclass
class _Interval:
    """Sums over the mini-batches since the last interval log row."""

    error: float = 0.0
    frames: int = 0
    saturated: float | None = None  # frame-weighted sum of the batches' saturated shares
    since_seconds: float = 0.0  # TrainState.seconds when the interval began


class _LayerTrainer(Trainer):
    """CD-k training of RBM layer `layer` on the outputs of the finished layers below."""

    bar_field = "err"

    def __init__(self, run: _Run, layer: int, resume: bool, finished: dict | None = None):
        config = self.config = run.config
        self.run_, self.layer, self.dist, self.strategy = run, layer, run.dist, run.strategy
        self.visible = config.visible if layer == 1 else "bernoulli"
        self.train_x = run.layer_input(run.train_sample)
        self.dev_x = run.layer_input(run.dev_sample) if run.dev_sample is not None else None
        self.checkpoint_path = run.out_dir / f"rbm{layer}.partial.pt"
        self.epochs = config.layer_epochs(layer)
        self.bar_frames = self.epochs * min(config.max_frames or run.buffer.num_frames, run.buffer.num_frames)
        self.bar_label = f"layer {layer}/{len(config.sizes)} ({self.visible})"
        self.stage = f"layer {layer}"  # the run's record merges the layers' counts (pretrain.json)
        # The saturation guard watches Bernoulli-Bernoulli layers; a Gaussian layer has Kaldi's guard.
        self.sat_limit = config.sat_guard if self.visible == "bernoulli" else 0.0
        self.warned: set[str] = set()
        self.finished, self.last_error, self.pending = False, "-", []  # pending: (frames, epoch, s) of unread steps
        self.seed = config.seed * 1000 + layer
        partial = self.checkpoint_path
        ckpt = finished or self.dist.from_main(lambda: _layer_checkpoint(partial, config, run.pipeline, layer))
        self._resume(ckpt, resume) if ckpt is not None else self._start()
        self.cd = ContrastiveDivergence(self.rbm, self.uniforms, self.lr, config.batch_size, k=config.cd_k,
                                        l2=config.l2, sat_limit=self.sat_limit, bf16=config.precision == "bf16",
                                        read_every=self.strategy.read_every, capture=self.strategy.capture)  # fmt: skip

    def _start(self) -> None:
        config, layer, device = self.config, self.layer, self.run_.dist.device
        n_in = self.run_.pipeline.dim if layer == 1 else config.sizes[layer - 2]
        n_hidden = config.sizes[layer - 1]
        self.rbm = RBM(n_in, n_hidden, self.visible, device)
        w = torch.empty(n_hidden, n_in)
        power = input_power(self.train_x.cpu())
        bias = torch.zeros(n_hidden)
        ctx = InitContext("sigmoid", power, self.train_x.cpu(), bias)
        res = init_weight_(w, config.init, torch.Generator().manual_seed(self.seed), ctx)
        self.rbm.Wt.copy_(w.T)
        self.rbm.hb.copy_(bias)
        if self.visible == "bernoulli":
            self.rbm.init_visible_bias_from_data(self.train_x.mean(0))
        self.uniforms = UniformSource(self.seed, device)
        self.state, self.interval, self.lr, self.rows = TrainState(), _Interval(), config.layer_lr(layer), []
        self.info = {"layer": layer, "visible": self.visible, "n_visible": n_in, "n_hidden": n_hidden,
                     "init": config.init, "weight_std": res.std, "D": res.spread, "sigma": res.std,
                     "input_power": power, "seconds": 0.0}  # fmt: skip

    def _resume(self, ckpt: dict, resume: bool) -> None:
        if not resume:
            raise UserError(
                f"layer {self.layer} of {self.run_.out_dir} was interrupted ({self.checkpoint_path}); re-run with "
                "--resume to continue it or --force to start over"
            )
        if not isinstance(ckpt.get("uniforms"), dict) or "kind" not in ckpt["uniforms"]:
            raise UserError(f"{self.checkpoint_path} was written by an older asr-init; use --force to start over")
        device = self.run_.dist.device
        self.rbm = RBM.from_state_dict(ckpt["rbm"], device)
        self.uniforms = UniformSource.from_state_dict(ckpt["uniforms"], device)
        self.state = TrainState()
        self.state.load_state_dict(ckpt["position"])
        self.interval = _Interval(**ckpt["interval"])
        self.lr, self.rows, self.info = ckpt["lr"], ckpt["rows"], ckpt["info"]
        s = self.state
        _refuse_past(self.config, self.layer, TrainState.begun(ckpt["position"]), self.run_.out_dir)
        console.print(f"layer {self.layer}: resuming at epoch {s.epoch}, batch {s.batch} ({s.frames:,} frames)")

    def train(self, flag: StopFlag) -> tuple[RBM, dict]:
        """Run the layer to its end; returns (rbm, the finished checkpoint rbmN.pt)."""
        self.run(flag)
        self.finished = True
        ckpt = self.save(self.run_.out_dir / f"rbm{self.layer}.pt")
        if self.dist.is_main:
            self.checkpoint_path.unlink(missing_ok=True)
        s = self.state
        console.print(
            f"layer {self.layer}: done in {s.seconds:.1f} s, final reconstruction error "
            f"{self.rows[-1]['train_recon']:.4f} (train sample), {s.frames / max(s.seconds, 1e-9):,.0f} frames/s"
        )
        return self.rbm, ckpt

    def batches(self, epoch: int, skip: int):
        return self.run_.buffer.batches(seed=self.seed, epoch=epoch, max_frames=self.config.max_frames, skip=skip)

    def step(self, batch) -> int:
        self.momentum = self.config.momentum(self.state.frames)
        part = BatchPart(batch.start, batch.size, self.dist.all_reduce_ if self.dist.is_distributed else None)
        self.cd.step(self.run_.layer_input(batch.inputs), self.momentum, part)
        self.pending.append((self.state.frames, self.state.epoch, self.state.seconds))
        self.interval.frames += batch.size
        return batch.size

    def sync(self) -> None:
        """Read the steps' figures: the error and saturation sums, guard firings, divergence."""
        if not self.pending:
            return
        report: CDReport = self.cd.read()
        pending, self.pending = self.pending, []
        if report.bad_step is not None:
            frames, epoch, _ = pending[report.bad_step]
            raise self._diverged(f"reconstruction error became {report.bad_error}", frames, epoch,
                                 report.lr_before(report.bad_step, self.lr))  # fmt: skip
        for event in report.events:
            self._guard_fired(event.guard, event.scale, event.saturated, event.lr, pending[event.step])
        self.lr = report.lr
        self.interval.error += report.error_sum
        if self.sat_limit > 0:
            self.interval.saturated = (self.interval.saturated or 0.0) + report.saturated_sum

    def _diverged(self, what: str, frames: int, epoch: int, lr: float) -> UserError:
        setting = "--lr-gauss" if self.visible == "gauss" else "--lr"
        kept = self.checkpoint_path if self.checkpoint_path.exists() else None
        kept = kept or (self.run_.out_dir / f"rbm{self.layer - 1}.pt" if self.layer > 1 else None)
        kept = f"The last good checkpoint {kept} is kept." if kept else "No checkpoint was written for it."
        return UserError(
            f"layer {self.layer}: {what} after {frames:,} frames (epoch {epoch}, learning rate {lr:g}); lower "
            f"{setting}. {kept}"
        )

    def after_batch(self) -> None:
        if self.interval.frames >= self.config.report_every:
            self._read()
            self.rows.append(self._interval_row(self.momentum))
            self.last_error = f"{self.rows[-1]['recon_error']:.3f}"
            self.write_logs()

    def start_epoch(self) -> None:
        self.rows.append(self._epoch_stats("epoch_start"))

    def end_epoch(self) -> None:
        if self.interval.frames > 0:
            self.rows.append(self._interval_row(self.config.momentum(self.state.frames)))
        self.rows.append(self._epoch_stats("epoch_end"))

    def bar_value(self) -> str:
        return self.last_error

    def where(self) -> str:
        return f"layer {self.layer}, {super().where()}"

    def write_logs(self) -> None:
        if self.dist.is_main:
            write_csv(self.run_.out_dir / "recon.csv", self.run_.rows + self.rows, CSV_COLUMNS)

    def state_dict(self) -> dict:
        if not self.rbm.is_finite():  # no checkpoint of a diverged layer
            raise self._diverged("weights became NaN/Inf", self.state.frames, self.state.epoch, self.lr)
        self.info["seconds"], self.info["epochs"] = self.state.seconds, self.state.epoch - 1
        run = self.run_
        return {"rbm": self.rbm.state_dict(), "uniforms": self.uniforms.state_dict(),
                "position": self.state.state_dict(), "interval": asdict(self.interval), "lr": self.lr,
                "rows": self.rows, "info": self.info, "config": self.config.to_dict(),
                "pipeline": run.pipeline.to_dict(), "phones": run.store.phones, "states": run.store.states,
                "finished": self.finished}  # fmt: skip

    def _epoch_stats(self, kind: str) -> dict:
        """Where the net inputs fall, train/dev reconstruction error and free energy, and the
        inputs' variance (the error of predicting their mean: a baseline), on the fixed frame samples."""
        rbm, train, s = self.rbm, self.train_x, self.state
        with torch.no_grad():
            net = net_input_stats(torch.addmm(rbm.hb, train, rbm.Wt), "sigmoid", self.layer)
            row = {"layer": self.layer, "epoch": s.epoch, "frames": s.frames, "kind": kind, "elapsed_s": s.seconds,
                   "net_mean": net.mean, "net_std": net.std, "nonlinear": net.nonlinear, "saturated": net.saturated,
                   "input_var": float(train.var(0).sum())}  # fmt: skip
            for split, x in (("train", train), ("dev", self.dev_x)):
                if x is not None:
                    row[f"{split}_recon"] = float((rbm.reconstruct(x) - x).pow(2).sum(1).mean())
                    row[f"{split}_free_energy"] = float(rbm.free_energy(x).mean())
        return row

    def _interval_row(self, momentum: float) -> dict:
        iv, s = self.interval, self.state
        row = {"layer": self.layer, "epoch": s.epoch, "frames": s.frames, "kind": "interval",
               "recon_error": iv.error / iv.frames, "lr": self.lr, "momentum": momentum, "elapsed_s": s.seconds,
               "frames_per_s": iv.frames / max(s.seconds - iv.since_seconds, 1e-9)}  # fmt: skip
        if iv.saturated is not None:  # mean share of saturated hidden probabilities over the interval's batches
            row["saturated"] = iv.saturated / iv.frames
        self.interval = _Interval(since_seconds=s.seconds)
        return row

    def _guard_fired(self, guard: str, scale: float, sat: float | None, lr: float, when: tuple) -> None:
        """Log a guard row for a skipped update (the rate already cut to `lr`; `when` is the
        step's (frames, epoch, seconds)); warn once per guard."""
        frames, epoch, seconds = when
        self.rows.append({"layer": self.layer, "epoch": epoch, "frames": frames, "kind": "guard", "guard": guard,
                          "lr": lr, "guard_scale": scale, "saturated": sat, "elapsed_s": seconds})  # fmt: skip
        if guard in self.warned:
            return
        self.warned.add(guard)
        why = "reconstruction std above twice the data's" if guard == "recon_std" else (
            f"{sat:.0%} of the hidden units saturated (limit --sat-guard)")  # fmt: skip
        console.print(
            f"[yellow]warning: layer {self.layer}: {why} at {frames:,} frames; weights scaled by {scale:.3f}, learning "
            f"rate lowered to {lr:.4g}, momentum reset (further firings are logged as kind=guard rows in recon.csv)"
        )
