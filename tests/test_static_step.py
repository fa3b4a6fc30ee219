"""The static runner (fastwgan.training.static): compiled == the eager trainer, no graph break,
clean fallback.

Tolerance rule (tests/_rules.py, per tensor): over 12 iterations, the compiled run may be at most
twice as far from an fp64 eager run of the same iterations as the eager run at the same precision
is, plus an atol of 8 fp32 ulps of the largest value (|x| <= 2^k: ulp = 2^(k-23)) for tensors
where the eager run happens to land on the fp64 values. Under bf16 autocast every matrix product's
result is stored in bf16, so there the atol is one bf16 epsilon (2^-7) at the scale, the same
derivation with the dtype that stores the results; and bf16 runs are compared per group (all model
tensors, all optimizer state, the metrics) rather than per tensor: inductor keeps a fused chain of
elementwise ops in fp32 where eager autocast rounds each result to bf16, so the two runs round in
different places and one small tensor's error says nothing, while the group's largest error is
what a wiring mistake moves (the negative control below shows the bf16 check still catches one).
All three runs go through
``fastwgan.train`` with the same data, seed and settings, so they draw the same numbers (the fp64
run gets them cast up); every parameter, buffer and optimizer state tensor of the final checkpoint
and every logged metric is compared. ``fullgraph=True`` is what a CUDA graph needs as well.

Compiling is most of this file's time, so a run whose settings several tests share is made once per
module (``_run``'s cache: the fp64 and eager runs of the negative controls are the positive tests'
runs); a run a test changes (a monkeypatch) is never taken from or put in the cache.
"""
from __future__ import annotations

import warnings

import pytest
import torch

from fastwgan import checkpoint
from fastwgan.losses import LOSSES
from fastwgan.models import MLPCritic, MLPGenerator
from fastwgan.training.inputs import Draws
from fastwgan.training.precision import Amp
from fastwgan.training.static import StaticStep
from fastwgan.distributed import DistInfo

from _rules import assert_fp64_rule, assert_same_trajectory, ulps_atol
from _tiny import quick_train, tiny_models

ITERS = 12


def _data(kind: str, n_classes: int, n: int = 64):
    g = torch.Generator().manual_seed(3)
    shape = (2,) if kind == "mlp" else (1, 16, 16)
    x = torch.randn(n, *shape, generator=g).tanh()
    return (x, torch.randint(0, n_classes, (n,), generator=g)) if n_classes else x


_RUNS: dict = {}  # (settings) -> (tensors, result): runs shared by the tests of this module


def _run(tmp_path, name, kind, loss, dtype, compile, precision="fp32", n_classes=0, n_critic=2, lam=1.0, clip=0.5,
         fresh=False):
    """``fastwgan.train`` for ITERS iterations; the final checkpoint's tensors and the history.
    Runs with the same settings are made once per module unless ``fresh`` (a patched run)."""
    key = (kind, loss, dtype, compile, precision, n_classes, n_critic, lam, clip)
    if not fresh and key in _RUNS:
        return _RUNS[key]
    out = _train_run(tmp_path, name, kind, loss, dtype, compile, precision, n_classes, n_critic, lam, clip)
    if not fresh:
        _RUNS[key] = out
    return out


def _train_run(tmp_path, name, kind, loss, dtype, compile, precision, n_classes, n_critic, lam, clip):
    G, D = tiny_models(kind, n_classes=n_classes)
    G, D = G.to(dtype), D.to(dtype)
    decay = "none" if loss == "wgan" else "linear"  # lr changes every step: a value, never a recompile
    # WGAN: a bound the weights reach only now and then. With every weight pinned at +-c the
    # critic's gradients are sums of cancelling terms, and two fp32 summation orders (eager, compiled)
    # then differ from fp64 by factors that change sign from seed to seed: no rule could hold.
    kw = dict(clip=clip) if loss == "wgan" else dict(betas=(0.5, 0.9))
    r = quick_train(G, D, _data(kind, n_classes), loss=loss, steps=ITERS, batch_size=13, n_critic=n_critic,
                    lr=1e-3, lam=lam, lr_decay=decay, compile=compile,
                    precision=precision, seed=7, log_every=1, out=tmp_path / name, device="cpu", **kw)
    state = checkpoint.load_checkpoint(tmp_path / name / "checkpoints" / f"ckpt-{ITERS:08d}.pt")
    tensors = [*state["generator"].values(), *state["critic"].values()]
    for opt in ("opt_d", "opt_g"):
        for s in state[opt]["state"].values():
            tensors += [v for k, v in sorted(s.items()) if torch.is_tensor(v)]
    return tensors, r


