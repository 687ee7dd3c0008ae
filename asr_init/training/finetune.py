"""The `finetune` stage: DNN frame classification with cross-entropy and "newbob".

The network is the DBN's hidden layers (or `--init`-initialised layers of the same
shape, or the lower K layers of another model) plus a new softmax layer over the store's
targets. Training is frame-shuffled mini-batch SGD with optional momentum, L2, dropout,
max-norm and gradient clipping. As in Kaldi nnet1, the learning rate multiplies the
gradient summed over the mini-batch (lr 0.008 at batch 256 = 2.05 x the mean gradient).
The learning-rate schedule (schedules.py) is by default Kaldi nnet1's newbob on dev
cross-entropy, measured before training and after every epoch; an epoch that does not
improve it is rejected and the weights roll back to the best ones.

Output folder: model.pt (best weights, config, pipeline, labels, priors), priors.txt,
finetune.json, train.csv, train.png, and checkpoint.pt (resumable; kept when the run
ends, so that `--resume --max-epochs N` can continue it).

Under torchrun the network is wrapped in DistributedDataParallel with summed gradients,
each process trains on its rows of every mini-batch and evaluates its share of the dev
utterances (distributed.py). Dropout masks are drawn per process, so with --dropout a run
on N processes is not the same numbers as on one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from asr_init.environment import environment
from asr_init.errors import UserError
from asr_init.features.pipeline import FeaturePipeline, FrameBuffer, sample_frames
from asr_init.features.store import FeatureStore, store_identity
from asr_init.folders import output_folder, reading
from asr_init.io import digest, load_run_checkpoint, write_csv, write_json_atomic
from asr_init.models.dbn import Source, dbn_source, load_stack
from asr_init.models.dnn import DNN, save_model
from asr_init.models.init import InitContext, init_weight_, input_power
from asr_init.models.nnet1 import find_feature_transform
from asr_init.models.nonlinearity import saturated_mask
from asr_init.progress import console, counted
from asr_init.records import INTEGER, NUMBER
from asr_init.training.config import FinetuneConfig
from asr_init.training.distributed import Dist, distributed
from asr_init.training.interrupts import StopFlag, catch_signals
from asr_init.training.loop import Strategy, Trainer, TrainState, already_finished, check_own_checkpoint, refuse_past
from asr_init.training.precision import forward_precision, matmul_precision
from asr_init.training.schedules import make_schedule

CHANCE_MARGIN = 0.01  # a train frame accuracy within this of the most frequent class's share is chance
DEVICE_NEUTRAL = ("device", "cuda_graphs")  # where a run trains, not what it trains: a resumption may change them
RESUME_NEUTRAL = (*DEVICE_NEUTRAL, "max_epochs")  # may differ between a run and its resumption
# A --dbn's (or a pruned model's) splice and widths: recorded as the run used them, compared by the source's
# digest (asr-init once recorded the options it ignored there, so a record may hold those).
SOURCE_SHAPE = ("splice", "layers", "hidden")
# The files a run starts from: option -> the name of its identity (digest) among a record's inputs.
SOURCE_PATHS = {"dbn": "--dbn DBN", "init_from": "--init-from model", "feature_transform": "--feature-transform"}
# The fields of a finished run's finetune.json that a command run again reads (the CLI prints them).
SUMMARY_FIELDS = {"epochs": INTEGER, "best_epoch": INTEGER, "best_dev_loss": NUMBER, "best_dev_acc": NUMBER}


def class_priors(store: FeatureStore, targets: str, floor: float) -> np.ndarray:
    """Relative frequencies of the targets in the train split (FeatureStore.class_counts: counts
    floored at `floor`; 0 for a class without a train frame)."""
    counts = store.class_counts(targets, "train", floor)
    return counts / counts.sum()


def magnitude_masks(weights: list[torch.Tensor], sparsity: float, scope: str = "layer") -> list[torch.Tensor]:
    """0/1 masks zeroing the `sparsity` share of smallest-magnitude weights: of each weight
    matrix (`layer`), or of all of them together (`global`)."""

    def cut(magnitudes: torch.Tensor) -> torch.Tensor:
        k = int(sparsity * len(magnitudes))
        return magnitudes.kthvalue(k).values if k else magnitudes.new_tensor(-1.0)

    if scope == "global":
        cuts = [cut(torch.cat([w.detach().abs().flatten() for w in weights]))] * len(weights)
    else:
        cuts = [cut(w.detach().abs().flatten()) for w in weights]
    return [(w.detach().abs() > c).to(w.dtype) for w, c in zip(weights, cuts)]


def read_source(config: FinetuneConfig) -> Source | None:
    """The network --dbn or --init-from names (None for neither), read once for a run: its pipeline,
    its layers and a pruned run's masks are all taken from it."""
    if config.dbn:
        return dbn_source(Path(config.dbn), config.feature_transform)
    return load_stack(Path(config.init_from), config.feature_transform) if config.init_from else None


