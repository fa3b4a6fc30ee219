"""Builds the CPU kernels in csrc/ as one torch extension per op (fastwgan._C_<op>).

Each ``csrc/<op>.cpp`` becomes ``fastwgan._C_<op>``: one op = one module, the same name as in
``ops/``, ``reference/``, ``tests/`` and ``benchmarks/``. No GPU or CUDA_HOME is needed:
``CppExtension`` with ``with_cuda=False``. No hardware sniffing here: the kernels pick their
vector path at compile time from the compiler's own flags.
Set FASTWGAN_NO_EXT=1 to skip the build (the package then JIT-builds on first use, or falls back
to the reference backend).

The torch version the kernels are built against goes to ``fastwgan/_build_info.json`` (shipped in
the wheel): their C++ ABI is that torch's, so when torch changes later ``fastwgan.backend`` sees
the mismatch, warns once naming the rebuild, and uses the JIT build or the reference backend.
"""
import glob
import json
import os

from setuptools import setup

ext_modules = []
cmdclass = {}
if os.environ.get("FASTWGAN_NO_EXT") != "1":
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension

    class BuildWithInfo(BuildExtension.with_options(use_ninja=True)):
        """build_ext that also records, beside the built kernels, which torch they fit."""

        def run(self) -> None:
            super().run()
            folder = os.path.dirname(self.get_ext_fullpath("fastwgan._C_info"))  # in place or build/lib
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, "_build_info.json"), "w") as f:
                json.dump({"torch": torch.__version__}, f)

    here = os.path.dirname(os.path.abspath(__file__))
    for src in sorted(glob.glob(os.path.join(here, "csrc", "*.cpp"))):
        op = os.path.splitext(os.path.basename(src))[0]
        ext_modules.append(
            CppExtension(
                name=f"fastwgan._C_{op}",
                sources=[os.path.relpath(src, here)],
                include_dirs=[os.path.join(here, "csrc")],
                extra_compile_args=["-O3", "-fopenmp"],
                extra_link_args=["-fopenmp"],
            )
        )
    cmdclass = {"build_ext": BuildWithInfo}

setup(ext_modules=ext_modules, cmdclass=cmdclass)