def _atol(ref: torch.Tensor, precision: str = "fp32") -> float:
    if precision == "bf16":
        return torch.finfo(torch.bfloat16).eps * float(ref.detach().double().abs().max())
    return ulps_atol(ref)


def _check_rule(tmp_path, kind, loss, precision="fp32", fresh_compiled=False, **kw):
    ref, ref_run = _run(tmp_path, "fp64", kind, loss, torch.float64, False, **kw)
    eager, eager_run = _run(tmp_path, "eager", kind, loss, torch.float32, False, precision, **kw)
    comp, comp_run = _run(tmp_path, "compiled", kind, loss, torch.float32, True, precision, fresh=fresh_compiled, **kw)
    assert comp_run.step_mode == "compiled" and comp_run.compile_seconds > 0
    assert eager_run.step_mode == "eager" and ref_run.step_mode == "eager"
    assert len(ref) == len(eager) == len(comp) and all(a.shape == b.shape for a, b in zip(ref, comp, strict=True))
    for i, (r, e, c) in enumerate(zip(ref, eager, comp, strict=True)):
        if not r.is_floating_point():  # BatchNorm's counter, step counts
            assert torch.equal(r, c.to(r.dtype)) and torch.equal(r, e.to(r.dtype)), i
        elif precision == "fp32":
            assert_fp64_rule(c, e, r, atol=_atol(r), what=f"{kind} {loss} fp32 tensor {i} {tuple(r.shape)}")
    if precision == "bf16":
        n_models = len(ref_run.generator.state_dict()) + len(ref_run.critic.state_dict())
        for what, part in (("model tensors", slice(0, n_models)), ("optimizer state", slice(n_models, None))):
            r, e, c = ([t for t in run[part] if t.is_floating_point()] for run in (ref, eager, comp))
            assert_fp64_rule(c, e, r, atol=_atol(torch.cat([t.reshape(-1).double() for t in r]), "bf16"),
                             what=f"{kind} {loss} bf16 {what}")
    keys = ("w_estimate", "loss_d", "penalty", "loss_g", "param_norm")
    assert len(ref_run.history) == len(eager_run.history) == len(comp_run.history) == ITERS
    metrics = [torch.tensor([h[k] for h in run.history], dtype=torch.float64) for run in (ref_run, eager_run, comp_run)
               for k in keys]
    per_run = [metrics[i * len(keys):(i + 1) * len(keys)] for i in range(3)]
    groups = zip(*per_run, strict=True) if precision == "fp32" else [tuple(torch.cat(m) for m in per_run)]
    for t, e, c in groups:  # the logged metrics too: per metric in fp32, as one group in bf16
        assert_fp64_rule(c, e, t, atol=_atol(t, precision), what=f"{kind} {loss} {precision} metrics")
    # the run did train: the generator moved, in fp32 by far more than the rounding differences (bf16's
    # roundings are as large as 12 iterations' movement: there the negative control shows the check bites)
    G0 = [p.double() for p in tiny_models(kind, n_classes=kw.get("n_classes", 0))[0].state_dict().values()]
    moved = max(float((a - b.double()).abs().max()) for a, b in zip(G0, ref[: len(G0)], strict=True))
    rounding = max(float((c.double() - r).abs().max()) for c, r in zip(comp[: len(G0)], ref[: len(G0)], strict=True))
    assert moved > (10 * rounding if precision == "fp32" else 0)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("loss", LOSSES)
def test_compiled_step_matches_the_eager_trainer(tmp_path, loss, precision):
    _check_rule(tmp_path, "mlp", loss, precision)


