"""Test-session set-up.

TRITON_INTERPRET=1 must be set before anything imports triton: it makes Triton run its kernels on
CPU tensors through the interpreter, which is how the Triton kernels are proven equal to the
references on a machine without a GPU (CI). Tests that need CUDA are marked ``cuda`` and skipped
without it; the same logic runs on the CPU through the interpreter.
"""
import os
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from _optional import install_stand_ins, triton_interpreter_problem  # noqa: E402

# POT or mlxtend missing (an accelerator machine's image): the tests that use them skip, naming it
install_stand_ins()


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA device; the same logic is covered on the CPU")
    if not torch.cuda.is_available():
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip)
    # Triton's interpreter broken by this machine's numpy (an accelerator image's older triton):
    # the tests that interpret Triton kernels on the CPU skip, naming it; nowhere else
    problem = triton_interpreter_problem()
    if problem:
        for item in items:
            if "triton" in item.nodeid.split("::", 1)[-1] and "cuda" not in item.keywords:
                item.add_marker(pytest.mark.skip(reason=problem))


@pytest.fixture(scope="session")
def classifier_cache_dir(tmp_path_factory):
    """A private cache folder holding the digit classifier, trained once for the whole session
    (or the folder named by FASTWGAN_TEST_CACHE, to reuse one across local test sessions)."""
    from fastwgan.imagemetrics import load_digit_classifier

    folder = Path(os.environ["FASTWGAN_TEST_CACHE"]) if os.environ.get("FASTWGAN_TEST_CACHE") \
        else tmp_path_factory.mktemp("fastwgan_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FASTWGAN_CACHE", str(folder))
        load_digit_classifier()
        yield folder
