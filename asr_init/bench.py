"""Benchmarks that print figures: throughput, x real time, peak memory, matmul ceiling.

These are measurements, not tests: they print what this machine does and never fail on
a number.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from asr_init.config import LIMITS, ConfigBase, resolve_device
from asr_init.folders import terminate_as_interrupt
from asr_init.progress import console


@dataclass
class BenchConfig(ConfigBase):
    """The benchmarks' own options, those no stage config holds (None: a benchmark without it).
    Each benchmark checks them, and the stage configs it trains with, in this process before it
    measures, extracts or starts anything; a bad value is named as typed (`invalid --seconds nan`)."""

    seconds: float | None = None
    outputs: int | None = None
    runs: int | None = None
    processes: list[int] | None = None
    frames: int | None = None
    batch_size: int | None = None  # bench distributed's, which --frames must hold

    def validate(self) -> None:
        if self.seconds is not None:
            self._check(0 < self.seconds < math.inf, "seconds", "must be a finite number of seconds > 0")
        if self.outputs is not None:
            top = LIMITS["hidden"]  # a softmax layer's width, as a hidden layer's
            self._check(1 <= self.outputs <= top, "outputs", f"must be from 1 to {top:,}")
        if self.runs is not None:
            self._check(self.runs >= 1, "runs", "must be at least 1")
        if self.processes is not None:
            self._check(bool(self.processes), "processes", "must list at least one count, such as 1,2")
            self._check(min(self.processes) >= 1, "processes", "every count must be at least 1")
            self._check(max(self.processes) <= LIMITS["jobs"], "processes", f"at most {LIMITS['jobs']:,}")
        if self.frames is not None:
            batch = max(1, self.batch_size or 1)
            self._check(self.frames >= batch, "frames", "must be at least one batch (--batch-size)")


def default_store(hours: float) -> Path:
    """An embedded-corpus feature store of `hours` in the cache, extracted on first use."""
    from asr_init.corpora.config import SynthConfig
    from asr_init.corpora.synth import cache_dir, default_corpus
    from asr_init.features.config import ExtractConfig
    from asr_init.features.extract import extract

    corpus = default_corpus(SynthConfig(hours=hours))
    out = cache_dir() / f"store-{corpus.name}"
    extract(corpus, out, ExtractConfig())
    return out


def peak_rss_mib(children: bool = False) -> float:
    """Peak resident set size of this process (or of its finished children), MiB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0


@contextmanager
def _scratch() -> Iterator[Path]:
    """A scratch folder that is removed however the block ends: SIGTERM too, taken as Ctrl-C."""
    with terminate_as_interrupt():
        scratch = Path(tempfile.mkdtemp(prefix="asr-init-bench-"))
        try:
            yield scratch
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def bench_extract(corpus: Path, config, runs: int = 3) -> dict:
    """Time `extract` (the whole stage: reading the corpus, the worker pool, both passes, the
    metadata) on `corpus` into a scratch folder `runs` times; returns the figures of the median run."""
    import statistics

    from asr_init.features.extract import extract

    BenchConfig(runs=runs).validate()
    walls = []
    for run in range(runs):
        with _scratch() as scratch:
            t0 = time.perf_counter()
            summary = extract(corpus, scratch / "store", config)
            walls.append(time.perf_counter() - t0)
        console.print(f"run {run + 1}: {summary['hours'] * 3600 / walls[-1]:,.0f}x real time", highlight=False)
    wall = statistics.median(walls)
    frames = sum(s["frames"] for s in summary["splits"].values())
    figures = {
        "features": config.features,
        "audio_hours": summary["hours"],
        "wall_s": wall,
        "x_real_time": summary["hours"] * 3600 / wall,
        "x_real_time_runs": [summary["hours"] * 3600 / w for w in walls],
        "frames_per_s": frames / wall,
        "jobs": config.jobs,
        "peak_rss_mib_main": peak_rss_mib(),
        "peak_rss_mib_worker": peak_rss_mib(children=True) if config.jobs > 1 else None,  # jobs=1: no worker
    }
    workers = f", {figures['peak_rss_mib_worker']:,.0f} MiB (largest worker)" if config.jobs > 1 else " (no workers)"
    console.print(
        f"extract ({config.features}): {figures['audio_hours']:.3f} h of audio in {wall:.1f} s (median of {runs}) = "
        f"{figures['x_real_time']:,.0f}x real time, {figures['frames_per_s']:,.0f} frames/s with {config.jobs} job(s); "
        f"peak RSS {figures['peak_rss_mib_main']:,.0f} MiB (main){workers}",
        highlight=False,
    )
    return figures


