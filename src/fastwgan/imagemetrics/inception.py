"""FID, KID and IS through torchmetrics, with any feature extractor, and offline Inception-v3.

* FID (Heusel et al. 2017): the Frechet distance between Gaussians fitted to the features of real
  and generated images (``frechet.py`` has the formula); torchmetrics' ``FrechetInceptionDistance``.
* KID (Binkowski et al. 2018, "Demystifying MMD GANs"): the unbiased squared MMD with the cubic
  polynomial kernel k(a, b) = (a.b / d + 1)^3, averaged over ``kid_subsets`` random subsets of
  ``kid_subset_size``; torchmetrics' ``KernelInceptionDistance`` (mean and std over subsets).
* IS (Salimans et al. 2016): exp E_x KL(p(y|x) || p(y)) from a classifier's logits, mean and std
  over ``is_splits`` splits; torchmetrics' ``InceptionScore``.

Features are computed once per image set by our own batched loop and handed to the torchmetrics
metrics through an identity "extractor", so one network pass serves all three metrics and any
``nn.Module`` mapping images to (N, d) features plugs in (``feature_extractor=``; IS also needs
``logits_extractor=``, a module mapping images to (N, classes) logits). Their random subsets are
drawn under a forked, seeded RNG, so a call neither depends on nor advances the caller's stream.

Default extractor: Inception-v3 as FID defines it (the TF 2015-12-05 graph converted by
torch-fidelity: 2048-d pool features and the 1008 unbiased logits), which needs ``torch-fidelity``
and its weights file. fastwgan never downloads at run time: without the file the call raises
``InceptionUnavailableError`` saying where to put it (torch.hub's cache,
``$TORCH_HOME/hub/checkpoints/``) or to pass ``inception_weights=PATH``. A given file is first read
with ``torch.load(weights_only=True)``, so a file that would run code when unpickled is refused
before torch-fidelity (which unpickles it fully) ever sees it.
"""
from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["fid_kid_is", "inception_v3", "inception_weights_path", "InceptionUnavailableError",
           "INCEPTION_WEIGHTS_FILE", "INCEPTION_WEIGHTS_URL"]

INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_WEIGHTS_FILE}"


class InceptionUnavailableError(RuntimeError):
    """Inception-v3 features cannot be had offline here; the message says what to provide."""


def inception_weights_path(weights: str | os.PathLike | None = None) -> Path:
    """``weights`` if given, else where torch-fidelity's download would put the file:
    ``torch.hub.get_dir()/checkpoints/weights-inception-2015-12-05-6726825d.pth``."""
    if weights is not None:
        return Path(weights).expanduser()
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE


def _torchmetrics_image():
    """The three torchmetrics classes, or ImportError naming the fix."""
    from fastwgan.extras import install_command

    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.inception import InceptionScore
        from torchmetrics.image.kid import KernelInceptionDistance
    except ImportError as e:
        raise ImportError(
            f"FID / KID / IS use torchmetrics' image metrics, which do not import here ({type(e).__name__}: {e}). "
            f"Install them with `{install_command('images')}`. If torch-fidelity is installed but its torchvision "
            "does not match this torch (e.g. a CUDA torchvision beside a CPU torch), torchmetrics fails on import: "
            "install the torchvision built for your torch, or uninstall torch-fidelity (custom extractors work "
            "without it)."
        ) from e
    return FrechetInceptionDistance, KernelInceptionDistance, InceptionScore


def _unsafe_weights(path: Path) -> str | None:
    """Why ``path`` is not a plain state dict of tensors under ``torch.load(weights_only=True)``, or None."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses any object outside tensors / containers / numbers
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        return "it is not a state dict of tensors"
    return None


def inception_v3(weights: str | os.PathLike | None = None) -> nn.Module:
    """torchmetrics' ``NoTrainInceptionV3`` (torch-fidelity's FID Inception) returning the tuple
    (pool features (N, 2048), unbiased logits (N, 1008)) for uint8 (N, 3, H, W) images, loaded
    from a local weights file only (module docstring). Raises ``InceptionUnavailableError``
    listing every missing piece and its fix."""
    path = inception_weights_path(weights)
    problems = []
    if not path.is_file():
        problems.append(
            f"its weights file {path} does not exist (fastwgan never downloads at run time). Download "
            f"{INCEPTION_WEIGHTS_URL} on a machine with network access and put it at "
            f"{inception_weights_path(None)} (torch.hub's cache; set TORCH_HOME to move it), or pass "
            "inception_weights='/path/to/" + INCEPTION_WEIGHTS_FILE + "'"
        )
    else:
        problem = _unsafe_weights(path)
        if problem:
            problems.append(f"its weights file {path} cannot be read safely ({problem}): replace it with "
                            f"{INCEPTION_WEIGHTS_URL}")
    try:
        importlib.import_module("torch_fidelity.feature_extractor_inceptionv3")  # imports, or says why not
    except ImportError as e:
        problems.append(
            f"torch-fidelity does not import ({type(e).__name__}: {e}): `pip install torch-fidelity` together with "
            "the torchvision built for your torch"
        )
    if problems:
        raise InceptionUnavailableError(
            "Inception-v3 features for FID / KID / IS are not available: " + "; and ".join(problems)
            + ". Or pass feature_extractor= (and logits_extractor= for IS): any nn.Module mapping images to (N, d) "
            "features, e.g. fastwgan's digit classifier for MNIST."
        )
    from torchmetrics.image.fid import NoTrainInceptionV3

    return NoTrainInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                              feature_extractor_weights_path=str(path))


class _Given(nn.Module):
    """The torchmetrics "extractor" for features computed beforehand: the identity, with the
    feature count torchmetrics would otherwise probe with a dummy image."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, f: Tensor) -> Tensor:
        return f


