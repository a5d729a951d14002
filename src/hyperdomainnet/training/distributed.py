"""Data-parallel training with PyTorch's own stack: ``torchrun``, ``torch.distributed``, DDP.

``torchrun`` starts one process per GPU (or CPU worker) and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` joins the process
group from them (NCCL for CUDA devices, gloo on the CPU) and picks ``cuda:LOCAL_RANK``. Without
``torchrun`` (``WORLD_SIZE`` unset or 1) everything here is a no-op and training is one process.

How the parallel run stays equivalent to one process on the whole batch (``docs/DISTRIBUTED.md``):

* Sampling: every rank draws the *global* batch plan (latents, domains, mixing matrix, crops,
  per-sample noise seeds) from the same seeded RNG and renders its slice of ``batch / N``
  samples, so the trajectory does not depend on the number of processes.
* BatchNorm: :class:`GlobalBatchNorm1d` normalises with the statistics of the global batch
  (sums all-reduced with gradients). ``torch.nn.SyncBatchNorm`` computes the same thing but runs
  only on GPU (or XPU, …) tensors, so it could not run on gloo/CPU here; this one runs everywhere.
* Losses: CLIP embeddings and domain vectors are all-gathered with :func:`all_gather` (its
  backward sums every rank's gradient contribution), so batch-level terms — pairs across ranks in
  tt_direction included — see the global batch; per-sample reconstruction terms stay local means.
* Gradients: DDP averages them over ranks. Because the collectives' backward passes sum over
  ranks, the averaged gradient is that of the mean over ranks of each rank's loss — exactly the
  single-process loss on the global batch.
* Files: rank 0 alone writes the run directory (config, log, checkpoints, grids, result); a resumed
  run's checkpoint is read by rank 0 and broadcast to the others.
"""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import ConfigError, DeviceError, HDNError
from .loop import (NonFiniteLoss, Trainer, TrainingInterrupted, check_new_run, load_checkpoint, run_training,
                   stop_signals)
from ..device import resolve_device


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run: rank r of ``world_size``, rendering on ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def local_slice(self, batch: int) -> slice:
        """This rank's samples of a global batch (contiguous, batch / world_size of them)."""
        if batch % self.world_size:
            raise ConfigError(f"batch {batch} does not split evenly over {self.world_size} processes; "
                              f"use a multiple of {self.world_size}")
        size = batch // self.world_size
        return slice(self.rank * size, (self.rank + 1) * size)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer; launch with torchrun") from None


def init_distributed(device: str = "auto") -> DistContext:
    """Join the torchrun process group (once) and return this process's context.

    ``device`` is the config's setting: ``auto``/``cuda`` become ``cuda:LOCAL_RANK`` under
    torchrun; ``cpu`` runs the processes on the CPU with gloo.
    """
    world, local = _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0)
    if world <= 1:
        return DistContext(0, 1, 0, resolve_device(device))
    chosen = resolve_device(device)
    if chosen.type == "cuda":
        if chosen.index not in (None, local):
            raise DeviceError(f"--device {device} under torchrun: each process uses cuda:LOCAL_RANK; "
                              "pass --device cuda (or auto)")
        chosen = torch.device("cuda", local)
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), local, chosen)


def shutdown_distributed() -> None:
    """Leave the process group (end of a torchrun command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _comm_device() -> torch.device:
    """Where tensors for collectives must live: the current GPU under NCCL, else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _summed(x: torch.Tensor) -> torch.Tensor:
    """Σ_ranks x, in a new tensor (no autograd)."""
    out = x.contiguous().clone()
    dist.all_reduce(out)
    return out


