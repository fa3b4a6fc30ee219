"""Data-parallel training on PyTorch's own engine: ``torch.distributed`` + DistributedDataParallel.

    torchrun --nproc_per_node=N -m fastwgan train --data 8gaussians ...
    # or, in a script run under torchrun / after dist.init_process_group(...):
    fastwgan.train(G, D, data, ...)

Semantics (each rank holds ``batch_size`` samples; the global batch is ``batch_size * world``):

* One global batch, split by rank. Every rank draws the same global batch of real samples, noise
  and interpolation weights (same seed, same streams) and keeps its own contiguous slice
  ``[rank*B, (rank+1)*B)``. The concatenation of the ranks' slices is exactly what a single
  process with batch ``B*world`` draws, so a data-parallel run is the single-process run over the
  global batch, up to the order of floating-point sums. The cost is that every rank materialises
  the whole global batch of *inputs* (an index gather for tensor data, a few microseconds for the
  2-D toys); the models' forward and backward, where the time goes, run on the rank's slice only.
  ``ShardedSource`` wraps any :class:`fastwgan.data.DataSource` this way, so sharding needs no
  change to the data layer and checkpoints keep the unsharded source's state.
* Gradients averaged across ranks exactly once per update. The critic and the generator are
  wrapped in ``DistributedDataParallel``. A critic update calls the wrapped critic three times
  (real, fake, and x_hat inside the gradient penalty) and then runs ONE backward of
  ``L_D + lam * P``. DDP's reducer fires its hooks when a parameter's gradient is accumulated
  into ``.grad`` (AccumulateGrad): the penalty's inner ``autograd.grad(D(x_hat), x_hat,
  create_graph=True)`` only asks for the gradient w.r.t. x_hat, so it accumulates nothing and
  fires no hook; the one outer backward accumulates, per parameter, the sum of the gradients of
  all three forwards and the penalty's double backward, and fires each parameter's hook once.
  Each bucket is therefore all-reduced once, with every term of the loss in it. The tests prove
  both halves: a communication hook counts one all-reduce per bucket per update
  (``tests/test_distributed.py``), and the parameters equal the single-process run over the
  global batch (a penalty gradient left out of the reduction, or reduced separately, would not).
  Mean of equal-sized per-rank means = global mean, so DDP's division by ``world`` is exact.
* The generator step calls the critic through the unwrapped module (its parameters are frozen
  there and must not be reduced) and the wrapped generator once.
* Checkpoints, metrics files and pictures are written by rank 0 only; every rank reads the same
  checkpoint on resume. Logged metrics are averaged over ranks at log time (the global-batch
  values), one extra all-reduce per ``log_every`` steps.
* BatchNorm in the generator is per rank (DDP broadcasts rank 0's running statistics); use
  ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` before training for global-batch statistics.

Backends: ``gloo`` on the CPU, ``nccl`` on CUDA (each rank on ``cuda:LOCAL_RANK``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["DistInfo", "setup", "ShardedSource", "shard", "all_mean", "any_rank", "barrier", "wrap", "COMM_HOOKS"]

# (state, hook) pairs registered on every DistributedDataParallel wrapper the trainer creates
# (``DDP.register_comm_hook``): for instrumentation, compression hooks, and the test that counts
# one all-reduce per bucket per update.
COMM_HOOKS: list[tuple[Any, Any]] = []


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``world == 1`` and ``rank == 0`` when not distributed."""

    rank: int = 0
    world: int = 1
    started_here: bool = False  # this module initialised the process group (and destroys it)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_world() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer: launch with torchrun") from None


def setup(device: torch.device) -> DistInfo:
    """Join the process group, if there is one.

    * A process group already initialised by the caller is used as is.
    * Else, under torchrun (``WORLD_SIZE > 1`` in the environment), one is initialised with gloo
      for the CPU or nccl for CUDA, reading ``MASTER_ADDR``/``MASTER_PORT``/``RANK`` from the
      environment.
    * Else: a single process.
    """
    if dist.is_available() and dist.is_initialized():
        info = DistInfo(dist.get_rank(), dist.get_world_size(), False)
    elif _env_world() > 1:
        if not dist.is_available():
            raise ValueError("WORLD_SIZE > 1 but this torch build has no torch.distributed: run a single process")
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        info = DistInfo(dist.get_rank(), dist.get_world_size(), True)
    else:
        return DistInfo()
    if info.enabled:
        be = dist.get_backend()
        if device.type == "cpu" and be == "nccl":
            raise ValueError("the process group uses nccl, which cannot reduce CPU tensors: use device='cuda' or gloo")
    return info


def cuda_device_for_rank(device: torch.device) -> torch.device:
    """``cuda`` without an index becomes ``cuda:LOCAL_RANK`` under torchrun (one GPU per rank)."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def shard(t: Tensor, info: DistInfo) -> Tensor:
    """This rank's contiguous slice of a global batch (the whole batch when not distributed)."""
    if not info.enabled:
        return t
    b = t.shape[0] // info.world
    return t[info.rank * b:(info.rank + 1) * b]


class ShardedSource:
    """A DataSource view that hands each rank its slice of the global batch.

    ``next_batch(B)`` draws ``B * world`` samples from the wrapped source (identical on every rank:
    same seed, same state) and returns the rank's ``B``. ``sample_real`` (evaluation) and the state
    are the wrapped source's, so checkpoints and metrics are those of the unsharded stream.
    """

    def __init__(self, source: Any, info: DistInfo) -> None:
        self.source, self.info = source, info

    def next_batch(self, batch_size: int) -> tuple[Tensor, Tensor | None]:
        x, y = self.source.next_batch(batch_size * self.info.world)
        return shard(x, self.info), (None if y is None else shard(y, self.info))

    def __getattr__(self, name: str) -> Any:  # sample_real, state_dict, sample_shape, ...
        return getattr(self.source, name)


def all_mean(t: Tensor, info: DistInfo) -> Tensor:
    """Mean over ranks of ``t`` (a copy; ``t`` itself when not distributed)."""
    if not info.enabled:
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / info.world


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when ``flag`` is True on any rank (used to agree on stopping)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def wrap(module: torch.nn.Module, info: DistInfo, device: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel(module)`` when distributed, else the module itself.

    DDP broadcasts rank 0's parameters and buffers at construction, so ranks start identical
    even if their models were initialised differently.
    """
    if not info.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    ddp = DDP(module, device_ids=ids)
    for state, hook in COMM_HOOKS:
        ddp.register_comm_hook(state, hook)
    return ddp
