"""The one order of random draws in an iteration, shared by the eager and the static runner.

Per critic update k: a batch (x_k, y_k) from the data stream, then the noise z_k ~ N(0, I) of the
generator's own per-sample shape (z_shape: (z_dim,) or e.g. (nz, 1, 1); the same numbers either way), then
(with a penalty) the interpolation weights alpha_k ~ U[0, 1), one per sample; after the critic
updates, the generator's noise z ~ N(0, I). Distributed, each rank draws the global batch's noise
and weights and keeps its slice (:func:`fastwgan.distributed.shard`), so N ranks together draw what
one process with an N times larger batch draws. Same seed, same numbers, whichever runner and whatever the models' dtype.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .. import distributed as dist_
from ..models import noise_shape


class CriticInputs(NamedTuple):
    x: Tensor
    y: Tensor | None
    z: Tensor
    alpha: Tensor | None


class Draws:
    """Where the draws go: device, dtypes (the models' own: fp64 models get fp64 inputs), sizes."""

    def __init__(self, batch_size: int, z_shape: int | tuple[int, ...], *, penalty: bool, device: torch.device,
                 data_dtype: torch.dtype, z_dtype: torch.dtype, info: dist_.DistInfo) -> None:
        # the noise's per-sample shape: (z_dim,), or the generator's own, e.g. (nz, 1, 1)
        self.batch_size, self.z_shape, self.penalty = batch_size, noise_shape(z_shape), penalty
        self.device, self.data_dtype, self.z_dtype, self.info = device, data_dtype, z_dtype, info

    def critic(self, feed) -> CriticInputs:
        x, y = feed.next_batch(self.batch_size)
        x = x.to(self.device, self.data_dtype, non_blocking=True)
        y = y.to(self.device, non_blocking=True) if y is not None else None
        z = self._global(torch.randn, (x.shape[0], *self.z_shape), self.z_dtype)
        alpha = self._global(torch.rand, (x.shape[0],), self.data_dtype) if self.penalty else None
        return CriticInputs(x, y, z, alpha)

    def generator(self) -> Tensor:
        return self._global(torch.randn, (self.batch_size, *self.z_shape), self.z_dtype)

    def _global(self, draw, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        # drawn in float32 and cast: models of any dtype (an fp64 run checking an fp32 one) get the
        # same numbers, as the data stream's float32 batches are cast to them too
        world = self.info.world
        t = draw(shape[0] * world, *shape[1:], device=self.device, dtype=torch.float32)
        return dist_.shard(t.to(dtype), self.info)