def matmul_ceiling(
    device: str = "cpu", sizes: tuple[int, ...] = (1024, 2048), runs: int = 5, run_seconds: float = 0.25, dtype=None
) -> float:
    """Best sustained FLOP/s of a square matrix product on this machine (the ceiling).

    For each size, `runs` runs of back-to-back products lasting ~`run_seconds` each; the
    best run counts. Short single products are too noisy on a shared virtual machine.
    """
    import torch

    dtype = dtype or torch.float32
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        c = torch.empty(n, n, device=device, dtype=dtype)
        torch.mm(a, b, out=c)
        for _ in range(runs):
            _sync(device)
            t, count = time.perf_counter(), 0
            while time.perf_counter() - t < run_seconds:
                torch.mm(a, b, out=c)
                count += 1
                if count % 4 == 0:
                    _sync(device)
            _sync(device)
            best = max(best, count * 2 * n**3 / (time.perf_counter() - t))
    return best


def precision_ceilings(device: str = "cpu") -> dict[str, float]:
    """The square-product ceiling (FLOP/s) in each --precision: fp32 with TF32 off, fp32
    storage with TF32 on (tensor cores on CUDA; a CPU computes fp32), bfloat16. Printed so
    that a figure can be read against the ceiling of the arithmetic it used."""
    import torch

    from asr_init.training.precision import matmul_precision

    out = {}
    for precision in ("fp32", "tf32"):
        with matmul_precision(precision):
            out[precision] = matmul_ceiling(device, runs=3)
    # A CPU without bfloat16 arithmetic runs it ~100x slower: one small size is enough to say so.
    sizes = (1024, 2048) if device.startswith("cuda") else (256,)
    out["bf16"] = matmul_ceiling(device, sizes=sizes, runs=3, dtype=torch.bfloat16)
    console.print(
        f"matrix-product ceilings on {device}: "
        + ", ".join(f"{name} {flops / 1e9:,.1f} GFLOP/s" for name, flops in out.items()),
        highlight=False,
    )
    return out


def _sync(device: str) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def paired_throughput(
    step, flops_per_frame: float, seconds: float = 4.0, window: float = 0.4, device: str = "cpu"
) -> dict:
    """Frames/s of `step()` (which trains on some frames and returns how many) as a share of the ceiling.

    The load of a shared machine drifts by +-15 % within seconds, so a throughput and a
    ceiling measured a few seconds apart do not compare. Windows of `step` alternate with
    windows of the square matrix product of the same length; each pair gives one ratio,
    and the median ratio over ceil(seconds / window) pairs is the figure (quartiles too).
    """
    import statistics

    for _ in range(3):
        step()
    _sync(device)
    rates, ceilings, ratios = [], [], []
    for _ in range(max(3, math.ceil(seconds / window))):
        ceiling = matmul_ceiling(device, runs=1, run_seconds=window / 2)
        frames, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < window:
            frames += step()
        _sync(device)
        rate = frames / (time.perf_counter() - t0)
        rates.append(rate)
        ceilings.append(ceiling)
        ratios.append(rate * flops_per_frame / ceiling)
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    rate = statistics.median(rates)
    return {
        "frames_per_s": rate,
        "gflops": rate * flops_per_frame / 1e9,
        "ceiling_flops": statistics.median(ceilings),
        "of_ceiling": statistics.median(ratios),
        "of_ceiling_q1": q1,
        "of_ceiling_q3": q3,
        "pairs": len(ratios),
        "flops_per_frame": flops_per_frame,
    }


