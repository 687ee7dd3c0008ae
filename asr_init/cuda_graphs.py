"""CUDA graphs for training steps, captured only after a check, with an eager fallback.

A step of a few milliseconds of arithmetic is made of tens to hundreds of kernels; queued
one by one from Python it is bound by launch overhead, not by the GPU. A CUDA graph
(`torch.cuda.CUDAGraph`) records the step once and replays it with one launch. What a
graph reads must sit at fixed addresses: the caller copies each batch into static input
tensors, keeps per-step numbers (learning rate, momentum) in device tensors, and draws no
random numbers inside (or draws them before the replay).

`capture_checked` captures a step body after two warm-up runs (which create cuBLAS
handles and autograd's buffers) on a side stream, as PyTorch's whole-network capture
recipe does. Warm-up, capture and the check run on the state as it was and restore it
after, so training goes on from exactly where it was. The check replays the graph once
and runs the body eagerly once on the same inputs and state: if their results differ, or
capture raises, the caller gets None and runs eagerly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

WARMUP = 2
_FAILED: list[str] = []  # a capture that failed in this process: the later ones stay eager


def _snapshot(state: list[torch.Tensor]) -> list[torch.Tensor]:
    return [t.detach().clone() for t in state]


def _restore(state: list[torch.Tensor], saved: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for t, s in zip(state, saved, strict=True):
            t.copy_(s)


def capture_checked(body: Callable[[], None], state: list[torch.Tensor], what: str, rtol: float = 1e-5,
                    atol: float = 1e-6) -> torch.cuda.CUDAGraph | None:  # fmt: skip
    """Capture `body` (device work only, on static tensors) as a CUDA graph, or None (with a
    warning naming `what`) when capture fails or the replay does not match the eager body.

    `state` lists every tensor `body` changes (parameters, gradients, optimiser buffers,
    sums); it is left as it was either way. After a capture has failed in this process, every
    later one is eager: a failed capture can leave the caching allocator's capture state behind."""
    if _FAILED:
        return _eager(what, f"an earlier capture in this process failed ({_FAILED[0]})")
    saved = _snapshot(state)
    main = torch.cuda.current_stream()
    try:
        side = torch.cuda.Stream()
        side.wait_stream(main)
        with torch.cuda.stream(side):
            for _ in range(WARMUP):
                body()
        main.wait_stream(side)
        _restore(state, saved)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the input pipeline's thread may allocate (pinned) memory meanwhile,
        # which the default "global" mode would turn into an error in that thread.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            body()
        _restore(state, saved)
        body()
        eager = _snapshot(state)
        _restore(state, saved)
        graph.replay()
        replayed = _snapshot(state)
        _restore(state, saved)
    except RuntimeError as err:  # e.g. an operation that cannot be captured
        # A failed capture can leave its stream current and warm-up work queued elsewhere.
        torch.cuda.set_stream(main)
        torch.cuda.synchronize()
        _restore(state, saved)
        _FAILED.append(str(err).splitlines()[0] if str(err) else type(err).__name__)
        return _eager(what, f"capture failed ({_FAILED[0]})")
    worst = _largest_difference(eager, replayed, rtol, atol)
    if worst is not None:
        return _eager(what, f"the replay differed from the eager step by {worst:.3g}")
    return graph


def _eager(what: str, why: str) -> None:
    from asr_init.progress import console

    console.print(f"[yellow]warning: CUDA graph of {what}: {why}; running it eagerly", highlight=False)


def _largest_difference(a: list[torch.Tensor], b: list[torch.Tensor], rtol: float, atol: float) -> float | None:
    """None when every pair agrees within atol + rtol |a| (NaN where both are NaN agrees),
    else the largest absolute difference."""
    for x, y in zip(a, b, strict=True):
        if not torch.allclose(x, y, rtol=rtol, atol=atol, equal_nan=True):
            return float((x.double() - y.double()).abs().nan_to_num(nan=float("inf")).max())
    return None
