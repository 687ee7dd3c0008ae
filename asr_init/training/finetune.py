"""The `finetune` stage: DNN frame classification with cross-entropy and "newbob".

The network is the DBN's hidden layers (or `--init`-initialised layers of the same
shape, or the lower K layers of another model) plus a new softmax layer over HMM states
or phones. Training is frame-shuffled mini-batch SGD with optional momentum, L2,
dropout, max-norm and gradient clipping. As in Kaldi nnet1, the learning rate multiplies
the gradient summed over the mini-batch (lr 0.008 at batch 256 = 2.05 x the mean
gradient). The learning-rate schedule (schedules.py) is by default Kaldi nnet1's newbob on
dev cross-entropy, measured before training and after every epoch; an epoch that does
not improve it is rejected and the weights roll back to the best ones.

Output folder: model.pt (best weights, config, pipeline, labels, priors), priors.txt,
finetune.json, train.csv, train.png, and checkpoint.pt while training (resumable).

Under torchrun the network is wrapped in DistributedDataParallel with summed gradients,
each process trains on its rows of every mini-batch and evaluates its share of the dev
utterances (distributed.py). Dropout masks are drawn per process, so with --dropout a run
on N processes is not the same numbers as on one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from asr_init.environment import environment
from asr_init.errors import UserError
from asr_init.features.pipeline import FeaturePipeline, FrameBuffer, sample_frames
from asr_init.features.store import FeatureStore, store_identity
from asr_init.io import digest, load_run_checkpoint, write_csv, write_json_atomic
from asr_init.models.dbn import load_dbn, load_stack
from asr_init.models.dnn import DNN, save_model
from asr_init.models.init import InitContext, init_weight_, input_power
from asr_init.models.nonlinearity import saturated_mask
from asr_init.progress import console
from asr_init.training.config import FinetuneConfig
from asr_init.training.distributed import Dist, distributed
from asr_init.training.interrupts import StopFlag, catch_signals
from asr_init.training.loop import Step, Trainer, TrainState, decides_on_device
from asr_init.training.precision import forward_precision, matmul_precision
from asr_init.training.runs import run_folder
from asr_init.training.schedules import make_schedule

CHANCE_MARGIN = 0.01  # a train frame accuracy within this of the most frequent class's share is chance


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
    model: DNN,
    store: FeatureStore,
    pipeline: FeaturePipeline,
    split: str,
    targets: str,
    device,
    dist: Dist = Dist(),
    precision: str = "fp32",
) -> tuple[float, float, int]:
    """(mean cross-entropy, frame accuracy, frames) of a split, utterance by utterance; on
    several processes each takes every world-th utterance and the sums are added up."""
    loss, correct, n = 0.0, 0, 0
    model.eval()
    with torch.no_grad():
        for rec in store.split(split)[dist.rank :: dist.world]:
            x = pipeline.utterance(store.features(rec)).to(device)
            y = torch.from_numpy(np.asarray(store.targets(targets, rec), dtype=np.int64)).to(device)
            with forward_precision(precision, torch.device(device)):
                logits = model(x).float()
            loss += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            n += len(y)
    store.release()
    model.train()
    loss, correct, n = dist.sum([loss, correct, n])
    return loss / max(n, 1), correct / max(n, 1), int(n)


def _saturation(model: DNN, sample: torch.Tensor) -> list[float]:
    """Share of saturated hidden units per layer on a fixed frame sample (dead units for ReLU)."""
    keep: list[torch.Tensor] = []
    model.eval()
    with torch.no_grad():
        model(sample, keep)
    model.train()
    return [float(saturated_mask(h, model.activation).float().mean()) for h in keep]


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
    """Train the DNN; returns the finetune.json summary.

    Under torchrun, the processes share every mini-batch (see distributed.py).
    `interrupt_after` (testing) acts as a signal arriving after that many mini-batches.
    """
    config.validate()
    return _finetune(store_path, config, Path(out_dir), resume, force, interrupt_after, distributed(config.device))


def _finetune(store_path: Path, config: FinetuneConfig, out_dir: Path, resume, force, interrupt_after, dist) -> dict:
    store = FeatureStore(store_path)
    if not store.split("train") or not store.split("dev"):
        raise UserError(f"store {store.path} needs train and dev utterances for fine-tuning (newbob uses dev)")
    pipeline = _input_pipeline(config, store)
    if config.targets is None:
        config.targets = store.target_kinds[0]
    settings = {
        "store": str(store.path.resolve()),
        "config": config.to_dict(),
        "inputs": _input_identities(config, store),
    }
    with run_folder(
        out_dir,
        "finetune",
        settings,
        force,
        finished=("model.pt",),
        started=("checkpoint.pt",),
        neutral=("device", "cuda_graphs"),
        inputs={
            "feature store": store.path,
            "--dbn folder": config.dbn,
            "--init-from folder": config.init_from,
            "--feature-transform": config.feature_transform,
        },
        dist=dist,
    ) as done:
        if done is not None:
            console.print(
                f"[green]{out_dir} already holds a finished fine-tuning run with these settings; nothing to do"
            )
            return done
        console.print(f"finetune {store.path} -> {out_dir}: {config.to_dict()}", highlight=False)
        if dist.is_distributed:
            console.print(f"{dist.world} processes share every batch of {config.batch_size} frames")
        trainer = _DnnTrainer(config, store, pipeline, out_dir, resume, dist)
        flag = StopFlag(interrupt_after)
        with catch_signals(flag), matmul_precision(config.precision):
            trainer.run(flag)
        return dist.from_main(lambda: _write_outputs(trainer))


def _input_identities(config: FinetuneConfig, store: FeatureStore) -> dict[str, str]:
    """Digests of what the run reads: the store, and the DBN or model it starts from."""
    ids = {"feature store": store_identity(store.path)}
    if config.dbn:
        ids["--dbn DBN"] = digest(_model_files(Path(config.dbn), ("dbn.pt",)))
    if config.init_from:
        ids["--init-from model"] = digest(_model_files(Path(config.init_from), ("model.pt", "dbn.pt")))
    if config.feature_transform:
        ids["--feature-transform"] = digest([Path(config.feature_transform)])
    return ids


def _model_files(path: Path, names: tuple[str, ...]) -> list[Path]:
    """An asr-init output folder's model files, or a Kaldi nnet1 file itself."""
    return [path] if path.is_file() else [path / name for name in names]


