"""Mixed precision: bf16 autocast on the CPU, and the fp16 + GradScaler recipe for a gradient
penalty (scale the critic's output, take the input gradient, unscale it in fp32, form the penalty
in fp32), proven on the CPU where torch's autocast and GradScaler also run fp16."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from fastwgan import checkpoint as ckpt
from fastwgan.models import MLPCritic, MLPGenerator
from fastwgan.penalty import gradient_penalty
from fastwgan.reference import gradient_penalty as ref
from fastwgan.training.precision import Amp, ScaledCritic

from _tiny import quick_train

U_BF16 = 2.0**-8  # unit roundoff of bfloat16 (8 significand bits)
U_FP16 = 2.0**-11


def _tiny(width=16):
    torch.manual_seed(1)
    return MLPGenerator(width=width), MLPCritic(width=width)


@pytest.mark.parametrize("loss", ["wgan-gp", "wgan"])
def test_bf16_training_runs_under_autocast_with_fp32_weights(loss):
    G, D = _tiny()
    seen = []
    D.body[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    before = [p.detach().clone() for p in D.parameters()]
    r = quick_train(G, D, "8gaussians", loss=loss, steps=3, batch_size=16, n_critic=2, device="cpu",
                    precision="bf16")
    assert torch.bfloat16 in seen  # the critic really ran in bf16
    assert all(p.dtype == torch.float32 for p in list(G.parameters()) + list(D.parameters()))  # fp32 masters
    assert any(not torch.equal(a, b) for a, b in zip(before, D.parameters(), strict=True))
    for h in r.history:
        assert all(torch.isfinite(torch.tensor(h[k])) for k in ("loss_d", "loss_g", "penalty", "param_norm"))
    assert r.config["precision"] == "bf16"
    if loss == "wgan-gp":
        assert all(h["penalty"] > 0 for h in r.history)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bf16_penalty_is_finite_and_as_close_to_fp64_as_plain_torch_bf16(seed):
    """flash-attention's rule: err(ours, bf16 autocast) <= 2 * err(textbook penalty, bf16 autocast)
    + atol, errors against an fp64 run of the same critic and inputs. Both paths round the critic
    to bf16 the same way; the penalty is formed from an fp32 gradient in both. atol = 8 u_fp32 |P|
    covers the fp32 reduction of the norm when the two bf16 errors happen to be tiny."""
    torch.manual_seed(seed)
    D = MLPCritic(width=64)
    real, fake = torch.randn(33, 2), torch.randn(33, 2)  # odd batch
    alpha = torch.rand(33)
    D64 = MLPCritic(width=64).double()
    D64.load_state_dict({k: v.double() for k, v in D.state_dict().items()})
    p64 = ref.gradient_penalty(D64, real.double(), fake.double(), lam=10.0, alpha=alpha.double()).item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = gradient_penalty(D, real, fake, lam=10.0, alpha=alpha)
        plain = ref.gradient_penalty(D, real, fake, lam=10.0, alpha=alpha)
    p32 = gradient_penalty(D, real, fake, lam=10.0, alpha=alpha)
    assert torch.isfinite(ours) and ours.dtype == torch.float32
    err, err_plain = abs(ours.item() - p64), abs(plain.item() - p64)
    assert err <= 2 * err_plain + 8 * 2.0**-24 * abs(p64)
    # and close to the fp32 penalty: the critic's bf16 rounding (u = 2^-8 per operation, a few
    # operations deep) bounds the relative difference by a small multiple of u
    assert abs(ours.item() - p32.item()) <= 16 * U_BF16 * abs(p32.item())


def _tiny_gradient_critic() -> nn.Module:
    """A critic whose input gradient (~1e-7) falls below fp16's normal range (6.1e-5) inside
    the backward: the case the GradScaler's scale exists for."""
    torch.manual_seed(0)
    D = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 1))
    with torch.no_grad():
        D[0].weight.mul_(3e-4 / D[0].weight.abs().max())
        D[2].weight.mul_(3e-4 / D[2].weight.abs().max())
    return D


def test_scaled_critic_recovers_the_input_gradient_that_fp16_underflows():
    D = _tiny_gradient_critic()
    x = torch.randn(16, 2, requires_grad=True)
    D64 = _tiny_gradient_critic().double()
    x64 = x.detach().double().requires_grad_(True)
    (g64,) = torch.autograd.grad(D64(x64).sum(), x64)
    scale = torch.tensor(2.0**15)
    with torch.autocast("cpu", dtype=torch.float16):
        (g_plain,) = torch.autograd.grad(D(x).float().sum(), x)
        (g_scaled,) = torch.autograd.grad(ScaledCritic(D, scale)(x).sum(), x)
    assert g_scaled.dtype == torch.float32

    def rel(g):
        return ((g.double() - g64).norm() / g64.norm()).item()

    # fp16 rounds W1, W2 and the hidden gradient (3 roundings, u = 2^-11 each) and accumulates in
    # fp32; the relative error of the 64-term dot products is then <= 3u * kappa, kappa =
    # sum|terms| / |sum| (cancellation), computed here in fp64.
    h = torch.relu(D64[0](x64.detach()))
    terms = (h > 0).double()[:, :, None] * D64[2].weight[0][None, :, None] * D64[0].weight[None, :, :]
    kappa = (terms.abs().sum(1).norm() / terms.sum(1).norm()).item()
    bound = 3 * U_FP16 * kappa
    assert rel(g_scaled) <= bound
    assert rel(g_plain) > 10 * bound  # without the scale the gradient is lost to underflow


