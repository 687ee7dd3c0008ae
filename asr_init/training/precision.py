"""Arithmetic precision of the matrix products in training (`--precision`).

- fp32: float32 products (the default; the numbers every test and figure is measured with).
- tf32: TensorFloat-32 tensor-core products on CUDA (inputs rounded to a 10-bit mantissa,
  float32 accumulation and storage). A CPU has no TF32 and computes fp32, bit for bit.
- bf16: fine-tuning runs the forward products and the loss under `torch.autocast` in
  bfloat16 (8-bit mantissa inputs, float32 accumulation); parameters, gradients, optimiser
  state and the update stay float32, as mixed-precision training does. Pre-training gives
  the four products of each CD step bfloat16 inputs the same way (models/rbm.py);
  its parameters, momentum, update and guard statistics stay float32.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch

from asr_init.training.config import PRECISIONS


@contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    """Allow TF32 products on CUDA inside the block for `tf32`, forbid them otherwise;
    the previous setting is restored after."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def forward_precision(precision: str, device: torch.device):
    """The context for a forward pass and its loss: bfloat16 autocast for `bf16`, else nothing."""
    if precision == "bf16":
        # No cast cache: a CUDA graph must not keep casts made while it was recorded.
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=False)
    return nullcontext()