def _cd1_throughput(
    n_visible: int, n_hidden: int, batches, batch: int, seconds: float, device: str, precision: str
) -> dict:
    """paired_throughput of pre-training's own CD-1 step (ContrastiveDivergence) of a Gaussian
    n_visible x n_hidden layer on the batches of an endless iterator, as `asr-init pretrain` runs
    it on `device` (Strategy.for_device): read every step on a CPU; on a GPU replayed as a CUDA
    graph and read every READ_EVERY steps."""
    import torch

    from asr_init.models.rbm import RBM, ContrastiveDivergence, UniformSource, cd1_flops_per_frame
    from asr_init.training.loop import Strategy

    rbm = RBM(n_visible, n_hidden, "gauss", device)
    torch.nn.init.normal_(rbm.Wt, 0, 1.40784 / n_visible**0.5, generator=torch.Generator(device=device).manual_seed(0))
    strategy = Strategy.for_device(torch.device(device))
    cd = ContrastiveDivergence(rbm, UniformSource(0, device), 0.01, batch, l2=2e-4, bf16=precision == "bf16",
                               read_every=strategy.read_every, capture=strategy.capture)  # fmt: skip
    counter = itertools.count(1)

    def step() -> int:
        x = next(batches)
        cd.step(x, 0.5)
        if next(counter) % strategy.read_every == 0:
            cd.read()
        return len(x)

    return paired_throughput(step, cd1_flops_per_frame(n_visible, n_hidden), seconds, device=device)


def bench_cd1(
    n_visible: int,
    n_hidden: int,
    batch: int = 256,
    seconds: float = 4.0,
    device: str = "cpu",
    precision: str = "fp32",
) -> dict:
    """CD-1 throughput of one Gaussian-Bernoulli layer on random N(0, 1) data (see paired_throughput)."""
    import torch

    data = torch.randn(64 * batch, n_visible, generator=torch.Generator().manual_seed(1)).to(device)
    batches = itertools.cycle([data[i * batch : (i + 1) * batch] for i in range(64)])
    return _cd1_throughput(n_visible, n_hidden, batches, batch, seconds, device, precision)


_RSS_CHILD = """
import json, resource, sys
from pathlib import Path
from asr_init.training.pretrain import pretrain
from asr_init.training.config import PretrainConfig
store, config, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
pretrain(Path(store), PretrainConfig.from_dict(config), Path(out))
# VmHWM: this program's own peak (ru_maxrss keeps the high-water mark of the parent it was forked from)
hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")]
kib = int(hwm[0]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_rss_mib": kib / 1024}))
"""


def memory_config(buffer_frames: int):
    """The pre-training whose peak memory bench_pretrain measures: one 429x1024 Gaussian layer,
    one epoch at batch 256 through a shuffling buffer of `buffer_frames` frames."""
    from asr_init.training.config import PretrainConfig

    return PretrainConfig(layers=1, hidden=1024, epochs=1, epochs_gauss=1, buffer_frames=buffer_frames,
                          report_every=10**9)  # fmt: skip


