"""A full WGAN-GP critic step, fused vs textbook, on the CPU (same run, same weights, same data).

    L_D = E[D(fake)] - E[D(real)] + lam * E[(||grad D(x_hat)|| - 1)^2];  L_D.backward();  Adam step

textbook: torch.nn activations + ``fastwgan.reference.gradient_penalty`` (autograd.grad with
          create_graph=True, the code of Gulrajani et al.'s and most libraries' implementations);
fused:    the built-in critic (pruned-double-backward activations) + ``fastwgan.gradient_penalty``
          (C++ interpolation / norm / penalty kernels).

Models: gan_toy's MLP critic (batch 256, width 512, lam 0.1, Adam(1e-4, (0.5, 0.9))) and the
DCGAN-32 / DCGAN-64 critics with LayerNorm (batch 64, lam 10, Adam(1e-4, (0, 0.9))).

    pytest benchmarks/test_gradient_penalty.py --benchmark-only --benchmark-group-by=param:model

gives both implementations per model and precision in one table; each measurement is also
appended to benchmarks/results/gradient_penalty.jsonl (benchmarks/_bench.py), from which
benchmarks/report.py builds the RESULTS.md table (ratios at equal precision: fused bf16 against
textbook bf16). ``python benchmarks/test_gradient_penalty.py [models] [--profile]`` prints each
step's peak memory and, with ``--profile``, a profile of both steps (no timing: the timings are
pytest-benchmark's).
"""
from __future__ import annotations

import sys

import pytest
import torch

from fastwgan import gradient_penalty
from fastwgan.models import DCGANCritic, MLPCritic
from fastwgan.ops import activations as A
from fastwgan.reference.gradient_penalty import gradient_penalty as textbook_penalty

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
        # the same objective with the built-in critic and the fused penalty (the trainer's critic
        # update, written with the public API)
        opt = torch.optim.Adam(critic.parameters(), lr=1e-4, betas=betas)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = critic(fake).float().mean() - critic(real).float().mean() + gradient_penalty(
                critic, real, fake, lam=lam, alpha=alpha)
            loss.backward()
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
WARMUP = 2


@pytest.mark.parametrize("impl", ["textbook", "fused", "textbook bf16", "fused bf16"])
@pytest.mark.parametrize("model", list(MODELS))
def test_critic_step(benchmark, model, impl):
    textbook, fused = make_steps(model)
    fn = fused if impl.startswith("fused") else textbook
    precision = "bf16" if impl.endswith("bf16") else "fp32"
    if precision == "bf16":
        fn = _bf16(fn)
    benchmark.group = f"gradient_penalty critic step: {model}"
    benchmark.pedantic(fn, rounds=ROUNDS[model], iterations=1, warmup_rounds=WARMUP)
    group = f"critic step {model}"
    peak = peak_memory_bytes(fn) / 2**20 if not getattr(benchmark, "disabled", False) else float("nan")
    record(benchmark, group, impl.split()[0], baseline=impl.startswith("textbook"), precision=precision,
           shapes=f"batch {tuple(MODELS[model][1])}, lam {MODELS[model][2]}", unit="critic step", warmup=WARMUP,
           peak_mib=round(peak, 1))
    note(group, impl, f"peak {peak:.1f} MiB")


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
    t = record(benchmark, f"gp kernel {kernel}", impl, baseline=impl == "torch",
               shapes="(64, 3, 64, 64) fp32", unit="call", warmup=3, fused_bytes=nbytes)
    if impl == "fused":
        note(f"gp kernel {kernel}", impl, f"{nbytes / t / 1e9:.1f} GB/s (fused bytes)")


# ------------------------------------------------------------------------------------------------
# standalone: peak memory and a profile of both steps (the timings are pytest-benchmark's)
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


def main(models=tuple(MODELS)) -> None:
    """Peak memory of both steps per model and, with --profile, where their time goes."""
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for model in models:
        textbook, fused = make_steps(model)
        for _ in range(2):  # Adam state and allocator warm
            textbook()
            fused()
        pt, pf = peak_memory_bytes(textbook), peak_memory_bytes(fused)
        print(f"{model}: peak memory textbook {pt / 2**20:.1f} MiB, fused {pf / 2**20:.1f} MiB ({pf / pt:.2f}x)")
        if "--profile" in sys.argv:
            for name, fn in (("textbook", textbook), ("fused", fused)):
                with torch.profiler.profile() as prof:
                    fn()
                print(f"--- {model} {name}")
                print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main(tuple(a for a in sys.argv[1:] if not a.startswith("--")) or tuple(MODELS))
