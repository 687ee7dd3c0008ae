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
    pretrain.json          config, pipeline, init method, D and sigma per layer, timings, and the
                           versions/environment record (environment.py)
    recon.csv, recon.png   reconstruction error against frames seen
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from asr_init.environment import environment
from asr_init.errors import UserError
from asr_init.features.pipeline import FeaturePipeline, FrameBuffer, sample_frames
from asr_init.features.store import FeatureStore, store_identity
from asr_init.io import load_run_checkpoint, write_csv, write_json_atomic
from asr_init.models.cd_device import CDReport, DeviceCD
from asr_init.models.dbn import Stack, propagate, save_dbn
from asr_init.models.init import InitContext, init_weight_, input_power
from asr_init.models.nonlinearity import net_input_stats
from asr_init.models.rbm import GUARD_LR_FACTOR, RBM, BatchPart, UniformSource
from asr_init.progress import console
from asr_init.training import loop
from asr_init.training.config import PretrainConfig
from asr_init.training.distributed import Dist, distributed
from asr_init.training.interrupts import StopFlag, catch_signals
from asr_init.training.loop import Step, Trainer, TrainState
from asr_init.training.precision import matmul_precision
from asr_init.training.runs import run_folder

CSV_COLUMNS = [
    "layer",
    "epoch",
    "frames",
    "kind",
    "recon_error",
    "lr",
    "momentum",
    "elapsed_s",
    "frames_per_s",
    "net_mean",
    "net_std",
    "nonlinear",
    "saturated",
    "train_recon",
    "dev_recon",
    "train_free_energy",
    "dev_free_energy",
    "input_var",
    "guard",
    "guard_scale",
]


_RESUME_NEUTRAL = ("device", "report_every", "cuda_graphs")  # may differ between a run and its resumption


def decides_on_device(device: torch.device, dist: Dist) -> bool:
    """Whether the CD steps keep their guards' decisions and sums on the device (DeviceCD),
    read back at report intervals (see loop.decides_on_device); on several GPUs too, where
    the statistics are summed by a collective on the device."""
    return loop.decides_on_device(device)


def pretrain(
    store_path: Path,
    config: PretrainConfig,
    out_dir: Path,
    resume: bool = False,
    force: bool = False,
    interrupt_after: int | None = None,
) -> dict:
    """Pre-train a DBN; returns the pretrain.json summary.

    Under torchrun, the processes share every mini-batch (see distributed.py).
    `interrupt_after` (testing) acts as a signal arriving after that many mini-batches.
    """
    config.validate()
    return _pretrain(store_path, config, Path(out_dir), resume, force, interrupt_after, distributed(config.device))


def _pretrain(store_path: Path, config: PretrainConfig, out_dir: Path, resume, force, interrupt_after, dist) -> dict:
    store = FeatureStore(store_path)
    pipeline = FeaturePipeline.from_store(store, config.splice, squash=config.visible == "bernoulli")
    if not store.split("train"):
        raise UserError(f"store {store.path} has no train utterances")
    settings = {
        "store": str(store.path.resolve()),
        "config": config.to_dict(),
        "inputs": {"feature store": store_identity(store.path)},
    }
    with run_folder(
        out_dir,
        "pretrain",
        settings,
        force,
        finished=("dbn.pt",),
        started=("rbm*.pt",),
        neutral=_RESUME_NEUTRAL,
        inputs={"feature store": store.path},
        dist=dist,
    ) as done:
        if done is not None:
            console.print(
                f"[green]{out_dir} already holds a finished pre-training run with these settings; nothing to do"
            )
            return done
        console.print(f"pretrain {store.path} -> {out_dir}: {config.to_dict()}", highlight=False)
        if dist.is_distributed:
            console.print(f"{dist.world} processes share every batch of {config.batch_size} frames")
        return _train_layers(config, store, pipeline, out_dir, StopFlag(interrupt_after), resume, dist)