def _images(x: Tensor, what: str) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[0] < 2:
        raise ValueError(f"{what} must be a tensor of images (N, C, H, W) with N >= 2, got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}.")
    x = x.detach().float()
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} contains NaN or inf (a diverged generator); FID / KID / IS need finite images.")
    return x.clamp(0.0, 1.0)  # the data range; a generator's overshoot is measured as it would be shown


@torch.no_grad()
def _run(net: nn.Module, x: Tensor, batch: int) -> Tensor:
    return torch.cat([net(x[i:i + batch]) for i in range(0, x.shape[0], batch)])


def _extract(x: Tensor, feature_extractor, logits_extractor, inception, batch: int) -> tuple[Tensor, Tensor | None]:
    if inception is not None:
        if x.shape[1] not in (1, 3):
            raise ValueError(f"Inception-v3 takes gray or RGB images (N, 1 or 3, H, W), got {tuple(x.shape)}.")
        u8 = (x.expand(-1, 3, -1, -1) * 255).round().to(torch.uint8)  # gray -> RGB; Inception takes uint8
        with torch.no_grad():
            out = [inception(u8[i:i + batch]) for i in range(0, u8.shape[0], batch)]  # (features, logits) each
        return torch.cat([o[0] for o in out]), torch.cat([o[1] for o in out])
    feats = _run(feature_extractor, x, batch)
    logits = _run(logits_extractor, x, batch) if logits_extractor is not None else None
    return feats, logits


def fid_kid_is(generated: Tensor, real: Tensor, *, feature_extractor: nn.Module | None = None,
               logits_extractor: nn.Module | None = None, inception_weights: str | os.PathLike | None = None,
               kid_subset_size: int = 1000, kid_subsets: int = 100, is_splits: int = 10, batch: int = 200,
               seed: int = 0) -> dict[str, float]:
    """FID, KID (mean, std) and IS (mean, std) of ``generated`` against ``real`` (both (N, C, H, W)
    in [0, 1]; out-of-range values are clamped, NaN raises ValueError).

    ``feature_extractor=None`` uses Inception-v3 (FID's definition; ``inception_weights`` or
    torch.hub's cache must hold its weights, see ``inception_v3``); otherwise any module mapping a
    batch of images to (N, d) features, with IS computed only when ``logits_extractor`` is given.
    KID uses subsets of min(kid_subset_size, N_real, N_generated) samples.

    Returns ``{"fid", "kid_mean", "kid_std"}`` plus ``{"is_mean", "is_std"}`` when logits exist.
    """
    fid_cls, kid_cls, is_cls = _torchmetrics_image()
    gen, ref = _images(generated, "generated"), _images(real, "real")
    inception = inception_v3(inception_weights) if feature_extractor is None else None
    if feature_extractor is None and logits_extractor is not None:
        raise ValueError("logits_extractor= goes with feature_extractor=; Inception provides both itself.")
    fg, lg = _extract(gen, feature_extractor, logits_extractor, inception, batch)
    fr, _ = _extract(ref, feature_extractor, logits_extractor, inception, batch)
    if fg.dim() != 2 or fr.shape[1:] != fg.shape[1:]:
        raise ValueError(f"the feature extractor must map images to (N, d) features, got {tuple(fg.shape)}.")
    d = fg.shape[1]
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(seed)
        # KID / IS warn that they keep every feature in memory: known, and small here (N x d)
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        fid = fid_cls(feature=_Given(d))
        fid.update(fr.double(), real=True)
        fid.update(fg.double(), real=False)
        subset = min(kid_subset_size, fr.shape[0], fg.shape[0])
        kid = kid_cls(feature=_Given(d), subsets=kid_subsets, subset_size=subset)
        kid.update(fr.double(), real=True)
        kid.update(fg.double(), real=False)
        kid_mean, kid_std = kid.compute()
        out = {"fid": float(fid.compute()), "kid_mean": float(kid_mean), "kid_std": float(kid_std)}
        if lg is not None:
            isc = is_cls(feature=_Given(lg.shape[1]), splits=is_splits)
            isc.update(lg.double())
            is_mean, is_std = isc.compute()
            out.update(is_mean=float(is_mean), is_std=float(is_std))
    return out
