"""Models shaped like the ones people bring from the most copied GAN codebases, written here from
their published architectures (not copied), at sizes small enough for CPU tests. The structure is
theirs: the layer kinds and order, where BatchNorm and the activations sit, the noise shape the
generator takes and what the critic returns; only the widths and image sizes are shrunk.

* ``ExampleGenerator`` / ``ExampleDiscriminator``: the PyTorch examples' DCGAN (dcgan/main.py):
  ConvTranspose2d stages from noise of shape (B, nz, 1, 1), BatchNorm + ReLU, Tanh output; a
  BatchNorm + LeakyReLU(0.2) discriminator ending in ``nn.Sigmoid()``, its output flattened with
  ``view(-1, 1).squeeze(1)``. At 64x64 it has 4 upsampling stages; ``img_size`` picks one stage
  fewer per halving (32x32: the "one stage fewer" design).
* ``WGAN_DCGAN_G`` / ``WGAN_DCGAN_D``: the WGAN authors' models/dcgan.py: the same convolution
  pyramid (width doubling per halving from ``ngf // 2`` at full size), optional extra 3x3 layers,
  and a critic without sigmoid that returns ``output.mean(0).view(1)``: one number per batch
  (``batch_mean=False`` is the one-line fix, ``output.view(-1)``).
* ``WGAN_MLP_G`` / ``WGAN_MLP_D``: the WGAN authors' models/mlp.py: 3 hidden ReLU layers; the
  generator flattens its (B, nz[, 1, 1]) noise and reshapes its output to an image; the critic
  again averages over the batch unless ``batch_mean=False``.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def dcgan_init(m: nn.Module) -> None:
    """DCGAN's initialisation (Radford et al. 2016): conv weights ~ N(0, 0.02), BatchNorm
    weights ~ N(1, 0.02), biases 0, as the PyTorch example applies it."""
    name = type(m).__name__
    if "Conv" in name:
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif "BatchNorm" in name:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def _stages(img_size: int) -> int:
    """Stride-2 stages between a 4x4 map and ``img_size``."""
    s = int(math.log2(img_size // 4))
    if 4 * 2**s != img_size:
        raise ValueError(f"img_size must be 4 * 2^k, got {img_size}")
    return s


class ExampleGenerator(nn.Module):
    """PyTorch example DCGAN generator: noise (B, nz, 1, 1) -> (B, nc, img_size, img_size)."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, img_size: int = 64) -> None:
        super().__init__()
        s = _stages(img_size)
        mult = 2 ** (s - 1)
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, ngf * mult, 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(ngf * mult), nn.ReLU(True)]
        while mult > 1:
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(ngf * mult // 2), nn.ReLU(True)]
            mult //= 2
        layers += [nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.main(input)


class ExampleDiscriminator(nn.Module):
    """PyTorch example DCGAN discriminator: a BatchNorm critic ending in nn.Sigmoid(); (B,) out.
    ``norm="layer"`` swaps each BatchNorm2d for a per-sample LayerNorm over (C, H, W)
    (GroupNorm(1, C)) and ``sigmoid=False`` drops the sigmoid: the WGAN-GP critic of the same shape."""

    def __init__(self, ndf: int = 64, nc: int = 3, img_size: int = 64, norm: str = "batch",
                 sigmoid: bool = True) -> None:
        super().__init__()
        s = _stages(img_size)
        layers: list[nn.Module] = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        mult = 1
        for _ in range(s - 1):
            c = ndf * mult * 2
            layers += [nn.Conv2d(ndf * mult, c, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(c) if norm == "batch" else nn.GroupNorm(1, c), nn.LeakyReLU(0.2, inplace=True)]
            mult *= 2
        layers += [nn.Conv2d(ndf * mult, 1, 4, 1, 0, bias=False)]
        if sigmoid:
            layers += [nn.Sigmoid()]
        self.main = nn.Sequential(*layers)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        output = self.main(input)
        return output.view(-1, 1).squeeze(1)


class WGAN_DCGAN_G(nn.Module):
    """The WGAN authors' DCGAN generator: noise (B, nz, 1, 1); Tanh output."""

    def __init__(self, isize: int, nz: int, nc: int, ngf: int, n_extra_layers: int = 0) -> None:
        super().__init__()
        cngf, tisize = ngf // 2, 4
        while tisize != isize:
            cngf, tisize = cngf * 2, tisize * 2
        main = nn.Sequential()
        main.add_module(f"initial:{nz}-{cngf}:convt", nn.ConvTranspose2d(nz, cngf, 4, 1, 0, bias=False))
        main.add_module(f"initial:{cngf}:batchnorm", nn.BatchNorm2d(cngf))
        main.add_module(f"initial:{cngf}:relu", nn.ReLU(True))
        csize = 4
        while csize < isize // 2:
            main.add_module(f"pyramid:{cngf}-{cngf // 2}:convt", nn.ConvTranspose2d(cngf, cngf // 2, 4, 2, 1, bias=False))
            main.add_module(f"pyramid:{cngf // 2}:batchnorm", nn.BatchNorm2d(cngf // 2))
            main.add_module(f"pyramid:{cngf // 2}:relu", nn.ReLU(True))
            cngf, csize = cngf // 2, csize * 2
        for t in range(n_extra_layers):
            main.add_module(f"extra-layers-{t}:{cngf}:conv", nn.Conv2d(cngf, cngf, 3, 1, 1, bias=False))
            main.add_module(f"extra-layers-{t}:{cngf}:batchnorm", nn.BatchNorm2d(cngf))
            main.add_module(f"extra-layers-{t}:{cngf}:relu", nn.ReLU(True))
        main.add_module(f"final:{cngf}-{nc}:convt", nn.ConvTranspose2d(cngf, nc, 4, 2, 1, bias=False))
        main.add_module(f"final:{nc}:tanh", nn.Tanh())
        self.main = main

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.main(input)


class WGAN_DCGAN_D(nn.Module):
    """The WGAN authors' DCGAN critic (BatchNorm, no sigmoid). ``batch_mean=True`` returns
    ``output.mean(0).view(1)`` as their code does; False returns ``output.view(-1)``."""

    def __init__(self, isize: int, nz: int, nc: int, ndf: int, n_extra_layers: int = 0,
                 batch_mean: bool = True) -> None:
        super().__init__()
        self.batch_mean = batch_mean
        main = nn.Sequential()
        main.add_module(f"initial:conv:{nc}-{ndf}", nn.Conv2d(nc, ndf, 4, 2, 1, bias=False))
        main.add_module(f"initial:relu:{ndf}", nn.LeakyReLU(0.2, inplace=True))
        csize, cndf = isize // 2, ndf
        for t in range(n_extra_layers):
            main.add_module(f"extra-layers-{t}:{cndf}:conv", nn.Conv2d(cndf, cndf, 3, 1, 1, bias=False))
            main.add_module(f"extra-layers-{t}:{cndf}:batchnorm", nn.BatchNorm2d(cndf))
            main.add_module(f"extra-layers-{t}:{cndf}:relu", nn.LeakyReLU(0.2, inplace=True))
        while csize > 4:
            main.add_module(f"pyramid:{cndf}-{cndf * 2}:conv", nn.Conv2d(cndf, cndf * 2, 4, 2, 1, bias=False))
            main.add_module(f"pyramid:{cndf * 2}:batchnorm", nn.BatchNorm2d(cndf * 2))
            main.add_module(f"pyramid:{cndf * 2}:relu", nn.LeakyReLU(0.2, inplace=True))
            cndf, csize = cndf * 2, csize // 2
        main.add_module(f"final:{cndf}-1:conv", nn.Conv2d(cndf, 1, 4, 1, 0, bias=False))
        self.main = main

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        output = self.main(input)
        if self.batch_mean:
            output = output.mean(0)
            return output.view(1)
        return output.view(-1)


class WGAN_MLP_G(nn.Module):
    """The WGAN authors' MLP generator: 3 hidden ReLU layers of ``ngf``; image-shaped output."""

    def __init__(self, isize: int, nz: int, nc: int, ngf: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Linear(nz, ngf), nn.ReLU(True),
            nn.Linear(ngf, ngf), nn.ReLU(True),
            nn.Linear(ngf, ngf), nn.ReLU(True),
            nn.Linear(ngf, nc * isize * isize),
        )
        self.nc, self.isize, self.nz = nc, isize, nz

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        input = input.view(input.size(0), input.size(1))
        output = self.main(input)
        return output.view(output.size(0), self.nc, self.isize, self.isize)


class WGAN_MLP_D(nn.Module):
    """The WGAN authors' MLP critic: 3 hidden ReLU layers of ``ndf``, one output; batch mean
    unless ``batch_mean=False``."""

    def __init__(self, isize: int, nz: int, nc: int, ndf: int, batch_mean: bool = True) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Linear(nc * isize * isize, ndf), nn.ReLU(True),
            nn.Linear(ndf, ndf), nn.ReLU(True),
            nn.Linear(ndf, ndf), nn.ReLU(True),
            nn.Linear(ndf, 1),
        )
        self.nc, self.isize, self.nz, self.batch_mean = nc, isize, nz, batch_mean

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        input = input.view(input.size(0), input.size(1) * input.size(2) * input.size(3))
        output = self.main(input)
        if self.batch_mean:
            output = output.mean(0)
            return output.view(1)
        return output.view(-1)


class LabelledImages(torch.utils.data.Dataset):
    """A torchvision-style data set: items (image tensor (C, H, W) in [-1, 1], int target)."""

    def __init__(self, n: int = 64, nc: int = 1, size: int = 16, n_classes: int = 10, seed: int = 0,
                 value_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        g = torch.Generator().manual_seed(seed)
        lo, hi = value_range
        self.x = torch.rand(n, nc, size, size, generator=g) * (hi - lo) + lo
        self.targets = [int(t) for t in torch.randint(0, n_classes, (n,), generator=g)]
        self.classes = [str(c) for c in range(n_classes)]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], self.targets[i]
