"""Benchmarks that print figures: throughput, x real time, peak memory, matmul ceiling.

These are measurements, not tests: they print what this machine does and never fail on
a number.
"""

from __future__ import annotations

import resource
import shutil
import tempfile
import time
from pathlib import Path

from .progress import console


def peak_rss_mib(children: bool = False) -> float:
    """Peak resident set size of this process (or of its finished children), MiB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0


def bench_extract(corpus: Path, jobs: int) -> dict:
    """Time `extract` on `corpus` into a scratch folder; returns the figures."""
    from .config import DATA_DIR
    from .extract import ExtractConfig, extract

    scratch = Path(tempfile.mkdtemp(prefix="asr-init-bench-"))
    try:
        cfg = ExtractConfig(jobs=jobs, phones=str(DATA_DIR / "phones39.txt") if (corpus / "corpus.json").exists() else None)
        t0 = time.perf_counter()
        summary = extract(corpus, scratch / "store", cfg)
        wall = time.perf_counter() - t0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    frames = sum(s["frames"] for s in summary["splits"].values())
    figures = {
        "audio_hours": summary["hours"], "wall_s": wall, "x_real_time": summary["hours"] * 3600 / wall,
        "frames_per_s": frames / wall, "jobs": jobs,
        "peak_rss_mib_main": peak_rss_mib(), "peak_rss_mib_worker": peak_rss_mib(children=True),
    }
    console.print(
        f"extract: {figures['audio_hours']:.3f} h of audio in {wall:.1f} s = {figures['x_real_time']:.0f}x real time, "
        f"{figures['frames_per_s']:.0f} frames/s with {jobs} job(s); peak RSS {figures['peak_rss_mib_main']:.0f} MiB "
        f"(main), {figures['peak_rss_mib_worker']:.0f} MiB (largest worker)", highlight=False,
    )
    return figures


def matmul_ceiling(device: str = "cpu", sizes: tuple[int, ...] = (1024, 2048), runs: int = 5,
                   run_seconds: float = 0.25, dtype=None) -> float:
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


def _sync(device: str) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def bench_cd1(n_visible: int, n_hidden: int, batch: int = 256, seconds: float = 3.0, device: str = "cpu",
              data=None, dtype=None) -> float:
    """CD-1 frames/s of one RBM layer on random N(0,1) data (or a given (frames, n_visible) tensor)."""
    import torch

    from .rbm import RBM, UniformSource

    dtype = dtype or torch.float32
    rbm = RBM(n_visible, n_hidden, "gauss", device, dtype)
    torch.nn.init.normal_(rbm.Wt, 0, 1.40784 / n_visible**0.5, generator=torch.Generator(device=device).manual_seed(0))
    uniforms = UniformSource(0, device)
    if data is None:
        data = torch.randn(64 * batch, n_visible, generator=torch.Generator().manual_seed(1)).to(device, dtype)
    nb = len(data) // batch
    batches = [data[i * batch:(i + 1) * batch].to(device, dtype) for i in range(nb)]
    for i in range(3):
        rbm.cd_step(batches[i % nb], 0.01, 0.5, 2e-4, uniforms)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        float(rbm.cd_step(batches[steps % nb], 0.01, 0.5, 2e-4, uniforms).error_sum)
        steps += 1
    return steps * batch / (time.perf_counter() - t0)


_RSS_CHILD = """
import json, resource, sys, tempfile
from pathlib import Path
from asr_init.pretrain import PretrainConfig, pretrain
store, buffer_frames = sys.argv[1], int(sys.argv[2])
with tempfile.TemporaryDirectory() as tmp:
    cfg = PretrainConfig(layers=1, hidden=1024, epochs=1, epochs_gauss=1, buffer_frames=buffer_frames, report_every=10**9)
    pretrain(Path(store), cfg, Path(tmp) / "pt")