def _pruned_network(config: FinetuneConfig, pipeline: FeaturePipeline, labels: list[str], source: Source):
    """(the whole --init-from model with `config.sparsity` of its hidden weights zeroed, info, masks)."""
    meta = source.meta  # its outputs and batch norm: checked by input_pipeline
    model = DNN(pipeline.dim, meta["hidden_sizes"], len(labels), config.activation, config.dropout, config.batch_norm)
    model.load_state_dict(source.model.state_dict())  # the run's network (its --dropout too), the model's weights
    masks = magnitude_masks([layer.weight for layer in model.hidden], config.sparsity, config.prune_scope)
    with torch.no_grad():
        for layer, mask in zip(model.hidden, masks):
            layer.weight.mul_(mask)
    info = [{"layer": i + 1, "from": "init-from", "sparsity": float(1 - m.mean())} for i, m in enumerate(masks)]
    return model, info + [{"layer": "output", "from": "init-from"}], masks


def build_network(config: FinetuneConfig, pipeline: FeaturePipeline, outputs: int, sample: torch.Tensor,
                  start: Source | None):  # fmt: skip
    """(the DNN with its hidden layers from the DBN or another model (`start`, read_source's), or
    `config.init`; per-layer info)."""
    gen = torch.Generator().manual_seed(config.seed)
    source, origin, sizes = _source_layers(config, pipeline, start)
    model = DNN(pipeline.dim, sizes, outputs, config.activation, config.dropout, config.batch_norm)
    info, h = [], sample
    with torch.no_grad():
        for i, layer in enumerate(model.hidden):
            layer.bias.zero_()
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
                ctx = InitContext(config.activation, input_power(h), h, layer.bias)
                res = init_weight_(layer.weight, config.init, gen, ctx)
                info.append({"layer": i + 1, "from": "init", "init": config.init, "std": res.std, "D": res.spread})
            z = layer(h)
            h = model.act((z - z.mean(0)) / z.std(0).clamp(min=1e-5) if config.batch_norm else z)  # the batch's norm
        spec = config.init if config.output_init == "same" else config.output_init
        model.output.bias.zero_()
        res = init_weight_(model.output.weight, spec, gen, InitContext(config.activation, input_power(h), h,
                                                                       model.output.bias))  # fmt: skip
        info.append({"layer": "output", "from": "init", "init": spec, "std": res.std})
    return model, info


def _source_layers(config: FinetuneConfig, pipeline: FeaturePipeline, source: Source | None):
    """(the (W, b) layers taken from --dbn or --init-from (`source`), where from, the hidden sizes)."""
    if config.dbn:
        return source.layers, "dbn", [w.shape[0] for w, _ in source.layers]
    sizes = config.sizes
    if not config.init_from:
        return [], "init", sizes
    other, activation = source.layers, source.activation
    if config.reuse_layers > len(other):
        raise UserError(f"--reuse-layers {config.reuse_layers}: {config.init_from} has only {len(other)} hidden layers")
    if config.reuse_layers and activation != config.activation:  # its layers' weights were trained for it
        raise UserError(
            f"--init-from {config.init_from} has {activation} hidden layers, but --activation is {config.activation}; "
            f"give --activation {activation} to reuse them"
        )
    for i, (w, _) in enumerate(other[: config.reuse_layers]):
        want = (sizes[i], pipeline.dim if i == 0 else sizes[i - 1])
        if tuple(w.shape) != want:
            raise UserError(
                f"layer {i + 1} of {config.init_from} is {w.shape[1]}->{w.shape[0]}, but this network needs "
                f"{want[1]}->{want[0]}; match --layers/--hidden (its inputs are the model's splice)"
            )
    return other[: config.reuse_layers], "init-from", sizes


def evaluate_split(model: DNN, store: FeatureStore, pipeline: FeaturePipeline, split: str, targets: str, device,
                   dist: Dist = Dist(), precision: str = "fp32") -> tuple[float, float, int]:  # fmt: skip
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


def saturation(model: DNN, sample: torch.Tensor) -> dict[str, float]:
    """sat_1 ... sat_N: the share of saturated hidden units per layer on a fixed frame sample (dead ones for ReLU)."""
    keep: list[torch.Tensor] = []
    model.eval()
    with torch.no_grad():
        model(sample, keep)
    model.train()
    return {f"sat_{i + 1}": float(saturated_mask(h, model.activation).float().mean()) for i, h in enumerate(keep)}


