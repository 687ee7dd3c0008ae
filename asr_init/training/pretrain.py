"""The `pretrain` stage: layer-wise RBM training of a DBN on a feature store.

Layer 1 is Gaussian-Bernoulli (or Bernoulli with `visible="bernoulli"`, inputs squashed
to (0, 1)); layers above are Bernoulli-Bernoulli and see the hidden probabilities of
the trained layers below, computed on the fly per mini-batch. Each layer starts from
`--init` (applied with the layer's real inputs for `optimal-data`), trains with CD-k and
the momentum ramp, logs reconstruction error every `report_every` frames and, at the
start and end of each epoch, where its net inputs fall and the train/dev reconstruction
error and free energy on fixed frame samples.

Output folder::

    pretrain.config.json   the resolved config (written first; a re-run must match it)
    rbmN.pt                finished layer N: RBM state, log rows, init info, pipeline
    rbmN.partial.pt        layer N in progress (epoch ends, Ctrl-C/SIGTERM): resumable
    dbn.pt                 the stacked DBN (see dbn.py)
    pretrain.json          config, pipeline, init method, D and sigma per layer, timings, and the
                           versions/environment record (environment.py)
    recon.csv, recon.png   reconstruction error against frames seen
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import TextColumn

from asr_init.config import ConfigBase
from asr_init.environment import environment
from asr_init.errors import UserError
from asr_init.features.pipeline import FeaturePipeline, FrameBuffer, sample_frames
from asr_init.features.store import FeatureStore
from asr_init.io import load_checkpoint, save_checkpoint, write_csv, write_json_atomic
from asr_init.models.dbn import Stack, propagate, save_dbn
from asr_init.models.init import InitContext, init_weight_, input_power, parse_init
from asr_init.models.nonlinearity import net_input_stats
from asr_init.models.rbm import RBM, VISIBLE_TYPES, UniformSource
from asr_init.progress import console, progress_bar
from asr_init.training.interrupts import Interrupted, StopFlag, catch_signals
from asr_init.training.runs import prepare_run_dir

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


@dataclass
class PretrainConfig(ConfigBase):
    """Settings of `asr-init pretrain` (see `asr-init pretrain --help`)."""

    init: str = "optimal"
    layers: int = 6
    hidden: int = 1024
    splice: int = 5
    cd_k: int = 1
    batch_size: int = 256
    epochs: int = 2
    epochs_gauss: int | None = None  # None: 2 x epochs
    lr: float = 0.04  # Kaldi's 0.4 saturates 1024-unit layers within ten batches (see rbm.py)
    lr_gauss: float = 0.01
    momentum_start: float = 0.5
    momentum_end: float = 0.9
    momentum_frames: int = 1_000_000
    l2: float = 0.0002
    visible: str = "gauss"
    seed: int = 0
    device: str = "cpu"
    max_frames: int | None = None  # per epoch
    report_every: int = 50_000
    buffer_frames: int = 200_000
    stats_frames: int = 2000
    sat_guard: float = 0.1  # saturation guard of Bernoulli layers: share of saturated hidden probabilities; 0 = off

    def validate(self) -> None:
        parse_init(self.init)
        self._check(self.layers >= 1, "layers", "must be at least 1")
        self._check(self.hidden >= 1, "hidden", "must be at least 1")
        self._check(self.splice >= 0, "splice", "must be >= 0")
        self._check(self.cd_k >= 1, "cd_k", "must be at least 1")
        self._check(self.batch_size >= 1, "batch_size", "must be at least 1")
        self._check(self.epochs >= 1, "epochs", "must be at least 1")
        self._check(self.epochs_gauss is None or self.epochs_gauss >= 1, "epochs_gauss", "must be at least 1")
        self._check(self.lr > 0 and math.isfinite(self.lr), "lr", "must be positive")
        self._check(self.lr_gauss > 0 and math.isfinite(self.lr_gauss), "lr_gauss", "must be positive")
        self._check(0 <= self.momentum_start < 1, "momentum_start", "must be in [0, 1)")
        self._check(0 <= self.momentum_end < 1, "momentum_end", "must be in [0, 1)")
        self._check(0 <= self.l2 < math.inf, "l2", "must be a finite number >= 0")
        self._check(self.visible in VISIBLE_TYPES, "visible", f"must be one of {', '.join(VISIBLE_TYPES)}")
        self._check(
            self.max_frames is None or self.max_frames >= self.batch_size, "max_frames", "must be at least one batch"
        )
        self._check(self.report_every >= 1, "report_every", "must be positive")
        self._check(0 <= self.sat_guard < 1, "sat_guard", "must be in [0, 1) (0 switches the guard off)")
        from asr_init.config import check_device

        check_device(self.device)

    def layer_epochs(self, layer: int) -> int:
        gauss = layer == 1 and self.visible == "gauss"
        return (self.epochs_gauss or 2 * self.epochs) if gauss else self.epochs

    def layer_lr(self, layer: int) -> float:
        return self.lr_gauss if layer == 1 and self.visible == "gauss" else self.lr

    def momentum(self, frames: int) -> float:
        """Linear ramp from momentum_start to momentum_end over momentum_frames frames."""
        if self.momentum_frames <= 0:
            return self.momentum_end
        t = min(1.0, frames / self.momentum_frames)
        return self.momentum_start + t * (self.momentum_end - self.momentum_start)


_RESUME_NEUTRAL = ("device", "report_every")  # may differ between a run and its resumption


def pretrain(
    store_path: Path,
    config: PretrainConfig,
    out_dir: Path,
    resume: bool = False,
    force: bool = False,
    interrupt_after: int | None = None,
) -> dict:
    """Pre-train a DBN; returns the pretrain.json summary.

    `interrupt_after` (testing) acts as a signal arriving after that many mini-batches.
    """
    config.validate()
    store = FeatureStore(store_path)
    out_dir = Path(out_dir)
    pipeline = FeaturePipeline.from_store(store, config.splice, squash=config.visible == "bernoulli")
    if not store.split("train"):
        raise UserError(f"store {store.path} has no train utterances")
    settings = {"store": str(store.path.resolve()), "config": config.to_dict()}
    done = prepare_run_dir(
        out_dir,
        "pretrain",
        settings,
        force,
        finished=("dbn.pt",),
        neutral=_RESUME_NEUTRAL,
        inputs={"feature store": store.path},
    )
    if done is not None:
        console.print(f"[green]{out_dir} already holds a finished pre-training run with these settings; nothing to do")
        return done
    console.print(f"pretrain {store.path} -> {out_dir}: {config.to_dict()}", highlight=False)
    device = torch.device(config.device)
    torch.manual_seed(config.seed)  # nothing should use it; keeps any library default deterministic

    train_sample = sample_frames(store, pipeline, "train", config.stats_frames, seed=config.seed + 1).to(device)
    dev_sample = (
        sample_frames(store, pipeline, "dev", config.stats_frames, seed=config.seed + 2).to(device)
        if store.split("dev")
        else None
    )
    buffer = FrameBuffer(store, store.split("train"), pipeline, config.batch_size, config.buffer_frames, device=device)

    stack: Stack = []
    all_rows: list[dict] = []
    layer_info: list[dict] = []
    flag = StopFlag(interrupt_after)
    t_start = time.perf_counter()
    with catch_signals(flag):
        for layer in range(1, config.layers + 1):
            final = out_dir / f"rbm{layer}.pt"
            if final.exists():
                ckpt = load_checkpoint(final)
                rbm = RBM.from_state_dict(ckpt["rbm"], device)
                console.print(f"layer {layer}: finished earlier, loaded {final}")
            else:
                rbm, ckpt = _train_layer(
                    layer,
                    stack,
                    store,
                    pipeline,
                    buffer,
                    train_sample,
                    dev_sample,
                    config,
                    out_dir,
                    device,
                    resume,
                    flag,
                    all_rows,
                )
            all_rows.extend(ckpt["rows"])
            layer_info.append(ckpt["info"])
            stack.append((rbm.W.detach().clone(), rbm.hb.detach().clone()))
            write_csv(out_dir / "recon.csv", all_rows, CSV_COLUMNS)

    save_dbn(out_dir / "dbn.pt", stack, pipeline, store.phones, store.states, config.visible)
    summary = {
        "config": config.to_dict(),
        "store": str(store.path.resolve()),
        "pipeline": pipeline.to_dict(),
        "input_dim": pipeline.dim,
        "init": config.init,
        "layers": layer_info,
        "seconds": sum(i["seconds"] for i in layer_info),
        "wall_seconds_this_run": time.perf_counter() - t_start,
        "versions": environment(),
    }
    write_json_atomic(out_dir / "pretrain.json", summary)
    from asr_init.plots import plot_recon

    plot_recon(all_rows, out_dir / "recon.png", title=f"RBM pre-training, init {config.init}")
    return summary


def _layer_input(x: torch.Tensor, stack: Stack) -> torch.Tensor:
    return propagate(x, stack) if stack else x


def _epoch_stats(
    rbm: RBM,
    train: torch.Tensor,
    dev: torch.Tensor | None,
    layer: int,
    epoch: int,
    frames: int,
    kind: str,
    elapsed: float,
) -> dict:
    with torch.no_grad():
        net = torch.addmm(rbm.hb, train, rbm.Wt)
        s = net_input_stats(net, "sigmoid", layer)
        row = {
            "layer": layer,
            "epoch": epoch,
            "frames": frames,
            "kind": kind,
            "elapsed_s": elapsed,
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


def _train_layer(
    layer, stack, store, pipeline, buffer, train_sample, dev_sample, config, out_dir, device, resume, flag, prior_rows
):
    """Train one RBM layer (or resume it); returns (rbm, finished checkpoint dict)."""
    n_in = pipeline.dim if layer == 1 else config.hidden
    visible = config.visible if layer == 1 else "bernoulli"
    train_x = _layer_input(train_sample, stack)
    dev_x = _layer_input(dev_sample, stack) if dev_sample is not None else None
    partial = out_dir / f"rbm{layer}.partial.pt"
    epochs = config.layer_epochs(layer)
    per_epoch = buffer.num_frames if config.max_frames is None else min(config.max_frames, buffer.num_frames)

    if partial.exists():
        if not resume:
            raise UserError(
                f"layer {layer} of {out_dir} was interrupted ({partial}); re-run with --resume to continue it or --force to start over"
            )
        state = load_checkpoint(partial)
        rbm = RBM.from_state_dict(state["rbm"], device)
        uniforms = UniformSource(0, device)
        uniforms.set_state(state["uniforms"])
        pos = state["position"]
        rows, info = state["rows"], state["info"]
        console.print(
            f"layer {layer}: resuming at epoch {pos['epoch']}, batch {pos['batch']} ({pos['frames']:,} frames)"
        )
    else:
        rbm = RBM(n_in, config.hidden, visible, device)
        w = torch.empty(config.hidden, n_in)
        gen = torch.Generator().manual_seed(config.seed * 1000 + layer)
        power = input_power(train_x.cpu())
        res = init_weight_(w, config.init, gen, InitContext("sigmoid", power))
        rbm.Wt.copy_(w.T)
        if visible == "bernoulli":
            rbm.init_visible_bias_from_data(train_x.mean(0))
        uniforms = UniformSource(config.seed * 1000 + layer, device)
        pos = {
            "epoch": 1,
            "batch": 0,
            "frames": 0,
            "lr": config.layer_lr(layer),
            "seconds": 0.0,
            "interval_error": 0.0,
            "interval_frames": 0,
            "interval_seconds": 0.0,
        }
        info = {
            "layer": layer,
            "visible": visible,
            "n_visible": n_in,
            "n_hidden": config.hidden,
            "init": config.init,
            "weight_std": res.std,
            "D": res.spread,
            "sigma": res.std,
            "input_power": power,
            "seconds": 0.0,
        }
        rows = []

    def checkpoint(path: Path, finished: bool) -> dict:
        info["seconds"] = pos["seconds"]
        ckpt = {
            "rbm": rbm.state_dict(),
            "uniforms": uniforms.get_state(),
            "position": dict(pos),
            "rows": rows,
            "info": info,
            "config": config.to_dict(),
            "pipeline": pipeline.to_dict(),
            "phones": store.phones,
            "states": store.states,
            "stack_below": [(w.cpu(), b.cpu()) for w, b in stack],
            "finished": finished,
        }
        save_checkpoint(ckpt, path)
        return ckpt

    total = epochs * per_epoch
    warned: set[str] = set()
    # The saturation guard watches Bernoulli-Bernoulli layers; a Gaussian layer has Kaldi's guard.
    sat_limit = config.sat_guard if visible == "bernoulli" else 0.0
    with progress_bar(TextColumn("err {task.fields[err]}")) as bar:
        task = bar.add_task(
            f"layer {layer}/{config.layers} ({visible})", total=total, unit="frames", err="-", completed=pos["frames"]
        )
        while pos["epoch"] <= epochs:
            epoch = pos["epoch"]
            if pos["batch"] == 0:
                rows.append(
                    _epoch_stats(rbm, train_x, dev_x, layer, epoch, pos["frames"], "epoch_start", pos["seconds"])
                )
            t_last = time.perf_counter()
            for x, _ in buffer.batches(
                seed=config.seed * 1000 + layer, epoch=epoch, max_frames=config.max_frames, skip=pos["batch"]
            ):
                v = _layer_input(x, stack)
                momentum = config.momentum(pos["frames"])
                result = rbm.cd_step(v, pos["lr"], momentum, config.l2, uniforms, k=config.cd_k, sat_limit=sat_limit)
                err = float(result.error_sum)
                now = time.perf_counter()
                pos["seconds"] += now - t_last
                pos["interval_seconds"] += now - t_last
                t_last = now
                if not math.isfinite(err) or not rbm.is_finite():
                    setting = "--lr-gauss" if visible == "gauss" else "--lr"
                    what = f"reconstruction error became {err}" if not math.isfinite(err) else "weights became NaN/Inf"
                    kept = partial if partial.exists() else out_dir / f"rbm{layer - 1}.pt" if layer > 1 else None
                    raise UserError(
                        f"layer {layer}: {what} after {pos['frames']:,} frames (epoch {epoch}, learning rate "
                        f"{pos['lr']:g}); lower {setting}. "
                        + (f"The last good checkpoint {kept} is kept." if kept else "No checkpoint was written for it.")
                    )
                if result.skipped:
                    _guard_fired(result, layer, epoch, pos, rows, warned)
                n = len(v)
                pos["frames"] += n
                pos["batch"] += 1
                pos["interval_error"] += err
                if result.saturated is not None:
                    pos["interval_saturated"] = pos.get("interval_saturated", 0.0) + float(result.saturated) * n
                pos["interval_frames"] += n
                if pos["interval_frames"] >= config.report_every:
                    rows.append(_interval_row(layer, epoch, pos, momentum))
                    bar.update(task, err=f"{rows[-1]['recon_error']:.3f}")
                    write_csv(out_dir / "recon.csv", prior_rows + rows, CSV_COLUMNS)
                bar.advance(task, n)
                flag.tick()
                if flag.signal is not None:
                    checkpoint(partial, finished=False)
                    write_csv(out_dir / "recon.csv", prior_rows + rows, CSV_COLUMNS)
                    raise Interrupted(
                        f"stopped by signal {flag.signal} in layer {layer} after {pos['frames']:,} frames; "
                        f"state saved to {partial}; continue with --resume"
                    )
            if pos["interval_frames"] > 0:
                rows.append(_interval_row(layer, epoch, pos, config.momentum(pos["frames"])))
            rows.append(_epoch_stats(rbm, train_x, dev_x, layer, epoch, pos["frames"], "epoch_end", pos["seconds"]))
            pos["epoch"] += 1
            pos["batch"] = 0
            checkpoint(partial, finished=False)  # an epoch end is a resumable point after a crash
    ckpt = checkpoint(out_dir / f"rbm{layer}.pt", finished=True)
    partial.unlink(missing_ok=True)
    console.print(
        f"layer {layer}: done in {pos['seconds']:.1f} s, final reconstruction error "
        f"{rows[-1]['train_recon']:.4f} (train sample), {pos['frames'] / max(pos['seconds'], 1e-9):,.0f} frames/s"
    )
    return rbm, ckpt


# What a guard does to the learning rate: Kaldi lowers it by 0.9 after a rescale of a
# Gaussian layer; a saturated layer needs a real cut (0.4 -> 0.05 takes three firings).
_GUARD_LR_FACTOR = {"recon_std": 0.9, "saturation": 0.5}


def _guard_fired(result, layer: int, epoch: int, pos: dict, rows: list[dict], warned: set[str]) -> None:
    """Lower the learning rate after a guard skipped an update; log a guard row, warn once per guard."""
    pos["lr"] *= _GUARD_LR_FACTOR[result.guard]
    sat = None if result.saturated is None else float(result.saturated)
    rows.append(
        {
            "layer": layer,
            "epoch": epoch,
            "frames": pos["frames"],
            "kind": "guard",
            "guard": result.guard,
            "lr": pos["lr"],
            "guard_scale": result.guard_scale,
            "saturated": sat,
            "elapsed_s": pos["seconds"],
        }
    )
    if result.guard in warned:
        return
    warned.add(result.guard)
    if result.guard == "recon_std":
        why = "reconstruction std above twice the data's"
    else:
        why = f"{sat:.0%} of the hidden units saturated (limit --sat-guard)"
    console.print(
        f"[yellow]warning: layer {layer}: {why} at {pos['frames']:,} frames; weights scaled by "
        f"{result.guard_scale:.3f}, learning rate lowered to {pos['lr']:.4g}, momentum reset "
        f"(further firings are logged as kind=guard rows in recon.csv)"
    )


def _interval_row(layer: int, epoch: int, pos: dict, momentum: float) -> dict:
    row = {
        "layer": layer,
        "epoch": epoch,
        "frames": pos["frames"],
        "kind": "interval",
        "recon_error": pos["interval_error"] / pos["interval_frames"],
        "lr": pos["lr"],
        "momentum": momentum,
        "elapsed_s": pos["seconds"],
        "frames_per_s": pos["interval_frames"] / max(pos["interval_seconds"], 1e-9),
    }
    if "interval_saturated" in pos:  # mean share of saturated hidden probabilities over the interval's batches
        row["saturated"] = pos.pop("interval_saturated") / pos["interval_frames"]
    pos["interval_error"], pos["interval_frames"], pos["interval_seconds"] = 0.0, 0, 0.0
    return row