def _train_layers(config, store, pipeline, out_dir: Path, flag: StopFlag, resume: bool, dist: Dist) -> dict:
    """Train (or load, when finished earlier) every layer in turn; write the DBN and the summary."""
    torch.manual_seed(config.seed)  # nothing should use it; keeps any library default deterministic
    run = _Run.open(config, store, pipeline, out_dir, dist)
    t_start = time.perf_counter()
    with catch_signals(flag):
        for layer in range(1, config.layers + 1):
            rbm, ckpt = _finished_layer(run, layer) or _LayerTrainer(run, layer, resume).train(flag)
            run.rows.extend(ckpt["rows"])
            run.layer_info.append(ckpt["info"])
            run.stack.append((rbm.W.detach().clone(), rbm.hb.detach().clone()))
            if dist.is_main:
                write_csv(out_dir / "recon.csv", run.rows, CSV_COLUMNS)
    return dist.from_main(lambda: _write_outputs(run, time.perf_counter() - t_start))


@dataclass
class _Run:
    """What every layer of one pre-training run shares."""

    config: PretrainConfig
    store: FeatureStore
    pipeline: FeaturePipeline
    out_dir: Path
    dist: Dist
    device: torch.device
    buffer: FrameBuffer
    train_sample: torch.Tensor  # fixed frames for the epoch statistics
    dev_sample: torch.Tensor | None
    stack: Stack = field(default_factory=list)  # the finished layers below
    rows: list[dict] = field(default_factory=list)  # log rows of the finished layers
    layer_info: list[dict] = field(default_factory=list)

    @classmethod
    def open(
        cls, config: PretrainConfig, store: FeatureStore, pipeline: FeaturePipeline, out_dir: Path, dist: Dist
    ) -> _Run:
        device = dist.device
        train = sample_frames(store, pipeline, "train", config.stats_frames, seed=config.seed + 1).to(device)
        dev = None
        if store.split("dev"):
            dev = sample_frames(store, pipeline, "dev", config.stats_frames, seed=config.seed + 2).to(device)
        buffer = FrameBuffer(
            store,
            store.split("train"),
            pipeline,
            config.batch_size,
            config.buffer_frames,
            device=device,
            rank=dist.rank,
            world=dist.world,
        )
        return cls(config, store, pipeline, out_dir, dist, device, buffer, train, dev)

    def layer_input(self, x: torch.Tensor) -> torch.Tensor:
        """Frames as the next layer sees them: through every finished layer."""
        return propagate(x, self.stack) if self.stack else x


def _finished_layer(run: _Run, layer: int) -> tuple[RBM, dict] | None:
    path = run.out_dir / f"rbm{layer}.pt"
    ckpt = run.dist.from_main(lambda: load_run_checkpoint(path))
    if ckpt is None:
        return None
    console.print(f"layer {layer}: finished earlier, loaded {path}")
    return RBM.from_state_dict(ckpt["rbm"], run.device), ckpt


def _write_outputs(run: _Run, wall_seconds: float) -> dict:
    """dbn.pt, pretrain.json and recon.png of a finished run; returns the summary."""
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
        "versions": environment(),
    }
    write_json_atomic(out_dir / "pretrain.json", summary)
    from asr_init.plots import plot_recon

    plot_recon(run.rows, out_dir / "recon.png", title=f"RBM pre-training, init {config.init}")
    return summary


@dataclass
class _Interval:
    """Sums over the mini-batches since the last interval log row."""

    error: float = 0.0
    frames: int = 0
    saturated: float | None = None  # frame-weighted sum of the batches' saturated shares
    since_seconds: float = 0.0  # TrainState.seconds when the interval began

    def state_dict(self) -> dict:
        return asdict(self)


