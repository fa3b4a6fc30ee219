"""A full WGAN-GP critic step, fused vs textbook, on the CPU (same run, same weights, same data).

    L_D = E[D(fake)] - E[D(real)] + lam * E[(||grad D(x_hat)|| - 1)^2];  L_D.backward();  Adam step

textbook: torch.nn activations + ``fastwgan.reference.gradient_penalty`` (autograd.grad with
          create_graph=True, the code of Gulrajani et al.'s and most libraries' implementations);
fused:    the built-in critic (pruned-double-backward activations) + ``fastwgan.gradient_penalty``
          (C++ interpolation / norm / penalty kernels).

Models: gan_toy's MLP critic (batch 256, width 512, lam 0.1, Adam(1e-4, (0.5, 0.9))) and the
DCGAN-32 / DCGAN-64 critics with LayerNorm (batch 64, lam 10, Adam(1e-4, (0, 0.9))).

    pytest benchmarks/test_gradient_penalty.py --benchmark-only --benchmark-group-by=param:model

gives both implementations per model in one table (the ratio is fused/textbook of the means).
``python benchmarks/test_gradient_penalty.py [models] [--profile] [--kernels]`` runs the
A/B-interleaved measurement used for benchmarks/RESULTS.md (ratio of medians, peak memory of each
step, optionally a profile of both steps and the elementwise kernels against copy bandwidth).
"""
from __future__ import annotations

import statistics
import sys
import time

import pytest
import torch

from fastwgan.models import DCGANCritic, MLPCritic
from fastwgan.ops import activations as A
from fastwgan.penalty import gradient_penalty
from fastwgan.reference.gradient_penalty import gradient_penalty as textbook_penalty
from fastwgan.step import critic_objective

from _bench import note, record

MODELS = {
    # name: (builder, batch shape, lam, Adam betas)
    "mlp": (lambda: MLPCritic(in_dim=2, width=512, depth=3), (256, 2), 0.1, (0.5, 0.9)),
    "dcgan32": (lambda: DCGANCritic(img_size=32, channels=3, ndf=64, norm="layer"), (64, 3, 32, 32),
                10.0, (0.0, 0.9)),
    "dcgan64": (lambda: DCGANCritic(img_size=64, channels=3, ndf=64, norm="layer"), (64, 3, 64, 64),
                10.0, (0.0, 0.9)),
    # without a norm layer: what the pruning does when nothing feeds second-order gradients back
    # into the forward graph (LayerNorm does: its double backward has a real input branch)
    "dcgan32-nonorm": (lambda: DCGANCritic(img_size=32, channels=3, ndf=64, norm="none"),
                       (64, 3, 32, 32), 10.0, (0.0, 0.9)),
}


def make_steps(model: str):
    build, shape, lam, betas = MODELS[model]
    torch.manual_seed(0)
    fused_critic = build()
    text_critic = A.with_torch_activations(fused_critic)
    real, fake = torch.randn(shape), torch.randn(shape)
    alpha = torch.rand(shape[0])

    def make_textbook(critic):
        opt = torch.optim.Adam(critic.parameters(), lr=1e-4, betas=betas)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = critic(fake).mean() - critic(real).mean() + textbook_penalty(
                critic, real, fake, lam=lam, alpha=alpha)
            loss.backward()
            opt.step()

        return step

    def make_fused(critic):
        # exactly the trainer's critic update: fastwgan.step.critic_objective + the fused penalty
        opt = torch.optim.Adam(critic.parameters(), lr=1e-4, betas=betas)

        def step():
            opt.zero_grad(set_to_none=True)
            loss, pen, _, _ = critic_objective(critic, real, fake, None, lam=lam,
                                               penalty=gradient_penalty, alpha=alpha)
            (loss + pen).backward()
            opt.step()

        return step

    return make_textbook(text_critic), make_fused(fused_critic)


def _bf16(step):
    """The same step with its forwards autocast to bfloat16 (fp32 weights, Adam state and penalty
    norm): PyTorch's AMP recipe, as ``train(precision="bf16")`` runs it."""
    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            step()
    return run


ROUNDS = {"mlp": 20, "dcgan32": 5, "dcgan64": 3, "dcgan32-nonorm": 5}


@pytest.mark.parametrize("impl", ["textbook", "fused", "textbook bf16", "fused bf16"])
@pytest.mark.parametrize("model", list(MODELS))
def test_critic_step(benchmark, model, impl):
    textbook, fused = make_steps(model)
    fn = fused if impl.startswith("fused") else textbook
    if impl.endswith("bf16"):
        fn = _bf16(fn)
    benchmark.group = f"gradient_penalty critic step: {model}"
    benchmark.pedantic(fn, rounds=ROUNDS[model], iterations=1, warmup_rounds=2)
    group = f"critic step {model}"
    record(benchmark, group, impl, baseline=impl == "textbook")
    note(group, impl, f"peak {peak_memory_bytes(fn) / 2**20:.1f} MiB")