def test_compiled_conditional_wgan_lp_matches_the_eager_trainer(tmp_path):
    _check_rule(tmp_path, "mlp", "wgan-lp", n_classes=3)


def test_compiled_dcgan_layernorm_with_batchnorm_generator_matches_the_eager_trainer(tmp_path):
    _check_rule(tmp_path, "dcgan", "wgan-gp", lam=10.0)


def test_compiled_wgan_clips(tmp_path):
    comp, _ = _run(tmp_path, "c", "mlp", "wgan", torch.float32, True, clip=0.05)
    G, D = tiny_models("mlp")
    n_g = len(G.state_dict())
    weights = comp[n_g: n_g + len(D.state_dict())]
    for p in weights:
        assert p.abs().max() <= torch.tensor(0.05, dtype=p.dtype)  # the bound as the weights' dtype holds it
    assert any(p.abs().max() == torch.tensor(0.05, dtype=p.dtype) for p in weights)  # it did bind


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_wrong_lr_in_the_compiled_step_fails_the_rule(tmp_path, monkeypatch, precision):
    """Negative control: the compiled step with its lr decay disconnected breaks the rule."""
    monkeypatch.setattr(StaticStep, "set_lr", lambda self, lr_d, lr_g: None)
    with pytest.raises(AssertionError, match="fp64 truth"):
        _check_rule(tmp_path, "mlp", "wgan-gp", precision, fresh_compiled=True)


def test_static_step_stages_the_eager_runners_random_numbers():
    """stage() puts exactly what the eager runner's draws give into the buffers, in its order."""
    from fastwgan.data import as_data_source

    G, D = tiny_models("mlp")
    opt_d, opt_g = torch.optim.Adam(D.parameters()), torch.optim.Adam(G.parameters())
    draws = Draws(17, 3, penalty=True, device=torch.device("cpu"), data_dtype=torch.float32,
                  z_dtype=torch.float32, info=DistInfo())
    st = StaticStep(G, D, opt_d, opt_g, loss="wgan-gp", lam=1.0, n_critic=3, draws=draws, sample_shape=(2,),
                    labelled=False, amp=Amp("fp32", torch.device("cpu")))
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


def _train(dtype=torch.float32, **kw):
    torch.manual_seed(0)
    G, D = MLPGenerator(z_dim=2, width=32).to(dtype), MLPCritic(in_dim=2, width=32).to(dtype)
    args = dict(loss="wgan-gp", steps=12, batch_size=32, device="cpu", log_every=4,
                precision="fp32")
    args.update(kw)
    return quick_train(G, D, "8gaussians", **args)


def test_train_compile_true_runs_the_compiled_step_without_fallback():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback would warn: make it fail the test
        r = _train(compile=True, lr_decay="linear")
    e = _train(compile=False, lr_decay="linear")
    t = _train(torch.float64, compile=False, lr_decay="linear")
    assert r.step_mode == "compiled" and e.step_mode == "eager"
    assert r.compile_seconds > 0
    # Same batches, noise and lr schedule: a wiring error (another batch, another z, a stale lr)
    # breaks the derived rule by orders of magnitude (the negative control above shows it bites)
    assert len(r.history) == 12  # one record per step, moved to the host at log points
    assert_same_trajectory(r, e, t, what="train(compile=True)")


def test_compiled_run_resumes_exactly(tmp_path):
    """A compiled run stopped at step 6 and resumed equals the uninterrupted compiled run bit for
    bit (same compiled kernels, same staged random numbers, optimizer state from the checkpoint)."""
    full = _train(compile=True, lr_decay="none", steps=8, out=tmp_path / "a", plots=False)
    _train(compile=True, lr_decay="none", steps=6, out=tmp_path / "b", plots=False)
    resumed = _train(compile=True, lr_decay="none", steps=8, out=tmp_path / "b", resume=True, plots=False)
    import json

    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["step_mode"] == "compiled" and summary["compile_seconds"] > 0
    for p, q in zip(full.generator.parameters(), resumed.generator.parameters(), strict=True):
        assert torch.equal(p, q)
    for p, q in zip(full.critic.parameters(), resumed.critic.parameters(), strict=True):
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
        return quick_train(G, D, "8gaussians", steps=4, batch_size=16, device="cpu", compile=compile, log_every=1)

    with pytest.warns(RuntimeWarning, match="could not be compiled") as rec:
        a = run(True)
    assert len([w for w in rec if "fastwgan" in str(w.message)]) == 1
    assert "compile=False" in str(rec[0].message)
    b = run(False)
    assert a.step_mode == "eager"
    # the failed attempt was rewound: the eager run that followed is the plain eager run
    for p, q in zip(a.critic.parameters(), b.critic.parameters(), strict=True):
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