def _warn_if_at_chance(row: dict, majority: float, layers: int, config: FinetuneConfig) -> None:
    """Warn when an epoch's train frame accuracy is no better than always answering the most
    frequent class, naming the saturated layers, with advice that fits what is seen."""
    if row["train_acc"] > majority + CHANCE_MARGIN:
        return
    shares = [(i, row[f"sat_{i}"]) for i in range(1, layers + 1)]
    saturated = [f"{i}: {s:.0%}" for i, s in shares if s > 0.1]
    if saturated:
        where = "saturated layers (share of units) " + ", ".join(saturated)
        advice = f"lower --lr (now {config.lr:g})" + ("" if config.dbn else " or start from a DBN (--dbn)")
    else:
        where = f"no layer has over 10 % saturated units (most: {max(s for _, s in shares):.0%})"
        advice = (
            f"the network sits on the plateau of the class priors: raise --momentum (now {config.momentum:g}) or "
            f"--lr (now {config.lr:g}), or train more epochs" + ("" if config.dbn else ", or start from a DBN (--dbn)")
        )
    console.print(
        f"[yellow]warning: epoch {row['epoch']}: train frame accuracy {row['train_acc']:.2%} is at chance (the most "
        f"frequent class is {majority:.2%} of the frames); {where}. {advice}.",
        highlight=False,
    )


def finetune(store_path: Path, config: FinetuneConfig, out_dir: Path, resume: bool = False, force: bool = False,
             interrupt_after: int | None = None, strategy: Strategy | None = None,
             source: Source | None = None) -> dict:  # fmt: skip
    """Train the DNN; returns the finetune.json summary.

    Under torchrun the processes share every mini-batch (see distributed.py). `strategy`
    (default: Strategy.for_device) says how often the host reads the steps' sums and whether
    the step is a CUDA graph; `interrupt_after` (testing) acts as a signal arriving after
    that many mini-batches. `source`: `read_source(config)` where the caller has read it (prune,
    once for all its sparsities); read here otherwise."""
    config.validate()
    dist = distributed(config.device)
    graphs = config.cuda_graphs and not dist.is_distributed and config.dropout == 0
    strategy = strategy or Strategy.for_device(dist.device, graphs)
    store = FeatureStore(store_path)
    if not store.split("train") or not store.split("dev"):
        raise UserError(f"store {store.path} needs train and dev utterances for fine-tuning (newbob uses dev)")
    source = source or read_source(config)
    pipeline = input_pipeline(config, store, source)
    config.targets = config.targets or store.target_kinds[0]
    store.labels(config.targets)  # the store has them
    settings = {"store": str(store.path.resolve()), "config": config.to_dict(), "inputs": _identities(config, store)}
    inputs = {"feature store": store.path, "--dbn folder": config.dbn, "--init-from folder": config.init_from,
              "--feature-transform": config.feature_transform}  # fmt: skip
    with reading(store.path, config.dbn, config.init_from), output_folder(
        out_dir, settings, record="finetune.config.json", finished=("finetune.json", "model.pt"), force=force,
        inputs=inputs, in_place=True, started=("checkpoint.pt",), neutral=RESUME_NEUTRAL + _from_source(config),
        summary="finetune.json", what="a finetune run", dist=dist, summary_fields=SUMMARY_FIELDS,
        upgrade=_same_sources(settings["config"], by_identity=True),
    ) as output:  # fmt: skip
        done = output.done
        epochs = done.get("epochs") if done is not None else None
        if isinstance(epochs, int):
            refuse_past(f"the fine-tuning run in {out_dir}", epochs, "--max-epochs", config.max_epochs)
        more = isinstance(epochs, int) and epochs < config.max_epochs and not done.get("stopped", 1)
        if already_finished(out_dir, done, more, resume, "fine-tuning run", f" of {epochs} epochs",
                            f" to --max-epochs {config.max_epochs}"):  # fmt: skip
            return done
        if dist.is_distributed:
            console.print(f"{dist.world} processes share every batch of {config.batch_size} frames")
        flag = StopFlag(interrupt_after)
        with matmul_precision(config.precision):  # the start's dev loss and initialisation too
            trainer = _DnnTrainer(config, store, pipeline, Path(out_dir), resume or done is not None, dist, strategy,
                                  source)  # fmt: skip
            console.print(settings_line(trainer), highlight=False)
            with catch_signals(flag):
                trainer.run(flag)
        return dist.from_main(lambda: _write_outputs(trainer, settings if done is not None else None))


def _from_source(config: FinetuneConfig) -> tuple[str, ...]:
    """The settings a run's --dbn or --init-from decides (and its digest identifies)."""
    return SOURCE_SHAPE if config.dbn or config.sparsity > 0 else SOURCE_SHAPE[:1] if config.init_from else ()