class _AllGather(torch.autograd.Function):
    """Concatenate equal-sized per-rank tensors along dim 0; backward: the summed gradient's slice."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.size = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return _summed(grad)[ctx.rank * ctx.size:(ctx.rank + 1) * ctx.size]


class _AllReduce(torch.autograd.Function):
    """Sum over ranks; backward: the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return _summed(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return _summed(grad)


def all_gather(x: torch.Tensor) -> torch.Tensor:
    """(b, …) per rank → (world·b, …) in rank order, differentiable; identity in one process."""
    return _AllGather.apply(x) if _world() > 1 else x


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Σ over ranks, differentiable; identity in one process."""
    return _AllReduce.apply(x) if _world() > 1 else x


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """The mean of each value over ranks (for logging per-rank terms); unchanged in one process."""
    if _world() == 1 or not values:
        return values
    keys = sorted(values)
    stacked = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(stacked)
    return dict(zip(keys, (stacked / _world()).tolist()))


def broadcast_tensor(x: torch.Tensor, src: int) -> torch.Tensor:
    """``x`` as held by rank ``src``, on every rank (in place)."""
    if _world() > 1:
        dist.broadcast(x, src)
    return x


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """A picklable object as held by rank ``src``, on every rank."""
    if _world() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src)
    return box[0]


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training-mode statistics are those of the batch over all ranks.

    mean = Σ_ranks Σ_i x_i / n, var = Σ_ranks Σ_i (x_i − mean)² / n (biased for normalising,
    n/(n−1)·var for the running estimate, as ``nn.BatchNorm1d``). Same state dict as BatchNorm1d.
    In eval mode, or in one process, it is ``nn.BatchNorm1d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _world() > 1):
            return super().forward(x)
        x = x.float()  # as batch_norm under autocast
        sums = all_reduce_sum(torch.cat([x.sum(0), x.new_tensor([x.shape[0]])]))
        n = sums[-1].detach()
        mean = sums[:-1] / n
        centered = x - mean
        var = all_reduce_sum(centered.pow(2).sum(0)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * n / (n - 1).clamp_min(1), momentum)
        out = centered * torch.rsqrt(var + self.eps)
        return out * self.weight + self.bias if self.affine else out


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Turn every ``nn.BatchNorm1d`` of ``module`` into a :class:`GlobalBatchNorm1d` (in place,
    same parameters and buffers); returns ``module``."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm1d:
            tensors = [*child.parameters(), *child.buffers()]
            replacement = GlobalBatchNorm1d(child.num_features, child.eps, child.momentum, child.affine,
                                            child.track_running_stats, device=tensors[0].device if tensors else None)
            replacement.load_state_dict(child.state_dict())
            setattr(module, name, replacement)
        else:
            convert_batchnorm(child)
    return module


def data_parallel(module: nn.Module, context: DistContext) -> nn.Module:
    """``module`` for one process; DDP with global-batch BatchNorm under torchrun."""
    if not context.active:
        return module
    convert_batchnorm(module)
    ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any (a stop signal reaches ranks at different steps)."""
    value = torch.tensor(float(flag), device=_comm_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def run_distributed(trainer: Trainer, run_dir: str | Path, context: DistContext, resume: bool = False,
                    progress: bool = True) -> Path:
    """``run_training`` on rank 0; the other ranks take part in the same steps without writing.

    Rank 0 checks the run directory (or reads the checkpoint to resume) and broadcasts the outcome,
    so an error stops every rank and resumed state reaches ranks on other machines.
    """
    run_dir = Path(run_dir)
    if not context.active:
        return run_training(trainer, run_dir, resume=resume, progress=progress)
    error: HDNError | None = None
    start, state = 0, None
    if context.is_main:
        try:
            if resume:
                checkpoint = load_checkpoint(run_dir)
                start, state = int(checkpoint["step"]), checkpoint["trainer"]
            else:
                check_new_run(run_dir, trainer.result_name)
        except HDNError as exc:
            error = type(exc)(str(exc))  # its type survives the broadcast, its traceback need not
    error, start = broadcast_object((error, start))
    if error is not None:
        raise error
    if resume:
        state = broadcast_object(state)
        if not context.is_main:
            trainer.load_state_dict(state)
    if context.is_main:
        return run_training(trainer, run_dir, resume=resume, progress=progress, agree=any_rank)
    with stop_signals() as stop:
        for step in range(start, trainer.config.steps):
            try:
                trainer.train_step(step)
            except NonFiniteLoss as exc:
                raise HDNError(f"loss became non-finite at step {step + 1} ({exc}); training stopped on every "
                               "process; see rank 0's message") from None
            if any_rank(stop.signum is not None) and step + 1 < trainer.config.steps:
                raise TrainingInterrupted(stop.signum or signal.SIGTERM, step + 1)  # rank 0 writes and says so
    return run_dir / trainer.result_name
