"""Training on several processes started by torchrun: one GPU (or CPU process) each.

`torchrun --nproc-per-node N ... asr-init pretrain|finetune ...` starts N copies of the
command with WORLD_SIZE, RANK and LOCAL_RANK in their environment. `distributed()` reads
them, joins the process group (NCCL for CUDA, with process r on cuda:LOCAL_RANK; gloo for
the CPU) and hands the stage a `Dist`: this process's rank, the number of processes, and
the collective operations the training loops need. Without torchrun (or with one process)
`Dist` is the single process and every operation is a no-op: a one-process run computes
what it computed before multi-process training existed, bit for bit.

How the stages divide the work (the learning rates mean the same on 1 and N processes):

* ``--batch-size`` is the global mini-batch; process r trains on rows
  [r B / N, (r + 1) B / N) of every global batch (`batch_rows`) and reads only those frames
  from the memory-mapped shards.
* Pre-training sums the CD statistics over the processes before each update (the guards
  decide on the summed statistics); fine-tuning uses DistributedDataParallel with a hook
  that sums the gradients (the loss is summed over the batch, as in Kaldi nnet1).
* Rank 0 alone holds the run folder's lock and writes logs, plots and checkpoints; it
  reads a checkpoint and sends it to the others, so only rank 0 needs the output folder.
  Checkpoints hold global state only (positions in global batches), so a run can resume on
  another number of processes.
* A signal (torchrun forwards SIGTERM to its workers) stops every process after the same
  mini-batch: the stop flag is agreed on after every batch.
"""

from __future__ import annotations

import atexit
import gc
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as tdist

from asr_init.errors import UserError
from asr_init.progress import console, results

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    """This process's place among the processes of a run, and their collective operations.

    `Dist()` is the single process: `world` 1, every operation returns its input.
    """

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world > 1

    def all_reduce_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` (on `device`) over the processes, in place."""
        if self.is_distributed:
            tdist.all_reduce(tensor, op=tdist.ReduceOp.SUM)
        return tensor

    def sum(self, values: list[float]) -> list[float]:
        """Numbers summed over the processes (in float64)."""
        if not self.is_distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        return self.all_reduce_(t).tolist()

    def max(self, value: int) -> int:
        """The largest of the processes' `value`s."""
        if not self.is_distributed:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
        return int(t.item())

    def barrier(self) -> None:
        if self.is_distributed:
            tdist.barrier()

    def from_main(self, fn: Callable[[], T]) -> T:
        """`fn()` run on rank 0 alone; its result (or its UserError) on every process.

        For what touches the output folder (the lock, checkpoints): other ranks never read
        it, so on several machines only rank 0's needs to hold it."""
        if not self.is_distributed:
            return fn()
        box: list[Any] = [None]
        if self.is_main:
            try:
                box[0] = ("ok", fn())
            except UserError as exc:
                box[0] = ("error", str(exc))
        tdist.broadcast_object_list(box, src=0)
        kind, value = box[0]
        if kind == "error":
            raise UserError(value)
        return value

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model as the training step calls it: DistributedDataParallel with summed
        gradients on several processes, the model itself on one."""
        if not self.is_distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        ddp = DistributedDataParallel(model, device_ids=ids)
        ddp.register_comm_hook(None, _sum_gradients)
        return ddp


def _sum_gradients(_state, bucket):  # no annotation: DDP checks it and would see a string here
    """DDP communication hook: the gradient summed over the processes (DDP's default
    averages it), as a Future of the bucket's tensor. With the loss summed over each
    process's rows, the sum is the gradient of the loss summed over the global batch: the
    single-process update."""
    fut = tdist.all_reduce(bucket.buffer(), async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


def distributed(device: str) -> Dist:
    """The processes of this run, from torchrun's environment; one process without it.

    Joins the process group (once per process: a later stage in the same process uses it
    again, as re-joining on the same port can meet the previous group's store) and picks
    this process's device (cuda:LOCAL_RANK for `device` cuda). The consoles (messages and
    results) of every rank but 0 are silenced for the rest of the process, so that the
    command's closing lines are printed once too.
    """
    from asr_init.config import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    chosen = resolve_device(device, say=rank == 0)
    if world <= 1:
        if chosen.type == "cuda" and chosen.index is not None:
            torch.cuda.set_device(chosen)  # the current device: where graph captures record and streams are made
        return Dist(device=chosen)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = chosen.type == "cuda"
    if cuda:
        visible, here = torch.cuda.device_count(), int(os.environ.get("LOCAL_WORLD_SIZE", local_rank + 1))
        if here > visible:  # refused by every process of the machine, the first included, which prints
            raise UserError(
                f"torchrun started {here} processes on this machine but it has only {visible} visible GPU(s); "
                f"use --nproc-per-node {visible} (or fewer)"
            )
        torch.cuda.set_device(local_rank)
    backend = "nccl" if cuda else "gloo"
    if not tdist.is_initialized():
        tdist.init_process_group(backend=backend)
        atexit.register(_leave_group)
    if tdist.get_backend() != backend:
        raise UserError(
            f"this process already trained on a {tdist.get_backend()} process group; --device {device} needs "
            f"{backend}: run the stage in a process of its own"
        )
    if tdist.get_world_size() != world:
        raise UserError(f"WORLD_SIZE is {world} but the process group has {tdist.get_world_size()} processes")
    if rank != 0:
        console.quiet = results.quiet = True
    return Dist(rank, world, torch.device("cuda", local_rank) if cuda else torch.device("cpu"))


def _leave_group() -> None:
    """Leave the process group at exit, after the DDP wrappers still held in reference cycles
    are freed: one freed after the group aborts the process ("terminate called without an active
    exception") once training has finished."""
    gc.collect()
    if tdist.is_initialized():
        tdist.destroy_process_group()


def _local_worker(rank: int, world: int, port: int, threads: int, fn: Callable, args: tuple) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
        TORCHELASTIC_USE_AGENT_STORE="True",  # the store is run_local's, as torchrun's is its agent's
    )
    if threads:
        torch.set_num_threads(threads)
    fn(*args)


def run_local(world: int, fn: Callable, *args, threads: int = 0) -> None:
    """Run `fn(*args)` in `world` new processes on this machine, set up as torchrun would
    set them up (for tests and benchmarks); `threads` > 0 sets each one's torch threads.
    `fn` must be importable by name (a module-level function). The processes meet at a store
    this process serves on a port it holds from the start, as torchrun's agent does: no other
    program can take the port between its choice and its use. However this process leaves (a
    worker's error, Ctrl-C, SIGTERM), the processes still running are ended first."""
    import torch.multiprocessing as mp

    store = tdist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    workers = mp.spawn(_local_worker, args=(world, store.port, threads, fn, args), nprocs=world, join=False)
    try:
        while not workers.join():
            pass
    finally:
        for process in workers.processes:
            if process.is_alive():
                process.terminate()
            process.join()
