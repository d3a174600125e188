"""Data-parallel training over several processes: ``torchrun --nproc_per_node=N -m lnlib train ...``.

torchrun starts N processes and gives each its ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in the
environment. :func:`lnlib.train.fit` then, in the lines it marks ``# torchrun``,

* joins the process group (NCCL on GPUs, gloo on CPU), one GPU per process (:func:`setup`);
* keeps on each rank only its shard of the training images, ``train_x[rank::world]``, on its device
  (:func:`shard`);
* trains ``DistributedDataParallel(model)`` (:func:`wrap`) on ``batch_size // world`` images per rank and step, so that
  a step sees ``batch_size`` images in all and the gradients are averaged over all of them;
* computes batch-norm statistics over the whole step's batch (all ranks), so that one step equals one
  single-process step on the concatenated batch: torch's ``SyncBatchNorm`` on GPU, and on CPU, where
  torch's refuses to run, :class:`AllReduceBatchNorm`;
* writes the run folder from rank 0 only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.nn.functional import all_reduce  # differentiable: its backward all-reduces grads
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among the training processes (one of one without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Ranks()  # the usual case: one process


def launched() -> Ranks:
    """The ranks torchrun put in the environment."""
    env = os.environ
    return Ranks(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def join(device_type: str) -> Ranks:
    """Join torchrun's process group (NCCL for CUDA, gloo for CPU) if launched with several processes."""
    ranks = launched()
    if ranks.world > 1 and not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(ranks.local_rank)
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return ranks


def setup(device: torch.device, batch_size: int) -> tuple[Ranks, torch.device]:
    """Join the process group if launched with several processes, and this rank's device (its own GPU).

    Raises before any work if ``batch_size`` does not split into equal parts over the processes.
    """
    ranks = join(device.type)
    if ranks.world > 1:
        if batch_size % ranks.world:
            raise ValueError(f"batch_size={batch_size} does not split over {ranks.world} processes; "
                             f"use a multiple of {ranks.world}")
        device = torch.device("cuda", ranks.local_rank) if device.type == "cuda" else device
    return ranks, device


def shard(t: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """This rank's rows ``t[rank::world]``, the same number on every rank (equal steps, no rank waits)."""
    return t[slice(ranks.rank, len(t) - len(t) % ranks.world, ranks.world)]


def wrap(model: nn.Module, device: torch.device, ranks: Ranks) -> nn.Module:
    """What the training step calls: ``model`` itself in one process; under torchrun
    ``DistributedDataParallel`` over it with batch norm over the whole step's batch (:func:`sync_batchnorm`)."""
    if ranks.world == 1:
        return model
    return DistributedDataParallel(sync_batchnorm(model, device),
                                   device_ids=[device.index] if device.type == "cuda" else None)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the ranks (a copy; ``t`` itself when there is one process)."""
    if not dist.is_initialized():
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t


class AllReduceBatchNorm(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics are those of all ranks' batches together.

    Per channel c: ``mean_c = Σ_ranks Σ_{n,h,w} x / M`` and ``var_c = Σ_ranks Σ (x − mean_c)² / M`` with M the
    number of values of the channel in the whole batch; ``y = (x − mean) / sqrt(var + eps) · weight + bias``.
    The sums go through a differentiable all-reduce, so every rank's input gets the gradient it would get in
    one batch. Running statistics are updated with the unbiased variance, as in ``nn.BatchNorm2d``.
    Shapes ``(N, C, H, W) -> (N, C, H, W)``. Eval mode, or a single process: plain ``BatchNorm2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims, shape = (0, 2, 3), (1, -1, 1, 1)
        count = torch.full((1,), x.numel() / x.shape[1], dtype=x.dtype, device=x.device)
        sums = all_reduce(torch.cat([x.sum(dims), count]))
        m = sums[-1]
        mean = sums[:-1] / m
        var = all_reduce(((x - mean.view(shape)) ** 2).sum(dims)) / m  # two passes: no cancellation
        with torch.no_grad():
            self.num_batches_tracked += 1
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * m / (m - 1), self.momentum)
        y = (x - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        return y * self.weight.view(shape) + self.bias.view(shape)


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Batch norm over the whole step's batch: SyncBatchNorm on GPU, :class:`AllReduceBatchNorm` on CPU.

    Both keep the parameter and buffer names, so checkpoints load into the plain model.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for module in model.modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = AllReduceBatchNorm  # same state, a forward that all-reduces
    return model
