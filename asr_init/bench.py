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
