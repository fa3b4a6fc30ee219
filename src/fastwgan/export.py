"""Export a generator as a file that loads without fastwgan: ``torch.export`` (.pt2), or TorchScript.

    fastwgan export --run runs/8g --out G.pt2

The fused activations (``fastwgan.ops.activations``) are autograd Functions; a sampler needs no
backward, so the exported copy uses torch.nn's plain ones (``with_torch_activations``: the same
forward). Routes, first that works: ``torch.export`` with a dynamic batch; ``torch.jit.script``;
``torch.jit.trace``. Each file is then checked in a fresh Python in which ``import fastwgan`` fails
(tested there as a negative control), on fresh inputs of another batch size, against the project's
tolerance rule: error against an fp64 copy of the model at most twice plain fp32 PyTorch's own
error plus one fp32 epsilon at the output's scale. Each route writes a temporary file beside the
output; only one that passes the check replaces the output (a failed export keeps what was there),
and a run's own ``checkpoints/`` is never an output.
"""
from __future__ import annotations

import copy
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from .atomic import replaced_on_success
from .models import noise_shape
from .ops.activations import with_torch_activations
from .run_folder import refuse_checkpoint_folder

CHECK_BATCH = 37  # not the export's example batch: a baked-in batch size must fail the check


class _Sampler(nn.Module):
    """G(z) as a module with a fixed signature (what torch.export and TorchScript see)."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.g = generator

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.g(z)


class _ConditionalSampler(_Sampler):
    """G(z, y), y int64 class ids."""

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.g(z, y)


def _inputs(n: int, z_shape: int | tuple[int, ...], n_classes: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, *noise_shape(z_shape), generator=g)
    return (z, torch.randint(0, n_classes, (n,), generator=g)) if n_classes else (z,)


def _try_export(model: nn.Module, example: tuple, out: Path) -> str:
    batch = torch.export.Dim("batch", min=1)
    shapes = tuple({0: batch} for _ in example)
    ep = torch.export.export(model, example, dynamic_shapes=shapes)
    torch.export.save(ep, str(out))
    return "torch.export"


def _try_script(model: nn.Module, example: tuple, out: Path) -> str:
    with warnings.catch_warnings():  # TorchScript is deprecated, and here on purpose: the fallback
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(model).save(str(out))
    return "torchscript-script"


def _try_trace(model: nn.Module, example: tuple, out: Path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.trace(model, example, check_trace=True).save(str(out))
    return "torchscript-trace"


ROUTES = {"export": (_try_export,), "torchscript": (_try_script, _try_trace),
          "auto": (_try_export, _try_script, _try_trace)}


def export_generator(generator: nn.Module, z_dim: int | tuple[int, ...], out: str | os.PathLike, *,
                     n_classes: int = 0, route: str = "auto") -> dict:
    """Write ``generator`` (eval mode, CPU, plain activations) to ``out`` and check it in a
    subprocess without fastwgan. ``z_dim``: the noise size, or its per-sample shape (e.g.
    (100, 1, 1), a run's ``LoadedRun.noise_shape``). Returns {"path", "format", "max_abs_err",
    "bound", "tried"}."""
    z_dim = noise_shape(z_dim)
    if route not in ROUTES:
        raise ValueError(f"route must be one of {', '.join(ROUTES)}, got {route!r}")
    out = refuse_checkpoint_folder(out)
    if out.parent and not out.parent.is_dir():
        raise FileNotFoundError(f"the folder of --out {out} does not exist: create it first")
    if out.is_dir():
        raise IsADirectoryError(f"--out {out} is a folder: pass a file name, e.g. {out / 'G.pt2'}")
    plain = with_torch_activations(generator).cpu().float().eval()
    model = (_ConditionalSampler(plain) if n_classes else _Sampler(plain)).eval()
    example = _inputs(4, z_dim, n_classes, seed=0)
    failures = []
    for attempt in ROUTES[route]:
        try:  # written and checked beside out; out is replaced only by a file that passed
            with replaced_on_success(out) as tmp:
                with torch.no_grad():
                    fmt = attempt(model, example, tmp)
                report = check_export(model, tmp, fmt, z_dim, n_classes)
            return dict(report, path=str(out), format=fmt, tried=failures)
        except Exception as e:  # noqa: BLE001 - each route's failure is reported, the next tried
            failures.append(f"{attempt.__name__[5:]}: {type(e).__name__}: {str(e).strip().splitlines()[0][:300]}")
    raise ValueError("could not export this generator (" + "; ".join(failures) + "). Make its forward "
                     "traceable: no data-dependent Python control flow, no NumPy or .item() on tensors")


_CHECK = r"""
import sys
src = sys.argv[1]
sys.path[:] = [p for p in sys.path if p and not p.startswith(src)]
sys.modules["fastwgan"] = None  # any import of fastwgan, direct or by unpickling, now fails
try:
    import fastwgan  # noqa: F401
    raise SystemExit("negative control failed: fastwgan is importable in the check")
except ImportError:
    pass
import torch
fmt, path, inputs, out = sys.argv[2:6]
args = torch.load(inputs)
if fmt == "torch.export":
    model = torch.export.load(path).module()
else:
    model = torch.jit.load(path)
with torch.no_grad():
    torch.save(model(*args), out)
"""


def check_export(model: nn.Module, path: Path, fmt: str, z_dim: int, n_classes: int) -> dict:
    """Run the exported file in a Python where fastwgan cannot be imported; compare its output to
    the fp64 model within 2 x fp32 PyTorch's own error + eps * scale (the project's rule)."""
    args = _inputs(CHECK_BATCH, z_dim, n_classes, seed=1)
    with torch.no_grad():
        ref32 = model(*args)
        ref64 = copy.deepcopy(model).double()(args[0].double(), *args[1:])
    src = str(Path(__file__).resolve().parent.parent)
    with tempfile.TemporaryDirectory() as tmp:
        inp, res = os.path.join(tmp, "in.pt"), os.path.join(tmp, "out.pt")
        torch.save(args, inp)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        r = subprocess.run([sys.executable, "-c", _CHECK, src, fmt, str(path.resolve()), inp, res],
                           capture_output=True, text=True, cwd=tmp, env=env, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"the exported file does not run without fastwgan: {r.stderr.strip()[-500:]}")
        got = torch.load(res)
    if got.shape != ref32.shape:
        raise RuntimeError(f"the exported file gives shape {tuple(got.shape)} for batch {CHECK_BATCH}, "
                           f"the generator {tuple(ref32.shape)}")
    scale = float(ref64.abs().max())
    bound = 2 * float((ref32.double() - ref64).abs().max()) + torch.finfo(torch.float32).eps * scale
    err = float((got.double() - ref64).abs().max())
    if not err <= bound:
        raise RuntimeError(f"the exported file's output differs from the generator's: max error {err:.3g} "
                           f"against the fp64 model, allowed {bound:.3g}")
    return {"max_abs_err": err, "bound": bound, "check_batch": CHECK_BATCH}