def test_auto_compiles_only_long_bf16_runs_on_the_cpu(monkeypatch):
    from fastwgan.training import runner

    assert runner.AUTO_COMPILE_MIN_CRITIC_UPDATES > 10
    assert _train(compile="auto", steps=2, precision="bf16").step_mode == "eager"  # too short to pay
    monkeypatch.setattr(runner, "AUTO_COMPILE_MIN_CRITIC_UPDATES", 10)  # a "long" run: auto compiles it
    assert _train(compile="auto", steps=2, n_critic=5, precision="bf16").step_mode == "compiled"
    assert _train(compile="auto", steps=2, n_critic=4, precision="bf16").step_mode == "eager"  # 8 updates < 10
    assert _train(compile="auto", steps=2, n_critic=5, precision="fp32").step_mode == "eager"  # fp32 stays eager


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
    def run(graphs, comp, dtype=torch.float32):
        torch.manual_seed(0)
        G, D = MLPGenerator(z_dim=2, width=64).to(dtype), MLPCritic(in_dim=2, width=64).to(dtype)
        return quick_train(G, D, "8gaussians", steps=20, batch_size=64, device="cuda", cuda_graphs=graphs,
                           compile=comp, log_every=5, precision="fp32")

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        g = run(True, compile)
    e, t = run(False, False), run(False, False, torch.float64)
    assert g.step_mode == ("compiled+cuda-graph" if compile else "cuda-graph")
    assert len(g.history) == 20
    assert_same_trajectory(g, e, t, what="CUDA graph replay")


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
            r = quick_train(G, D, "8gaussians", loss="wgan", clip=0.01 * (seed + 1), steps=1, batch_size=8,
                            device="cpu", compile=True)
            assert r.step_mode == "compiled"


# -- one forward on cat(real, fake) (StaticStep.join) -------------------------------------------
class _MinibatchStd(torch.nn.Module):
    """A batch-coupled critic without a BatchNorm module: every score depends on the batch's spread
    (ProGAN's minibatch standard deviation), which only the numerical check can see."""

    def __init__(self):
        super().__init__()
        self.net = MLPCritic(in_dim=3, width=16)

    def forward(self, x):
        spread = x.std(0).mean().expand(x.shape[0], 1)
        return self.net(torch.cat([x, spread], 1))


class _BatchMeanScore(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = MLPCritic(in_dim=2, width=16)

    def forward(self, x):
        s = self.net(x)
        return s - s.mean()


def test_batch_independent_accepts_per_sample_critics_and_refuses_batch_coupled_ones():
    from fastwgan.models import DCGANCritic
    from fastwgan.training.static import batch_independent

    torch.manual_seed(0)
    x2, img = torch.randn(13, 2), torch.randn(13, 1, 16, 16)
    assert batch_independent(MLPCritic(in_dim=2, width=16), x2)
    assert batch_independent(MLPCritic(in_dim=2, width=16, n_classes=3), x2, torch.randint(0, 3, (13,)))
    assert batch_independent(DCGANCritic(img_size=16, channels=1, ndf=8, norm="layer"), img)
    # batch statistics, seen by module type (BatchNorm, dropout) or by the numbers (the others)
    assert not batch_independent(DCGANCritic(img_size=16, channels=1, ndf=8, norm="batch"), img)
    assert not batch_independent(torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Dropout(0.5),
                                                     torch.nn.Linear(8, 1)), x2)
    assert not batch_independent(_MinibatchStd(), x2)
    assert not batch_independent(_BatchMeanScore(), x2)
    # the same BatchNorm critic in eval mode scores each sample on its own
    assert batch_independent(DCGANCritic(img_size=16, channels=1, ndf=8, norm="batch").eval(), img)