class _LayerTrainer(Trainer):
    """CD-k training of RBM layer `layer` on the outputs of the finished layers below."""

    bar_field = "err"

    def __init__(self, run: _Run, layer: int, resume: bool):
        config = run.config
        self.run_, self.layer, self.config, self.dist = run, layer, config, run.dist
        self.visible = config.visible if layer == 1 else "bernoulli"
        self.train_x = run.layer_input(run.train_sample)
        self.dev_x = run.layer_input(run.dev_sample) if run.dev_sample is not None else None
        self.checkpoint_path = run.out_dir / f"rbm{layer}.partial.pt"
        self.epochs = config.layer_epochs(layer)
        per_epoch = (
            run.buffer.num_frames if config.max_frames is None else min(config.max_frames, run.buffer.num_frames)
        )
        self.total_frames = self.epochs * per_epoch
        self.bar_label = f"layer {layer}/{config.layers} ({self.visible})"
        # The saturation guard watches Bernoulli-Bernoulli layers; a Gaussian layer has Kaldi's guard.
        self.sat_limit = config.sat_guard if self.visible == "bernoulli" else 0.0
        self.warned: set[str] = set()
        self.finished = False
        self.last_error = "-"
        partial = self.checkpoint_path
        ckpt = self.dist.from_main(lambda: load_run_checkpoint(partial))
        if ckpt is not None:
            self._resume(ckpt, resume)
        else:
            self._start()

    # --- start or resume -----------------------------------------------------------

    def _start(self) -> None:
        config, layer = self.config, self.layer
        n_in = self.run_.pipeline.dim if layer == 1 else config.hidden
        self.rbm = RBM(n_in, config.hidden, self.visible, self.run_.device)
        w = torch.empty(config.hidden, n_in)
        power = input_power(self.train_x.cpu())
        res = init_weight_(w, config.init, torch.Generator().manual_seed(self._seed), InitContext("sigmoid", power))
        self.rbm.Wt.copy_(w.T)
        if self.visible == "bernoulli":
            self.rbm.init_visible_bias_from_data(self.train_x.mean(0))
        self.uniforms = UniformSource(self._seed, self.run_.device)
        self.state, self.interval, self.lr, self.rows = TrainState(), _Interval(), config.layer_lr(layer), []
        self._open_device_cd()
        self.info = {
            "layer": layer,
            "visible": self.visible,
            "n_visible": n_in,
            "n_hidden": config.hidden,
            "init": config.init,
            "weight_std": res.std,
            "D": res.spread,
            "sigma": res.std,
            "input_power": power,
            "seconds": 0.0,
        }

    def _resume(self, ckpt: dict, resume: bool) -> None:
        partial = self.checkpoint_path
        if not resume:
            raise UserError(
                f"layer {self.layer} of {self.run_.out_dir} was interrupted ({partial}); re-run with --resume "
                "to continue it or --force to start over"
            )
        if "lr" not in ckpt:
            raise UserError(
                f"{partial} was written by an older asr-init and cannot be resumed; use --force to start over"
            )
        self.rbm = RBM.from_state_dict(ckpt["rbm"], self.run_.device)
        self.uniforms = UniformSource(0, self.run_.device)
        self.uniforms.load_state_dict(ckpt["uniforms"])
        self.state = TrainState()
        self.state.load_state_dict(ckpt["position"])
        self.interval = _Interval(**ckpt["interval"])
        self.lr, self.rows, self.info = ckpt["lr"], ckpt["rows"], ckpt["info"]
        self._open_device_cd()
        s = self.state
        console.print(f"layer {self.layer}: resuming at epoch {s.epoch}, batch {s.batch} ({s.frames:,} frames)")

    def _open_device_cd(self) -> None:
        """Steps decided on the device (see `decides_on_device`), or None: `cd_step` on the host."""
        self.device_cd, self.pending = None, []  # pending: (frames, epoch, seconds) of each step since the last read
        bf16 = self.config.precision == "bf16"  # built on the device-decided step only (on any device)
        if decides_on_device(self.run_.device, self.dist) or bf16:
            config = self.config
            self.device_cd = DeviceCD(
                self.rbm,
                self.uniforms,
                self.lr,
                config.batch_size,
                k=config.cd_k,
                l2=config.l2,
                sat_limit=self.sat_limit,
                graphs=config.cuda_graphs,
                bf16=bf16,
                # Room for a firing at every step between two reads: a read comes after
                # report_every frames, and only the last batch of a buffer is short.
                max_events=2 * -(-config.report_every // config.batch_size) + 8,
            )

    @property
    def _seed(self) -> int:
        return self.config.seed * 1000 + self.layer

    # --- the stage's part of the loop ----------------------------------------------

    def train(self, flag: StopFlag) -> tuple[RBM, dict]:
        """Run the layer to its end; returns (rbm, the finished checkpoint rbmN.pt)."""
        with matmul_precision(self.config.precision):
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
        config = self.config
        return self.run_.buffer.batches(seed=self._seed, epoch=epoch, max_frames=config.max_frames, skip=skip)

    def step(self, batch) -> Step:
        config = self.config
        v = self.run_.layer_input(batch.inputs)
        self.momentum = config.momentum(self.state.frames)
        part = BatchPart(batch.start, batch.size, self.dist.all_reduce_) if self.dist.is_distributed else None
        if self.device_cd is not None:
            self.device_cd.step(v, self.momentum, part=part)
            return Step(batch.size, None)
        result = self.rbm.cd_step(
            v, self.lr, self.momentum, config.l2, self.uniforms, k=config.cd_k, sat_limit=self.sat_limit, part=part
        )
        err = float(result.error_sum)  # of the global batch
        return Step(batch.size, err if self.rbm.is_finite() else math.nan, (result, err))

    def diverged(self, step: Step) -> UserError:
        return self._divergence(step.extra[1], self.state.frames, self.state.epoch)

    def _divergence(self, err: float, frames: int, epoch: int) -> UserError:
        setting = "--lr-gauss" if self.visible == "gauss" else "--lr"
        what = f"reconstruction error became {err}" if not math.isfinite(err) else "weights became NaN/Inf"
        out_dir, layer = self.run_.out_dir, self.layer
        kept = self.checkpoint_path if self.checkpoint_path.exists() else None
        if kept is None and layer > 1:
            kept = out_dir / f"rbm{layer - 1}.pt"
        return UserError(
            f"layer {layer}: {what} after {frames:,} frames (epoch {epoch}, learning rate "
            f"{self.lr:g}); lower {setting}. "
            + (f"The last good checkpoint {kept} is kept." if kept else "No checkpoint was written for it.")
        )

    def record(self, step: Step) -> None:
        if self.device_cd is not None:
            self.pending.append((self.state.frames, self.state.epoch, self.state.seconds))
            self.interval.frames += step.frames
            return
        result, err = step.extra
        if result.skipped:
            s, sat = self.state, None if result.saturated is None else float(result.saturated)
            self.lr *= GUARD_LR_FACTOR[result.guard]
            self._guard_fired(result.guard, result.guard_scale, sat, self.lr, (s.frames, s.epoch, s.seconds))
        self.interval.error += err
        if result.saturated is not None:
            self.interval.saturated = (self.interval.saturated or 0.0) + float(result.saturated) * step.frames
        self.interval.frames += step.frames

    def sync(self) -> None:
        """Steps decided on the device: read their sums and guard firings, raise if one diverged."""
        if self.device_cd is None or not self.pending:
            return
        report: CDReport = self.device_cd.read()
        pending, self.pending = self.pending, []
        if report.bad_step is not None:
            frames, epoch, _ = pending[report.bad_step]
            self.lr = report.lr_before(report.bad_step, self.lr)  # the rate the step trained with
            raise self._divergence(report.bad_error, frames, epoch)  # as the host words it
        for event in report.events:
            self._guard_fired(event.guard, event.scale, event.saturated, event.lr, pending[event.step])
        if report.lost_events:
            console.print(
                f"[yellow]warning: layer {self.layer}: {report.lost_events} guard firings before "
                f"{pending[-1][0]:,} frames are not in recon.csv (more than its log holds between two reads)"
            )
        self.lr = report.lr
        self.interval.error += report.error_sum
        if self.sat_limit > 0:
            self.interval.saturated = (self.interval.saturated or 0.0) + report.saturated_sum

    def after_batch(self) -> None:
        if self.interval.frames >= self.config.report_every:
            self.sync()
            self.rows.append(self._interval_row(self.momentum))
            self.last_error = f"{self.rows[-1]['recon_error']:.3f}"
            self._write_log()

    def start_epoch(self) -> None:
        self.rows.append(self._epoch_stats("epoch_start"))

    def end_epoch(self) -> None:
        self.sync()
        if self.interval.frames > 0:
            self.rows.append(self._interval_row(self.config.momentum(self.state.frames)))
        self.rows.append(self._epoch_stats("epoch_end"))

    def bar_total(self) -> int:
        return self.total_frames

    def bar_value(self) -> str:
        return self.last_error

    def where(self) -> str:
        return f"layer {self.layer}"

    def write_logs(self) -> None:
        self._write_log()  # an epoch end is a resumable point after a crash

    def state_dict(self) -> dict:
        self.info["seconds"] = self.state.seconds
        run = self.run_
        return {
            "rbm": self.rbm.state_dict(),
            "uniforms": self.uniforms.state_dict(),
            "position": self.state.state_dict(),
            "interval": self.interval.state_dict(),
            "lr": self.lr,
            "rows": self.rows,
            "info": self.info,
            "config": self.config.to_dict(),
            "pipeline": run.pipeline.to_dict(),
            "phones": run.store.phones,
            "states": run.store.states,
            "finished": self.finished,
        }

    # --- logs ------------------------------------------------------------------------

    def _write_log(self) -> None:
        if self.dist.is_main:
            write_csv(self.run_.out_dir / "recon.csv", self.run_.rows + self.rows, CSV_COLUMNS)

    def _epoch_stats(self, kind: str) -> dict:
        """Where the net inputs fall, and train/dev reconstruction error and free energy, on
        the fixed frame samples."""
        rbm, train, dev = self.rbm, self.train_x, self.dev_x
        with torch.no_grad():
            s = net_input_stats(torch.addmm(rbm.hb, train, rbm.Wt), "sigmoid", self.layer)
            row = {
                "layer": self.layer,
                "epoch": self.state.epoch,
                "frames": self.state.frames,
                "kind": kind,
                "elapsed_s": self.state.seconds,
                "net_mean": s.mean,
                "net_std": s.std,
                "nonlinear": s.nonlinear,
                "saturated": s.saturated,
                "train_recon": float((rbm.reconstruct(train) - train).pow(2).sum(1).mean()),
                "input_var": float(train.var(0).sum()),  # the error of predicting the mean: a baseline
                "train_free_energy": float(rbm.free_energy(train).mean()),
            }
            if dev is not None:
                row["dev_recon"] = float((rbm.reconstruct(dev) - dev).pow(2).sum(1).mean())
                row["dev_free_energy"] = float(rbm.free_energy(dev).mean())
        return row

    def _interval_row(self, momentum: float) -> dict:
        iv, s = self.interval, self.state
        row = {
            "layer": self.layer,
            "epoch": s.epoch,
            "frames": s.frames,
            "kind": "interval",
            "recon_error": iv.error / iv.frames,
            "lr": self.lr,
            "momentum": momentum,
            "elapsed_s": s.seconds,
            "frames_per_s": iv.frames / max(s.seconds - iv.since_seconds, 1e-9),
        }
        if iv.saturated is not None:  # mean share of saturated hidden probabilities over the interval's batches
            row["saturated"] = iv.saturated / iv.frames
        self.interval = _Interval(since_seconds=s.seconds)
        return row

    def _guard_fired(self, guard: str, scale: float, sat: float | None, lr: float, when: tuple) -> None:
        """Log a guard row for a skipped update (the rate already cut to `lr`; `when` is the
        step's (frames, epoch, seconds)); warn once per guard."""
        frames, epoch, seconds = when
        self.rows.append(
            {
                "layer": self.layer,
                "epoch": epoch,
                "frames": frames,
                "kind": "guard",
                "guard": guard,
                "lr": lr,
                "guard_scale": scale,
                "saturated": sat,
                "elapsed_s": seconds,
            }
        )
        if guard in self.warned:
            return
        self.warned.add(guard)
        if guard == "recon_std":
            why = "reconstruction std above twice the data's"
        else:
            why = f"{sat:.0%} of the hidden units saturated (limit --sat-guard)"
        console.print(
            f"[yellow]warning: layer {self.layer}: {why} at {frames:,} frames; weights scaled by "
            f"{scale:.3f}, learning rate lowered to {lr:.4g}, momentum reset "
            f"(further firings are logged as kind=guard rows in recon.csv)"
        )
