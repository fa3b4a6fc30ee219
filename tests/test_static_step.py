"""The static training step (fastwgan.static_step): compiled == eager, no graph break, clean fallback.

Tolerance rule (flash-attention's, landscape.md): over many iterations, the compiled fp32 step may be
at most twice as far from an fp64 run of the same iterations as the eager fp32 step is, plus an
atol of 8 fp32 ulps of the largest state value (|x| <= 2^k: ulp = 2^(k-23)) for the case where eager
happens to land on the fp64 values. Every parameter and every optimizer state buffer is compared.
``fullgraph=True`` is what a CUDA graph needs as well: one graph, no Python between kernels.
"""
from __future__ import annotations

import math
import warnings

import pytest
import torch

import fastwgan
from fastwgan.models import DCGANCritic, DCGANGenerator, MLPCritic, MLPGenerator
from fastwgan.optim import ClippedRMSprop
from fastwgan.static_step import StaticStep

ITERS = 12  # generator iterations = 12 * (5 + 1) updates per model


def _models(kind: str, dtype=torch.float32, n_classes: int = 0):
    torch.manual_seed(1)
    if kind == "mlp":
        G, D = MLPGenerator(z_dim=3, out_dim=2, width=24, n_classes=n_classes), MLPCritic(in_dim=2, width=24,
                                                                                           n_classes=n_classes)
        shape = (2,)
    else:  # a small DCGAN: convolutions, LayerNorm critic, BatchNorm generator (buffers)
        G = DCGANGenerator(z_dim=3, img_size=16, channels=1, ngf=8)
        D = DCGANCritic(img_size=16, channels=1, ndf=8, norm="layer")
        shape = (1, 16, 16)
    return G.to(dtype), D.to(dtype), shape


def _opts(G, D, loss):
    if loss == "wgan":
        return ClippedRMSprop(D.parameters(), lr=5e-3, clip=0.05), torch.optim.RMSprop(G.parameters(), lr=5e-3)
    return (torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.9)),
            torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.9)))