def _same_sources(config: dict, by_identity: bool = False):
    """A record's upgrade: a --dbn, --init-from or --feature-transform that the record and this run
    both give is compared by its digest (the inputs' identities), not by the path it was given by,
    which is relative to the folder each command ran from. `by_identity` (a folder's record): a path
    is taken as this run's only where the record holds an identity of that file, which is then
    compared (a record without identities, an older asr-init's, keeps its path); otherwise (a
    checkpoint, whose folder's record has been compared) always."""

    def upgrade(record: dict) -> dict:
        then = record.get("config") if isinstance(record, dict) else None
        ids = record.get("inputs") if isinstance(then, dict) else None
        for key, name in SOURCE_PATHS.items() if isinstance(then, dict) else ():
            known = not by_identity or (isinstance(ids, dict) and ids.get(name) is not None)
            if then.get(key) and config.get(key) and known:
                then[key] = config[key]
        return record

    return upgrade


def settings_line(trainer: _DnnTrainer) -> str:
    """The settings the run uses, in one line (finetune.config.json holds them all)."""
    config, sizes = trainer.config, [layer.weight.shape[0] for layer in trainer.model.hidden]
    origins = {"dbn": f"DBN {config.dbn}", "init-from": f"{config.init_from}", "init": f"init {config.init}"}
    sources = ", ".join(dict.fromkeys(origins.get(i["from"], i["from"]) for i in trainer.layer_info[:-1]))
    shape = f"{len(sizes)} x {sizes[0]}" if len(set(sizes)) == 1 else " / ".join(map(str, sizes))
    schedule = {
        "newbob": f"newbob (halving from {config.start_halving:g}, stop at {config.end_halving:g})",
        "exponential": f"exponential (x{config.decay:g} per epoch)",
    }.get(config.schedule, config.schedule)
    if config.sparsity > 0:
        sources += f" pruned to {config.sparsity * 100:g} %" + (" (global)" if config.prune_scope == "global" else "")
    extras = ["batch norm"] if config.batch_norm else []
    for name in ("dropout", "l2", "max_norm", "grad_clip"):  # the regularisers the run uses
        if getattr(config, name):
            extras.append(f"{name.replace('_', '-')} {getattr(config, name):g}")
    return (
        f"finetune: {shape} {config.activation}{''.join(', ' + text for text in extras)} from {sources}, "
        f"softmax over {len(trainer.labels)} {config.targets}; lr {config.lr:g}, momentum {config.momentum:g}, "
        f"{schedule}, batch {config.batch_size}, up to {counted(config.max_epochs, 'epoch')}, {config.precision} on "
        f"{trainer.device}"
    )


def _started_from(config: FinetuneConfig) -> str:
    """Where the hidden layers came from, in a few words (train.png's title)."""
    if config.dbn:
        return "DBN"
    if config.sparsity > 0:
        return f"{Path(config.init_from).name} pruned to {config.sparsity * 100:g} %"
    k = config.reuse_layers
    if not k:
        return config.init
    model = Path(config.init_from).name
    taken = f"layer 1 from {model}" if k == 1 else f"layers 1-{k} from {model}"
    return taken if k == len(config.sizes) else f"{taken}, {config.init}"


def _identities(config: FinetuneConfig, store: FeatureStore) -> dict[str, str]:
    """Digests of what the run reads: the store, and the DBN or model it starts from (with a
    Kaldi network's feature transform)."""
    ids = {"feature store": store_identity(store.path)}
    if config.dbn:
        ids["--dbn DBN"] = digest(_model_files(Path(config.dbn), ("dbn.pt",)))
    if config.init_from:
        ids["--init-from model"] = digest(_model_files(Path(config.init_from), ("model.pt", "dbn.pt")))
    source = config.dbn or config.init_from
    if config.feature_transform or (source and Path(source).is_file()):  # a Kaldi file's, given or found beside it
        ids["--feature-transform"] = digest([find_feature_transform(Path(source), config.feature_transform)])
    return ids


def _model_files(path: Path, names: tuple[str, ...]) -> list[Path]:
    """An asr-init output folder's model files, or a Kaldi nnet1 file itself."""
    return [path] if path.is_file() else [path / name for name in names]


def input_pipeline(config: FinetuneConfig, store: FeatureStore, source: Source | None) -> FeaturePipeline:
    """The pipeline of `_source_pipeline` (`source`: read_source's), with the store's feature settings
    where its source records none (a Kaldi network's transform does not), so that export and the
    checks of later stores know the features the model is trained on."""
    pipeline = _source_pipeline(config, store, source)
    if pipeline.feature_config is None:
        pipeline = dataclasses.replace(pipeline, feature_config=store.feature_config)
    return pipeline