def _input_pipeline(config: FinetuneConfig, store: FeatureStore) -> FeaturePipeline:
    """The DBN's or the --init-from model's splice and normalisation (checked against the
    store's features), or new ones from the store."""
    if config.dbn:
        dbn = load_dbn(Path(config.dbn), config.feature_transform)
        pipeline = FeaturePipeline.from_dict(dbn["pipeline"])
        pipeline.check_store(store, f"DBN {config.dbn}")
        if pipeline.dim != dbn["layers"][0]["W"].shape[1]:
            raise UserError(
                f"DBN {config.dbn} takes {dbn['layers'][0]['W'].shape[1]} inputs but its pipeline gives {pipeline.dim}"
            )
        return pipeline
    if config.init_from:
        _, pipeline, _ = load_stack(Path(config.init_from), config.feature_transform)
        pipeline.check_store(store, f"model {config.init_from}")
        return pipeline
    return FeaturePipeline.from_store(store, config.splice)


@dataclass
class _EpochSums:
    """Training loss, correct frames and squared gradient norms summed over an epoch's batches."""

    loss: float = 0.0
    correct: int = 0
    grad_sq: list | None = None  # per weight matrix, hidden layers then output
    grad_batches: int = 0


class DeviceSums:
    """`_EpochSums` kept on the device: the steps add to them without a host read, and
    `read` brings them back (at `SYNC_EVERY` batches and before every checkpoint). The sums
    are the same float64 additions of the same float32 numbers in the same order as the
    host's, so the log is the same to the bit; the epoch's frame count at the first step
    whose loss was not finite is kept too. On several processes each one sums its own
    rows' loss and correct frames (`sync` adds them up); the gradient norms are of the
    summed gradient, the same on every process."""

    def __init__(self, n_weights: int, device: torch.device):
        # loss, correct, frames of the epoch, frames before the first non-finite loss, gradient norms
        self.acc = torch.zeros(4 + n_weights, dtype=torch.float64, device=device)

    def load(self, sums: _EpochSums, frames: int, main: bool = True) -> None:
        """Go on from the host's sums after `frames` frames of the epoch (resumption); the
        loss and correct frames, global sums, go to the main process only."""
        loss, correct = (sums.loss, sums.correct) if main else (0.0, 0)
        self.acc.copy_(torch.tensor([loss, correct, frames, -1.0, *sums.grad_sq], dtype=torch.float64))

    def add(self, loss: torch.Tensor, correct: torch.Tensor, grad_sq: list[torch.Tensor], size: int) -> None:
        acc = self.acc
        acc[0] += loss.double() / size * size  # as the host adds (loss / size) * size
        acc[1] += correct.double()
        acc[4:] += torch.stack(grad_sq).double()
        acc[3] = torch.where((acc[3] < 0) & ~torch.isfinite(loss), acc[2], acc[3])
        acc[2] += size

    def read(self) -> tuple[float, int, int | None, list[float]]:
        """(loss, correct, frames of the epoch before the first non-finite loss or None, squared gradient norms)."""
        loss, correct, _, bad, *grad_sq = self.acc.tolist()
        return loss, int(correct), None if bad < 0 else int(bad), grad_sq

    def reset(self) -> None:
        self.acc.zero_()
        self.acc[3] = -1


