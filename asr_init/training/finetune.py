"""The `finetune` stage: DNN frame classification with cross-entropy and "newbob".

The network is the DBN's hidden layers (or `--init`-initialised layers of the same
shape, or the lower K layers of another model) plus a new softmax layer over HMM states
or phones. Training is frame-shuffled mini-batch SGD with optional momentum, L2,
dropout, max-norm and gradient clipping. As in Kaldi nnet1, the learning rate multiplies
the gradient summed over the mini-batch (lr 0.008 at batch 256 = 2.05 x the mean gradient). The learning-rate schedule is Kaldi nnet1's
newbob (steps/nnet/train_scheduler.sh), on dev cross-entropy:

- before training, the dev cross-entropy is measured;
- after each epoch, if dev cross-entropy improved the epoch is accepted, else it is
  rejected and the weights roll back to the best ones;
- rel = (best_before - best_after) / best_before; once halving is on and rel < 0.001,
  training stops; when rel < 0.01, halving turns on; while it is on, lr is halved after
  every epoch.

Output folder: model.pt (best weights, config, pipeline, labels, priors), priors.txt,
finetune.json, train.csv, train.png, and checkpoint.pt while training (resumable).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.progress import TextColumn

from asr_init.config import ConfigBase
from asr_init.environment import environment
from asr_init.errors import UserError
from asr_init.features.pipeline import FeaturePipeline, FrameBuffer, sample_frames
from asr_init.features.store import FeatureStore
from asr_init.io import load_checkpoint, save_checkpoint, write_csv, write_json_atomic
from asr_init.models.dbn import load_dbn, load_stack
from asr_init.models.dnn import ACTIVATIONS, DNN, save_model
from asr_init.models.init import InitContext, init_weight_, input_power, parse_init
from asr_init.progress import console, progress_bar
from asr_init.training.interrupts import Interrupted, StopFlag, catch_signals
from asr_init.training.runs import prepare_run_dir

SCHEDULES = ("newbob", "constant", "exponential")
# Learning rate and momentum by starting point, chosen at 6 x 1024 sigmoid units on the
# 1-hour store. From a DBN, Kaldi nnet1's lr 0.008 on the summed gradient, no momentum.
# From random weights (no --dbn, or --init-from) that step saturates a deep sigmoid network
# within an epoch and smaller steps without momentum leave it on the plateau of the
# class priors, where newbob stops it; lr 0.0004 with momentum 0.9 (an effective step of
# 0.004) from the `optimal` initialisation leaves the plateau in the second epoch, where
# the same from `xavier-normal` stays on it (measured at 6 x 1024, see the README).
STARTING_POINT_DEFAULTS = {"dbn": {"lr": 0.008, "momentum": 0.0}, "scratch": {"lr": 0.0004, "momentum": 0.9}}
CHANCE_MARGIN = 0.01  # a train frame accuracy within this of the most frequent class's share is chance
TARGETS = ("states", "phones", "pdfs")  # pdfs: Kaldi tied states, from an import-kaldi store


@dataclass
class FinetuneConfig(ConfigBase):
    """Settings of `asr-init finetune` (see `asr-init finetune --help`)."""

    targets: str | None = None  # None: the store's first kind (states from extract, pdfs from import-kaldi)
    init: str = "optimal"  # hidden layers without --dbn (and above --reuse-layers); see STARTING_POINT_DEFAULTS
    output_init: str = "small-xavier"  # the softmax layer; "same" = --init
    layers: int = 6
    hidden: int = 1024
    activation: str = "sigmoid"
    splice: int = 5
    lr: float | None = None  # None: 0.008 from a DBN, 0.0004 from scratch (see STARTING_POINT_DEFAULTS)
    batch_size: int = 256
    momentum: float | None = None  # None: 0 from a DBN, 0.9 from scratch
    l2: float = 0.0
    dropout: float = 0.0
    max_norm: float | None = None
    grad_clip: float | None = None
    schedule: str = "newbob"
    decay: float = 0.5  # exponential schedule: lr *= decay every epoch
    max_epochs: int = 20
    min_epochs: int = 1
    start_halving: float = 0.01
    end_halving: float = 0.001
    halving_factor: float = 0.5
    seed: int = 0
    device: str = "cpu"
    max_frames: int | None = None
    buffer_frames: int = 200_000
    prior_floor: float = 1.0  # minimum count per class when computing priors
    dbn: str | None = None  # a pretrain folder, or a Kaldi nnet1 .dbn file
    init_from: str | None = None  # a pretrain/finetune folder, or a Kaldi nnet1 .nnet file
    feature_transform: str | None = None  # Kaldi's feature_transform for a --dbn/--init-from nnet1 file
    reuse_layers: int = 0
    stats_frames: int = 2000

    def __post_init__(self) -> None:
        start = "dbn" if self.dbn else "scratch"
        if self.lr is None:
            self.lr = STARTING_POINT_DEFAULTS[start]["lr"]
        if self.momentum is None:
            self.momentum = STARTING_POINT_DEFAULTS[start]["momentum"]

    def validate(self) -> None:
        self._check(self.targets is None or self.targets in TARGETS, "targets", f"must be one of {', '.join(TARGETS)}")
        parse_init(self.init)
        if self.output_init != "same":
            parse_init(self.output_init)
        self._check(self.activation in ACTIVATIONS, "activation", f"must be one of {', '.join(ACTIVATIONS)}")
        self._check(self.layers >= 1 and self.hidden >= 1, "layers", "layers and hidden must be positive")
        self._check(self.lr > 0, "lr", "must be positive")
        self._check(self.batch_size >= 1, "batch_size", "must be positive")
        self._check(0 <= self.momentum < 1, "momentum", "must be in [0, 1)")
        self._check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")
        self._check(self.schedule in SCHEDULES, "schedule", f"must be one of {', '.join(SCHEDULES)}")
        self._check(self.max_epochs >= 1, "max_epochs", "must be at least 1")
        self._check(self.reuse_layers >= 0, "reuse_layers", "must be >= 0")
        self._check(self.reuse_layers == 0 or self.init_from is not None, "reuse_layers", "needs --init-from MODEL")
        self._check(self.dbn is None or self.init_from is None, "init_from", "cannot be combined with --dbn")
        self._check(
            self.feature_transform is None or self.dbn is not None or self.init_from is not None,
            "feature_transform",
            "belongs to a Kaldi nnet1 file given as --dbn or --init-from",
        )
        self._check(
            self.dbn is None or self.activation == "sigmoid",
            "activation",
            "a DBN's layers are sigmoid; use --activation sigmoid with --dbn",
        )
        self._check(
            self.max_frames is None or self.max_frames >= self.batch_size, "max_frames", "must be at least one batch"
        )
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"invalid device={self.device!r}: CUDA is not available on this machine; use --device cpu")


@dataclass
class Newbob:
    """Kaldi's newbob schedule on a dev loss (lower is better); state is plain data."""

    lr: float
    best: float = math.inf
    halving: bool = False
    start_halving: float = 0.01
    end_halving: float = 0.001
    factor: float = 0.5
    min_epochs: int = 1
    epoch: int = 0
    history: list = field(default_factory=list)

    def start(self, initial_loss: float) -> None:
        self.best = initial_loss

    def step(self, loss: float) -> tuple[bool, bool]:
        """After an epoch with dev `loss`: (accepted, stop). Updates lr for the next epoch."""
        self.epoch += 1
        before = self.best
        accepted = loss < self.best
        if accepted:
            self.best = loss
        rel = (before - self.best) / before if before not in (0, math.inf) else 1.0
        stop = False
        if self.halving and rel < self.end_halving and self.epoch > self.min_epochs:
            stop = True
        else:
            if rel < self.start_halving:
                self.halving = True
            if self.halving:
                self.lr *= self.factor
        self.history.append(
            {"epoch": self.epoch, "loss": loss, "accepted": accepted, "rel_impr": rel, "next_lr": self.lr, "stop": stop}
        )
        return accepted, stop