def _source_pipeline(config: FinetuneConfig, store: FeatureStore, source: Source | None) -> FeaturePipeline:
    """The DBN's or the --init-from model's splice and normalisation (checked against the
    store's features), or new ones from the store. A pruned model (--sparsity) is the whole
    --init-from network: its activation is that model's, whatever --activation says, and so
    are its batch norm and targets where --batch-norm and --targets are not given. The
    config records the splice (and the widths) the source gives, not the options it overrides."""
    if config.dbn:
        pipeline = source.pipeline
        pipeline.check_store(store, f"DBN {config.dbn}")
        widths = [int(w.shape[0]) for w, _ in source.layers]
        config.splice, config.layers, config.hidden = pipeline.splice, len(widths), widths  # recorded as used
        return pipeline
    if config.init_from:
        pipeline = source.pipeline
        pipeline.check_store(store, f"model {config.init_from}")
        config.splice = pipeline.splice
        if config.sparsity > 0:
            if source.meta is None:
                raise UserError(f"--sparsity prunes a whole 'asr-init finetune' model, and {config.init_from} has no "
                                "model.pt (it is a pretrain output folder)")  # fmt: skip
            widths = [int(w.shape[0]) for w, _ in source.layers]
            config.activation, config.layers, config.hidden = source.activation, len(widths), widths
            meta = source.meta
            norm = bool(meta["config"].get("batch_norm"))
            config.batch_norm, config.targets = config.batch_norm or norm, config.targets or meta["targets"]
            if config.targets == meta["targets"] not in store.target_kinds:
                raise UserError(
                    f"--sparsity prunes the whole of {config.init_from}, whose outputs are {meta['targets']}; store "
                    f"{store.path} has no {meta['targets']} targets (it holds {', '.join(store.target_kinds)})"
                )
            labels = store.labels(config.targets)
            if config.targets == meta["targets"] and config.batch_norm == norm and meta["outputs"] != labels:
                raise UserError(
                    f"--sparsity prunes the whole of {config.init_from}, whose {len(meta['outputs'])} "
                    f"{meta['targets']} outputs are not the {len(labels)} {config.targets} of store {store.path}; "
                    "fine-tune it on a store made with the same inventory"
                )
            if meta["outputs"] != labels or config.batch_norm != norm:
                raise UserError(
                    f"--sparsity prunes the whole of {config.init_from}, which has {len(meta['outputs'])} "
                    f"{meta['targets']} outputs{' and batch norm' if norm else ''}: fine-tune it with the same "
                    "--targets and --batch-norm setting"
                )
        return pipeline
    return FeaturePipeline.from_store(store, config.splice)


@dataclass
class EpochSums:
    """Training loss, correct frames and squared gradient norms of an epoch, summed where the
    step runs (one float64 vector on its device, no read per step) and read by the host every
    `Strategy.read_every` steps; the epoch's frame count at the first step whose loss was not
    finite is kept too. On several processes each sums its own rows' loss and correct frames
    (`read` adds them up); the gradient norms are of the summed gradient, the same on each."""

    loss: float = 0.0
    correct: int = 0
    grad_sq: list = field(default_factory=list)  # per weight matrix, hidden layers then output
    grad_batches: int = 0
    frames: int = 0  # of the epoch, at the last read (not in checkpoints: TrainState has it)

    def on(self, device: torch.device, main: bool = True) -> None:
        """Start the device's sums from these (the loss and correct frames, global sums, on the
        main process only) and the epoch's frames so far (for the first non-finite step)."""
        self.acc = torch.tensor(self._values(main), dtype=torch.float64, device=device)

    def _values(self, main: bool) -> list[float]:
        """The device vector's layout: loss, correct, frames, first non-finite frame (-1: none), grad_sq."""
        loss, correct = (self.loss, self.correct) if main else (0.0, 0)
        return [loss, correct, self.frames, -1.0, *self.grad_sq]

    def reset(self) -> None:
        """Start the next epoch's sums from zero, in the same device tensor (a step captured as a
        CUDA graph keeps adding to the tensor it was captured on)."""
        self.loss, self.correct, self.grad_sq, self.grad_batches, self.frames = 0.0, 0, [0.0] * len(self.grad_sq), 0, 0
        self.acc.copy_(torch.tensor(self._values(True), dtype=torch.float64))

    def add(self, loss: torch.Tensor, correct: torch.Tensor, grad_sq: list[torch.Tensor], size: int) -> None:
        """Add a step on this process's rows of a global batch of `size` frames."""
        acc = self.acc
        acc[0] += loss.double() / size * size  # (mean loss per frame) x frames, in the order the log always had
        acc[1] += correct.double()
        acc[4:] += torch.stack(grad_sq).double()
        acc[3] = torch.where((acc[3] < 0) & ~torch.isfinite(loss), acc[2], acc[3])
        acc[2] += size

    def read(self, dist: Dist) -> int | None:
        """Bring the device's sums here; the epoch's frames before the first non-finite step, or None."""
        loss, correct, frames, bad, *grad_sq = self.acc.tolist()
        loss, correct, any_bad = dist.sum([loss, correct, float(bad >= 0)])
        self.loss, self.correct, self.grad_sq, self.frames = loss, int(correct), grad_sq, int(frames)
        return None if not any_bad else int(bad if bad >= 0 else frames)

    def state_dict(self) -> dict:
        return {"loss": self.loss, "correct": self.correct, "grad_sq": list(self.grad_sq),
                "grad_batches": self.grad_batches}  # fmt: skip