SYNC_EVERY = 200  # batches between reads of the device's sums (divergence found within them)


def sgd_update(
    net: torch.nn.Module,
    model: DNN,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    precision: str = "fp32",
    grad_clip: float | None = None,
    max_norm: float | None = None,
    weights: list[torch.Tensor] | None = None,
):
    """One fine-tuning step on (x, y): forward, cross-entropy summed over the batch,
    backward, gradient clipping, SGD, max-norm. Device work only (it reads nothing back),
    so it can be captured as a CUDA graph. `net` is `model` or its DDP wrapper. Returns
    the loss, the count of correct frames and the squared norms of `weights`' gradients
    before clipping, as tensors."""
    with forward_precision(precision, x.device):
        logits = net(x)
        # Summed over the mini-batch, as Kaldi nnet1 does: lr 0.008 at batch 256 is a
        # step of ~2.0 on the mean gradient.
        loss = torch.nn.functional.cross_entropy(logits.float(), y, reduction="sum")
    opt.zero_grad(set_to_none=False)
    loss.backward()  # under DDP: the gradient summed over the processes, the same on each
    grad_sq = [w.grad.pow(2).sum() for w in weights or ()]
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    if max_norm:
        with torch.no_grad():
            for layer in model.hidden:
                layer.weight.copy_(torch.renorm(layer.weight, 2, 0, max_norm))
    return loss.detach(), (logits.argmax(1) == y).sum(), grad_sq


def _graphs_possible(config: FinetuneConfig, device: torch.device, dist: Dist) -> bool:
    """The fine-tuning step can be a CUDA graph: on CUDA with --cuda-graphs, one process
    (DDP's gradient hooks are not captured here), no dropout (its masks are seeded per batch)."""
    return (
        config.cuda_graphs
        and decides_on_device(device)
        and device.type == "cuda"
        and not dist.is_distributed
        and config.dropout == 0
    )


class _GraphedStep:
    """The fine-tuning step of full mini-batches replayed as a CUDA graph (cuda_graphs.py).

    Captured after the first eager step (when the optimiser's buffers exist), again after
    the learning rate changes (SGD reads it as a number when the graph is recorded)."""

    def __init__(self, trainer: _DnnTrainer):
        self.trainer, self.graph, self.lr, self.eager_steps = trainer, None, None, 0
        self.enabled, self.status = True, "not captured yet"
        size, dim = trainer.config.batch_size, trainer.pipeline.dim
        self.x = torch.empty(size, dim, device=trainer.device)
        self.y = torch.empty(size, dtype=torch.long, device=trainer.device)

    def run(self, x: torch.Tensor, y: torch.Tensor) -> bool:
        """Replay the step on (x, y); False when the caller must run it eagerly."""
        trainer = self.trainer
        if not self.enabled or len(x) != len(self.x):
            return False
        lr = trainer.opt.param_groups[0]["lr"]
        if self.graph is None or lr != self.lr:
            if self.eager_steps == 0:
                self.eager_steps += 1
                return False
            self.x.copy_(x)
            self.y.copy_(y)
            self._capture(lr)
            if self.graph is None:
                return False
        self.x.copy_(x)
        self.y.copy_(y)
        self.graph.replay()
        return True

    def _capture(self, lr: float) -> None:
        from asr_init.cuda_graphs import capture_checked

        trainer = self.trainer
        params = list(trainer.model.parameters())
        state = params + [p.grad for p in params] + [trainer.device_sums.acc]
        state += [trainer.opt.state[p]["momentum_buffer"] for p in params if "momentum_buffer" in trainer.opt.state[p]]
        size = len(self.x)
        self.graph, self.status = capture_checked(
            lambda: trainer.device_sums.add(*trainer.update(self.x, self.y), size), state
        )
        self.lr = lr
        if self.graph is None:
            self.enabled = False
            console.print(f"[yellow]warning: CUDA graph of the fine-tuning step: {self.status}; running eagerly")