def test_fp16_penalty_with_scaler_matches_fp32():
    """The trainer's fp16 path (scaled critic inside gradient_penalty) against fp32 on a normal
    critic: relative error within a small multiple of fp16's u (the critic's rounding)."""
    torch.manual_seed(3)
    D = MLPCritic(width=64)
    real, fake, alpha = torch.randn(33, 2), torch.randn(33, 2), torch.rand(33)
    amp = Amp("fp16", torch.device("cpu"))
    amp.scaler_d = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    with torch.autocast("cpu", dtype=torch.float16):
        p16 = gradient_penalty(amp.penalty_critic(D), real, fake, lam=10.0, alpha=alpha)
    p32 = gradient_penalty(D, real, fake, lam=10.0, alpha=alpha)
    assert torch.isfinite(p16) and p16.dtype == torch.float32
    assert abs(p16.item() - p32.item()) <= 16 * U_FP16 * abs(p32.item())


def test_fp16_training_with_grad_scaler_backs_off_and_checkpoints_the_scaler(tmp_path):
    """GradScaler's first scale (2^16) overflows fp16 in the penalty's inner backward (its seed is
    one per sample, times S): the step is skipped, the scale halved, and training goes on with
    finite parameters; an inf loss on a skipped step is not reported as a failure."""
    G, D = _tiny()
    d0 = [p.detach().clone() for p in D.parameters()]
    r = quick_train(G, D, "8gaussians", steps=3, batch_size=16, n_critic=2, device="cpu", precision="fp16",
                    out=tmp_path)
    assert all(torch.isfinite(p).all() for p in list(G.parameters()) + list(D.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, D.parameters(), strict=True))
    s = ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path / "checkpoints", 3))
    assert s["scaler_d"]["scale"] < 2.0**16  # backed off at least once
    assert r.config["precision"] == "fp16"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_mixed_precision_training(precision):
    G, D = _tiny()
    r = quick_train(G, D, "8gaussians", steps=3, batch_size=16, n_critic=2, device="cuda", precision=precision)
    assert all(torch.isfinite(p).all() for p in list(G.parameters()) + list(D.parameters()))
    assert len(r.history) == 3


class _Work(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the matrix products' FLOPs by dtype (2 m n k each) and the elements cast by ``_to_copy``."""

    def __init__(self) -> None:
        super().__init__()
        self.flops: dict[torch.dtype, int] = {}
        self.cast = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in ("mm", "addmm"):
            a, b = args[-2], args[-1]
            self.flops[a.dtype] = self.flops.get(a.dtype, 0) + 2 * a.shape[0] * a.shape[1] * b.shape[1]
        elif name == "_to_copy":
            self.cast += args[0].numel()
        return func(*args, **kwargs)


def _textbook_amp_iteration(G, D, opt_g, opt_d, x, n_critic: int, lam: float) -> None:
    """One generator iteration of gan_toy's WGAN-GP with PyTorch's AMP recipe (autocast around each
    forward and its loss; backward and step outside, so each step casts the current weights)."""
    B = x.shape[0]
    for _ in range(n_critic):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            with torch.no_grad():
                fake = G(torch.randn(B, 2)).float()
            loss = D(fake).float().mean() - D(x).float().mean()
            alpha = torch.rand(B, 1)
            x_hat = (alpha * x + (1 - alpha) * fake).requires_grad_(True)
            (g,) = torch.autograd.grad(D(x_hat).float().sum(), x_hat, create_graph=True)
            loss = loss + lam * ((g.norm(2, dim=1) - 1) ** 2).mean()
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
    D.requires_grad_(False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss_g = -D(G(torch.randn(B, 2))).float().mean()
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    D.requires_grad_(True)


def test_eager_bf16_step_does_no_more_work_than_plain_autocast(monkeypatch):
    """The eager bf16 iteration does no more work than the textbook loop under autocast (the
    speed itself is measured in benchmarks/train_loop.py): every matrix product runs in bf16, there are fewer of them (the pruned double
    backward skips the products on all-zero tensors that autograd's ReLU double backward runs), and
    no more elements are cast (each weight once per step, as autocast's cache does). Counted, not
    timed: the count holds on any CPU, AMX or not, idle or loaded."""
    from fastwgan.ops.activations import with_torch_activations
    from fastwgan.training import eager

    from _tiny import tiny_models

    B, n_critic, lam = 32, 5, 0.1
    G, D = tiny_models("mlp", width=64, z_dim=2)
    tb_G, tb_D = with_torch_activations(G), with_torch_activations(D)
    ours = _Work()
    step = eager.EagerStep.__call__

    def counted(self, t, feed):  # the trainer's iterations, without its set-up and probes
        with ours:
            return step(self, t, feed)

    monkeypatch.setattr(eager.EagerStep, "__call__", counted)
    quick_train(G, D, "8gaussians", loss="wgan-gp", steps=1, batch_size=B, n_critic=n_critic, lam=lam, z_dim=2,
                device="cpu", precision="bf16", compile=False)
    plain = _Work()
    opt_d, opt_g = torch.optim.Adam(tb_D.parameters()), torch.optim.Adam(tb_G.parameters())
    with plain:
        _textbook_amp_iteration(tb_G, tb_D, opt_g, opt_d, torch.randn(B, 2), n_critic, lam)
    assert set(ours.flops) == {torch.bfloat16}, f"matrix products outside bf16: {ours.flops}"
    assert set(plain.flops) == {torch.bfloat16}
    assert ours.flops[torch.bfloat16] < plain.flops[torch.bfloat16]
    assert ours.cast <= plain.cast