def _joins(monkeypatch) -> list[str]:
    """The join each StaticStep of the test decided on, in order."""
    seen: list[str] = []
    decide = StaticStep.decide_join

    def spy(self):
        seen.append(decide(self))
        return seen[-1]

    monkeypatch.setattr(StaticStep, "decide_join", spy)
    return seen


def test_a_batch_coupled_critic_keeps_separate_forwards(monkeypatch):
    """A join asked for on a critic whose scores couple the batch is refused at set-up."""
    from fastwgan.training import static

    joins = _joins(monkeypatch)
    monkeypatch.setattr(static, "DEFAULT_JOIN", "real+fake")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        r = quick_train(MLPGenerator(z_dim=2, width=8), _BatchMeanScore(), "8gaussians", loss="wgan", steps=1,
                        batch_size=8, device="cpu", compile=True)
    assert r.step_mode == "compiled" and joins == ["separate"]


def _compiled64(tmp_path, monkeypatch, join):
    """The compiled conditional WGAN-LP step in float64 with ``join`` asked for (a fresh run)."""
    from fastwgan.training import static

    joins = _joins(monkeypatch)
    monkeypatch.setattr(static, "DEFAULT_JOIN", join)
    out = _run(tmp_path, f"{join}-64", "mlp", "wgan-lp", torch.float64, True, n_classes=3, fresh=True)
    monkeypatch.undo()
    assert joins == [join]
    return out


def test_joined_critic_forward_equals_separate_forwards_by_the_fp64_rule(tmp_path, monkeypatch):
    """The compiled step with one forward on cat(real, fake) against the same compiled step with
    separate forwards, both in float64, over ITERS steps: every parameter, buffer, optimizer state
    tensor and logged metric, by the fp64 rule (err(ref32): the eager fp32 trainer's). Conditional,
    so the labels' join is checked too. A wrong split (real and fake swapped) flips the Wasserstein
    estimate's sign and fails it by O(1) (planted once, seen to fail)."""
    sep64, sep64_run = _compiled64(tmp_path, monkeypatch, "separate")
    join64, join64_run = _compiled64(tmp_path, monkeypatch, "real+fake")
    ref32, ref32_run = _run(tmp_path, "eager", "mlp", "wgan-lp", torch.float32, False, n_classes=3)  # shared
    assert len(sep64) == len(join64) == len(ref32)
    for i, (t, j, r) in enumerate(zip(sep64, join64, ref32, strict=True)):
        if not t.is_floating_point():
            assert torch.equal(t, j), i
        else:
            assert_fp64_rule(j, r, t, atol=ulps_atol(t), what=f"joined fp64 tensor {i} {tuple(t.shape)}")
    for k in ("w_estimate", "loss_d", "penalty", "loss_g", "param_norm"):
        t, j, r = (torch.tensor([h[k] for h in run.history], dtype=torch.float64)
                   for run in (sep64_run, join64_run, ref32_run))
        assert_fp64_rule(j, r, t, atol=ulps_atol(t), what=f"joined fp64 {k}")


def test_the_compiled_step_compiles_one_graph_per_update_kind():
    """n_critic updates share one compiled critic update (two with a lazy penalty: with and without
    it) and one generator update: no recompilation for k = 0..n_critic-1, nor for the next steps."""
    import torch._dynamo.utils as du

    before = du.counters["stats"]["unique_graphs"]
    recompiles = sum(du.counters["recompiles"].values()) if "recompiles" in du.counters else 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        r = _train(compile=True, n_critic=4, penalty_every=2, steps=3, log_every=1, lr_decay="linear")
    assert r.step_mode == "compiled"
    assert du.counters["stats"]["unique_graphs"] - before == 3  # critic with penalty, without, generator
    assert (sum(du.counters["recompiles"].values()) if "recompiles" in du.counters else 0) == recompiles
