"""Built-in generators and critics.

* ``MLPGenerator`` / ``MLPCritic``: gan_toy.py's networks (Gulrajani et al. 2017, "Improved
  Training of Wasserstein GANs"): Linear(in, 512) ReLU, Linear(512, 512) ReLU x2, Linear(512, out).
* ``DCGANGenerator`` / ``DCGANCritic``: Radford et al. 2016 ("Unsupervised Representation Learning
  with Deep Convolutional GANs") rules: strided (transposed) convolutions, no pooling, BatchNorm
  in G except its output, ReLU in G and Tanh output, LeakyReLU(0.2) in D, no norm on D's first
  layer, no fully connected hidden layers, weights ~ N(0, 0.02). ``norm="layer"`` is the WGAN-GP
  critic (Gulrajani et al. 2017, Sec. 4: no BatchNorm in the critic, because the penalty is per
  sample; layer normalization over (C, H, W) as ``nn.GroupNorm(1, C)``). No sigmoid: the loss
  decides what the score means.

Every critic returns scores of shape (B,) and exposes ``features(x, y=None) -> (B, F)``, its last
hidden layer, for feature matching (Salimans et al. 2016).

Conditioning (``n_classes > 0``): generators concatenate a learned label embedding (dimension
``n_classes``, so it can represent a one-hot code) to z. Critics use the projection
discriminator (Miyato & Koyama 2018, "cGANs with Projection Discriminator"):
``D(x, y) = head(h) + <embed(y), h>`` with ``h = features(x)``. Projection keeps the critic's
input x alone, so the gradient penalty's input gradient is taken w.r.t. x exactly as in the
unconditional case. Calling a conditional model without y raises; unconditional models ignore y
so the trainer may pass labels uniformly.

All activations come from ``fastwgan.ops.activations`` (fused versions with a pruned double
backward replace the plain ones there).
"""
from __future__ import annotations

import functools
import inspect
import math
from typing import Any

import torch
from torch import Tensor, nn

from fastwgan.labels import check_labels
from fastwgan.ops.activations import LeakyReLU, ReLU

# --------------------------------------------------------------------------------------------
# Model specs: what rebuilds a built-in model from a checkpoint (``fastwgan.load``)
# --------------------------------------------------------------------------------------------
_REGISTRY: dict[str, type[nn.Module]] = {}


def _plain(v: Any) -> Any:
    """Tuples as lists, so a spec is JSON and loads under ``torch.load(weights_only=True)``."""
    return [_plain(x) for x in v] if isinstance(v, (tuple, list)) else v


def builtin_model(cls: type[nn.Module]) -> type[nn.Module]:
    """Class decorator: every instance records the constructor arguments it was built with, so
    ``model_spec`` / ``build_model`` can rebuild it (its weights come from the state_dict)."""
    init = cls.__init__
    sig = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        bound = sig.bind(self, *args, **kwargs)
        bound.apply_defaults()
        self._fastwgan_spec = {"class": cls.__name__,
                               "kwargs": {k: _plain(v) for k, v in list(bound.arguments.items())[1:]}}

    cls.__init__ = __init__
    _REGISTRY[cls.__name__] = cls
    return cls


def model_spec(module: nn.Module) -> dict[str, Any] | None:
    """``{"class": name, "kwargs": {...}}`` for a built-in model (plain types only); None for
    any other module, a subclass of a built-in one included (its constructor is unknown)."""
    spec = getattr(module, "_fastwgan_spec", None)
    if spec is None or _REGISTRY.get(spec["class"]) is not type(module):
        return None
    return {"class": spec["class"], "kwargs": dict(spec["kwargs"])}


def build_model(spec: dict[str, Any]) -> nn.Module:
    """The built-in model ``spec`` describes (freshly initialised; load its state_dict after)."""
    if not isinstance(spec, dict) or spec.get("class") not in _REGISTRY:
        name = spec.get("class") if isinstance(spec, dict) else spec
        raise ValueError(f"{name!r} is not a built-in fastwgan model (one of {', '.join(sorted(_REGISTRY))}): "
                         "pass the module itself")
    return _REGISTRY[spec["class"]](**spec.get("kwargs", {}))

