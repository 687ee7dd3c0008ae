"""The software and machine a run happened on: one record for bug reports and run folders.

`environment()` is written as "versions" into every stage's summary JSON (the store's
config.json and summary.json, pretrain.json, finetune.json, evaluate's results.json), and
`asr-init --version` prints it. It says which torch build ran (CPU or CUDA x.y), which
devices it could use and how many threads it had, and the environment variables that
override the run's precision on CUDA where they are set: the things that change numbers and
speed from one machine to another, and that a user who brings their own torch may not
know they have.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata

from asr_init import __version__

# Packages whose versions change what a run computes (features, training) or how it reads files.
_PACKAGES = ("numpy", "scipy", "librosa", "soundfile", "soxr")
# Environment variables that change what CUDA computes whatever the options say: TF32 forced on
# (torch) or off (NVIDIA's libraries) under any --precision, cuBLAS's workspace (its sums' order).
NUMERIC_VARIABLES = ("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "NVIDIA_TF32_OVERRIDE", "CUBLAS_WORKSPACE_CONFIG")


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def torch_build() -> str:
    """'CPU', 'CUDA 12.8' or 'ROCm 6.2': what the installed torch was compiled for."""
    import torch

    if getattr(torch.version, "hip", None):
        return f"ROCm {torch.version.hip}"
    if torch.version.cuda:
        return f"CUDA {torch.version.cuda}"
    return "CPU"


def usable_devices() -> list[str]:
    """Devices torch can run on here, as `--device` accepts them: 'cpu' and each 'cuda:N' (with its name)."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():  # False on a CUDA build without a driver or GPU
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            devices.append(f"cuda:{i} ({props.name}, {props.total_memory / 2**30:.0f} GiB)")
    return devices


def environment(torch_details: bool = True) -> dict:
    """The version/environment record: package versions, torch build, usable devices, threads,
    platform. Without `torch_details` (extract, which does not use torch) torch is not imported,
    which takes longer than extracting an hour of audio: its version is read from its metadata."""
    import soundfile

    if torch_details:
        import torch
    variables = {name: os.environ[name] for name in NUMERIC_VARIABLES if name in os.environ}
    return {
        "asr_init": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__ if torch_details else _package_version("torch"),
        **({"torch_build": torch_build()} if torch_details else {}),
        **{name: _package_version(name) for name in _PACKAGES},
        "libsndfile": soundfile.__libsndfile_version__,
        **({"devices": usable_devices(), "threads": torch.get_num_threads()} if torch_details else {}),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        **({"environment_variables": variables} if variables else {}),
    }


def version_text(env: dict) -> str:
    """`asr-init --version`: the record as a few lines to paste into a bug report."""
    packages = ", ".join(f"{name} {env[name]}" for name in _PACKAGES if env.get(name))
    return "\n".join(
        [
            f"asr-init {env['asr_init']}",
            f"torch {env['torch']} ({env['torch_build']} build)",
            f"devices: {', '.join(env['devices'])}",
            f"threads: {env['threads']} (torch intra-op) on {env['cpu_count']} CPU cores",
            f"python {env['python']}, {packages}, libsndfile {env['libsndfile']}",
            f"platform: {env['platform']} ({env['processor']})",
            *(f"set: {name}={value}" for name, value in env.get("environment_variables", {}).items()),
        ]
    )
