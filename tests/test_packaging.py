"""Packaging: the metadata fits the ecosystem, the extras say how to install what is missing, and C++
kernels built for another torch degrade to a warning and a fallback, never a crash.

How the "built for another torch" case is simulated: a real shared library named like the
extension (``_C_<op>`` + this Python's extension suffix), compiled here with gcc, whose init
function calls a C++ torch symbol that this torch does not export. Importing it fails exactly as
an extension built against another torch release does: ``ImportError: ...: undefined symbol:
_ZN...``, raised by the dynamic loader before any of its code runs. The library is put first on
``fastwgan.__path__`` so ``import fastwgan._C_<op>`` finds it instead of the real one.
"""
from __future__ import annotations

import importlib.machinery
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.version import Version

import _optional
from _tiny import TESTS
import fastwgan
from fastwgan import backend, extras

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
OPS = ("clipped_rmsprop", "gradient_penalty")


def _reqs(key: str | None = None) -> dict[str, Requirement]:
    lst = PYPROJECT["dependencies"] if key is None else PYPROJECT["optional-dependencies"][key]
    return {Requirement(r).name: Requirement(r) for r in lst}


# ------------------------------------------------------------------------------------ metadata
def test_torch_is_a_range_from_the_newest_api_used_to_the_next_major():
    spec = _reqs()["torch"].specifier
    for ok in ("2.6.0", "2.13.0", "2.14.1"):
        assert Version(ok) in spec, ok
    for bad in ("2.5.1", "3.0.0"):
        assert Version(bad) not in spec, bad
    # the API that sets the lower bound exists here (and is what the comment in pyproject.toml names)
    assert hasattr(torch.nn.utils, "get_total_norm")
    assert "get_total_norm" in (ROOT / "pyproject.toml").read_text()


def test_installed_torch_and_the_readme_pin_satisfy_the_range():
    spec = _reqs()["torch"].specifier
    assert Version(torch.__version__.split("+")[0]) in spec
    readme = (ROOT / "README.md").read_text()
    pins = set(re.findall(r"torch==([0-9.]+)", readme))
    assert pins and all(Version(p) in spec for p in pins), pins
    ci = (ROOT / ".ci" / "run").read_text()
    assert set(re.findall(r"torch==([0-9.]+)", ci)) == pins  # CI runs the README's torch


def test_heavy_optional_parts_are_extras_not_hard_dependencies():
    core = _reqs()
    for heavy in ("tensorboard", "triton", "mlxtend", "torchmetrics", "torch-fidelity"):
        assert heavy not in core, heavy
    assert "filelock" in core  # the run-folder lock is not optional
    extras_ = PYPROJECT["optional-dependencies"]
    assert {"tensorboard", "triton", "images", "test"} <= set(extras_)
    test = " ".join(extras_["test"])
    for part in ("tensorboard", "triton", "images"):
        assert part in test, f"[test] must pull the {part} extra"


def _closure(names: set[str]) -> set[str]:
    """The installed distributions ``names`` need, transitively (from their installed metadata)."""
    seen, todo = set(), [n.lower().replace("_", "-") for n in names]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        try:
            reqs = importlib.metadata.requires(n) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for r in map(Requirement, reqs):
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(r.name.lower().replace("_", "-"))
    return seen