def class_priors(store: FeatureStore, targets: str, floor: float) -> np.ndarray:
    """Relative frequencies of the targets in the train split, counts floored at `floor`."""
    n = len(store.labels(targets))
    counts = np.zeros(n, dtype=np.float64)
    for rec in store.split("train"):
        counts += np.bincount(np.asarray(store.targets(targets, rec), dtype=np.int64), minlength=n)
    counts = np.maximum(counts, floor)
    return counts / counts.sum()


def build_network(
    config: FinetuneConfig, store: FeatureStore, pipeline: FeaturePipeline, outputs: int, sample: torch.Tensor
) -> tuple[DNN, list[dict]]:
    """The DNN with its hidden layers from the DBN, another model, or `config.init`."""
    gen = torch.Generator().manual_seed(config.seed)
    source: list[tuple[torch.Tensor, torch.Tensor]] = []
    origin = "init"
    if config.dbn:
        source = [(layer["W"], layer["b"]) for layer in load_dbn(Path(config.dbn), config.feature_transform)["layers"]]
        origin = "dbn"
        sizes = [w.shape[0] for w, _ in source]
    else:
        sizes = [config.hidden] * config.layers
        if config.init_from:
            other, _, _ = load_stack(Path(config.init_from), config.feature_transform)
            if config.reuse_layers > len(other):
                raise UserError(
                    f"--reuse-layers {config.reuse_layers}: {config.init_from} has only {len(other)} hidden layers"
                )
            source = other[: config.reuse_layers]
            origin = "init-from"
            for i, (w, _) in enumerate(source):
                want = (sizes[i], pipeline.dim if i == 0 else sizes[i - 1])
                if tuple(w.shape) != want:
                    raise UserError(
                        f"layer {i + 1} of {config.init_from} is {w.shape[1]}->{w.shape[0]}, "
                        f"but this network needs {want[1]}->{want[0]}; match --layers/--hidden/--splice"
                    )
    model = DNN(pipeline.dim, sizes, outputs, config.activation, config.dropout)
    info = []
    h = sample
    with torch.no_grad():
        for i, layer in enumerate(model.hidden):
            if i < len(source):
                w, b = source[i]
                if tuple(w.shape) != tuple(layer.weight.shape):
                    raise UserError(
                        f"DBN layer {i + 1} is {w.shape[1]}->{w.shape[0]} but the store's inputs need "
                        f"{layer.weight.shape[1]} inputs"
                    )
                layer.weight.copy_(w)
                layer.bias.copy_(b)
                info.append({"layer": i + 1, "from": origin})
            else:
                res = init_weight_(layer.weight, config.init, gen, InitContext(config.activation, input_power(h)))
                layer.bias.zero_()
                info.append({"layer": i + 1, "from": "init", "init": config.init, "std": res.std, "D": res.spread})
            h = model.act(layer(h))
        spec = config.init if config.output_init == "same" else config.output_init
        res = init_weight_(model.output.weight, spec, gen, InitContext(config.activation, input_power(h)))
        model.output.bias.zero_()
        info.append({"layer": "output", "from": "init", "init": spec, "std": res.std})
    return model, info