# ------------------------------------------------------------------------------------------------
# the elementwise kernels alone (DCGAN-64 batch: 64 x 3*64*64 = 786k fp32 elements)
# ------------------------------------------------------------------------------------------------
def kernel_cases():
    from fastwgan.ops import gradient_penalty as O
    from fastwgan.reference import gradient_penalty as R

    torch.manual_seed(0)
    real, fake = torch.randn(64, 3, 64, 64), torch.randn(64, 3, 64, 64)
    alpha = torch.rand(64)
    g = torch.randn(64, 3, 64, 64, requires_grad=True)

    def pen_fused():
        O.norm_penalty(g, 10.0, False, "cpp").backward()

    def pen_torch():
        (10.0 * (g.flatten(1).norm(dim=1) - 1).square().mean()).backward()

    return {
        # bytes moved per call by the fused kernel (fp32): interpolation 12 B/elem; norm forward
        # 4 B/elem + penalty backward 8 B/elem
        "interpolate": (lambda: O.interpolate(real, fake, alpha, "cpp"),
                        lambda: R.interpolate(real, fake, alpha), 12 * real.numel()),
        "norm_penalty fwd+bwd": (pen_fused, pen_torch, 12 * g.numel()),
    }


@pytest.mark.parametrize("impl", ["torch", "fused"])
@pytest.mark.parametrize("kernel", ["interpolate", "norm_penalty fwd+bwd"])
def test_kernel(benchmark, kernel, impl):
    fused, plain, nbytes = kernel_cases()[kernel]
    benchmark.group = f"gradient_penalty kernel: {kernel}"
    benchmark.pedantic(fused if impl == "fused" else plain, rounds=20, iterations=1,
                       warmup_rounds=3)
    t = record(benchmark, f"gp kernel {kernel}", impl, baseline=impl == "torch")
    if impl == "fused":
        note(f"gp kernel {kernel}", impl, f"{nbytes / t / 1e9:.1f} GB/s (fused bytes)")


# ------------------------------------------------------------------------------------------------
# standalone: interleaved A/B timing, peak memory, profile (for benchmarks/RESULTS.md)
# ------------------------------------------------------------------------------------------------
def peak_memory_bytes(fn) -> int:
    """Peak bytes held by the CPU allocator during one call, above the level at its start.

    From the profiler's memory accounting (allocations and frees, in time order): the running
    sum's maximum. Tensors alive before the call (weights, Adam state after warm-up) are not counted.
    """
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                profile_memory=True) as prof:
        fn()
    # each op's own net allocation (self_cpu_memory_usage), and the frees outside ops ("[memory]"
    # events), in time order; an op's transient scratch inside one kernel is not seen
    evs = [e for e in prof.events() if e.self_cpu_memory_usage != 0]
    evs.sort(key=lambda e: e.time_range.start)
    cur = peak = 0
    for e in evs:
        cur += e.self_cpu_memory_usage
        peak = max(peak, cur)
    return peak


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(models=tuple(MODELS)) -> None:
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    if "--kernels" in sys.argv:
        # 128 MiB copy into a buffer already touched (no page faults): practical bandwidth
        buf, dst = torch.ones(2**25), torch.zeros(2**25)
        copy_t = min(_timed(lambda: dst.copy_(buf)) for _ in range(5))
        bw = 2 * buf.numel() * 4 / copy_t
        print(f"copy bandwidth {bw / 1e9:.1f} GB/s (read + write of 128 MiB)")
        for name, (fused, plain, nbytes) in kernel_cases().items():
            for _ in range(3):
                fused(), plain()
            tf = statistics.median(_timed(fused) for _ in range(30))
            tp = statistics.median(_timed(plain) for _ in range(30))
            print(f"{name}: torch {tp * 1e6:.0f} us, fused {tf * 1e6:.0f} us ({tp / tf:.2f}x); "
                  f"fused moves {nbytes / 2**20:.1f} MiB = {nbytes / tf / 1e9:.1f} GB/s "
                  f"({nbytes / tf / bw:.0%} of copy bandwidth)")
    for model in models:
        textbook, fused = make_steps(model)
        for _ in range(2):
            textbook()
            fused()
        n = ROUNDS[model]
        tt, tf = [], []
        for _ in range(n):  # interleaved, so load drift hits both alike
            t0 = time.perf_counter()
            textbook()
            t1 = time.perf_counter()
            fused()
            t2 = time.perf_counter()
            tt.append(t1 - t0)
            tf.append(t2 - t1)
        mt, mf = statistics.median(tt), statistics.median(tf)
        pt, pf = peak_memory_bytes(textbook), peak_memory_bytes(fused)
        print(f"{model}: textbook {mt * 1e3:.1f} ms, fused {mf * 1e3:.1f} ms, speed-up "
              f"{mt / mf:.2f}x (median of {n}); peak memory textbook {pt / 2**20:.1f} MiB, "
              f"fused {pf / 2**20:.1f} MiB ({pf / pt:.2f}x)")
        if "--profile" in sys.argv:
            for name, fn in (("textbook", textbook), ("fused", fused)):
                with torch.profiler.profile() as prof:
                    fn()
                print(f"--- {model} {name}")
                print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    names = tuple(a for a in sys.argv[1:] if not a.startswith("--"))
    main(names if names or "--kernels" in sys.argv else tuple(MODELS))
