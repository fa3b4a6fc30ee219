"""The JAX contender (benchmarks/jax_loop.py) does the textbook loop's work: one WGAN-GP generator
iteration (5 critic steps, 1 generator step, Adam) from the same initial weights on the same draws
gives the same parameters as benchmarks/_textbook.py, by the project's fp64 rule (tests/_rules.py):
per tensor, ``err(jax fp32) <= 2 * err(torch fp32) + 8 fp32 ulps``, the errors taken against the
textbook loop run in float64. A wrong lambda, a penalty on the wrong point, a missing stop-gradient,
another batch or a wrong weight layout moves the parameters by O(lr) per step, far outside it.
Skipped without jax (``pip install "fastwgan[bench-jax]"``); small sizes, untimed."""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

jax = pytest.importorskip("jax", reason="the JAX contender needs jax: pip install 'fastwgan[bench-jax]'")
pytest.importorskip("optax", reason="the JAX contender needs optax: pip install 'fastwgan[bench-jax]'")

import jax.numpy as jnp  # noqa: E402

import jax_loop  # noqa: E402
import train_loop  # noqa: E402
from _textbook import TextbookLoop  # noqa: E402
from fastwgan.ops.activations import with_torch_activations  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _rules import assert_fp64_rule, ulps_atol  # noqa: E402

SEED = 3


class _As64(nn.Module):
    """The float64 copy of a model, fed the same float32 draws (cast on the way in)."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m.double()

    def forward(self, x):
        return self.m(x.double())


def _textbook_iteration(G, D, g: train_loop.Group, reals: list[torch.Tensor]) -> float:
    it = iter(reals)
    loop = TextbookLoop(G, D, lambda n: next(it), z_dim=g.z_dim, batch=g.batch, lam=g.lam, lr=g.lr, betas=g.betas)
    torch.manual_seed(SEED)  # the loop's z and alpha come from the global stream
    return loop.run(1)


def _global_draws(g: train_loop.Group, n_critic: int = 5) -> dict:
    """The textbook loop's global-RNG draws in its order: per critic step z_k then alpha_k, then z."""
    torch.manual_seed(SEED)
    zs, alphas = [], []
    for _ in range(n_critic):
        zs.append(torch.randn(g.batch, g.z_dim))
        alphas.append(torch.rand(g.batch))
    return dict(z=torch.stack(zs), alpha=torch.stack(alphas), zg=torch.randn(g.batch, g.z_dim))


def _torch_tensors(G, D, model: str) -> dict[str, torch.Tensor]:
    """The torch models' parameters (and G's BatchNorm running statistics) named as jax_loop names them."""
    lin = lambda m: [x for x in m.modules() if isinstance(x, nn.Linear)]  # noqa: E731
    out = {}
    if model == "mlp":
        for side, m in (("g", G), ("d", D)):
            for i, layer in enumerate(lin(m)):
                out[f"{side}.w{i}"], out[f"{side}.b{i}"] = layer.weight, layer.bias
        return out
    for i, c in enumerate(x for x in G.modules() if isinstance(x, nn.ConvTranspose2d)):
        out[f"g.t{i}"] = c.weight
    for i, b in enumerate(x for x in G.modules() if isinstance(x, nn.BatchNorm2d)):
        out[f"g.bn{i}_w"], out[f"g.bn{i}_b"] = b.weight, b.bias
        out[f"bn.{i}.mean"], out[f"bn.{i}.var"] = b.running_mean, b.running_var
    body = [x for x in D.modules() if isinstance(x, nn.Conv2d)]
    for i, c in enumerate(body[:-1]):
        out[f"d.c{i}"] = c.weight
    out["d.c0_b"] = body[0].bias
    for i, n in enumerate((x for x in D.modules() if isinstance(x, nn.GroupNorm)), start=1):
        out[f"d.gn{i}_w"], out[f"d.gn{i}_b"] = n.weight, n.bias
    out["d.head"], out["d.head_b"] = body[-1].weight, body[-1].bias
    return out


def _jax_tensors(state: dict) -> dict[str, np.ndarray]:
    out = {f"{side}.{k}": jax_loop.to_torch_layout(k, v) for side in ("g", "d") for k, v in state[side].items()}
    for i, (m, v) in enumerate(state["bn"]):
        out[f"bn.{i}.mean"], out[f"bn.{i}.var"] = np.asarray(m, np.float64), np.asarray(v, np.float64)
    return out


GROUPS = {  # the benchmark's recipes at small sizes (two cores shared): toy at width 64, DCGAN-16 at ndf 8
    "toy": train_loop.replace(train_loop.GROUPS["WGAN-GP toy MLP"], width=64, batch=32),
    "dcgan": train_loop.replace(train_loop.GROUPS["WGAN-GP DCGAN-32"], ndf=8, img=16, batch=8),
}


