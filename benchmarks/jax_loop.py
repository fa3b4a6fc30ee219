"""The JAX contender of benchmarks/train_loop.py: one WGAN-GP generator iteration as one ``jax.jit``
program, what a user who picks JAX for speed writes.

One iteration (Gulrajani et al. 2017, Algorithm 1), for k = 1..n_critic in a ``lax.fori_loop``:

    fake_k  = stop_gradient(G(z_k))
    x_hat_k = alpha_k * real_k + (1 - alpha_k) * fake_k
    L_D     = mean D(fake_k) - mean D(real_k) + lam * mean_i (||grad_x D(x_hat_k)_i||_2 - 1)^2
    D      <- Adam(D, grad L_D)

then L_G = -mean D(G(z)) and G <- Adam(G, grad L_G); optax Adam with the group's lr and betas
(eps 1e-8, torch's default). The models are fastwgan.models' (plain jax.numpy and
``lax.conv_general_dilated``, weights copied from the torch modules by :func:`params_from_torch`):

* toy MLP: gan_toy's Linear(in, w) ReLU, Linear(w, w) ReLU x2, Linear(w, out) for G (2 -> 2) and D
  (2 -> 1);
* DCGAN-32: ``DCGANGenerator`` (ConvT(z, 4c, 4, 1, 0) BN ReLU, ConvT 4-2-1 stages halving channels
  with BN ReLU, last ConvT to 3 channels and Tanh; BatchNorm in training mode: batch statistics,
  running statistics updated with momentum 0.1 as torch does, every call of G) and
  ``DCGANCritic(norm="layer")`` (Conv 4-2-1 + bias, LeakyReLU(0.2), Conv 4-2-1 stages doubling
  channels with GroupNorm(1, C) and LeakyReLU(0.2), head Conv(4, 1, 0) to one score). Images
  are NHWC inside (XLA's convolution layout on CPU, what flax uses); the weights are converted.

Random draws: all inside the jitted program with ``jax.random`` from a key carried in the state,
the same numbers of draws as fastwgan does host side per iteration: per critic step a data batch
(toy: a uniform center index and N(0, 0.02^2) noise per sample, gan_toy's 8gaussians; DCGAN: B
random indices into the data set, held on the device, and a gather), z_k ~ N(0, I), alpha_k ~
U[0, 1); then the generator's z. :func:`iteration` also runs on given draws (the correctness test
feeds it the textbook loop's).

Precision: ``fp32``; or ``bf16`` as mixed precision is written in JAX: fp32 master weights and
optimizer, parameters and inputs cast to bf16 at the start of each forward, the scores and the
penalty's input gradient cast back to fp32 (the norm and every loss term in fp32), the
normalizations' statistics in fp32 (as torch.autocast keeps group_norm / batch_norm in fp32).

The compile time is measured apart: :func:`compile_step` lowers and compiles ahead of time
(``jax.jit(...).lower(...).compile()``), the first call runs nothing new.
"""
from __future__ import annotations

import functools
import math
import re
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

F32 = jnp.float32
DTYPES = {"fp32": jnp.float32, "bf16": jnp.bfloat16}
# gan_toy's 8gaussians (fastwgan.data.toy): centers times 2, noise 0.02, the batch divided by 1.414
_R = 1.0 / math.sqrt(2.0)
_CENTERS_8 = np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (_R, _R), (_R, -_R), (-_R, _R), (-_R, -_R)]) * 2.0
BN_MOMENTUM, NORM_EPS = 0.1, 1e-5  # torch's BatchNorm2d / GroupNorm defaults


# ------------------------------------------------------------------------------------------------
# layers (``cd``: the compute dtype; params arrive already cast to it)
# ------------------------------------------------------------------------------------------------
def _cast(tree: Any, cd) -> Any:
    return jax.tree.map(lambda a: a.astype(cd), tree)