def _evaluate(
    model: DNN, store: FeatureStore, pipeline: FeaturePipeline, split: str, targets: str, device
) -> tuple[float, float, int]:
    """(mean cross-entropy, frame accuracy, frames) of a split, utterance by utterance."""
    loss, correct, n = 0.0, 0, 0
    model.eval()
    with torch.no_grad():
        for rec in store.split(split):
            x = pipeline.utterance(store.features(rec)).to(device)
            y = torch.from_numpy(np.asarray(store.targets(targets, rec), dtype=np.int64)).to(device)
            logits = model(x)
            loss += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            n += len(y)
    store.release()
    model.train()
    return loss / max(n, 1), correct / max(n, 1), n


def _saturation(model: DNN, sample: torch.Tensor) -> list[float]:
    """Fraction of saturated hidden units per layer on a fixed frame sample."""
    keep: list[torch.Tensor] = []
    model.eval()
    with torch.no_grad():
        model(sample, keep)
    model.train()
    out = []
    for h in keep:
        if model.activation == "sigmoid":
            out.append(float(((h < 0.05) | (h > 0.95)).float().mean()))
        elif model.activation == "tanh":
            out.append(float((h.abs() > 0.9).float().mean()))
        else:
            out.append(float((h <= 0).float().mean()))  # dead ReLUs
    return out