class _DnnTrainer(Trainer):
    """Frame-shuffled mini-batch SGD on cross-entropy, with the schedule deciding per epoch."""

    bar_label = "epoch"
    bar_per_epoch = True

    def __init__(
        self,
        config: FinetuneConfig,
        store: FeatureStore,
        pipeline: FeaturePipeline,
        out_dir: Path,
        resume: bool,
        dist: Dist | None = None,
    ):
        self.config, self.store, self.pipeline, self.out_dir = config, store, pipeline, out_dir
        self.labels = store.labels(config.targets)
        dist = dist or Dist(device=torch.device(config.device))
        self.dist, self.device = dist, dist.device
        self.epochs = config.max_epochs
        sample = sample_frames(store, pipeline, "train", config.stats_frames, seed=config.seed + 1)
        self.model, self.layer_info = build_network(config, store, pipeline, len(self.labels), sample)
        self.model.to(self.device)
        self.net = dist.wrap(self.model)  # what training steps call: DDP on several processes
        self.sample = sample.to(self.device)
        # Kaldi nnet1 semantics: the loss is summed over the batch, so is the L2 term.
        self.opt = torch.optim.SGD(
            self.model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.l2 * config.batch_size
        )
        self.priors = class_priors(store, config.targets, config.prior_floor)
        splits = store.split("train")
        self.buffer = FrameBuffer(
            store,
            splits,
            pipeline,
            config.batch_size,
            config.buffer_frames,
            targets=config.targets,
            device=self.device,
            rank=dist.rank,
            world=dist.world,
        )
        self.per_epoch = min(config.max_frames or self.buffer.num_frames, self.buffer.num_frames)
        self.schedule = make_schedule(config.schedule, config.to_dict())
        self.weights = [layer.weight for layer in self.model.hidden] + [self.model.output.weight]
        self.device_sums = DeviceSums(len(self.weights), self.device) if decides_on_device(self.device) else None
        if self.device_sums is not None:
            self.device_sums.reset()
        self.graph = _GraphedStep(self) if _graphs_possible(config, self.device, dist) else None
        self.checkpoint_path = path = out_dir / "checkpoint.pt"
        ckpt = dist.from_main(lambda: load_run_checkpoint(path))
        if ckpt is not None:
            self._resume(ckpt, resume)
        else:
            self._start()

    def _start(self) -> None:
        dev_loss, dev_acc, _ = self._evaluate_dev()
        self.schedule.start(dev_loss)
        self.best = self._copy_weights()
        self.state, self.sums = TrainState(), _EpochSums(grad_sq=[0.0] * len(self.weights))
        sat = {f"sat_{i + 1}": s for i, s in enumerate(_saturation(self.model, self.sample))}
        self.rows = [
            {"epoch": 0, "lr": self.config.lr, "dev_loss": dev_loss, "dev_acc": dev_acc, "accepted": True} | sat
        ]

    def _resume(self, ckpt: dict, resume: bool) -> None:
        path = self.checkpoint_path
        if not resume:
            raise UserError(
                f"{self.out_dir} holds an interrupted fine-tuning run ({path}); re-run with --resume to continue it "
                "or --force to start over"
            )
        if "schedule" not in ckpt:
            raise UserError(f"{path} was written by an older asr-init and cannot be resumed; use --force to start over")
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["schedule"])
        self.state = TrainState()
        self.state.load_state_dict(ckpt["position"])
        self.best, self.sums, self.rows = ckpt["best"], _EpochSums(**ckpt["sums"]), ckpt["rows"]
        if self.device_sums is not None:
            self.device_sums.load(self.sums, self.state.epoch_frames, self.dist.is_main)
        console.print(f"resuming at epoch {self.state.epoch}, batch {self.state.batch}")

    def _copy_weights(self) -> dict:
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def _evaluate_dev(self) -> tuple[float, float, int]:
        config = self.config
        return _evaluate(
            self.model, self.store, self.pipeline, "dev", config.targets, self.device, self.dist, config.precision
        )

    # --- the stage's part of the loop ----------------------------------------------

    def batches(self, epoch: int, skip: int):
        for group in self.opt.param_groups:  # the schedule's rate for this epoch (also on resumption)
            group["lr"] = self.schedule.lr
        return self.buffer.batches(seed=self.config.seed, epoch=epoch, max_frames=self.config.max_frames, skip=skip)

    def update(self, x: torch.Tensor, y: torch.Tensor):
        """`sgd_update` with this run's network, optimiser and settings."""
        config = self.config
        return sgd_update(
            self.net, self.model, self.opt, x, y, config.precision, config.grad_clip, config.max_norm, self.weights
        )

    def step(self, batch) -> Step:
        config, dist = self.config, self.dist
        x, y = batch.inputs, batch.targets
        if config.dropout > 0:  # dropout masks from a seed of (seed, epoch, batch[, rank]): resumable
            key = (config.seed, self.state.epoch, self.state.batch) + ((dist.rank,) if dist.is_distributed else ())
            torch.manual_seed(hash(key) & 0x7FFFFFFF)
        self.sums.grad_batches += 1
        if self.device_sums is not None:  # nothing is read back: see sync
            if self.graph is None or not self.graph.run(x, y):
                self.device_sums.add(*self.update(x, y), batch.size)
            return Step(batch.size, None)
        loss, correct, grad_sq = self.update(x, y)
        for i, g in enumerate(grad_sq):
            self.sums.grad_sq[i] += float(g)
        loss_sum, correct = float(loss.detach()), int(correct)
        if dist.is_distributed:  # the global batch's, for the log and the finiteness check
            loss_sum, correct = dist.sum([loss_sum, correct])
        return Step(batch.size, loss_sum / batch.size, int(correct))

    def diverged(self, step: Step) -> UserError:
        return self._divergence(step.value, self.state.epoch_frames)

    def _divergence(self, value: float, frames: int) -> UserError:
        return UserError(
            f"fine-tuning loss became {value} in epoch {self.state.epoch} after {frames:,} "
            f"frames (learning rate {self.schedule.lr:g}); lower --lr. The best model so far is not written over."
        )

    def record(self, step: Step) -> None:
        if self.device_sums is None:
            self.sums.loss += step.value * step.frames
            self.sums.correct += step.extra

    def after_batch(self) -> None:
        if self.device_sums is not None and self.state.batch % SYNC_EVERY == 0:
            self.sync()

    def sync(self) -> None:
        """Sums kept on the device: bring them to the host; raise if a step's loss was not finite."""
        if self.device_sums is None:
            return
        loss, correct, bad, grad_sq = self.device_sums.read()
        if self.dist.max(int(bad is not None)):  # every process stops when one diverged
            raise self._divergence(
                loss if bad is not None else math.nan, bad if bad is not None else self.state.epoch_frames
            )
        if self.dist.is_distributed:  # the global batches' (the host path sums every batch's)
            loss, correct = self.dist.sum([loss, correct])
        self.sums.loss, self.sums.correct, self.sums.grad_sq = loss, int(correct), grad_sq

    def end_epoch(self) -> None:
        """Evaluate on dev, let the schedule accept or reject the epoch, log it."""
        self.sync()
        lr = self.schedule.lr
        dev_loss, dev_acc, _ = self._evaluate_dev()
        accepted, stop = self.schedule.step(dev_loss)
        if not accepted and self.schedule.rolls_back:
            self.model.load_state_dict(self.best)
        if accepted:
            self.best = self._copy_weights()
        row = self._epoch_row(lr, dev_loss, dev_acc, accepted)
        self.rows.append(row)
        _warn_if_at_chance(row, float(self.priors.max()), len(self.model.hidden), self.config)
        console.print(
            f"epoch {row['epoch']}: lr {lr:.4g} train loss {row['train_loss']:.4f} acc {row['train_acc']:.2%} | "
            f"dev loss {dev_loss:.4f} acc {dev_acc:.2%} | {'accepted' if accepted else 'rejected'} | "
            f"{row['frames_per_s']:,.0f} frames/s",
            highlight=False,
        )
        if self.dist.is_main:
            write_csv(self.out_dir / "train.csv", self.rows, self.columns)
        self.state.stopped = stop
        self.sums = _EpochSums(grad_sq=[0.0] * len(self.weights))
        if self.device_sums is not None:
            self.device_sums.reset()

    def _epoch_row(self, lr: float, dev_loss: float, dev_acc: float, accepted: bool) -> dict:
        s, sums = self.state, self.sums
        grad_norms = [math.sqrt(g / max(sums.grad_batches, 1)) for g in sums.grad_sq]
        return {
            "epoch": s.epoch,
            "lr": lr,
            "train_loss": sums.loss / max(s.epoch_frames, 1),
            "train_acc": sums.correct / max(s.epoch_frames, 1),
            "dev_loss": dev_loss,
            "dev_acc": dev_acc,
            "accepted": accepted,
            "seconds": s.epoch_seconds,
            "frames_per_s": s.epoch_frames / max(s.epoch_seconds, 1e-9),
            **{f"grad_norm_{i + 1}": g for i, g in enumerate(grad_norms[:-1])},
            "grad_norm_out": grad_norms[-1],
            **{f"sat_{i + 1}": s for i, s in enumerate(_saturation(self.model, self.sample))},
        }

    @property
    def columns(self) -> list[str]:
        n = len(self.model.hidden)
        return (
            ["epoch", "lr", "train_loss", "train_acc", "dev_loss", "dev_acc", "accepted", "seconds", "frames_per_s"]
            + [f"grad_norm_{i + 1}" for i in range(n)]
            + ["grad_norm_out"]
            + [f"sat_{i + 1}" for i in range(n)]
        )

    def bar_total(self) -> int:
        return self.per_epoch

    def bar_value(self) -> str:
        return f"{self.sums.loss / max(self.state.epoch_frames, 1):.3f}"

    def where(self) -> str:
        return f"epoch {self.state.epoch} after {self.state.epoch_frames:,} frames"

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "best": self.best,
            "schedule": self.schedule.state_dict(),
            "position": self.state.state_dict(),
            "sums": asdict(self.sums),
            "rows": self.rows,
            "config": self.config.to_dict(),
            "pipeline": self.pipeline.to_dict(),
        }