def peak_rss_of_pretraining(store: Path, buffer_frames: int) -> float:
    """Peak RSS (MiB) of a fresh process pre-training `memory_config(buffer_frames)` on `store`."""
    import json
    import subprocess
    import sys

    config = json.dumps(memory_config(buffer_frames).to_dict())
    with _scratch() as scratch:  # made here: a child ended by a signal (or by run's kill) leaves nothing behind
        child = [sys.executable, "-c", _RSS_CHILD, str(store), config, str(scratch / "pt")]
        out = subprocess.run(child, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mib"]


def bench_store_cd1(store_path: Path, seconds: float, device: str, batch: int, precision: str) -> dict:
    """CD-1 throughput of a 429x1024 Gaussian layer fed by the real input pipeline (FrameBuffer)."""
    from asr_init.features.pipeline import FeaturePipeline, FrameBuffer
    from asr_init.features.store import FeatureStore

    store = FeatureStore(store_path)
    pipe = FeaturePipeline.from_store(store, 5)
    buf = FrameBuffer(store, store.split("train"), pipe, batch, device=device)
    endless = (batch.inputs for epoch in itertools.count(1) for batch in buf.batches(0, epoch))
    return _cd1_throughput(pipe.dim, 1024, endless, batch, seconds, device, precision)


def _print_throughput(rows: list[dict], title: str) -> None:
    """One table row per measurement: frames/s, GFLOP/s, share of the paired ceiling."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=None, header_style="bold")
    table.add_column("measurement", min_width=20)
    for name in ("frames/s", "x RT", "GFLOP/s", "% ceil", "quartiles", "ceiling"):
        table.add_column(name, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(
            r["what"],
            f"{r['frames_per_s']:,.0f}",
            f"{r['frames_per_s'] / 100:,.0f}",
            f"{r['gflops']:.1f}",
            f"{r['of_ceiling']:.1%}",
            f"{r['of_ceiling_q1']:.1%}-{r['of_ceiling_q3']:.1%}",
            f"{r['ceiling_flops'] / 1e9:.1f}",
        )
    console.print(table)


def bench_pretrain(
    stores: list[Path] = (),
    device: str = "cpu",
    seconds: float = 4.0,
    buffer_frames: int = 50_000,
    batches: tuple[int, ...] = (256, 1024),
    precision: str = "fp32",
) -> dict:
    """Print CD-1 throughput against the matmul ceiling, and peak memory for two store sizes.

    Per batch size: CD-1 429x1024 and 1024x1024 on random data, and 429x1024 fed by the
    input pipeline from the first store, with the store-fed rate as a share of the
    random-data rate. No `stores`: embedded-corpus stores of 0.25 h and 1 h (made on first
    use). The options and the stores are checked first (_check_pretrain)."""
    from asr_init.features.store import FeatureStore
    from asr_init.training.precision import matmul_precision

    _check_pretrain(device, seconds, buffer_frames, batches, precision)
    device = str(resolve_device(device))
    stores = list(stores) or [default_store(0.25), default_store(1.0)]
    train_frames = [FeatureStore(store).num_frames("train") for store in stores]
    ceilings = precision_ceilings(device)
    rows = []
    with matmul_precision(precision):
        for batch in batches:
            rows.extend(_cd1_rows(stores[0], device, seconds, batch, precision))
    _print_throughput(
        rows,
        f"CD-1 on {device}, {precision}, 10 x n_visible x n_hidden FLOPs per frame; each share is the median "
        "over windows of CD-1 paired with windows of the square float32 product (the ceiling)",
    )
    for row in rows:
        if "of_random" in row:
            console.print(f"{row['what']}: {row['of_random']:.1%} of the random-data rate", highlight=False)
    memory = []
    for store, frames in zip(stores, train_frames):
        rss = peak_rss_of_pretraining(store, buffer_frames)
        memory.append({"store": str(store), "train_frames": frames, "peak_rss_mib": rss})
        console.print(
            f"peak RSS pre-training one 429x1024 layer on {frames:,} train frames "
            f"(buffer {buffer_frames:,} frames): {rss:,.0f} MiB",
            highlight=False,
        )
    return {"throughput": rows, "memory": memory, "device": device, "ceilings": ceilings, "precision": precision}


def _check_pretrain(device: str, seconds: float, buffer_frames: int, batches, precision: str) -> None:
    """bench_pretrain's options, checked by the configs of what it trains: a 429x1024 Gaussian
    layer at each batch size on `device` (64 batches of random data), and memory_config."""
    from asr_init.training.config import PretrainConfig

    BenchConfig(seconds=seconds).validate()
    for batch in batches:
        PretrainConfig(layers=1, hidden=[1024], batch_size=batch, buffer_frames=64 * batch, device=device,
                       precision=precision).validate()  # fmt: skip
    memory_config(buffer_frames).validate()


def _cd1_rows(store: Path, device: str, seconds: float, batch: int, precision: str) -> list[dict]:
    rows = []
    for nv, nh in ((429, 1024), (1024, 1024)):
        figures = bench_cd1(nv, nh, batch=batch, device=device, seconds=seconds, precision=precision)
        rows.append({"what": f"CD-1 {nv}x{nh}, batch {batch}, random data", "batch": batch, **figures})
    figures = bench_store_cd1(store, seconds=seconds, device=device, batch=batch, precision=precision)
    row = {"what": f"CD-1 429x1024, batch {batch}, store {Path(store).name}", "batch": batch, **figures}
    return [*rows, row | {"of_random": row["frames_per_s"] / rows[0]["frames_per_s"]}]


def bench_finetune(
    layers: int = 6,
    hidden: int = 1024,
    inputs: int = 429,
    outputs: int = 117,
    batches: tuple[int, ...] = (256, 1024),
    seconds: float = 4.0,
    device: str = "cpu",
    precision: str = "fp32",
) -> dict:
    """SGD frames/s of the fine-tuning network on random data at each batch size, against the
    matmul ceiling measured in the same run, in `precision` (see training/precision.py).

    FLOPs per frame = 6 x weights (forward 2, backward 4: input and weight gradients). The
    ceilings of all three precisions are printed first; each row's share pairs it with
    windows of the float32 product under the same TF32 switch. The options are checked first,
    by the FinetuneConfig of each batch size (_finetune_configs).
    """
    import torch

    from asr_init.models.dnn import DNN
    from asr_init.training.precision import matmul_precision

    configs = _finetune_configs(layers, hidden, outputs, batches, seconds, device, precision)
    device = str(resolve_device(device))
    ceilings = precision_ceilings(device)
    rows = []
    with matmul_precision(precision):
        for config in configs:
            batch = config.batch_size
            gen = torch.Generator().manual_seed(0)
            model = DNN(inputs, config.sizes, outputs, config.activation).to(device)
            opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
            x = torch.randn(16 * batch, inputs, generator=gen).to(device)
            y = torch.randint(0, outputs, (16 * batch,), generator=gen).to(device)
            weights = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight"))
            step = _finetune_step(model, opt, x, y, batch, device, precision)
            result = paired_throughput(step, 6.0 * weights, seconds, device=device)
            network = f"{inputs}-{hidden}x{layers}-{outputs}"
            result.update(network=network, weights=weights, batch=batch, what=f"fine-tuning {network}, batch {batch}")
            rows.append(result)
    _print_throughput(
        rows,
        f"SGD on {device}, {precision}, 6 x {rows[0]['weights']:,} weights FLOPs per frame; each share is the "
        "median over windows paired with windows of the square float32 product (the ceiling)",
    )
    return {"rows": rows, "ceilings": ceilings, "precision": precision, "device": device}


def _finetune_configs(layers: int, hidden: int, outputs: int, batches, seconds: float, device: str, precision: str):
    """The FinetuneConfig bench_finetune trains with at each batch size, checked: `layers` x `hidden`
    sigmoid units, SGD at lr 0.008 without momentum, 16 batches of random data held."""
    from asr_init.training.config import FinetuneConfig

    BenchConfig(seconds=seconds, outputs=outputs).validate()
    configs = [FinetuneConfig(layers=layers, hidden=[hidden], batch_size=batch, buffer_frames=16 * batch, lr=0.008,
                              momentum=0.0, device=device, precision=precision) for batch in batches]  # fmt: skip
    for config in configs:
        config.validate()
    return configs


def _finetune_step(model, opt, x, y, batch: int, device: str, precision: str):
    """A `step` for paired_throughput: fine-tuning's own step (sgd_update, the EpochSums it adds
    to, GraphedStep on a GPU) on the next of 16 batches, as `asr-init finetune` runs it on
    `device` (Strategy.for_device): read every step on a CPU; on a GPU replayed as a CUDA graph
    and read every READ_EVERY steps."""
    import torch

    from asr_init.training.distributed import Dist
    from asr_init.training.finetune import EpochSums, GraphedStep, sgd_update
    from asr_init.training.loop import Strategy

    strategy = Strategy.for_device(torch.device(device))
    weights = [layer.weight for layer in model.hidden] + [model.output.weight]
    sums = EpochSums(grad_sq=[0.0] * len(weights))
    sums.on(torch.device(device))
    update = functools.partial(sgd_update, model, model, opt, precision=precision, weights=weights)
    graph = strategy.capture and GraphedStep(update, model, opt, strategy.capture, batch, x.shape[1], x.device)
    counter = itertools.count(1)

    def step() -> int:
        i = next(counter)
        rows = slice((i % 16) * batch, (i % 16 + 1) * batch)
        if not graph or not graph.run(x[rows], y[rows], sums):
            sums.add(*update(x[rows], y[rows]), batch)
        if i % strategy.read_every == 0:
            sums.read(Dist())
        return batch

    return step


def _distributed_configs(processes, frames: int, hidden: int, batch_size: int) -> tuple:
    """The PretrainConfig (one layer) and FinetuneConfig (two layers, one epoch) every process of
    bench_distributed runs, checked here, with the process counts, before any process starts."""
    from asr_init.training.config import FinetuneConfig, PretrainConfig

    BenchConfig(processes=list(processes), frames=frames, batch_size=batch_size).validate()
    common = dict(hidden=hidden, batch_size=batch_size, max_frames=frames, stats_frames=500)
    configs = (PretrainConfig(layers=1, epochs_gauss=1, report_every=10**9, **common),
               FinetuneConfig(layers=2, max_epochs=1, **common))  # fmt: skip
    for config in configs:
        config.validate()
    return configs


def _distributed_worker(store: str, root: str, pretrain_config, finetune_config) -> None:
    """One process of `bench_distributed`: pre-train one layer, then fine-tune one epoch."""
    from asr_init.training.finetune import finetune
    from asr_init.training.pretrain import pretrain

    console.quiet = True
    pretrain(Path(store), pretrain_config, Path(root) / "pretrain")
    finetune(Path(store), finetune_config, Path(root) / "finetune")


def bench_distributed(
    store: Path | None = None,
    processes: tuple[int, ...] = (1, 2),
    frames: int = 50_000,
    hidden: int = 1024,
    batch_size: int = 256,
) -> dict:
    """Frames/s of pre-training (one 429 x `hidden` Gaussian layer, CD-1) and fine-tuning
    (429-`hidden`x2-classes) on 1 and N CPU processes of one thread each (gloo), from the
    logs of real runs on `frames` frames of `store`; scaling efficiency = rate_N / (N rate_1).

    Every process is a fresh one with torch.set_num_threads(1), the one-process figure
    included, so that the figures compare. On a machine with fewer free cores than
    processes they measure the contention, not the method. No `store`: the 1 h embedded-corpus store.
    """
    from rich.table import Table

    from asr_init.features.store import FeatureStore
    from asr_init.io import read_json
    from asr_init.training.distributed import run_local

    configs = _distributed_configs(processes, frames, hidden, batch_size)
    store = store or default_store(1.0)
    rows = []
    with _scratch() as scratch:
        for n in processes:
            root = scratch / f"n{n}"
            run_local(n, _distributed_worker, str(store), str(root), *configs, threads=1)
            layer = read_json(root / "pretrain" / "pretrain.json")["layers"][0]
            done = min(frames, FeatureStore(store).num_frames("train"))
            ft = read_json(root / "finetune" / "finetune.json")
            rows.append({"processes": n, "pretrain": done / layer["seconds"], "finetune": ft["frames_per_s"]})
    base = rows[0]
    for r in rows:
        for stage in ("pretrain", "finetune"):
            r[f"{stage}_efficiency"] = r[stage] / (r["processes"] / base["processes"] * base[stage])
    table = Table(
        title=f"frames/s on {', '.join(str(n) for n in processes)} CPU process(es), 1 thread each, gloo; "
        f"batch {batch_size}, {frames:,} frames per stage; efficiency = rate_N / (N x rate_1)",
        title_justify="left",
        box=None,
        header_style="bold",
    )
    for name in ("processes", "pretrain frames/s", "efficiency", "finetune frames/s", "efficiency "):
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(
            str(r["processes"]),
            f"{r['pretrain']:,.0f}",
            f"{r['pretrain_efficiency']:.0%}",
            f"{r['finetune']:,.0f}",
            f"{r['finetune_efficiency']:.0%}",
        )
    console.print(table)
    console.print(
        f"pre-training: CD-1 of a 429x{hidden} Gaussian layer; fine-tuning: SGD of a 429-{hidden}x2 sigmoid network; "
        f"this machine has {os.cpu_count()} CPU(s) and a load average of {os.getloadavg()[0]:.1f} now",
        highlight=False,
    )
    return {"rows": rows, "frames": frames, "hidden": hidden, "batch_size": batch_size}