def sgd_update(net: torch.nn.Module, model: DNN, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               precision: str = "fp32", grad_clip: float | None = None, max_norm: float | None = None,
               weights: list[torch.Tensor] | None = None, masks: list[torch.Tensor] | None = None):  # fmt: skip
    """One fine-tuning step on (x, y): forward, cross-entropy summed over the batch,
    backward, gradient clipping, SGD, max-norm, and with `masks` (pruning) the pruned hidden
    weights put back to zero. Device work only (it reads nothing back),
    so it can be captured as a CUDA graph. `net` is `model` or its DDP wrapper. Returns
    the loss, the count of correct frames and the squared norms of `weights`' gradients
    before clipping, as tensors."""
    with forward_precision(precision, x.device):
        logits = net(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y, reduction="sum")  # summed, as Kaldi nnet1
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
    if masks:
        with torch.no_grad():
            for layer, mask in zip(model.hidden, masks):
                layer.weight.mul_(mask)
    return loss.detach(), (logits.argmax(1) == y).sum(), grad_sq


class GraphedStep:
    """`update` on full mini-batches, with its sums, replayed as a CUDA graph made by `capture`
    (`Strategy.capture`); the trainer's step and the bench's.

    Captured after the first eager step (when the optimiser's buffers exist), again after the
    learning rate changes (SGD reads it as a number when the graph is recorded) or when the
    sums are another object (a graph writes to the tensors it was captured on)."""

    def __init__(self, update, model: torch.nn.Module, opt: torch.optim.Optimizer, capture, size: int, dim: int,
                 device: torch.device):  # fmt: skip
        self.update, self.model, self.opt, self.capture = update, model, opt, capture
        self.graph, self.lr, self.acc, self.eager_steps, self.enabled = None, None, None, 0, True
        self.x = torch.empty(size, dim, device=device)
        self.y = torch.empty(size, dtype=torch.long, device=device)

    def run(self, x: torch.Tensor, y: torch.Tensor, sums: EpochSums) -> bool:
        """Replay the step on (x, y) into `sums`; False when the caller must run it eagerly."""
        if not self.enabled or len(x) != len(self.x):
            return False
        lr = self.opt.param_groups[0]["lr"]
        self.x.copy_(x)
        self.y.copy_(y)
        if self.graph is None or lr != self.lr or sums.acc is not self.acc:
            if self.eager_steps == 0:
                self.eager_steps += 1
                return False
            params = list(self.model.parameters())
            state = params + [p.grad for p in params] + list(self.model.buffers()) + [sums.acc]  # buffers: batch norm
            state += [self.opt.state[p]["momentum_buffer"] for p in params if self.opt.state[p]]
            body = lambda: sums.add(*self.update(self.x, self.y), len(self.x))  # noqa: E731
            self.graph, self.lr, self.acc = self.capture(body, state, "the fine-tuning step"), lr, sums.acc
            self.enabled = self.graph is not None
            if self.graph is None:
                return False
        self.graph.replay()
        return True