print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def peak_rss_of_pretraining(store: Path, buffer_frames: int) -> float:
    """Peak RSS (MiB) of a fresh process pre-training one 429x1024 layer for one epoch on `store`."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(store), str(buffer_frames)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mib"]


def bench_store_cd1(store_path: Path, seconds: float = 3.0, device: str = "cpu") -> float:
    """CD-1 frames/s of a 429x1024 Gaussian layer fed by the real input pipeline (FrameBuffer)."""
    import torch

    from .pipeline import FeaturePipeline, FrameBuffer
    from .rbm import RBM, UniformSource
    from .store import FeatureStore

    store = FeatureStore(store_path)
    pipe = FeaturePipeline.from_store(store, 5)
    buf = FrameBuffer(store, store.split("train"), pipe, 256, device=device)
    rbm = RBM(pipe.dim, 1024, "gauss", device)
    torch.nn.init.normal_(rbm.Wt, 0, 1.40784 / pipe.dim**0.5, generator=torch.Generator(device=device).manual_seed(0))
    uniforms = UniformSource(0, device)
    frames, epoch = 0, 1
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for x, _ in buf.batches(0, epoch):
            float(rbm.cd_step(x, 0.01, 0.5, 2e-4, uniforms).error_sum)
            frames += len(x)
            if time.perf_counter() - t0 >= seconds:
                break
        epoch += 1
    return frames / (time.perf_counter() - t0)


def bench_pretrain(stores: list[Path], device: str = "cpu", seconds: float = 3.0, buffer_frames: int = 50_000) -> dict:
    """Print CD-1 throughput against the matmul ceiling, and peak memory for two store sizes."""
    from .rbm import cd1_flops_per_frame
    from .store import FeatureStore

    ceiling = matmul_ceiling(device)
    rows = []
    for nv, nh in ((429, 1024), (1024, 1024)):
        fps = bench_cd1(nv, nh, device=device, seconds=seconds)
        rows.append({"what": f"CD-1 {nv}x{nh} random data", "frames_per_s": fps, "flops_per_frame": cd1_flops_per_frame(nv, nh)})
    if stores:
        fps = bench_store_cd1(stores[0], seconds=seconds, device=device)
        rows.append({"what": f"CD-1 429x1024 from store {Path(stores[0]).name}", "frames_per_s": fps,
                     "flops_per_frame": cd1_flops_per_frame(429, 1024)})
    ceiling = max(ceiling, matmul_ceiling(device))  # measured before and after: the better of the two
    console.print(f"fp32 matrix-multiply ceiling on {device}: {ceiling / 1e9:.1f} GFLOP/s (best sustained square product)")
    for r in rows:
        r["gflops"] = r["frames_per_s"] * r["flops_per_frame"] / 1e9
        r["of_ceiling"] = r["gflops"] * 1e9 / ceiling
        console.print(f"{r['what']:<42} {r['frames_per_s']:>9,.0f} frames/s  {r['gflops']:6.1f} GFLOP/s  "
                      f"{r['of_ceiling']:6.1%} of ceiling  ({r['frames_per_s'] / 100:,.0f}x real time at 100 frames/s)",
                      highlight=False)
    memory = []
    for store in stores:
        frames = FeatureStore(store).num_frames("train")
        rss = peak_rss_of_pretraining(store, buffer_frames)
        memory.append({"store": str(store), "train_frames": frames, "peak_rss_mib": rss})
        console.print(f"peak RSS pre-training one 429x1024 layer on {frames:,} train frames "
                      f"(buffer {buffer_frames:,} frames): {rss:,.0f} MiB", highlight=False)
    return {"ceiling_flops": ceiling, "throughput": rows, "memory": memory, "device": device}


def bench_finetune(layers: int = 6, hidden: int = 1024, inputs: int = 429, outputs: int = 117, batch: int = 256,
                   seconds: float = 3.0, device: str = "cpu") -> dict:
    """SGD frames/s of the fine-tuning network on random data, against the matmul ceiling.

    FLOPs per frame = 6 x weights (forward 2, backward 4: input and weight gradients).
    """
    import torch

    from .dnn import DNN

    gen = torch.Generator().manual_seed(0)
    model = DNN(inputs, [hidden] * layers, outputs, "sigmoid").to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.008)
    x = torch.randn(16 * batch, inputs, generator=gen).to(device)
    y = torch.randint(0, outputs, (16 * batch,), generator=gen).to(device)
    weights = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight"))

    def step(i: int) -> None:
        xb, yb = x[(i % 16) * batch:(i % 16 + 1) * batch], y[(i % 16) * batch:(i % 16 + 1) * batch]
        loss = torch.nn.functional.cross_entropy(model(xb), yb, reduction="sum")
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()

    for i in range(3):
        step(i)
    ceiling = matmul_ceiling(device)
    _sync(device)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step(steps)
        steps += 1
    _sync(device)
    fps = steps * batch / (time.perf_counter() - t0)
    ceiling = max(ceiling, matmul_ceiling(device))
    flops = 6.0 * weights
    result = {"frames_per_s": fps, "gflops": fps * flops / 1e9, "of_ceiling": fps * flops / ceiling, "ceiling_flops": ceiling,
              "network": f"{inputs}-{hidden}x{layers}-{outputs}", "weights": weights}
    console.print(f"fp32 matrix-multiply ceiling on {device}: {ceiling / 1e9:.1f} GFLOP/s", highlight=False)
    console.print(f"fine-tuning {result['network']} at batch {batch}: {fps:,.0f} frames/s, {result['gflops']:.1f} GFLOP/s "
                  f"(6 x {weights:,} weights per frame) = {result['of_ceiling']:.1%} of ceiling, "
                  f"{fps / 100:,.0f}x real time", highlight=False)
    return result