def _write_outputs(trainer: _DnnTrainer) -> dict:
    """model.pt (the best weights), priors.txt, finetune.json and train.png; returns the summary."""
    config, store, out_dir, rows = trainer.config, trainer.store, trainer.out_dir, trainer.rows
    model, labels, priors = trainer.model, trainer.labels, trainer.priors
    model.load_state_dict(trainer.best)
    meta = {
        "config": config.to_dict(),
        "pipeline": trainer.pipeline.to_dict(),
        "input_dim": trainer.pipeline.dim,
        "hidden_sizes": [layer.out_features for layer in model.hidden],
        "targets": config.targets,
        "outputs": labels,
        "phones": store.phones,
        "states": store.states,
        "priors": priors.tolist(),
        "layers": trainer.layer_info,
    }
    save_model(out_dir, model, meta)
    (out_dir / "priors.txt").write_text("".join(f"{lab} {p:.8g}\n" for lab, p in zip(labels, priors)))
    train_rows = [r for r in rows if r["epoch"] > 0]
    best = min(rows, key=lambda r: r["dev_loss"])
    seconds = sum(r["seconds"] for r in train_rows)
    summary = {
        "config": config.to_dict(),
        "store": str(store.path.resolve()),
        "layers": trainer.layer_info,
        "epochs": len(train_rows),
        "best_epoch": best["epoch"],
        "best_dev_loss": best["dev_loss"],
        "best_dev_acc": best["dev_acc"],
        "seconds": seconds,
        "frames_per_s": sum(r["frames_per_s"] * r["seconds"] for r in train_rows) / max(seconds, 1e-9),
        "schedule": {"name": config.schedule, "epochs": trainer.schedule.history},
        "processes": trainer.dist.world,
        "versions": environment(),
    }
    write_json_atomic(out_dir / "finetune.json", summary)
    from asr_init.plots import plot_training

    start = "DBN" if config.dbn else config.init
    plot_training(rows, out_dir / "train.png", title=f"fine-tuning ({start}, {config.activation})")
    trainer.checkpoint_path.unlink(missing_ok=True)
    return summary