class _DnnTrainer(Trainer):
    """Frame-shuffled mini-batch SGD on cross-entropy, with the schedule deciding per epoch."""

    bar_label = "epoch"
    bar_per_epoch = True

    def __init__(self, config: FinetuneConfig, store: FeatureStore, pipeline: FeaturePipeline, out_dir: Path,
                 resume: bool, dist: Dist, strategy: Strategy, source: Source | None):  # fmt: skip
        self.config, self.store, self.pipeline, self.out_dir = config, store, pipeline, out_dir
        self.dist, self.device, self.strategy = dist, dist.device, strategy
        self.labels = store.labels(config.targets)
        self.epochs = config.max_epochs
        sample = sample_frames(store, pipeline, "train", config.stats_frames, seed=config.seed + 1)
        self.masks = None
        if config.sparsity > 0:
            self.model, self.layer_info, self.masks = _pruned_network(config, pipeline, self.labels, source)
        else:
            self.model, self.layer_info = build_network(config, pipeline, len(self.labels), sample, source)
        self.model.to(self.device)
        self.masks = [m.to(self.device) for m in self.masks] if self.masks else None
        self.net = dist.wrap(self.model)  # what training steps call: DDP on several processes
        self.sample = sample.to(self.device)
        # Kaldi nnet1 semantics: the loss is summed over the batch, so is the L2 term.
        self.opt = torch.optim.SGD(
            self.model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.l2 * config.batch_size
        )
        self.priors = class_priors(store, config.targets, config.prior_floor)
        self.buffer = FrameBuffer(store, store.split("train"), pipeline, config.batch_size, config.buffer_frames,
                                  config.targets, self.device, dist.rank, dist.world)  # fmt: skip
        self.bar_frames = min(config.max_frames or self.buffer.num_frames, self.buffer.num_frames)
        self.schedule = make_schedule(config.schedule, config.to_dict())
        self.weights = [layer.weight for layer in self.model.hidden] + [self.model.output.weight]
        self.graph = None
        if strategy.capture is not None:
            self.graph = GraphedStep(self.update, self.model, self.opt, strategy.capture, config.batch_size,
                                     pipeline.dim, self.device)  # fmt: skip
        self.checkpoint_path = path = out_dir / "checkpoint.pt"
        ckpt = dist.from_main(lambda: load_run_checkpoint(path))
        self._resume(ckpt, resume) if ckpt is not None else self._start()
        self.sums.on(self.device, dist.is_main)

    def _start(self) -> None:
        dev_loss, dev_acc, _ = self._evaluate_dev()
        self.schedule.start(dev_loss)
        self.best = self._copy_weights()
        self.state, self.sums = TrainState(), EpochSums(grad_sq=[0.0] * len(self.weights))
        row = {"epoch": 0, "lr": self.config.lr, "dev_loss": dev_loss, "dev_acc": dev_acc, "accepted": True}
        self.rows = [row | saturation(self.model, self.sample)]

    def _resume(self, ckpt: dict, resume: bool) -> None:
        path = self.checkpoint_path
        if not resume:
            raise UserError(
                f"{self.out_dir} holds an interrupted fine-tuning run ({path}); re-run with --resume to continue it "
                "or --force to start over"
            )
        _same_sources(self.config.to_dict())(ckpt)
        check_own_checkpoint(ckpt, path, self.config.to_dict(), self.pipeline.to_dict(),
                             RESUME_NEUTRAL + _from_source(self.config),
                             ("model", "optimizer", "position", "best", "sums", "rows"), ("model", "best"))  # fmt: skip
        if "schedule" not in ckpt:
            raise UserError(f"{path} was written by an older asr-init and cannot be resumed; use --force to start over")
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["schedule"])
        refuse_past(
            f"the fine-tuning run in {self.out_dir}", TrainState.begun(ckpt["position"]), "--max-epochs", self.epochs
        )
        self.state = TrainState()
        self.state.load_state_dict(ckpt["position"])
        self.best, self.sums, self.rows = ckpt["best"], EpochSums(**ckpt["sums"]), ckpt["rows"]
        self.sums.frames = self.state.epoch_frames
        console.print(f"resuming at epoch {self.state.epoch}, batch {self.state.batch}")

    def _copy_weights(self) -> dict:
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def _evaluate_dev(self) -> tuple[float, float, int]:
        config = self.config
        return evaluate_split(self.model, self.store, self.pipeline, "dev", config.targets, self.device, self.dist,
                              config.precision)  # fmt: skip

    def batches(self, epoch: int, skip: int):
        for group in self.opt.param_groups:  # the schedule's rate for this epoch (also on resumption)
            group["lr"] = self.schedule.lr
        return self.buffer.batches(seed=self.config.seed, epoch=epoch, max_frames=self.config.max_frames, skip=skip)

    def update(self, x: torch.Tensor, y: torch.Tensor):
        """`sgd_update` with this run's network, optimiser and settings."""
        config = self.config
        return sgd_update(self.net, self.model, self.opt, x, y, config.precision, config.grad_clip, config.max_norm,
                          self.weights, self.masks)  # fmt: skip

    def step(self, batch) -> int:
        config, dist = self.config, self.dist
        if config.dropout > 0:  # dropout masks from a seed of (seed, epoch, batch[, rank]): resumable
            key = (config.seed, self.state.epoch, self.state.batch) + ((dist.rank,) if dist.is_distributed else ())
            torch.manual_seed(hash(key) & 0x7FFFFFFF)
        self.sums.grad_batches += 1
        if self.graph is None or not self.graph.run(batch.inputs, batch.targets, self.sums):
            self.sums.add(*self.update(batch.inputs, batch.targets), batch.size)
        return batch.size

    def sync(self) -> None:
        """Read the sums; every process stops when one step's loss was not finite."""
        bad = self.sums.read(self.dist)
        if bad is not None:
            raise UserError(
                f"fine-tuning loss became {self.sums.loss / max(self.sums.frames, 1):g} in epoch {self.state.epoch} "
                f"after {bad:,} frames (learning rate {self.schedule.lr:g}); lower --lr. The best model so far is "
                "not written over."
            )

    def end_epoch(self) -> None:
        """Evaluate on dev, let the schedule accept or reject the epoch, log it."""
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
            write_csv(self.out_dir / "train.csv", self.rows, list(row))  # an epoch's row has every column
        self.state.stopped = stop
        self.sums.reset()

    def _epoch_row(self, lr: float, dev_loss: float, dev_acc: float, accepted: bool) -> dict:
        s, sums = self.state, self.sums
        grad_norms = [math.sqrt(g / max(sums.grad_batches, 1)) for g in sums.grad_sq]
        return {"epoch": s.epoch, "lr": lr, "train_loss": sums.loss / max(s.epoch_frames, 1),
                "train_acc": sums.correct / max(s.epoch_frames, 1), "dev_loss": dev_loss, "dev_acc": dev_acc,
                "accepted": accepted, "seconds": s.epoch_seconds,
                "frames_per_s": s.epoch_frames / max(s.epoch_seconds, 1e-9),
                **{f"grad_norm_{i + 1}": g for i, g in enumerate(grad_norms[:-1])}, "grad_norm_out": grad_norms[-1],
                **saturation(self.model, self.sample)}  # fmt: skip

    def bar_value(self) -> str:
        return f"{self.sums.loss / max(self.state.epoch_frames, 1):.3f}"

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "best": self.best,
                "schedule": self.schedule.state_dict(), "position": self.state.state_dict(),
                "sums": self.sums.state_dict(), "rows": self.rows, "config": self.config.to_dict(),
                "pipeline": self.pipeline.to_dict()}  # fmt: skip


