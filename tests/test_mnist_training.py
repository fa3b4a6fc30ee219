"""A short MNIST run learns digits: the preset's models, trained with its default fast recipe (one
critic step per generator step, two time-scale learning rates: Heusel et al. 2017), cut the Frechet
distance of their samples (in the digit classifier's feature space) by at least ``FACTOR`` and
cover at least ``MIN_CLASSES`` of the 10 classes; a run too short to learn is refused by the same
check (negative control), and the untrained generator is far from the data by the same metric
(the metric tells bad samples from good ones: the test cannot pass vacuously).

The metric's classifier is the test session's (``classifier_cache_dir`` in tests/conftest.py).
"""
from __future__ import annotations

import pytest
import torch

from fastwgan.imagemetrics import image_metrics
from fastwgan.presets import mnist_preset

from _tiny import quick_train

Z_DIM = 128  # the MNIST preset's noise size
N_EVAL = 1000  # samples per measurement (the metric's floor at this size is about 6)
STEPS = 600
# Required FD reduction: what STEPS achieves on 3 seeds (at least 3.6x), with a margin of 1.8x for the
# scatter of GAN training between machines; a run that learns nothing does not reach it (negative control).
FACTOR = 2.0
MIN_CLASSES = 8  # of 10, by the digit classifier, each at least 1% of the samples
UNTRAINED_FLOOR_MULTIPLE = 20  # an untrained generator's FD exceeds its floor by more than this


@pytest.fixture(autouse=True)
def _classifier(classifier_cache_dir, monkeypatch):
    """The session's digit classifier (tests/conftest.py), not the user's cache."""
    monkeypatch.setenv("FASTWGAN_CACHE", str(classifier_cache_dir))


def _preset_models(seed: int):
    torch.manual_seed(seed)
    return mnist_preset(28, 1).models(Z_DIM, 0)


@torch.no_grad()
def _metrics(generator: torch.nn.Module) -> dict[str, float]:
    """image_metrics of N_EVAL samples from fixed noise (the generator in eval mode, restored after)."""
    z = torch.randn(N_EVAL, Z_DIM, generator=torch.Generator().manual_seed(1234))
    was = generator.training
    generator.eval()
    try:
        x = generator(z)
    finally:
        generator.train(was)
    return image_metrics(x, "mnist")  # the preset's generator ends in a sigmoid: data range (0, 1)


def _train(generator, critic, steps: int, seed: int):
    """The preset's default (fast) recipe, in fp32 and eager so that every machine runs the same numbers."""
    return quick_train(generator, critic, "mnist", steps=steps, precision="fp32", compile=False, seed=seed,
                       z_dim=Z_DIM)


def assert_untrained_is_far(before: dict[str, float]) -> None:
    """The vacuity control: the metric scores an untrained generator as far from the data."""
    assert before["fd"] > UNTRAINED_FLOOR_MULTIPLE * before["fd_floor"], before
    assert before["classes_covered"] < MIN_CLASSES, before


def learned_digits_failures(before: dict[str, float], after: dict[str, float]) -> list[str]:
    """What keeps ``after`` from counting as learned digits: the FD not cut by FACTOR, fewer
    than MIN_CLASSES classes covered (empty: accepted)."""
    failures = []
    if not after["fd"] <= before["fd"] / FACTOR:  # a NaN FD fails too
        failures.append(f"FD {before['fd']:.1f} -> {after['fd']:.1f}, less than the required {FACTOR}x reduction")
    if not after["classes_covered"] >= MIN_CLASSES:
        failures.append(f"{after['classes_covered']} digit classes covered, fewer than {MIN_CLASSES}")
    return failures


def assert_learned_digits(before: dict[str, float], after: dict[str, float]) -> None:
    failures = learned_digits_failures(before, after)
    assert not failures, "; ".join(failures)


def test_a_short_mnist_run_learns_digits():
    generator, critic = _preset_models(0)
    before = _metrics(generator)
    assert_untrained_is_far(before)
    result = _train(generator, critic, STEPS, seed=0)
    assert result.steps_done == STEPS
    assert_learned_digits(before, _metrics(result.generator))


def test_a_run_too_short_to_learn_is_refused():
    """Negative control: 5 steps leave the generator untrained, and the same check refuses it on
    both counts (each criterion can fail)."""
    generator, critic = _preset_models(0)
    before = _metrics(generator)
    after = _metrics(_train(generator, critic, 5, seed=0).generator)
    with pytest.raises(AssertionError, match=r"reduction.*classes covered"):
        assert_learned_digits(before, after)