@pytest.mark.parametrize("name", list(GROUPS))
def test_one_jax_iteration_equals_the_textbook_iteration_by_the_fp64_rule(name):
    g = GROUPS[name]
    G32, D32 = (with_torch_activations(m) for m in train_loop.models(g))
    G64, D64 = copy.deepcopy(G32), copy.deepcopy(D32)
    gp, dp, bn = jax_loop.params_from_torch(G32, D32, g.model)  # before any step: the common start

    draws = _global_draws(g)
    gen = torch.Generator().manual_seed(SEED + 1)
    if g.model == "mlp":
        reals = [torch.randn(g.batch, 2, generator=gen) for _ in range(5)]
    else:
        reals = [torch.rand(g.batch, 3, g.img, g.img, generator=gen) * 2 - 1 for _ in range(5)]
    w32 = _textbook_iteration(G32, D32, g, reals)
    w64 = _textbook_iteration(_As64(G64), _As64(D64), g, reals)

    spec = jax_loop.Spec(g.model, batch=g.batch, z_dim=g.z_dim, lam=g.lam, lr=g.lr, betas=g.betas)
    state = jax_loop.init_state(spec, gp, dp, bn)
    real = torch.stack(reals) if g.model == "mlp" else torch.stack(reals).permute(0, 1, 3, 4, 2)  # NHWC
    feed = {k: jnp.asarray(v.numpy()) for k, v in dict(draws, real=real).items()}
    new, metrics = jax.jit(lambda s, d: jax_loop.iteration(spec, s, d))(state, feed)

    got, ref, truth = _jax_tensors(new), _torch_tensors(G32, D32, g.model), _torch_tensors(G64, D64, g.model)
    assert set(got) == set(ref) == set(truth) and len(got) >= 8
    for k, t in truth.items():
        assert_fp64_rule(torch.from_numpy(np.ascontiguousarray(got[k])), ref[k], t, atol=ulps_atol(t), what=f"{name} {k}")
    w = torch.tensor([float(metrics[0])], dtype=torch.float64)  # the last critic step's W estimate
    assert_fp64_rule(w, torch.tensor([w32]), torch.tensor([w64]), atol=ulps_atol(torch.tensor([w64])), what="W")
    start = {f"{side}.{k}": jax_loop.to_torch_layout(k, v) for side, p in (("g", gp), ("d", dp)) for k, v in p.items()}
    moved = max(float(np.abs(truth[k].detach().numpy() - start[k]).max()) for k in start)
    assert moved > 2 * g.lr  # Adam moved the critic by about lr per step: the comparison is not of two starts


@pytest.mark.parametrize("model", ["mlp", "dcgan32"])
def test_the_bf16_program_multiplies_in_bf16_on_fp32_master_weights(model):
    g = train_loop.smoke_size(next(x for x in train_loop.GROUPS.values() if x.model == model and x.loss == "wgan-gp"))
    G, D = train_loop.models(g)
    spec = jax_loop.Spec(g.model, batch=g.batch, z_dim=g.z_dim, lam=g.lam, lr=g.lr, betas=g.betas, precision="bf16")
    state = jax_loop.init_state(spec, *jax_loop.params_from_torch(G, D, g.model))
    data = None if model == "mlp" else jnp.zeros((16, g.img, g.img, 3), jnp.float32)
    text = jax.jit(jax_loop.step_fn(spec)).lower(state, data).as_text()
    operands = [line.rsplit(" : ", 1)[1].split("->")[0] for line in text.splitlines()
                if ("dot_general" in line or "convolution" in line) and " : " in line]
    assert len(operands) >= 8 and all("bf16" in o and "f32" not in o for o in operands), operands
    assert jax.tree.map(lambda a: a.dtype, state["d"]) == jax.tree.map(lambda a: jnp.float32, state["d"])
    new, metrics = jax.jit(jax_loop.step_fn(spec))(state, data)
    assert jax.tree.map(lambda a: a.dtype, new["d"]) == jax.tree.map(lambda a: a.dtype, state["d"])  # fp32 masters
    assert metrics.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(metrics)))


def test_the_toy_draws_are_gan_toys_8gaussians():
    spec = jax_loop.Spec("mlp", batch=4096, z_dim=2, lam=0.1, lr=1e-4, betas=(0.5, 0.9))
    d = jax_loop.draw(spec, jax.random.PRNGKey(0), None)
    assert d["real"].shape == (5, 4096, 2) and d["z"].shape == (5, 4096, 2) and d["alpha"].shape == (5, 4096)
    from fastwgan.data.toy import toy_centers, toy_std

    x = torch.from_numpy(np.asarray(d["real"]).reshape(-1, 2)).double()
    nearest = torch.cdist(x, toy_centers("8gaussians").double()).min(1).values
    assert float(nearest.max()) < 6 * toy_std("8gaussians")  # every point next to a center
    assert abs(float(nearest.pow(2).mean()) / 2 - toy_std("8gaussians") ** 2) < 0.1 * toy_std("8gaussians") ** 2
    a = np.asarray(d["alpha"])
    assert a.min() >= 0 and a.max() < 1 and abs(a.mean() - 0.5) < 0.01


def test_product_gflop_reads_every_dot_and_counts_the_loop_body_per_trip():
    """product_gflop on programs of known product work: a (7 x 5) @ (5 x 3) dot outside any loop,
    and a (4 x 6) @ (6 x 2) dot inside a 3-trip fori_loop, counted once per trip (the critic loop of
    the WGAN-GP program). Negative control: n_critic=1 counts the loop body once."""
    a, b, c, w = jnp.ones((7, 5)), jnp.ones((5, 3)), jnp.ones((4, 6)), jnp.ones((6, 6))

    def program(a, b, c, w):
        body = lambda i, x: jnp.tanh(x @ w)  # noqa: E731
        return a @ b, jax.lax.fori_loop(0, 3, body, c) @ jnp.ones((6, 2))

    compiled = jax.jit(program).lower(a, b, c, w).compile()
    outside = 2 * 7 * 5 * 3 + 2 * 4 * 6 * 2
    loop = 2 * 4 * 6 * 6
    assert jax_loop.product_gflop(compiled, 3) * 1e9 == pytest.approx(outside + 3 * loop, rel=1e-12)
    assert jax_loop.product_gflop(compiled, 1) * 1e9 == pytest.approx(outside + loop, rel=1e-12)