__all__ = [
    "MLPGenerator",
    "MLPCritic",
    "DCGANGenerator",
    "DCGANCritic",
    "noise_size_candidates",
    "noise_shape",
    "noise_shape_candidates",
    "has_batchnorm",
    "builtin_model",
    "model_spec",
    "build_model",
]


def _check_positive(**kw: int) -> None:
    for k, v in kw.items():
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{k} must be a positive int, got {v!r}.")


def _check_classes(n_classes: int) -> None:
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 0:
        raise ValueError(f"n_classes must be an int >= 0 (0 = unconditional), got {n_classes!r}.")


def _need_labels(model: nn.Module, y: Tensor | None, batch: int) -> Tensor:
    """A conditional model's labels, checked by ``fastwgan.labels.check_labels`` (presence, dtype,
    shape; not the values: a host read in every forward would sync the device and break compiled
    graphs, and the embedding refuses an id out of range)."""
    return check_labels(y, batch, model.n_classes, who=type(model).__name__, values=False,
                        how="y (call it as model(input, y), or build it with n_classes=0)")


def _generator_input(gen: nn.Module, z: Tensor, y: Tensor | None) -> Tensor:
    """z as (B, z_dim), checked, with the label embedding appended for conditional generators."""
    z = z.reshape(z.shape[0], -1)
    if z.shape[1] != gen.z_dim:
        raise ValueError(f"z has {z.shape[1]} features but this generator takes z_dim={gen.z_dim}; sample z of shape (B, {gen.z_dim}).")
    if gen.embed is not None:
        z = torch.cat([z, gen.embed(_need_labels(gen, y, z.shape[0]))], 1)
    return z


