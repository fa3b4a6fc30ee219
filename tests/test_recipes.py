"""The two recipes and ``precision="auto"``: what the defaults resolve to, and that explicit
settings always win (the measurements behind the defaults: benchmarks/RESULTS.md, "Time to quality")."""
from __future__ import annotations

import pytest
import torch

import fastwgan
from fastwgan import hardware
from fastwgan.presets import PRESETS
from fastwgan.training.config import resolve
from fastwgan.training.precision import resolve_precision

from _tiny import quick_train, tiny_models


def test_the_fast_recipe_is_the_default_and_textbook_is_the_presets_paper_recipe():
    fast = resolve({}, PRESETS["8gaussians"])
    textbook = resolve({"recipe": "textbook"}, PRESETS["8gaussians"])
    assert (fast.n_critic, fast.lr, fast.lr_g, fast.steps) == (1, 4e-4, 2e-4, 4000)
    assert (fast.precision, fast.compile) == ("auto", "auto")
    assert (textbook.n_critic, textbook.lr, textbook.lr_g, textbook.steps) == (5, 2e-4, None, 5000)
    assert (textbook.precision, textbook.compile) == ("fp32", False)
    for cfg in (fast, textbook):  # what both share: the measured preset
        assert (cfg.batch_size, cfg.lam, cfg.betas, cfg.lr_decay) == (256, 1.0, (0.5, 0.9), "linear")


def test_explicit_settings_win_over_both_recipes():
    for recipe in ("fast", "textbook"):
        cfg = resolve({"recipe": recipe, "n_critic": 3, "steps": 7, "precision": "bf16", "compile": True},
                      PRESETS["8gaussians"])
        assert (cfg.n_critic, cfg.steps, cfg.precision, cfg.compile) == (3, 7, "bf16", True)


def test_a_loss_without_a_fast_recipe_gets_its_preset_either_way():
    fast = resolve({"loss": "wgan"}, PRESETS["8gaussians"])
    textbook = resolve({"loss": "wgan", "recipe": "textbook"}, PRESETS["8gaussians"])
    assert (fast.n_critic, fast.lr, fast.steps) == (textbook.n_critic, textbook.lr, textbook.steps) == (5, 5e-5, 5000)


def test_an_unknown_recipe_names_the_choices():
    with pytest.raises(ValueError, match="unknown recipe 'quick'.*fast, textbook"):
        fastwgan.train(*tiny_models(), torch.randn(16, 2), steps=1, recipe="quick")


@pytest.mark.parametrize("flags, want", [
    (dict(avx512_bf16=True, amx_bf16=False), "bf16"),
    (dict(avx512_bf16=False, amx_bf16=True), "bf16"),
    (dict(avx512_bf16=False, amx_bf16=False), "fp32"),
])
def test_auto_precision_follows_the_cpus_bf16_instructions(monkeypatch, flags, want):
    monkeypatch.setattr(hardware, "cpu_bf16", lambda: dict(flags, capability="AVX2", flags_read=True))
    assert resolve_precision("auto", torch.device("cpu")) == want
    for explicit in ("fp32", "bf16", "fp16"):  # never overridden
        assert resolve_precision(explicit, torch.device("cpu")) == explicit


def test_a_run_records_the_precision_auto_resolved_to(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_bf16", lambda: dict(avx512_bf16=False, amx_bf16=False, capability="AVX2",
                                                            flags_read=True))
    r = quick_train(*tiny_models(), torch.randn(16, 2), steps=1, batch_size=8)
    assert r.config["precision"] == "fp32" and r.config["recipe"] == "fast"
    monkeypatch.setattr(hardware, "cpu_bf16", lambda: dict(avx512_bf16=True, amx_bf16=False, capability="AVX512",
                                                            flags_read=True))
    r = quick_train(*tiny_models(), torch.randn(16, 2), steps=1, batch_size=8)
    assert r.config["precision"] == "bf16"


@pytest.mark.parametrize("name, size", [("mnist", None), ("stacked-mnist", None), ("mnist", 32)])
def test_the_mnist_presets_fast_recipe_and_gan_mnist_textbook_recipe(name, size):
    from fastwgan.presets import builtin_preset

    preset = builtin_preset(name, size)
    fast, textbook = resolve({}, preset), resolve({"recipe": "textbook"}, preset)
    assert (fast.n_critic, fast.lr, fast.lr_g, fast.steps, fast.lr_decay) == (1, 4e-4, 2e-4, 10_000, "none")
    assert (textbook.n_critic, textbook.lr, textbook.lr_g, textbook.steps) == (5, 1e-4, None, 10_000)
    assert (textbook.precision, textbook.compile) == ("fp32", False)
    for cfg in (fast, textbook):  # gan_mnist.py's settings, shared by both recipes
        assert (cfg.batch_size, cfg.lam, cfg.betas) == (50, 10.0, (0.5, 0.9))
    wgan = resolve({"loss": "wgan"}, preset)  # no fast recipe measured for WGAN: its paper's settings
    assert (wgan.n_critic, wgan.lr, wgan.clip, wgan.batch_size) == (5, 5e-5, 0.01, 50)


def test_25gaussians_fast_recipe_is_a_larger_batch_with_the_lazy_penalty():
    preset = PRESETS["25gaussians"]
    fast, textbook = resolve({}, preset), resolve({"recipe": "textbook"}, preset)
    assert (fast.batch_size, fast.lr, fast.n_critic, fast.penalty_every, fast.steps) == (1024, 4e-4, 5, 5, 5000)
    assert (textbook.batch_size, textbook.lr, textbook.n_critic, textbook.penalty_every, textbook.steps) == (
        256, 2e-4, 5, 1, 10_000)
    wgan = resolve({"loss": "wgan"}, preset)  # no fast recipe measured for WGAN
    assert (wgan.batch_size, wgan.penalty_every) == (256, 1)


@pytest.mark.parametrize("own", [{"n_critic": 3}, {"n_critic": lambda step: 5}, {"lam": 0.0}])
def test_a_recipes_lazy_penalty_steps_aside_for_the_callers_settings(own):
    """n_critic=3 (not a multiple of the recipe's 5), a schedule, or no penalty: the recipe's lazy
    penalty would be refused, so it falls back to the penalty on every critic update."""
    cfg = resolve(own, PRESETS["25gaussians"])
    assert cfg.penalty_every == 1 and cfg.batch_size == 1024
    with pytest.raises(ValueError, match="penalty_every=5"):  # asked for by the caller: refused, with the fix
        resolve({**own, "penalty_every": 5}, PRESETS["25gaussians"])
