"""fastwgan's cache folder (fastwgan/cache.py): where it is, and that a compiled training step is
kept there and loaded back by a later process instead of being compiled again."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fastwgan.cache import INDUCTOR_ENV, cache_dir, compile_cache_dir, use_compile_cache

TESTS = Path(__file__).parent


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("FASTWGAN_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "fastwgan"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "fastwgan"
    monkeypatch.setenv("FASTWGAN_CACHE", str(tmp_path / "own"))
    assert cache_dir() == tmp_path / "own"


def test_compile_cache_replaces_pytorchs_default_but_not_a_chosen_folder(monkeypatch, tmp_path):
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("FASTWGAN_CACHE", str(tmp_path / "fw"))
    for unset_or_default in (None, default_cache_dir()):  # importing torch._dynamo writes the default
        if unset_or_default is None:
            monkeypatch.delenv(INDUCTOR_ENV, raising=False)
        else:
            monkeypatch.setenv(INDUCTOR_ENV, unset_or_default)
        assert use_compile_cache() == tmp_path / "fw" / "inductor"
        assert os.environ[INDUCTOR_ENV] == str(tmp_path / "fw" / "inductor")
        assert (tmp_path / "fw" / "inductor").stat().st_mode & 0o077 == 0  # the owner's only
    monkeypatch.setenv("FASTWGAN_CACHE", str(tmp_path / "moved"))  # what fastwgan wrote is not a user's choice
    assert use_compile_cache() == tmp_path / "moved" / "inductor" == Path(os.environ[INDUCTOR_ENV])
    monkeypatch.setenv(INDUCTOR_ENV, str(tmp_path / "mine"))  # the user's choice wins
    assert compile_cache_dir() == use_compile_cache() == tmp_path / "mine"
    assert os.environ[INDUCTOR_ENV] == str(tmp_path / "mine")


_COMPILED_RUN = """
import json, sys, torch
from torch._dynamo.utils import counters
sys.path.insert(0, sys.argv[1])
from _tiny import quick_train, tiny_models
G, D = tiny_models("mlp")
r = quick_train(G, D, torch.randn(64, 2), loss="wgan-gp", steps=2, batch_size=16, n_critic=2, compile=True,
                precision="fp32", seed=0)
print(json.dumps(dict(mode=r.step_mode, inductor=dict(counters["inductor"]), aot=dict(counters["aot_autograd"]))))
"""


def _compiled_run(env: dict) -> dict:
    p = subprocess.run([sys.executable, "-c", _COMPILED_RUN, str(TESTS)], env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_a_compiled_step_is_loaded_from_the_cache_by_the_next_process(tmp_path):
    """Two fresh processes, PyTorch's cache variable unset: the first compiles (a cache miss: the
    negative control) and writes into fastwgan's folder; the second loads both caches' entries."""
    env = {k: v for k, v in os.environ.items() if k != INDUCTOR_ENV}
    env["FASTWGAN_CACHE"] = str(tmp_path)
    first = _compiled_run(env)
    assert first["mode"] == "compiled"
    assert first["inductor"].get("fxgraph_cache_miss", 0) >= 1 and first["inductor"].get("fxgraph_cache_hit", 0) == 0
    assert any((tmp_path / "inductor" / "fxgraph").rglob("*")) and any((tmp_path / "inductor" / "aotautograd").rglob("*"))
    second = _compiled_run(env)
    assert second["mode"] == "compiled"
    assert second["inductor"].get("fxgraph_cache_hit", 0) >= 1 and second["inductor"].get("fxgraph_cache_miss", 0) == 0
    assert second["aot"].get("autograd_cache_hit", 0) >= 1


def test_info_names_the_cache_folders(monkeypatch, tmp_path):
    from fastwgan.info import info

    monkeypatch.setenv("FASTWGAN_CACHE", str(tmp_path))
    monkeypatch.delenv(INDUCTOR_ENV, raising=False)
    assert info()["cache"] == {"folder": str(tmp_path), "compiled_steps": str(tmp_path / "inductor")}


def test_the_compiled_cpu_step_starts_inductors_isa_probe_in_the_cache_folder(monkeypatch, tmp_path):
    """StaticStep(compile=True) on the CPU starts inductor's vector-ISA check at once, in a
    background thread, after pointing inductor at fastwgan's cache folder (the check's test
    programs go there); an eager step starts none; a probe that raises is swallowed (inductor's own
    call raises later, if it must)."""
    import threading

    import torch
    from torch._inductor import cpu_vec_isa

    from _tiny import tiny_models
    from fastwgan.cache import start_cpu_isa_probe
    from fastwgan.distributed import DistInfo
    from fastwgan.training.inputs import Draws
    from fastwgan.training.precision import Amp
    from fastwgan.training.static import StaticStep

    monkeypatch.setenv("FASTWGAN_CACHE", str(tmp_path))
    monkeypatch.delenv(INDUCTOR_ENV, raising=False)
    seen = []
    monkeypatch.setattr(cpu_vec_isa, "pick_vec_isa",
                        lambda: seen.append((threading.current_thread().name, os.environ.get(INDUCTOR_ENV))))

    def step(compile: bool) -> StaticStep:
        G, D = tiny_models("mlp")
        draws = Draws(8, 2, penalty=True, device=torch.device("cpu"), data_dtype=torch.float32,
                      z_dtype=torch.float32, info=DistInfo())
        return StaticStep(G, D, torch.optim.Adam(D.parameters()), torch.optim.Adam(G.parameters()), loss="wgan-gp",
                          lam=1.0, n_critic=2, draws=draws, sample_shape=(2,), labelled=False,
                          amp=Amp("fp32", torch.device("cpu")), compile=compile)

    assert step(compile=False)._isa_probe is None and seen == []
    compiled = step(compile=True)
    compiled._isa_probe.join(timeout=30)
    assert seen == [("fastwgan-cpu-isa-probe", str(tmp_path / "inductor"))]

    def broken():
        raise RuntimeError("no compiler")

    monkeypatch.setattr(cpu_vec_isa, "pick_vec_isa", broken)
    errors = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    thread = start_cpu_isa_probe()
    thread.join(timeout=30)
    assert not thread.is_alive() and errors == []