def _warn_if_at_chance(row: dict, majority: float, layers: int, config: FinetuneConfig) -> None:
    """Warn when an epoch's train frame accuracy is no better than always answering the
    most frequent class, naming the saturated layers and the options to change."""
    if row["train_acc"] > majority + CHANCE_MARGIN:
        return
    shares = [(i, row[f"sat_{i}"]) for i in range(1, layers + 1)]
    saturated = [f"{i}: {s:.0%}" for i, s in shares if s > 0.1]
    where = (
        "saturated layers (share of units) " + ", ".join(saturated)
        if saturated
        else f"no layer has over 10 % saturated units (most: {max(s for _, s in shares):.0%})"
    )
    console.print(
        f"[yellow]warning: epoch {row['epoch']}: train frame accuracy {row['train_acc']:.2%} is at chance "
        f"(the most frequent class is {majority:.2%} of the frames); {where}. Lower --lr (now "
        f"{config.lr:g}), raise --momentum (now {config.momentum:g}), or start from a DBN (--dbn).",
        highlight=False,
    )


def finetune(
    store_path: Path,
    config: FinetuneConfig,
    out_dir: Path,
    resume: bool = False,
    force: bool = False,
    interrupt_after: int | None = None,
) -> dict:
    """Train the DNN; returns the finetune.json summary."""
    config.validate()
    store = FeatureStore(store_path)
    out_dir = Path(out_dir)
    if not store.split("train") or not store.split("dev"):
        raise UserError(f"store {store.path} needs train and dev utterances for fine-tuning (newbob uses dev)")
    if config.dbn:
        dbn = load_dbn(Path(config.dbn), config.feature_transform)
        pipeline = FeaturePipeline.from_dict(dbn["pipeline"])
        pipeline.check_store(store, f"DBN {config.dbn}")
        if pipeline.dim != dbn["layers"][0]["W"].shape[1]:
            raise UserError(
                f"DBN {config.dbn} takes {dbn['layers'][0]['W'].shape[1]} inputs but its pipeline gives {pipeline.dim}"
            )
    elif config.init_from:
        _, pipeline, _ = load_stack(Path(config.init_from), config.feature_transform)
        pipeline.check_store(store, f"model {config.init_from}")
    else:
        pipeline = FeaturePipeline.from_store(store, config.splice)
    if config.targets is None:
        config.targets = store.target_kinds[0]
    labels = store.labels(config.targets)

    settings = {"store": str(store.path.resolve()), "config": config.to_dict()}
    done = prepare_run_dir(
        out_dir,
        "finetune",
        settings,
        force,
        finished=("model.pt",),
        inputs={
            "feature store": store.path,
            "--dbn folder": config.dbn,
            "--init-from folder": config.init_from,
            "--feature-transform": config.feature_transform,
        },
    )
    if done is not None:
        console.print(f"[green]{out_dir} already holds a finished fine-tuning run with these settings; nothing to do")
        return done
    console.print(f"finetune {store.path} -> {out_dir}: {config.to_dict()}", highlight=False)

    device = torch.device(config.device)
    sample = sample_frames(store, pipeline, "train", config.stats_frames, seed=config.seed + 1)
    model, layer_info = build_network(config, store, pipeline, len(labels), sample)
    model.to(device)
    sample = sample.to(device)
    # Kaldi nnet1 semantics: the loss is summed over the batch, so is the L2 term.
    opt = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.l2 * config.batch_size
    )
    priors = class_priors(store, config.targets, config.prior_floor)
    buffer = FrameBuffer(
        store,
        store.split("train"),
        pipeline,
        config.batch_size,
        config.buffer_frames,
        targets=config.targets,
        device=device,
    )
    per_epoch = buffer.num_frames if config.max_frames is None else min(config.max_frames, buffer.num_frames)
    sched = Newbob(
        config.lr,
        start_halving=config.start_halving,
        end_halving=config.end_halving,
        factor=config.halving_factor,
        min_epochs=config.min_epochs,
    )

    ckpt_path = out_dir / "checkpoint.pt"
    if ckpt_path.exists() and not resume:
        raise UserError(
            f"{out_dir} holds an interrupted fine-tuning run ({ckpt_path}); re-run with --resume to continue it or --force to start over"
        )
    if ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        best_state = state["best"]
        sched = Newbob(**state["newbob"])
        pos, rows = state["position"], state["rows"]
        console.print(f"resuming at epoch {pos['epoch']}, batch {pos['batch']}")
    else:
        dev_loss, dev_acc, _ = _evaluate(model, store, pipeline, "dev", config.targets, device)
        sched.start(dev_loss)
        best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        pos = {
            "epoch": 1,
            "batch": 0,
            "seconds": 0.0,
            "loss_sum": 0.0,
            "correct": 0,
            "frames": 0,
            "grad_sq": [0.0] * (len(model.hidden) + 1),
            "grad_batches": 0,
            "stopped": False,
        }
        rows = [
            {
                "epoch": 0,
                "lr": config.lr,
                "dev_loss": dev_loss,
                "dev_acc": dev_acc,
                "accepted": True,
                **{f"sat_{i + 1}": s for i, s in enumerate(_saturation(model, sample))},
            }
        ]

    flag = StopFlag(interrupt_after)
    lrs = [config.lr * config.decay**k for k in range(config.max_epochs)] if config.schedule == "exponential" else None

    def save_state():
        save_checkpoint(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "best": best_state,
                "newbob": sched.__dict__ | {"history": list(sched.history)},
                "position": dict(pos),
                "rows": rows,
                "config": config.to_dict(),
                "pipeline": pipeline.to_dict(),
            },
            ckpt_path,
        )

    layers = list(model.hidden) + [model.output]
    columns = (
        ["epoch", "lr", "train_loss", "train_acc", "dev_loss", "dev_acc", "accepted", "seconds", "frames_per_s"]
        + [f"grad_norm_{i + 1}" for i in range(len(model.hidden))]
        + ["grad_norm_out"]
        + [f"sat_{i + 1}" for i in range(len(model.hidden))]
    )
    with catch_signals(flag), progress_bar(TextColumn("loss {task.fields[loss]}")) as bar:
        while pos["epoch"] <= config.max_epochs and not pos["stopped"]:
            epoch = pos["epoch"]
            lr = lrs[epoch - 1] if lrs else (config.lr if config.schedule == "constant" else sched.lr)
            for group in opt.param_groups:
                group["lr"] = lr
            task = bar.add_task(
                f"epoch {epoch}/{config.max_epochs}", total=per_epoch, unit="frames", loss="-", completed=pos["frames"]
            )
            t_last = time.perf_counter()
            for x, y in buffer.batches(seed=config.seed, epoch=epoch, max_frames=config.max_frames, skip=pos["batch"]):
                if config.dropout > 0:  # dropout masks from a seed of (seed, epoch, batch): resumable
                    torch.manual_seed(hash((config.seed, epoch, pos["batch"])) & 0x7FFFFFFF)
                logits = model(x)
                # Summed over the mini-batch, as Kaldi nnet1 does: lr 0.008 at batch 256 is a
                # step of ~2.0 on the mean gradient.
                loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
                opt.zero_grad(set_to_none=False)
                loss.backward()
                for i, layer in enumerate(layers):
                    pos["grad_sq"][i] += float(layer.weight.grad.pow(2).sum())
                pos["grad_batches"] += 1
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                opt.step()
                if config.max_norm:
                    with torch.no_grad():
                        for layer in model.hidden:
                            layer.weight.copy_(torch.renorm(layer.weight, 2, 0, config.max_norm))
                value = float(loss.detach()) / len(y)
                if not math.isfinite(value):
                    raise UserError(
                        f"fine-tuning loss became {value} in epoch {epoch} after {pos['frames']:,} frames "
                        f"(learning rate {lr:g}); lower --lr. The best model so far is not written over."
                    )
                pos["loss_sum"] += value * len(y)
                pos["correct"] += int((logits.argmax(1) == y).sum())
                pos["frames"] += len(y)
                pos["batch"] += 1
                now = time.perf_counter()
                pos["seconds"] += now - t_last
                t_last = now
                bar.update(task, advance=len(y), loss=f"{pos['loss_sum'] / pos['frames']:.3f}")
                flag.tick()
                if flag.signal is not None:
                    save_state()
                    raise Interrupted(
                        f"stopped by signal {flag.signal} in epoch {epoch} after {pos['frames']:,} frames; "
                        f"state saved to {ckpt_path}; continue with --resume"
                    )
            bar.remove_task(task)
            dev_loss, dev_acc, _ = _evaluate(model, store, pipeline, "dev", config.targets, device)
            if config.schedule == "newbob":
                accepted, stop = sched.step(dev_loss)
                if not accepted:
                    model.load_state_dict(best_state)  # reject: roll back to the best weights
            else:  # constant / exponential: keep training; remember the best epoch
                accepted, stop = dev_loss < sched.best, False
                sched.best = min(sched.best, dev_loss)
            if accepted:
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            grad_norms = [math.sqrt(g / max(pos["grad_batches"], 1)) for g in pos["grad_sq"]]
            row = {
                "epoch": epoch,
                "lr": lr,
                "train_loss": pos["loss_sum"] / max(pos["frames"], 1),
                "train_acc": pos["correct"] / max(pos["frames"], 1),
                "dev_loss": dev_loss,
                "dev_acc": dev_acc,
                "accepted": accepted,
                "seconds": pos["seconds"],
                "frames_per_s": pos["frames"] / max(pos["seconds"], 1e-9),
                **{f"grad_norm_{i + 1}": g for i, g in enumerate(grad_norms[:-1])},
                "grad_norm_out": grad_norms[-1],
                **{f"sat_{i + 1}": s for i, s in enumerate(_saturation(model, sample))},
            }
            rows.append(row)
            _warn_if_at_chance(row, float(priors.max()), len(model.hidden), config)
            console.print(
                f"epoch {epoch}: lr {lr:.4g} train loss {row['train_loss']:.4f} acc {row['train_acc']:.2%} | "
                f"dev loss {dev_loss:.4f} acc {dev_acc:.2%} | {'accepted' if accepted else 'rejected'} | "
                f"{row['frames_per_s']:,.0f} frames/s",
                highlight=False,
            )
            write_csv(out_dir / "train.csv", rows, columns)
            pos.update(
                epoch=epoch + 1,
                batch=0,
                loss_sum=0.0,
                correct=0,
                frames=0,
                seconds=0.0,
                grad_sq=[0.0] * len(layers),
                grad_batches=0,
                stopped=stop,
            )
            save_state()

    model.load_state_dict(best_state)
    meta = {
        "config": config.to_dict(),
        "pipeline": pipeline.to_dict(),
        "input_dim": pipeline.dim,
        "hidden_sizes": [layer.out_features for layer in model.hidden],
        "targets": config.targets,
        "outputs": labels,
        "phones": store.phones,
        "states": store.states,
        "priors": priors.tolist(),
        "layers": layer_info,
    }
    save_model(out_dir, model, meta)
    (out_dir / "priors.txt").write_text("".join(f"{lab} {p:.8g}\n" for lab, p in zip(labels, priors)))
    train_rows = [r for r in rows if r["epoch"] > 0]
    best = min(rows, key=lambda r: r["dev_loss"])
    summary = {
        "config": config.to_dict(),
        "store": str(store.path.resolve()),
        "layers": layer_info,
        "epochs": len(train_rows),
        "best_epoch": best["epoch"],
        "best_dev_loss": best["dev_loss"],
        "best_dev_acc": best["dev_acc"],
        "seconds": sum(r["seconds"] for r in train_rows),
        "frames_per_s": (
            sum(r["frames_per_s"] * r["seconds"] for r in train_rows) / max(sum(r["seconds"] for r in train_rows), 1e-9)
        ),
        "newbob": sched.history,
        "versions": environment(),
    }
    write_json_atomic(out_dir / "finetune.json", summary)
    from asr_init.plots import plot_training

    plot_training(
        rows, out_dir / "train.png", title=f"fine-tuning ({'DBN' if config.dbn else config.init}, {config.activation})"
    )
    ckpt_path.unlink(missing_ok=True)
    return summary