def test_the_test_extra_pulls_every_package_the_tests_import():
    wanted = set(_reqs()) | {Requirement(r).name for r in PYPROJECT["optional-dependencies"]["test"]}
    for e in ("tensorboard", "triton", "images"):
        wanted |= set(_reqs(e))
    wanted.discard("fastwgan")
    provided = _closure(wanted)
    dists = importlib.metadata.packages_distributions()
    imported = set()
    for f in (ROOT / "tests").glob("*.py"):
        imported |= set(re.findall(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", f.read_text(), re.M))
    missing = {}
    for mod in imported - set(sys.stdlib_module_names) - {"fastwgan", "_rules", "conftest", "tests"}:
        owners = {d.lower().replace("_", "-") for d in dists.get(mod, [])}
        if owners and not owners & provided:
            missing[mod] = owners
    assert not missing, f"imported by tests but not in fastwgan[test]: {missing}"


def test_csrc_is_in_the_sdist_manifest():
    manifest = (ROOT / "MANIFEST.in").read_text()
    assert re.search(r"recursive-include\s+csrc\s+.*\*\.cpp.*\*\.h", manifest)
    assert list((ROOT / "csrc").glob("*.h")) and list((ROOT / "csrc").glob("*.cpp"))


@pytest.mark.skipif(shutil.which("pip", path=str(Path(sys.executable).parent)) is None, reason="no pip beside python")
@pytest.mark.skipif(bool(_optional.MISSING), reason=f"needs the test extra's modules {_optional.MISSING} installed: offline, "
                    "pip cannot resolve fastwgan[test] without them")
def test_installing_the_test_extra_here_changes_nothing_but_fastwgan(tmp_path):
    """Offline (--no-index): with this environment's torch installed, pip would install fastwgan alone."""
    pip = str(Path(sys.executable).parent / "pip")
    r = subprocess.run([pip, "install", "--dry-run", "--no-index", "--no-build-isolation", "-q",
                        "--report", str(tmp_path / "r.json"), "-e", f"{ROOT}[test]"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([pip, "check"], capture_output=True, text=True, timeout=120)
    torch_problems = [line for line in r.stdout.splitlines() if line.lower().startswith(("fastwgan", "torch "))]
    assert not torch_problems, torch_problems
    report = json.loads((tmp_path / "r.json").read_text())
    assert [i["metadata"]["name"] for i in report["install"]] == ["fastwgan"]
    installed_deps = {Requirement(d).name for d in report["install"][0]["metadata"]["requires_dist"]}
    assert "torch" in installed_deps


# ------------------------------------------------------------------------------------ extras
def test_require_imports_a_present_module():
    assert extras.require("test", "json") is json


def test_require_names_the_install_command_for_a_missing_one():
    with pytest.raises(ImportError, match=re.escape('pip install "fastwgan[tensorboard]"')):
        extras.require("tensorboard", "surely_not_a_module_xyz")
    with pytest.raises(ValueError, match="unknown extra"):
        extras.require("tensorbored", "json")


def test_require_for_tensorboard_when_it_is_missing(monkeypatch):
    """torch.utils.tensorboard raises ImportError when the tensorboard package is absent."""
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` now fails
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    with pytest.raises(ImportError, match=re.escape('pip install "fastwgan[tensorboard]"')):
        extras.require("tensorboard", "torch.utils.tensorboard")


# ------------------------------------------------- C++ kernels built for another torch release
FAKE_C = """
/* What an extension built against another torch looks like to the dynamic loader: a needed C++
   symbol of libtorch that this torch does not export. dlopen fails before this code runs. */
extern void _ZN2at6detail28symbol_of_another_torch_v999Ev(void);
void *PyInit__C_%(op)s(void) { _ZN2at6detail28symbol_of_another_torch_v999Ev(); return 0; }
"""


@pytest.fixture(scope="module")
def stale_dir(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc to build the stand-in extension")
    d = tmp_path_factory.mktemp("stale")
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    for op in OPS:
        (d / f"{op}.c").write_text(FAKE_C % {"op": op})
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(d / f"_C_{op}{suffix}"), str(d / f"{op}.c")],
                       check=True, capture_output=True)
    return d


@pytest.fixture
def fresh_backend(monkeypatch):
    """An empty extension cache and warning memory, restored afterwards."""
    backend.load_extension.cache_clear()
    monkeypatch.setattr(backend, "_warned", set())
    monkeypatch.setattr(backend, "how_loaded", {})
    yield
    backend.load_extension.cache_clear()


@pytest.fixture
def stale_extension(stale_dir, monkeypatch, fresh_backend):
    monkeypatch.setattr(fastwgan, "__path__", [str(stale_dir), *fastwgan.__path__])
    for op in OPS:
        monkeypatch.delitem(sys.modules, f"fastwgan._C_{op}", raising=False)
    monkeypatch.setattr(backend, "BUILD_INFO", str(stale_dir / "none.json"))  # no version file: dlopen decides
    return stale_dir


def test_the_stand_in_fails_like_a_mismatched_build(stale_dir):
    """Negative control: the stand-in really is what the loader rejects, with the loader's message."""
    spec = importlib.machinery.ExtensionFileLoader(
        "fastwgan._C_clipped_rmsprop", str(next(stale_dir.glob("_C_clipped_rmsprop*.so"))))
    with pytest.raises(ImportError, match="undefined symbol: _ZN2at6detail28symbol_of_another_torch"):
        spec.create_module(importlib.machinery.ModuleSpec(spec.name, spec, origin=spec.path))


def test_stale_extension_warns_once_and_falls_back_to_reference(stale_extension, monkeypatch):
    monkeypatch.setenv("FASTWGAN_NO_JIT", "1")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert backend.load_extension("clipped_rmsprop") is None
        assert backend.load_extension("gradient_penalty") is None
        assert backend.resolve("clipped_rmsprop", "cpu", "auto") == "reference"
    msgs = [str(w.message) for w in seen if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 1, msgs  # one warning, not one per op or per call
    assert "undefined symbol" in msgs[0] and "pip install --no-build-isolation -e ." in msgs[0]
    with pytest.raises(RuntimeError, match="pip install --no-build-isolation -e ."):
        backend.resolve("clipped_rmsprop", "cpu", "cpp")


def test_stale_extension_falls_back_to_the_jit_build_when_sources_are_here(stale_extension, monkeypatch):
    monkeypatch.delenv("FASTWGAN_NO_JIT", raising=False)
    built = []
    monkeypatch.setattr(backend, "_jit_build", lambda op: built.append(op) or "jit-module")
    with pytest.warns(RuntimeWarning, match="undefined symbol"):
        assert backend.load_extension("clipped_rmsprop") == "jit-module"
    assert built == ["clipped_rmsprop"] and backend.how_loaded["clipped_rmsprop"] == "jit"


def test_a_recorded_other_torch_version_is_not_even_loaded(tmp_path, monkeypatch, fresh_backend):
    info = tmp_path / "_build_info.json"
    info.write_text(json.dumps({"torch": "2.12.0+cpu"}))
    monkeypatch.setattr(backend, "BUILD_INFO", str(info))
    monkeypatch.setenv("FASTWGAN_NO_JIT", "1")
    tried = []
    real_import = backend.importlib.import_module
    monkeypatch.setattr(backend.importlib, "import_module", lambda name: tried.append(name) or real_import(name))
    with pytest.warns(RuntimeWarning, match=r"built against torch 2\.12\.0\+cpu, but torch .* is installed"):
        assert backend.load_extension("clipped_rmsprop") is None
    assert tried == []
    # negative control: the version this torch has loads the real extension, silently
    info.write_text(json.dumps({"torch": torch.__version__}))
    backend.load_extension.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert backend.load_extension("clipped_rmsprop") is not None
    assert backend.how_loaded["clipped_rmsprop"] == "installed"


def test_import_and_a_training_step_survive_a_stale_extension(stale_dir, tmp_path):
    """A fresh process: `import fastwgan`, then one training step with the stale kernels first on
    the path: it trains (reference kernels) and warns once, naming the rebuild."""
    code = f"""
import warnings, fastwgan
fastwgan.__path__.insert(0, {str(stale_dir)!r})
from fastwgan import backend
backend.BUILD_INFO = {str(tmp_path / 'none.json')!r}
import json, torch
from fastwgan.models import MLPGenerator, MLPCritic
import sys
sys.path.insert(0, {TESTS!r})
from _tiny import quick_train  # the tests' quiet settings
G, D = MLPGenerator(z_dim=2, width=8), MLPCritic(in_dim=2, width=8)
before = [p.detach().clone() for p in D.parameters()]
r = quick_train(G, D, "8gaussians", loss="wgan", steps=1, batch_size=16, n_critic=1)
moved = any(not torch.equal(a, b) for a, b in zip(before, D.parameters()))
print(json.dumps(dict(steps=r.steps_done, records=len(r.history), critic_moved=moved, loaded=backend.how_loaded)))
"""
    env = {**__import__("os").environ, "FASTWGAN_NO_JIT": "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    # one step trained, and it updated the critic (through the plain-PyTorch clipped RMSprop)
    assert (got["steps"], got["records"], got["critic_moved"]) == (1, 1, True), got
    assert got["loaded"]["clipped_rmsprop"].startswith("missing"), got
    assert r.stderr.count("do not fit this torch") == 1, r.stderr
