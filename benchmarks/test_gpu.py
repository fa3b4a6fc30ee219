"""The GPU half of the benchmarks (marked ``cuda``; run by benchmarks/gpu_check.sh on a GPU):

* the WGAN-GP critic step on DCGAN-64 with the Triton penalty kernels against the textbook step
  (``autograd.grad(create_graph=True)``, torch's norm), in fp32 and under bf16 autocast, each
  against the textbook at the same precision;
* whole toy WGAN-GP iterations through ``fastwgan.train`` on CUDA: eager, compiled, CUDA-graph
  replay, compiled + CUDA graph, against gan_toy's textbook loop (benchmarks/_textbook.py).

Every timed call ends with ``torch.cuda.synchronize()``, so a round is the GPU's time, not the
launch queue's. Without a GPU these are skipped (tests/conftest.py's rule is repeated here).
"""
from __future__ import annotations

import pytest
import torch

import fastwgan
from fastwgan import gradient_penalty
from fastwgan.models import DCGANCritic, MLPCritic, MLPGenerator
from fastwgan.ops import activations as A
from fastwgan.reference.gradient_penalty import gradient_penalty as textbook_penalty

from _bench import record

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _synced(fn):
    def run():
        fn()
        torch.cuda.synchronize()
    return run


def _critic_step(critic, real, fake, alpha, fused: bool, bf16: bool):
    opt = torch.optim.Adam(critic.parameters(), lr=1e-4, betas=(0.0, 0.9))
    penalty = gradient_penalty if fused else textbook_penalty

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            opt.zero_grad(set_to_none=True)
            loss = critic(fake).float().mean() - critic(real).float().mean() + penalty(
                critic, real, fake, lam=10.0, alpha=alpha)
        loss.backward()
        opt.step()

    return _synced(step)


@pytest.mark.parametrize("impl", ["textbook", "fused", "textbook bf16", "fused bf16"])
def test_critic_step_dcgan64_cuda(benchmark, impl):
    torch.manual_seed(0)
    fused = DCGANCritic(img_size=64, channels=3, ndf=64, norm="layer").cuda()
    critic = fused if impl.startswith("fused") else A.with_torch_activations(fused)
    real, fake = torch.randn(64, 3, 64, 64, device="cuda"), torch.randn(64, 3, 64, 64, device="cuda")
    alpha = torch.rand(64, device="cuda")
    fn = _critic_step(critic, real, fake, alpha, impl.startswith("fused"), impl.endswith("bf16"))
    benchmark.group = "gradient_penalty critic step: dcgan64 cuda"
    benchmark.pedantic(fn, rounds=20, iterations=1, warmup_rounds=3)
    record(benchmark, "critic step dcgan64 cuda", impl.split()[0], baseline=impl.startswith("textbook"),
           precision="bf16" if impl.endswith("bf16") else "fp32", shapes="batch (64, 3, 64, 64), lam 10",
           unit="critic step", warmup=3)


ITERS = 30  # generator iterations per round of the whole-iteration benchmark


@pytest.mark.parametrize("mode", ["textbook", "eager", "compiled", "cuda-graph", "compiled+cuda-graph"])
def test_toy_wgan_gp_iteration_cuda(benchmark, mode):
    """gan_toy's WGAN-GP (MLP 2-512x3, batch 256, n_critic 5), ITERS iterations a round. fastwgan's
    rounds are whole ``train`` calls, so they include set-up; compiling and capturing happen in the
    warm-up round and are cached (inductor's cache, dynamo's per-step code) for the timed ones."""
    from _textbook import TextbookLoop

    def fastwgan_round():
        torch.manual_seed(0)
        G, D = MLPGenerator(z_dim=2, width=512), MLPCritic(in_dim=2, width=512)
        fastwgan.train(G, D, "8gaussians", steps=ITERS, batch_size=256, n_critic=5, lam=0.1, device="cuda",
                       compile="compiled" in mode, cuda_graphs="cuda-graph" in mode, eval_samples=0,
                       progress=False, plots=False, log_every=ITERS)

    if mode == "textbook":
        from fastwgan.data import toy_sample

        torch.manual_seed(0)
        loop = TextbookLoop(MLPGenerator(z_dim=2, width=512).cuda(), MLPCritic(in_dim=2, width=512).cuda(),
                            lambda n: toy_sample("8gaussians", n).cuda(), z_dim=2, device="cuda")
        fn = _synced(lambda: loop.run(ITERS))
    else:
        fn = _synced(fastwgan_round)
    benchmark.group = "toy WGAN-GP iteration: cuda"
    benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=1)
    record(benchmark, "toy WGAN-GP iterations cuda", mode, units=ITERS, baseline=mode == "textbook",
           shapes="MLP 2-512x3, batch 256, n_critic 5", unit="generator iteration", warmup=1)
