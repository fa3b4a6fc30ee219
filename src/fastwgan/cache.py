"""fastwgan's cache folder, and the compiled training steps kept in it between runs.

One folder holds what fastwgan keeps between runs: ``$FASTWGAN_CACHE`` if set, else
``$XDG_CACHE_HOME/fastwgan``, else ``~/.cache/fastwgan``. In it:

- ``inductor/``: torch.compile's on-disk caches (inductor's FX-graph cache and AOTAutograd's
  cache). A compiled step whose model, settings and torch version were compiled before is loaded
  from here instead of being compiled again, in any later process. PyTorch's own default is
  ``/tmp/torchinductor_<user>``, which is emptied on reboot and lives in a folder every user can
  write to; the compiled code in this cache is loaded and run, so it belongs in the user's own
  folder. A ``TORCHINDUCTOR_CACHE_DIR`` the user set (to anything but PyTorch's default) wins.
- the digit classifier of the image metrics (``imagemetrics/classifier_cache.py``);
- the JIT-built C++ kernels of a source checkout (``backend.py``; ``FASTWGAN_BUILD_DIR`` overrides).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

__all__ = ["cache_dir", "compile_cache_dir", "use_compile_cache", "start_cpu_isa_probe"]

INDUCTOR_ENV = "TORCHINDUCTOR_CACHE_DIR"


def cache_dir() -> Path:
    """``$FASTWGAN_CACHE``, else ``$XDG_CACHE_HOME/fastwgan``, else ``~/.cache/fastwgan``."""
    if os.environ.get("FASTWGAN_CACHE"):
        return Path(os.environ["FASTWGAN_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "fastwgan"
    return Path.home() / ".cache" / "fastwgan"


def _pytorch_default() -> str:
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    return os.path.abspath(default_cache_dir())


_set_here: str | None = None  # the value use_compile_cache() last wrote: fastwgan's choice, not the user's


def _chosen_inductor_dir() -> str | None:
    """``$TORCHINDUCTOR_CACHE_DIR`` when the user chose it; None when it is unset, holds PyTorch's
    default (importing ``torch._dynamo`` writes the default into the variable itself) or the folder
    fastwgan wrote there (so a later change of ``FASTWGAN_CACHE`` still counts)."""
    value = os.environ.get(INDUCTOR_ENV)
    if not value or value == _set_here or os.path.abspath(value) == _pytorch_default():
        return None
    return value


def compile_cache_dir() -> Path:
    """Where torch.compile's caches go: a chosen ``$TORCHINDUCTOR_CACHE_DIR``, else ``cache_dir()/inductor``."""
    chosen = _chosen_inductor_dir()
    return Path(chosen).expanduser() if chosen else cache_dir() / "inductor"


def use_compile_cache() -> Path:
    """Point torch.compile's on-disk caches at ``compile_cache_dir()``; call it before compiling.

    Inductor and AOTAutograd look the variable up each time they read or write their caches, so
    setting it here takes effect for the next compile. The folder is created readable by its owner only.
    """
    global _set_here
    folder = compile_cache_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not _chosen_inductor_dir():
        _set_here = os.environ[INDUCTOR_ENV] = str(folder)
    return folder


def start_cpu_isa_probe() -> threading.Thread | None:
    """Start inductor's check of which vector ISA its CPU kernels may use, in a background thread.

    Before it generates its first CPU kernel, inductor builds a test program with g++ for each
    vector ISA the CPU reports and loads each in a child process (``cpu_vec_isa.pick_vec_isa``):
    about 8 s of a 30-40 s cold compile of the toy step on 2 cores, run once per cache folder (the
    results are kept in it). Nothing of the step's tracing needs it, so started here, before
    tracing, it runs beside dynamo and AOTAutograd instead of after them. The thread only warms
    inductor's own cached answer (same function, same result): if it fails, or is not finished
    when code generation asks, inductor's own call does the work as it would have. Call it after
    :func:`use_compile_cache` (the test programs go to the cache folder). None where this torch has
    no such check."""
    try:
        from torch._inductor.cpu_vec_isa import pick_vec_isa
    except ImportError:
        return None

    def probe() -> None:
        try:
            pick_vec_isa()
        except Exception:  # inductor's own call, when it comes, raises what there is to raise
            pass

    thread = threading.Thread(target=probe, name="fastwgan-cpu-isa-probe", daemon=True)
    thread.start()
    return thread