def _conv(x, w, stride: int, pad: int):
    """torch's Conv2d(k, stride, pad) with w as HWIO, x NHWC."""
    return lax.conv_general_dilated(x, w, (stride, stride), [(pad, pad)] * 2,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _conv_t(x, w, stride: int, pad: int):
    """torch's ConvTranspose2d(k, stride, pad): the input dilated by ``stride``, padded by k-1-pad,
    convolved with the flipped kernel (``w`` is stored flipped, HWIO)."""
    k = w.shape[0]
    return lax.conv_general_dilated(x, w, (1, 1), [(k - 1 - pad, k - 1 - pad)] * 2, lhs_dilation=(stride, stride),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _leaky(x):
    return jnp.where(x > 0, x, 0.2 * x)


def _group_norm(x, weight, bias):
    """GroupNorm(1, C): per sample over (H, W, C), biased variance; statistics in fp32."""
    h = x.astype(F32)
    mean = h.mean(axis=(1, 2, 3), keepdims=True)
    var = jnp.square(h - mean).mean(axis=(1, 2, 3), keepdims=True)
    return ((h - mean) * lax.rsqrt(var + NORM_EPS) * weight + bias).astype(x.dtype)


def _batch_norm(x, weight, bias, running: tuple):
    """BatchNorm2d in training mode: batch statistics over (N, H, W); the running mean and the
    unbiased running variance move by ``BN_MOMENTUM``. Returns (y, new running)."""
    h = x.astype(F32)
    mean = h.mean(axis=(0, 1, 2))
    var = jnp.square(h - mean).mean(axis=(0, 1, 2))
    n = h.shape[0] * h.shape[1] * h.shape[2]
    rm, rv = running
    new = ((1 - BN_MOMENTUM) * rm + BN_MOMENTUM * mean, (1 - BN_MOMENTUM) * rv + BN_MOMENTUM * var * n / (n - 1))
    return ((h - mean) * lax.rsqrt(var + NORM_EPS) * weight + bias).astype(x.dtype), new


# ------------------------------------------------------------------------------------------------
# models: (params, bn running stats, input) -> (output fp32, new running stats)
# ------------------------------------------------------------------------------------------------
def mlp_apply(p: dict, x, cd):
    """gan_toy's MLP; p = {"w0", "b0", ...}, weights (in, out)."""
    p, h = _cast(p, cd), x.reshape(x.shape[0], -1).astype(cd)
    n = len(p) // 2
    for i in range(n):
        h = h @ p[f"w{i}"] + p[f"b{i}"]
        if i < n - 1:
            h = jax.nn.relu(h)
    return h.astype(F32)


def dcgan_g_apply(p: dict, bn: list, z, cd):
    """DCGANGenerator: z (B, z_dim) -> NHWC images in [-1, 1]; p = {"t0", "bn0_w", "bn0_b", ...}."""
    pc, h = _cast(p, cd), z.astype(cd)[:, None, None, :]
    n, new = sum(1 for k in p if k.startswith("t")), []
    for i in range(n):
        h = _conv_t(h, pc[f"t{i}"], 1 if i == 0 else 2, 0 if i == 0 else 1)
        if i < n - 1:
            h, r = _batch_norm(h, p[f"bn{i}_w"], p[f"bn{i}_b"], bn[i])
            h, new = jax.nn.relu(h), new + [r]
    return jnp.tanh(h).astype(F32), new


def dcgan_d_apply(p: dict, x, cd):
    """DCGANCritic(norm="layer"): NHWC images -> scores (B,); p = {"c0", "c0_b", "c1", "gn1_w", ...,
    "head", "head_b"}."""
    pc, h = _cast(p, cd), x.astype(cd)
    h = _leaky(_conv(h, pc["c0"], 2, 1) + pc["c0_b"])
    i = 1
    while f"c{i}" in p:  # the norm's affine with the fp32 weights, as its statistics
        h = _leaky(_group_norm(_conv(h, pc[f"c{i}"], 2, 1), p[f"gn{i}_w"], p[f"gn{i}_b"]))
        i += 1
    return (_conv(h, pc["head"], 1, 0) + pc["head_b"]).reshape(x.shape[0]).astype(F32)


# ------------------------------------------------------------------------------------------------
# weights from the torch modules (the same initial weights as the torch contenders)
# ------------------------------------------------------------------------------------------------
def _np(t) -> np.ndarray:
    return t.detach().cpu().float().numpy()


def params_from_torch(G, D, model: str) -> tuple[dict, dict, list]:
    """(G params, D params, G's BatchNorm running stats) from fastwgan's torch models."""
    import torch.nn as nn

    def linears(m):
        ls = [x for x in m.modules() if isinstance(x, nn.Linear)]
        out = {}
        for i, lin in enumerate(ls):
            out[f"w{i}"], out[f"b{i}"] = _np(lin.weight).T.copy(), _np(lin.bias)
        return out

    if model == "mlp":
        return jax.tree.map(jnp.asarray, (linears(G), linears(D), []))
    gp, bn = {}, []
    convs = [m for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    norms = [m for m in G.modules() if isinstance(m, nn.BatchNorm2d)]
    for i, c in enumerate(convs):  # torch (I, O, kh, kw) -> flipped HWIO
        gp[f"t{i}"] = np.ascontiguousarray(_np(c.weight)[:, :, ::-1, ::-1].transpose(2, 3, 0, 1))
    for i, b in enumerate(norms):
        gp[f"bn{i}_w"], gp[f"bn{i}_b"] = _np(b.weight), _np(b.bias)
        bn.append((_np(b.running_mean), _np(b.running_var)))
    dp = {}
    dconvs = [m for m in D.body.modules() if isinstance(m, nn.Conv2d)]
    gns = [m for m in D.body.modules() if isinstance(m, nn.GroupNorm)]
    for i, c in enumerate(dconvs):  # torch OIHW -> HWIO
        dp[f"c{i}"] = np.ascontiguousarray(_np(c.weight).transpose(2, 3, 1, 0))
    dp["c0_b"] = _np(dconvs[0].bias)
    for i, g in enumerate(gns, start=1):
        dp[f"gn{i}_w"], dp[f"gn{i}_b"] = _np(g.weight), _np(g.bias)
    head = D.proj.head
    dp["head"], dp["head_b"] = np.ascontiguousarray(_np(head.weight).transpose(2, 3, 1, 0)), _np(head.bias)
    return jax.tree.map(jnp.asarray, (gp, dp, bn))


def to_torch_layout(name: str, a) -> np.ndarray:
    """A JAX parameter back in its torch module's layout (for comparisons)."""
    a = np.asarray(a, dtype=np.float64)
    if name.startswith("w"):
        return a.T
    if name.startswith("t"):  # flipped HWIO -> (I, O, kh, kw)
        return a.transpose(2, 3, 0, 1)[:, :, ::-1, ::-1]
    if name.startswith("c") and a.ndim == 4 or name == "head":
        return a.transpose(3, 2, 0, 1)
    return a


# ------------------------------------------------------------------------------------------------
# the iteration
# ------------------------------------------------------------------------------------------------
class Spec:
    """What one iteration needs besides the state: the architecture, the recipe, the precision."""

    def __init__(self, model: str, *, batch: int, z_dim: int, lam: float, lr: float, betas: tuple[float, float],
                 precision: str = "fp32", n_critic: int = 5) -> None:
        if precision not in DTYPES:
            raise ValueError(f"precision must be one of {tuple(DTYPES)}, got {precision!r}")
        self.model, self.batch, self.z_dim, self.lam, self.n_critic = model, batch, z_dim, lam, n_critic
        self.cd, self.precision = DTYPES[precision], precision
        self.opt = optax.adam(lr, b1=betas[0], b2=betas[1], eps=1e-8)

    def G(self, gp, bn, z):
        if self.model == "mlp":
            return mlp_apply(gp, z, self.cd), bn
        return dcgan_g_apply(gp, bn, z, self.cd)

    def D(self, dp, x):
        return mlp_apply(dp, x, self.cd).reshape(x.shape[0]) if self.model == "mlp" else dcgan_d_apply(dp, x, self.cd)


def init_state(spec: Spec, gp: dict, dp: dict, bn: list, seed: int = 0) -> dict:
    return dict(g=gp, d=dp, bn=bn, opt_g=spec.opt.init(gp), opt_d=spec.opt.init(dp), key=jax.random.PRNGKey(seed))


def critic_loss(spec: Spec, dp, real, fake, alpha):
    """mean D(fake) - mean D(real) + lam * mean (||grad_x D(x_hat)|| - 1)^2; aux: (W estimate, penalty)."""
    d_real, d_fake = spec.D(dp, real).mean(), spec.D(dp, fake).mean()
    a = alpha.reshape((-1,) + (1,) * (real.ndim - 1))
    x_hat = a * real + (1 - a) * fake
    g = jax.grad(lambda x: spec.D(dp, x).sum())(x_hat)  # fp32: x_hat is fp32, the cast's transpose casts back
    norm = jnp.sqrt(jnp.sum(jnp.square(g.astype(F32)).reshape(g.shape[0], -1), axis=1))
    penalty = jnp.mean(jnp.square(norm - 1))
    return d_fake - d_real + spec.lam * penalty, (d_real - d_fake, penalty)


def iteration(spec: Spec, state: dict, draws: dict) -> tuple[dict, Any]:
    """One generator iteration on given draws: ``real`` (n_critic, B, ...), ``z`` (n_critic, B, z_dim),
    ``alpha`` (n_critic, B), ``zg`` (B, z_dim). Returns (new state, (W estimate, penalty) of the
    last critic step)."""

    def critic_step(k, carry):
        dp, opt_d, bn, _ = carry
        fake, bn = spec.G(state["g"], bn, draws["z"][k])
        grads, aux = jax.grad(functools.partial(critic_loss, spec), has_aux=True)(
            dp, draws["real"][k], lax.stop_gradient(fake), draws["alpha"][k])
        updates, opt_d = spec.opt.update(grads, opt_d, dp)
        return optax.apply_updates(dp, updates), opt_d, bn, jnp.stack(aux)

    dp, opt_d, bn, metrics = lax.fori_loop(0, spec.n_critic, critic_step,
                                           (state["d"], state["opt_d"], state["bn"], jnp.zeros(2, F32)))

    def generator_loss(gp):
        fake, new_bn = spec.G(gp, bn, draws["zg"])
        return -spec.D(dp, fake).mean(), new_bn

    grads, bn = jax.grad(generator_loss, has_aux=True)(state["g"])
    updates, opt_g = spec.opt.update(grads, state["opt_g"], state["g"])
    new = dict(state, g=optax.apply_updates(state["g"], updates), d=dp, bn=bn, opt_g=opt_g, opt_d=opt_d)
    return new, metrics


def draw(spec: Spec, key, data) -> dict:
    """One iteration's draws from ``key``: toy (``data`` None) 8gaussians samples, else B random
    indices into ``data`` (N, H, W, C) per critic step; z_k, alpha_k, and the generator's z."""
    kc, kn, kz, ka, kg = jax.random.split(key, 5)
    nc, b = spec.n_critic, spec.batch
    if data is None:
        idx = jax.random.randint(kc, (nc, b), 0, len(_CENTERS_8))
        noise = jax.random.normal(kn, (nc, b, 2), F32)
        real = (jnp.asarray(_CENTERS_8, F32)[idx] + 0.02 * noise) / 1.414
    else:
        real = data[jax.random.randint(kc, (nc, b), 0, data.shape[0])]
    return dict(real=real, z=jax.random.normal(kz, (nc, b, spec.z_dim), F32),
                alpha=jax.random.uniform(ka, (nc, b), F32), zg=jax.random.normal(kg, (b, spec.z_dim), F32))


def step_fn(spec: Spec) -> Callable:
    """state, data -> (state, metrics): draws and one iteration, the program that is jitted."""

    def step(state, data):
        key, sub = jax.random.split(state["key"])
        new, metrics = iteration(spec, dict(state, key=key), draw(spec, sub, data))
        return new, metrics

    return step


def compile_step(spec: Spec, state: dict, data) -> tuple[Callable, float]:
    """The jitted step compiled ahead of time (the state's buffers donated) and the seconds it took."""
    t0 = time.perf_counter()
    compiled = jax.jit(step_fn(spec), donate_argnums=0).lower(state, data).compile()
    return compiled, time.perf_counter() - t0


_DOT = re.compile(r"= \w+\[([\d,]*)\]\S* dot\(%?([\w.\-]+), [^)]*\), lhs_contracting_dims=\{([\d,]*)\}")
_HEADER = re.compile(r"^%?\S+ \((.*)\) -> .* \{$")
_PARAM = re.compile(r"([\w.\-]+): \w+\[([\d,]*)\]")
_VALUE = re.compile(r"%([\w.\-]+) = \w+\[([\d,]*)\]")


def product_gflop(compiled, n_critic: int) -> float:
    """GFLOP of the matrix products (HLO ``dot``) one call of the compiled program does, read off
    XLA's optimized HLO: 2 x (result elements) x (contracted size) per dot, a dot inside the
    critic loop's body counted n_critic times. Dots only: a convolution program's are not
    counted (the MLP's products are all dots)."""
    text = compiled.as_text()
    shapes = {m.group(1): m.group(2) for m in _VALUE.finditer(text)}
    total = 0.0
    for line in text.splitlines():
        head = _HEADER.match(line)
        if head:  # a computation's parameters: name -> shape
            shapes.update({m.group(1): m.group(2) for m in _PARAM.finditer(head.group(1))})
        dot = _DOT.search(line)
        if dot is None:
            continue
        result, lhs, contracted = dot.groups()
        lhs_shape = [int(v) for v in shapes[lhs].split(",") if v]
        k = math.prod(lhs_shape[int(c)] for c in contracted.split(","))
        flop = 2 * math.prod(int(v) for v in result.split(",") if v) * k
        total += flop * (n_critic if "/while/body/" in line else 1)
    return total / 1e9


def run(G, D, *, model: str, batch: int, z_dim: int, lam: float, lr: float, betas: tuple[float, float],
        precision: str, data: np.ndarray | None, iters: int, rounds: int, seed: int = 0) -> tuple[list[float], dict]:
    """Cumulative seconds at the end of each of ``rounds`` rounds of ``iters`` iterations (the
    device work finished at each round end), and the compile time."""
    spec = Spec(model, batch=batch, z_dim=z_dim, lam=lam, lr=lr, betas=betas, precision=precision)
    state = init_state(spec, *params_from_torch(G, D, model), seed=seed)
    dev = None if data is None else jnp.asarray(data)
    compiled, compile_s = compile_step(spec, state, dev)
    stamps, t0 = [], time.perf_counter()
    for _ in range(rounds):
        for _ in range(iters):
            state, metrics = compiled(state, dev)
        jax.block_until_ready((state, metrics))
        stamps.append(time.perf_counter() - t0)
    if not bool(jnp.all(jnp.isfinite(metrics))):
        raise RuntimeError(f"jax.jit {model} {precision}: non-finite critic metrics {metrics}")
    info = dict(compile_seconds=round(compile_s, 2), jax=jax.__version__, xla_backend=jax.default_backend(),
                draws="inside the jitted program (jax.random)")
    if model == "mlp":
        info["product_gflop"] = round(product_gflop(compiled, spec.n_critic), 4)
    return stamps, info