def _write_outputs(trainer: _DnnTrainer, record: dict | None = None) -> dict:
    """model.pt (the best weights), priors.txt, finetune.json and train.png; returns the summary.
    `record`: the settings of a finished run that went on, which finetune.config.json takes with them."""
    config, store, out_dir, rows = trainer.config, trainer.store, trainer.out_dir, trainer.rows
    model, labels, priors = trainer.model, trainer.labels, trainer.priors
    model.load_state_dict(trainer.best)
    meta = {"config": config.to_dict(), "pipeline": trainer.pipeline.to_dict(), "input_dim": trainer.pipeline.dim,
            "hidden_sizes": [layer.out_features for layer in model.hidden], "targets": config.targets,
            "outputs": labels, "phones": store.phones, "states": store.states, "priors": priors.tolist(),
            "layers": trainer.layer_info}  # fmt: skip
    save_model(out_dir, model, meta)
    (out_dir / "priors.txt").write_text("".join(f"{lab} {p:.8g}\n" for lab, p in zip(labels, priors)))
    train_rows = [r for r in rows if r["epoch"] > 0]
    best = [r for r in rows if r["accepted"]][-1]  # the weights model.pt holds
    seconds = sum(r["seconds"] for r in train_rows)
    summary = {"config": config.to_dict(), "store": str(store.path.resolve()), "layers": trainer.layer_info,
               "epochs": len(train_rows), "stopped": trainer.state.stopped, "best_epoch": best["epoch"],
               "best_dev_loss": best["dev_loss"], "best_dev_acc": best["dev_acc"], "seconds": seconds,
               "frames_per_s": sum(r["frames_per_s"] * r["seconds"] for r in train_rows) / max(seconds, 1e-9),
               "schedule": {"name": config.schedule, "epochs": trainer.schedule.history},
               "processes": trainer.dist.world, "processes_by_segment": trainer.state.segments,
               "versions": environment()}  # fmt: skip
    from asr_init.plots import plot_training

    plot_training(rows, out_dir / "train.png", title=f"fine-tuning ({_started_from(config)}, {config.activation})")
    if record is not None:
        write_json_atomic(out_dir / "finetune.config.json", record)
    write_json_atomic(out_dir / "finetune.json", summary)  # last: the run is finished when it exists
    return summary