def _stream(shape, n_classes, iters, nc=5, B=13, seed=7):
    """Every iteration's batches, noise and alphas, drawn once in fp32 (the fp64 run gets the same
    numbers cast up)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(iters):
        out.append(dict(x=torch.randn(nc, B, *shape, generator=g).tanh(),
                        y=torch.randint(0, max(n_classes, 1), (nc, B), generator=g),
                        z_d=torch.randn(nc, B, 3, generator=g), alpha=torch.rand(nc, B, generator=g),
                        z_g=torch.randn(B, 3, generator=g)))
    return out


def _run(kind, loss, dtype, compile, stream, n_classes=0, autocast=None, lam=1.0, decay=True):
    G, D, shape = _models(kind, dtype, n_classes)
    opt_d, opt_g = _opts(G, D, loss)
    st = StaticStep(G, D, opt_d, opt_g, loss=loss, lam=lam, n_critic=5, batch_size=13, z_dim=3,
                    sample_shape=shape, data_dtype=dtype, labelled=n_classes > 0, device=torch.device("cpu"),
                    autocast_dtype=autocast, compile=compile)
    vecs = []
    for i, b in enumerate(stream):
        if decay and loss != "wgan":  # lr changes every step: a value in a tensor, never a recompile
            lr = 1e-3 * (1 - i / len(stream))
            st.set_lr(lr, lr)
        for name in ("x", "z_d", "z_g") + (("alpha",) if st.alpha is not None else ()):
            getattr(st, name).copy_(b[name])
        if st.y is not None:
            st.y.copy_(b["y"])
        vecs.append(st())
    state = [t.detach().clone() for t in (*G.parameters(), *G.buffers(), *D.parameters(), *D.buffers())]
    for opt in (opt_d, opt_g):
        for s in opt.state.values():
            state += [v.detach().clone() for k, v in sorted(s.items()) if torch.is_tensor(v)]
    return state, torch.stack(vecs), st


def _err(a, b):
    return max(float((x.detach().double() - y.detach().double()).abs().max()) for x, y in zip(a, b))


def _atol(ref):
    top = float(ref.abs().max())
    return 8 * 2.0 ** (math.ceil(math.log2(max(top, 1e-30))) - 23)


def _assert_rule(ref, eager, comp):
    """Per tensor: |comp - ref| <= 2 |eager - ref| + atol; integer buffers (BatchNorm's counter)
    exactly equal."""
    for i, (r, e, c) in enumerate(zip(ref, eager, comp)):
        if not r.is_floating_point():
            assert torch.equal(r, c) and torch.equal(r, e), i
            continue
        e_eager, e_comp = _err([e], [r]), _err([c], [r])
        assert e_comp <= 2 * e_eager + _atol(r), (i, tuple(r.shape), e_comp, e_eager)


def _check_rule(kind, loss, n_classes=0, lam=1.0):
    stream = _stream(_models(kind)[2], n_classes, ITERS)
    ref, ref_vec, _ = _run(kind, loss, torch.float64, False, stream, n_classes, lam=lam)
    eager, eager_vec, _ = _run(kind, loss, torch.float32, False, stream, n_classes, lam=lam)
    comp, comp_vec, st = _run(kind, loss, torch.float32, True, stream, n_classes, lam=lam)
    assert st.compile_seconds > 0
    assert len(ref) == len(comp) and all(a.shape == b.shape for a, b in zip(ref, comp))
    _assert_rule(ref, eager, comp)
    _assert_rule(list(ref_vec.T), list(eager_vec.T), list(comp_vec.T))  # the logged metrics too
    # the run did train: the generator's parameters moved by far more than the rounding differences
    G0 = list(_models(kind, torch.float64, n_classes)[0].parameters())
    moved = _err(ref[: len(G0)], G0)
    assert moved > 10 * _err(comp[: len(G0)], ref[: len(G0)])
    return ref, comp


def test_compiled_wgan_gp_mlp_matches_eager():
    _check_rule("mlp", "wgan-gp")


def test_compiled_conditional_wgan_lp_matches_eager():
    _check_rule("mlp", "wgan-lp", n_classes=3)


def test_compiled_wgan_clipping_matches_eager_and_clips():
    ref, comp = _check_rule("mlp", "wgan")
    _, D, _ = _models("mlp")
    n_g = len(list(_models("mlp")[0].parameters()))
    for p in comp[n_g: n_g + len(list(D.parameters()))]:
        assert p.abs().max() <= torch.tensor(0.05, dtype=p.dtype)  # the bound as the weights' dtype holds it


def test_compiled_dcgan_layernorm_with_batchnorm_generator_matches_eager():
    _check_rule("dcgan", "wgan-gp", lam=10.0)


def test_static_step_stages_the_eager_trainers_random_numbers():
    """stage() must draw exactly what the eager trainer's torch.randn / torch.rand calls draw, in
    the same order, so both modes follow the same random streams (and checkpoints mean the same)."""
    from fastwgan.data import as_data_source

    G, D, _ = _models("mlp")
    opt_d, opt_g = _opts(G, D, "wgan-gp")
    st = StaticStep(G, D, opt_d, opt_g, loss="wgan-gp", lam=1.0, n_critic=3, batch_size=17, z_dim=3,
                    sample_shape=(2,), data_dtype=torch.float32, labelled=False, device=torch.device("cpu"))
    src_a, src_b = as_data_source("8gaussians", batch_size=17, seed=5), as_data_source("8gaussians", batch_size=17, seed=5)
    torch.manual_seed(123)
    st.stage(src_a)
    torch.manual_seed(123)
    for k in range(3):
        x, _ = src_b.next_batch(17)
        assert torch.equal(st.x[k], x)
        assert torch.equal(st.z_d[k], torch.randn(17, 3))
        assert torch.equal(st.alpha[k], torch.rand(17))
    assert torch.equal(st.z_g, torch.randn(17, 3))


def _train(**kw):
    torch.manual_seed(0)
    G, D = MLPGenerator(z_dim=2, width=32), MLPCritic(in_dim=2, width=32)
    args = dict(loss="wgan-gp", steps=12, batch_size=32, progress=False, eval_samples=0, device="cpu", log_every=4)
    args.update(kw)
    return fastwgan.train(G, D, "8gaussians", **args)


def test_train_compile_true_runs_the_compiled_step_without_fallback():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback would warn: make it fail the test
        r = _train(compile=True, lr_decay="linear")
    e = _train(compile=False, lr_decay="linear")
    assert r.step_mode == "compiled" and e.step_mode == "eager"
    assert r.compile_seconds > 0
    # Same batches, noise and lr schedule: a wiring error (another batch, another z, a stale lr)
    # changes these losses by O(1) relative amounts; rounding differences stay near 1e-6 (the
    # numerical rule is tested above), so 1e-3 separates the two by orders of magnitude.
    for a, b in zip(r.history, e.history):
        for k in ("w_estimate", "loss_d", "penalty", "loss_g", "param_norm"):
            assert a[k] == pytest.approx(b[k], rel=1e-3, abs=1e-5), (a["step"], k)


def test_compiled_run_resumes_exactly(tmp_path):
    """A compiled run stopped at step 6 and resumed equals the uninterrupted compiled run bit for
    bit (same compiled kernels, same staged random numbers, optimizer state from the checkpoint)."""
    full = _train(compile=True, lr_decay="none", steps=8, out=tmp_path / "a", plots=False)
    _train(compile=True, lr_decay="none", steps=6, out=tmp_path / "b", plots=False)
    resumed = _train(compile=True, lr_decay="none", steps=8, out=tmp_path / "b", resume=True, plots=False)
    import json

    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["step_mode"] == "compiled" and summary["compile_seconds"] > 0
    for p, q in zip(full.generator.parameters(), resumed.generator.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(full.critic.parameters(), resumed.critic.parameters()):
        assert torch.equal(p, q)


class _BreaksGraph(torch.nn.Module):
    """A critic torch.compile cannot trace whole (a host read of a value in forward)."""

    def __init__(self):
        super().__init__()
        self.net = MLPCritic(in_dim=2, width=16)

    def forward(self, x):
        if float(x.detach().abs().max()) > 1e9:  # data-dependent Python branch: a graph break
            x = x * 0
        return self.net(x)


def test_uncompilable_critic_falls_back_with_one_message_and_the_same_run():
    def run(compile):
        torch.manual_seed(0)
        G, D = MLPGenerator(z_dim=2, width=16), _BreaksGraph()
        return fastwgan.train(G, D, "8gaussians", steps=4, batch_size=16, progress=False, eval_samples=0,
                              device="cpu", compile=compile, log_every=1)

    with pytest.warns(RuntimeWarning, match="could not be compiled") as rec:
        a = run(True)
    assert len([w for w in rec if "fastwgan" in str(w.message)]) == 1
    assert "compile=False" in str(rec[0].message)
    b = run(False)
    assert a.step_mode == "eager"
    # the failed attempt was rewound: the eager run that followed is the plain eager run
    for p, q in zip(a.critic.parameters(), b.critic.parameters()):
        assert torch.equal(p, q)
    assert [h["loss_d"] for h in a.history] == [h["loss_d"] for h in b.history]


def test_unsupported_settings_fall_back_with_the_reason():
    with pytest.warns(RuntimeWarning, match="n_critic schedule"):
        r = _train(compile=True, n_critic=lambda s: 2, steps=2)
    assert r.step_mode == "eager"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        r = _train(compile="auto", n_critic=lambda s: 2, steps=2)  # auto decides quietly
    assert r.step_mode == "eager"
    with pytest.warns(RuntimeWarning, match="fp16"):
        _train(compile=True, precision="fp16", steps=1)


def test_auto_compiles_only_long_bf16_runs_on_the_cpu():
    from fastwgan.trainer import AUTO_COMPILE_MIN_STEPS

    assert _train(compile="auto", steps=2, precision="bf16").step_mode == "eager"  # too short to pay
    assert AUTO_COMPILE_MIN_STEPS > 2


@pytest.mark.parametrize("kw, match", [
    (dict(compile="yes"), "compile must be True, False or 'auto'"),
    (dict(cuda_graphs=1), "cuda_graphs must be True, False or 'auto'"),
    (dict(cuda_graphs=True), "cuda_graphs=True needs a CUDA device"),
])
def test_bad_static_settings_are_refused_before_training(kw, match):
    with pytest.raises(ValueError, match=match):
        _train(**kw)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compile", [False, True])
def test_cuda_graph_replay_matches_eager_cuda(compile):
    """The captured iteration replayed from a CUDA graph follows the eager CUDA trainer (same
    random numbers: they are drawn outside the graph into its static buffers)."""
    def run(graphs, comp):
        torch.manual_seed(0)
        G, D = MLPGenerator(z_dim=2, width=64), MLPCritic(in_dim=2, width=64)
        return fastwgan.train(G, D, "8gaussians", steps=20, batch_size=64, progress=False, eval_samples=0,
                              device="cuda", cuda_graphs=graphs, compile=comp, log_every=5)

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        g = run(True, compile)
    e = run(False, False)
    assert g.step_mode == ("compiled+cuda-graph" if compile else "cuda-graph")
    for a, b in zip(g.history, e.history):
        for k in ("w_estimate", "loss_d", "penalty", "loss_g", "param_norm"):
            assert a[k] == pytest.approx(b[k], rel=1e-3, abs=1e-5), (a["step"], k)


def test_many_compiled_runs_in_one_process_do_not_share_a_recompile_limit():
    """Each StaticStep compiles its own copy of the step, so a sweep of train(compile=True) calls
    in one process never exhausts dynamo's recompile limit (8 by default; 2 here to keep it short):
    with one shared code object the third run would fail with "recompile limit exceeded". The
    sweep changes a float setting each time, as sweeps do."""
    import torch._dynamo

    with torch._dynamo.config.patch(recompile_limit=2), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback would warn
        for seed in range(3):
            torch.manual_seed(seed)
            G, D = MLPGenerator(z_dim=2, width=8), MLPCritic(in_dim=2, width=8)
            # WGAN with another clip bound each run: dynamo would turn a float that changed between
            # compiles into a symbol, which the clipped-RMSprop op cannot take (dynamic=False)
            r = fastwgan.train(G, D, "8gaussians", loss="wgan", clip=0.01 * (seed + 1), steps=1, batch_size=8,
                               progress=False, eval_samples=0, device="cpu", compile=True)
            assert r.step_mode == "compiled"