def _dcgan_init(m: nn.Module) -> None:
    """DCGAN: all weights ~ N(0, 0.02); norm scales ~ N(1, 0.02), biases 0 (pytorch/examples)."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class _ProjectionHead(nn.Module):
    """head(h) + <embed(y), h> (Miyato & Koyama 2018); head alone when unconditional."""

    def __init__(self, head: nn.Module, n_features: int, n_classes: int) -> None:
        super().__init__()
        self.head = head
        self.embed = nn.Embedding(n_classes, n_features) if n_classes > 0 else None
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, h: Tensor, y: Tensor | None) -> Tensor:
        out = self.head(h).reshape(h.shape[0])
        if self.embed is not None:
            out = out + (self.embed(y) * h.flatten(1)).sum(1)
        return out


# --------------------------------------------------------------------------------------------
# MLP (gan_toy)
# --------------------------------------------------------------------------------------------


@builtin_model
class MLPGenerator(nn.Module):
    """gan_toy's generator: ``depth`` x (Linear, ReLU) of ``width`` units, then Linear to the
    output. With ``out_shape`` (e.g. (1, 8, 8)) the output is reshaped to images and squashed by
    tanh into [-1, 1]; ``out_dim`` is then prod(out_shape)."""

    def __init__(self, z_dim: int = 2, out_dim: int = 2, width: int = 512, depth: int = 3, n_classes: int = 0,
                 out_shape: tuple[int, ...] | None = None) -> None:
        super().__init__()
        if out_shape is not None:
            out_shape = tuple(int(s) for s in out_shape)
            out_dim = math.prod(out_shape)
        _check_positive(z_dim=z_dim, out_dim=out_dim, width=width, depth=depth)
        _check_classes(n_classes)
        self.z_dim, self.out_dim, self.n_classes, self.out_shape = z_dim, out_dim, n_classes, out_shape
        self.embed = nn.Embedding(n_classes, n_classes) if n_classes > 0 else None
        layers: list[nn.Module] = []
        d = z_dim + n_classes
        for _ in range(depth):
            layers += [nn.Linear(d, width), ReLU()]
            d = width
        layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        z = _generator_input(self, z, y)
        out = self.net(z)
        if self.out_shape is not None:
            out = torch.tanh(out).reshape(out.shape[0], *self.out_shape)
        return out


@builtin_model
class MLPCritic(nn.Module):
    """gan_toy's critic: ``depth`` x (Linear, ReLU) of ``width`` units, then Linear(width, 1).
    Image inputs are flattened; ``in_dim`` must equal the flattened size."""

    def __init__(self, in_dim: int = 2, width: int = 512, depth: int = 3, n_classes: int = 0) -> None:
        super().__init__()
        _check_positive(in_dim=in_dim, width=width, depth=depth)
        _check_classes(n_classes)
        self.in_dim, self.n_classes = in_dim, n_classes
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(depth):
            layers += [nn.Linear(d, width), ReLU()]
            d = width
        self.body = nn.Sequential(*layers)
        self.proj = _ProjectionHead(nn.Linear(width, 1), width, n_classes)

    def features(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.in_dim:
            raise ValueError(
                f"input has {x.shape[1]} features per sample but this critic takes in_dim={self.in_dim}; build "
                f"MLPCritic(in_dim={x.shape[1]}) or pass data of matching shape."
            )
        return self.body(x)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if self.n_classes:
            y = _need_labels(self, y, x.shape[0])
        return self.proj(self.features(x), y)


# --------------------------------------------------------------------------------------------
# DCGAN
# --------------------------------------------------------------------------------------------

_DCGAN_SIZES = (8, 16, 32, 64)


def _n_scale(img_size: int) -> int:
    if img_size not in _DCGAN_SIZES:
        raise ValueError(f"img_size must be one of {_DCGAN_SIZES}, got {img_size!r}; resize the data (image_size=).")
    return int(math.log2(img_size // 4))  # number of stride-2 stages between 4x4 and img_size


@builtin_model
class DCGANGenerator(nn.Module):
    """z (B, z_dim) -> ConvT(4, 1, 0) to a 4x4 map of ngf * 2^(s-1) channels, then s stride-2
    ConvT(4, 2, 1) stages halving channels and doubling size, the last one to ``channels`` with
    Tanh; BatchNorm + ReLU after every layer but the last. s = log2(img_size / 4), so
    img_size=64 gives DCGAN's 4-8-16-32-64 with 512-256-128-64 channels for ngf=64."""

    def __init__(self, z_dim: int = 100, img_size: int = 64, channels: int = 3, ngf: int = 64, n_classes: int = 0) -> None:
        super().__init__()
        _check_positive(z_dim=z_dim, channels=channels, ngf=ngf)
        _check_classes(n_classes)
        s = _n_scale(img_size)
        self.z_dim, self.img_size, self.channels, self.n_classes = z_dim, img_size, channels, n_classes
        self.embed = nn.Embedding(n_classes, n_classes) if n_classes > 0 else None
        c = ngf * 2 ** (s - 1)
        layers: list[nn.Module] = [nn.ConvTranspose2d(z_dim + n_classes, c, 4, 1, 0, bias=False), nn.BatchNorm2d(c), ReLU()]
        for _ in range(s - 1):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2), ReLU()]
            c //= 2
        layers += [nn.ConvTranspose2d(c, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(_dcgan_init)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        z = _generator_input(self, z, y)
        return self.net(z[:, :, None, None])


_NORMS = ("batch", "layer", "none")


def _norm(kind: str, c: int) -> list[nn.Module]:
    if kind == "batch":
        return [nn.BatchNorm2d(c)]
    if kind == "layer":
        return [nn.GroupNorm(1, c)]  # one group = normalise over (C, H, W) per sample: LayerNorm
    return []


@builtin_model
class DCGANCritic(nn.Module):
    """x (B, channels, img_size, img_size) -> Conv(4, 2, 1) to ndf channels + LeakyReLU(0.2)
    (no norm), then stride-2 Conv(4, 2, 1) stages doubling channels, each with the chosen norm
    and LeakyReLU(0.2), down to a 4x4 map (the features); head = Conv(4, 1, 0) to one score."""

    def __init__(self, img_size: int = 64, channels: int = 3, ndf: int = 64, norm: str = "batch", n_classes: int = 0) -> None:
        super().__init__()
        _check_positive(channels=channels, ndf=ndf)
        _check_classes(n_classes)
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {_NORMS} (WGAN-GP critics use 'layer' or 'none'), got {norm!r}.")
        s = _n_scale(img_size)
        self.img_size, self.channels, self.n_classes, self.norm = img_size, channels, n_classes, norm
        layers: list[nn.Module] = [nn.Conv2d(channels, ndf, 4, 2, 1, bias=True), LeakyReLU(0.2)]
        c = ndf
        for _ in range(s - 1):
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1, bias=norm == "none"), *_norm(norm, 2 * c), LeakyReLU(0.2)]
            c *= 2
        self.body = nn.Sequential(*layers)
        self.n_features = c * 16
        self.proj = _ProjectionHead(nn.Conv2d(c, 1, 4, 1, 0, bias=True), self.n_features, n_classes)
        self.apply(_dcgan_init)

    def _check(self, x: Tensor) -> None:
        want = (self.channels, self.img_size, self.img_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"critic input must have shape (B, {want[0]}, {want[1]}, {want[2]}), got {tuple(x.shape)}; "
                             "resize the data (image_size=) or build the critic to match.")

    def features(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        self._check(x)
        return self.body(x).flatten(1)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if self.n_classes:
            y = _need_labels(self, y, x.shape[0])
        self._check(x)
        return self.proj(self.body(x), y)  # head is a 4x4 valid conv = a linear map of features(x)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def noise_size_candidates(generator: nn.Module) -> list[int]:
    """Plausible noise sizes of a generator, most likely first: a ``z_dim`` attribute, then the
    input width of every nn.Linear / nn.ConvTranspose2d in registration order (the first layer
    registered need not be the first called, so the trainer tries them in turn)."""
    found: list[int] = []
    z = getattr(generator, "z_dim", None)
    if isinstance(z, int) and not isinstance(z, bool):
        found.append(z)
    for m in generator.modules():
        if isinstance(m, nn.Linear):
            found.append(m.in_features)
        elif isinstance(m, nn.ConvTranspose2d):
            found.append(m.in_channels)
    return list(dict.fromkeys(found))


def noise_shape(z: int | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """The per-sample noise shape: ``z_dim`` alone means flat noise (z_dim,); a shape is kept."""
    return (int(z),) if isinstance(z, int) else tuple(int(v) for v in z)


_NOISE_LAYERS = (nn.Linear, nn.ConvTranspose2d, nn.Conv2d)


def _first_layer(generator: nn.Module) -> nn.Module | None:
    return next((m for m in generator.modules() if isinstance(m, _NOISE_LAYERS)), None)


def noise_shape_candidates(generator: nn.Module, z_dim: int | None = None) -> list[tuple[int, ...]]:
    """Plausible per-sample noise shapes, most likely first. A built-in generator takes flat noise
    (z_dim,). For any other, the first layer tells the layout: a convolution (``ConvTranspose2d`` /
    ``Conv2d``, as in DCGAN-style code that draws noise of shape (B, nz, 1, 1)) makes (nz, 1, 1)
    the first guess, a ``Linear`` (nz,); the other layout is tried next, since a generator may
    reshape its input itself. The sizes are ``z_dim`` when given, else ``noise_size_candidates``
    (plus a leading ``Conv2d``'s input channels)."""
    if model_spec(generator) is not None:
        return [(z_dim or generator.z_dim,)]
    first = _first_layer(generator)
    conv_first = isinstance(first, (nn.ConvTranspose2d, nn.Conv2d))
    sizes = [z_dim] if z_dim else noise_size_candidates(generator)
    if not z_dim and isinstance(first, nn.Conv2d) and not isinstance(first, nn.ConvTranspose2d):
        sizes = [first.in_channels, *sizes]
    shapes: list[tuple[int, ...]] = []
    for n in dict.fromkeys(sizes):
        shapes += [(n, 1, 1), (n,)] if conv_first else [(n,), (n, 1, 1)]
    return shapes


def has_batchnorm(module: nn.Module) -> bool:
    """True when any BatchNorm layer is inside ``module`` (WGAN-GP's penalty is per sample,
    which BatchNorm's cross-sample coupling breaks)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


# --------------------------------------------------------------------------------------------
# WGAN-GP's MNIST models (gan_mnist.py)
# --------------------------------------------------------------------------------------------


def _tflib_init(m: nn.Module) -> None:
    """The initialisation of the WGAN-GP authors' tflib (improved_wgan_training): weights
    ~ U(-s sqrt(3), s sqrt(3)) (std s), biases 0, with
    Linear (their default, Glorot): s = sqrt(2 / (fan_in + fan_out));
    Conv2D (He): s = sqrt(4 / (k^2 c_in + k^2 c_out / stride^2));
    Deconv2D (He): s = sqrt(4 / (k^2 c_in / stride^2 + k^2 c_out)).
    Label embeddings keep their own initialisation."""
    if isinstance(m, nn.Linear):
        s = math.sqrt(2.0 / (m.in_features + m.out_features))
    elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        k2, stride2 = m.kernel_size[0] * m.kernel_size[1], m.stride[0] * m.stride[1]
        c_in, c_out = (m.in_channels, m.out_channels)
        if isinstance(m, nn.Conv2d):
            s = math.sqrt(4.0 / (k2 * c_in + k2 * c_out / stride2))
        else:
            s = math.sqrt(4.0 / (k2 * c_in / stride2 + k2 * c_out))
    else:
        return
    nn.init.uniform_(m.weight, -s * math.sqrt(3.0), s * math.sqrt(3.0))
    nn.init.zeros_(m.bias)


@builtin_model
class MNISTGenerator(nn.Module):
    """The WGAN-GP authors' MNIST generator (Gulrajani et al. 2017, ``gan_mnist.py``, WGAN-GP mode):

        z (B, z_dim) -> Linear(z_dim, 4*4*4*dim) ReLU -> reshape (B, 4 dim, 4, 4)
        -> ConvT5x5/2 (4 dim -> 2 dim) ReLU, 8x8 cropped to 7x7
        -> ConvT5x5/2 (2 dim -> dim) ReLU, 14x14 -> ConvT5x5/2 (dim -> 1), 28x28 -> sigmoid,

    so samples are (B, 1, 28, 28) in (0, 1): train it on the mnist data in [0, 1], not [-1, 1].
    No normalisation (the authors' BatchNorm is in their WGAN-clipping mode only). Biases and
    weights are initialised as in their tflib (``_tflib_init``). The stride-2 convolutions pad
    symmetrically (PyTorch's ``padding=2, output_padding=1``) where TensorFlow's 'SAME' pads one
    pixel less before than after: same shapes and parameter count, sampling grid shifted by one
    pixel. dim=64 (the authors') has 1,554,177 parameters (z_dim=128); ``dim`` scales the widths
    for cheaper CPU runs (dim=16: 196,545); the cost per WGAN-GP generator iteration of each width
    is measured in benchmarks (RESULTS.md), not stated here.

    For 32x32 digits (the mnist data at ``size=32``, zero-padded by 2) use the DCGAN-32 models:
    ``DCGANGenerator(img_size=32, channels=1)`` with ``DCGANCritic(img_size=32, channels=1, norm="layer")``.
    Conditional (``n_classes > 0``): a learned label embedding is appended to z, as for the other
    built-in generators."""

    def __init__(self, z_dim: int = 128, dim: int = 64, n_classes: int = 0, channels: int = 1) -> None:
        super().__init__()
        _check_positive(z_dim=z_dim, dim=dim, channels=channels)
        _check_classes(n_classes)
        self.z_dim, self.dim, self.n_classes, self.img_size, self.channels = z_dim, dim, n_classes, 28, channels
        self.embed = nn.Embedding(n_classes, n_classes) if n_classes > 0 else None
        self.fc = nn.Sequential(nn.Linear(z_dim + n_classes, 4 * 4 * 4 * dim), ReLU())
        self.up1 = nn.Sequential(nn.ConvTranspose2d(4 * dim, 2 * dim, 5, 2, padding=2, output_padding=1), ReLU())
        self.up2 = nn.Sequential(nn.ConvTranspose2d(2 * dim, dim, 5, 2, padding=2, output_padding=1), ReLU())
        self.out = nn.ConvTranspose2d(dim, channels, 5, 2, padding=2, output_padding=1)  # 3: Stacked MNIST
        self.apply(_tflib_init)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        z = _generator_input(self, z, y)
        h = self.fc(z).reshape(z.shape[0], 4 * self.dim, 4, 4)
        h = self.up1(h)[:, :, :7, :7]  # 8x8 -> 7x7, so that two more doublings give 28x28
        return torch.sigmoid(self.out(self.up2(h)))


@builtin_model
class MNISTCritic(nn.Module):
    """The WGAN-GP authors' MNIST critic (``gan_mnist.py``, WGAN-GP mode): no normalisation,

        x (B, 1, 28, 28) (or flat (B, 784)) -> Conv5x5/2 (1 -> dim) LeakyReLU(0.2), 14x14
        -> Conv5x5/2 (dim -> 2 dim) LeakyReLU(0.2), 7x7 -> Conv5x5/2 (2 dim -> 4 dim) LeakyReLU(0.2), 4x4
        -> flatten (the features, 4*4*4*dim) -> Linear(4*4*4*dim, 1),

    scores of shape (B,). dim=64 has 1,030,145 parameters (dim=16: 65,537). Initialisation and
    padding as in ``MNISTGenerator``. Conditional (``n_classes > 0``): the projection head of the
    other built-in critics, D(x, y) = Linear(h) + <embed(y), h>."""

    def __init__(self, dim: int = 64, n_classes: int = 0, channels: int = 1) -> None:
        super().__init__()
        _check_positive(dim=dim, channels=channels)
        _check_classes(n_classes)
        self.dim, self.n_classes, self.img_size, self.channels = dim, n_classes, 28, channels
        self.body = nn.Sequential(
            nn.Conv2d(channels, dim, 5, 2, padding=2), LeakyReLU(0.2),  # channels 3: Stacked MNIST
            nn.Conv2d(dim, 2 * dim, 5, 2, padding=2), LeakyReLU(0.2),
            nn.Conv2d(2 * dim, 4 * dim, 5, 2, padding=2), LeakyReLU(0.2),
        )
        self.n_features = 4 * 4 * 4 * dim
        self.proj = _ProjectionHead(nn.Linear(self.n_features, 1), self.n_features, n_classes)
        self.apply(_tflib_init)

    def _image(self, x: Tensor) -> Tensor:
        c = self.channels
        if x.dim() == 2 and x.shape[1] == 784 * c:
            return x.reshape(x.shape[0], c, 28, 28)  # the authors feed flat digits
        if x.dim() != 4 or tuple(x.shape[1:]) != (c, 28, 28):
            raise ValueError(f"MNISTCritic(channels={c}) takes (B, {c}, 28, 28) or flat (B, {784 * c}) digits, got "
                             f"{tuple(x.shape)}; for 32x32 data use DCGANCritic(img_size=32, channels={c}, norm='layer').")
        return x

    def features(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.body(self._image(x)).flatten(1)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if self.n_classes:
            y = _need_labels(self, y, x.shape[0])
        return self.proj(self.features(x), y)


__all__ += ["MNISTGenerator", "MNISTCritic"]
