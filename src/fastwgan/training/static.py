"""The static runner: one whole iteration as pure functions of preallocated buffers (one critic
update, called n_critic times on the staged slices, and one generator update), with no host
synchronisation and no data-dependent Python branch, which is what ``torch.compile(fullgraph=True)``
(one graph per kind of update) and a CUDA graph (the whole iteration, all its calls) both need. The algorithm is :mod:`fastwgan.objectives`'s, the random draws are
:mod:`fastwgan.training.inputs`'s; what is particular here:

* every gradient is a ``torch.func.grad`` over ``functional_call`` (the penalty's input gradient
  nested inside the parameter gradient, :func:`fastwgan.penalty.penalty_at`): eager
  ``autograd.grad(create_graph=True)`` and ``.backward()`` cannot be traced whole (aot_autograd
  refuses double backward; ``Optimizer.step`` graph-breaks on purpose);
* the optimizers run in functional form on their own state (:mod:`.functional_optim`);
* the inputs are staged into static buffers before each call, drawn by the eager runner's code in
  its order from the same streams: the two runners draw identical numbers;
* the metrics come back as one device vector, read by the loop at log points.

Compiled, fastwgan's activations trace as a select on their mask (:mod:`fastwgan.ops.activations`),
whose derivative has no input branch: the double backward inductor compiles is pruned as the eager
one is (the toy critic update: 22 instead of 26 products of 512 x 512 per critic step).
"""
from __future__ import annotations

import copy
import time
import types
import warnings
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad

from ..cache import start_cpu_isa_probe, use_compile_cache
from ..objectives import CriticTerms, PenaltySchedule, critic_objective, generator_objective, metrics_vector
from ..ops.gradient_penalty import plain_interpolate
from ..penalty import penalty_at
from . import functional_optim
from .inputs import Draws
from .precision import Amp

__all__ = ["StaticStep", "static_unsupported", "fallback_warning", "batch_independent", "JOINS"]


def static_unsupported(*, n_critic: Any, precision: str, feature_matching: bool, distributed: bool,
                       lr_decay: str, optimizers: tuple[torch.optim.Optimizer, ...]) -> str | None:
    """Why a run cannot use the static step (None: it can). Each reason names what to change."""
    if not isinstance(n_critic, int):
        return "an n_critic schedule changes the step's shape from step to step: pass an int n_critic"
    if precision == "fp16":
        return "precision='fp16' needs GradScaler's host-side skip/back-off: use precision='bf16' or 'fp32'"
    if feature_matching:
        return "feature_matching=True calls critic.features, which the static step does not trace"
    if distributed:
        return "DistributedDataParallel's gradient hooks need the eager backward"
    for opt in optimizers:
        reason = functional_optim.unsupported(opt)
        if reason is not None:
            return reason
        if lr_decay != "none" and not functional_optim.rule_for(opt).lr_on_device:
            return f"{type(opt).__name__} takes its learning rate as a number here: use lr_decay='none' with it"
    return None


def _fcall(module: nn.Module, state: dict[str, Tensor]) -> Callable[[Tensor, Tensor | None], Tensor]:
    return lambda x, y: functional_call(module, state, (x,) if y is None else (x, y))


# How the critic update feeds the critic (``StaticStep.join``):
#   "separate": D(real), D(fake), and the penalty's D(x_hat): three forwards of B rows;
#   "real+fake": D(cat(real, fake)) in one forward of 2B rows, D(x_hat) apart.
# A third way, D(cat(real, fake, x_hat)), puts the penalty's input gradient and double backward on
# 3B rows (2B of them with a zero output gradient): measured slowest of the three on the toy MLP
# (benchmarks/NOTES.md, the whole-iteration comparison of 2026-12-07) and left out.
JOINS = ("separate", "real+fake")
# The join a step uses unless it is given one. "separate": in fp32 a joined forward rounds its
# 2B-row products in another order than the eager trainer's B-row ones, and on the tests' tiny
# models that alone took the compiled WGAN run past the fp64 rule's 2x of the eager run's error
# (2.5e-6 against 1.75e-6 allowed; with separate forwards it holds), while the measured gain was
# within the noise of its readings, taken on a loaded machine (benchmarks/NOTES.md, the
# whole-iteration comparison of 2026-12-07). A join asked for is still refused for a
# batch-coupled critic (batch_independent).
DEFAULT_JOIN = "separate"


def _batch_norm_in_training(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in module.modules())


def _dropout_in_training(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0 for m in module.modules())


@torch.no_grad()
def batch_independent(critic: nn.Module, a: Tensor, y: Tensor | None = None) -> bool:
    """Whether ``critic``'s score of a sample is independent of the other samples in its batch,
    so that D(cat(a, b)) = cat(D(a), D(b)) and one joined forward may replace two.

    A BatchNorm or dropout module in training mode says no at once (batch statistics; a random
    mask that a joined forward draws in another order). Otherwise, on a float64 copy of the critic
    under a fixed RNG, with b = a / 2 + 1/4 (another batch with other statistics, so a minibatch
    statistic or a batch-mean score changes between the two ways):
    ``max |D(cat(a, b)) - cat(D(a), D(b))| <= sqrt(eps64) * max |D|``. Two batch-independent
    evaluations differ only by float64 summation order (a few eps64 = 2^-52 times the size, per
    layer); a batch-coupled layer moves the score by O(1) of its size: sqrt(eps64) (1.5e-8) sits
    between them by eight orders of magnitude either way. A critic that cannot be copied or run
    this way is treated as batch-coupled (the safe answer)."""
    if _batch_norm_in_training(critic) or _dropout_in_training(critic):
        return False
    try:
        d64 = copy.deepcopy(critic).double()
    except Exception:
        return False
    a = a.detach().double()
    b = a / 2 + 0.25
    ys = (None, None, None) if y is None else (y, y, torch.cat([y, y]))

    def score(x: Tensor, labels: Tensor | None) -> Tensor:
        with torch.random.fork_rng(devices=[a.device] if a.device.type == "cuda" else []):
            torch.manual_seed(0)
            return (d64(x) if labels is None else d64(x, labels)).reshape(-1)

    try:
        joined = score(torch.cat([a, b]), ys[2])
        apart = torch.cat([score(a, ys[0]), score(b, ys[1])])
    except Exception:
        return False
    if joined.shape != apart.shape or not bool(torch.isfinite(apart).all()):
        return False
    tol = torch.finfo(torch.float64).eps ** 0.5 * float(apart.abs().max())
    return float((joined - apart).abs().max()) <= tol


class StaticStep:
    """Preallocated buffers + the pure update functions.

    ``stage(feed)`` fills the buffers for one iteration (host side: data copies and on-device random
    draws); ``__call__()`` runs the iteration (eager, compiled or replayed from a CUDA graph) and
    returns the metrics vector (:data:`fastwgan.objectives.METRICS`).

    The iteration is ``run``: n_critic calls of ``critic_update`` (one per staged slice k) and one
    of ``generator_update``. Compiled, each of these is its own graph (the critic update in at most
    two variants, with and without the penalty), called n_critic + 1 times from Python: inductor
    compiles one critic update instead of n_critic unrolled copies of it and its double backward,
    which is most of a cold compile's time. The staged slices are passed as arguments (views of the
    same buffers, same shapes and strides: one graph serves every k without recompiling).
    """

    def __init__(self, generator: nn.Module, critic: nn.Module, opt_d: torch.optim.Optimizer,
                 opt_g: torch.optim.Optimizer, *, loss: str, lam: float, n_critic: int, draws: Draws,
                 penalty_every: int = 1,
                 sample_shape: tuple[int, ...], labelled: bool, amp: Amp, compile: bool = False,
                 cuda_graph: bool = False, join: str | None = None) -> None:
        self.G, self.D, self.opt_d, self.opt_g = generator, critic, opt_d, opt_g
        self.loss, self.n_critic, self.draws, self.amp = loss, n_critic, draws, amp
        self.schedule = PenaltySchedule.for_loss(loss, lam, penalty_every)
        self.compile, self.cuda_graph = compile, cuda_graph
        # capturable Adam: step counts and lr on the device, no .item() (needed by CUDA graphs; under
        # torch.compile it is what the compiled optimizers use too). Eager CPU Adam is not capturable.
        self.capturable = compile or cuda_graph
        self._allocate(n_critic, draws, sample_shape, labelled)
        self.rules = [functional_optim.rule_for(o) for o in (opt_d, opt_g)]
        for rule, opt in zip(self.rules, (opt_d, opt_g), strict=True):
            rule.init_state(opt, on_device=cuda_graph)
        self.forms = [rule.form(opt) for rule, opt in zip(self.rules, (opt_d, opt_g), strict=True)]
        self.d_names = [n for n, _ in critic.named_parameters()]
        self.g_names = [n for n, _ in generator.named_parameters()]
        if join is not None and join not in JOINS:
            raise ValueError(f"join must be one of {JOINS}, got {join!r}")
        # the join asked for (None: DEFAULT_JOIN); decided at the first call, on the first staged
        # batch (batch_independent): the decision is kept in ``join``, ``join_reason`` says why
        self.join_wanted = join
        self.join: str | None = None
        self.join_reason = ""
        self.compile_seconds = 0.0
        self._critic_fns: dict[bool, Callable[..., tuple[Tensor, ...]]] = {}  # with / without the penalty
        self._generator_fn: Callable[..., Tensor] = self.generator_update
        self._uncompiled()
        self._graph: Any = None
        self._out: Tensor | None = None
        self._ready = False
        if compile:
            use_compile_cache()  # compiled graphs persist in fastwgan's cache folder, for later runs
        # inductor's g++ checks of the CPU's vector ISA, overlapped with the tracing to come
        self._isa_probe = start_cpu_isa_probe() if compile and draws.device.type == "cpu" else None

    def _allocate(self, nc: int, draws: Draws, sample_shape: tuple[int, ...], labelled: bool) -> None:
        B, dev = draws.batch_size, draws.device
        self.x = torch.zeros(nc, B, *sample_shape, dtype=draws.data_dtype, device=dev)
        self.y = torch.zeros(nc, B, dtype=torch.long, device=dev) if labelled else None
        self.z_d = torch.zeros(nc, B, *draws.z_shape, dtype=draws.z_dtype, device=dev)
        self.alpha = torch.zeros(nc, B, dtype=draws.data_dtype, device=dev) if draws.penalty else None
        self.z_g = torch.zeros(B, *draws.z_shape, dtype=draws.z_dtype, device=dev)
        self.lr_d = torch.tensor(float(self.opt_d.param_groups[0]["lr"]), device=dev)
        self.lr_g = torch.tensor(float(self.opt_g.param_groups[0]["lr"]), device=dev)

    @property
    def ready(self) -> bool:
        """Compiled / captured and run once: from here on a failure is a real error."""
        return self._ready

    @property
    def mode(self) -> str:
        return "+".join(m for m, on in (("compiled", self.compile), ("cuda-graph", self.cuda_graph)) if on) or "eager"

    def release(self) -> None:
        """Hand the optimizers back to the eager runner (after a failed first call)."""
        self._graph = None
        self._uncompiled()
        if self.cuda_graph:
            for opt in (self.opt_d, self.opt_g):
                for group in opt.param_groups:
                    if "capturable" in group:
                        group["capturable"] = False
                for st in opt.state.values():
                    if isinstance(st.get("step"), Tensor):
                        st["step"] = st["step"].cpu()

    def _uncompiled(self) -> None:
        """The update functions run as Python (eager), as before compiling or after a failed compile."""
        self._critic_fns = {True: self.critic_update, False: self.critic_update}
        self._generator_fn = self.generator_update

    # -- host side ---------------------------------------------------------------------------
    def stage(self, feed) -> None:
        """Draw one iteration's inputs (the eager runner's draws, in its order) into the buffers."""
        for k in range(self.n_critic):
            inp = self.draws.critic(feed)
            self.x[k].copy_(inp.x, non_blocking=True)
            self.z_d[k].copy_(inp.z, non_blocking=True)
            if self.y is not None:
                self.y[k].copy_(inp.y, non_blocking=True)
            if self.alpha is not None:
                self.alpha[k].copy_(inp.alpha, non_blocking=True)
        self.z_g.copy_(self.draws.generator(), non_blocking=True)

    def set_lr(self, lr_d: float, lr_g: float) -> None:
        """New learning rates, written into the device tensors the step reads: nothing recompiles
        (the optimizers' param_groups, which checkpoints save, are the runner's to set)."""
        self.lr_d.fill_(lr_d)
        self.lr_g.fill_(lr_g)

    def __call__(self) -> Tensor:
        if not self._ready:
            self._prepare()
        if self._graph is not None:
            self._graph.replay()
            assert self._out is not None
            return self._out.clone()
        return self.run()

    def decide_join(self) -> str:
        """How the critic is fed (``JOINS``), decided once on the first staged batch: the join asked
        for (or ``DEFAULT_JOIN``), and a joined one only when :func:`batch_independent` says the
        critic's scores do not couple samples."""
        if self.join is None:
            wanted = self.join_wanted or DEFAULT_JOIN
            y0 = self.y[0] if self.y is not None else None
            if wanted == "separate":
                self.join, self.join_reason = "separate", "separate forwards asked for"
            elif batch_independent(self.D, self.x[0], y0):
                self.join, self.join_reason = wanted, "batch-independent critic: joined"
            else:
                self.join, self.join_reason = "separate", "batch-coupled critic (or not checkable): separate forwards"
        return self.join

    def _prepare(self) -> None:
        """Compile and/or capture; the time it takes is ``compile_seconds``. Raises on failure,
        with every parameter, buffer and optimizer state restored to what it was."""
        t0 = time.perf_counter()
        saved = [t.detach().clone() for t in self._state_tensors()]
        try:
            self.decide_join()
            if self.compile:
                # dynamic=False: a static step; without it dynamo turns a float that differed between
                # two compiled runs (clip, lam) into a symbol, which ClippedRMSprop cannot take
                self._critic_fns = {pen: torch.compile(self._own(StaticStep.critic_update), fullgraph=True,
                                                       dynamic=False) for pen in (True, False)}
                self._generator_fn = torch.compile(self._own(StaticStep.generator_update), fullgraph=True,
                                                   dynamic=False)
            if self.cuda_graph:
                self._capture(saved)
            elif self.compile:
                self.run()  # traces and compiles now; this call's update is undone below
                self._restore(saved)
        except Exception:
            self._restore(saved)
            self._uncompiled()
            self._graph = None
            raise
        self._ready = True
        self.compile_seconds = time.perf_counter() - t0

    def _own(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` bound to self, on a private copy of its code object. Dynamo caches compiled graphs
        per code object and guards them on ``self``, so every StaticStep sharing one method's code
        would count against one recompile limit (8): the ninth ``train(compile=True)`` in a process
        would fail with "recompile limit exceeded". A copy per instance (and per penalty variant)
        gives each its own entry."""
        own = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
        return types.MethodType(own, self)

    def _capture(self, saved: list[Tensor]) -> None:
        """CUDA graph of one iteration: warm-up on a side stream (lazy inits, compilation, cuBLAS
        workspaces happen there, not in the graph), state restored, then capture into one private
        memory pool. The graph holds the only iteration there is (all n_critic + 1 compiled calls),
        so capture order = replay order."""
        side = torch.cuda.Stream(self.draws.device)
        side.wait_stream(torch.cuda.current_stream(self.draws.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self.run()
        torch.cuda.current_stream(self.draws.device).wait_stream(side)
        self._restore(saved)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=torch.cuda.graph_pool_handle()):
            self._out = self.run()
        self._graph = graph  # capture records kernels without running them: the state is unchanged

    def _state_tensors(self) -> list[Tensor]:
        out = [*self.G.parameters(), *self.G.buffers(), *self.D.parameters(), *self.D.buffers()]
        for opt in (self.opt_d, self.opt_g):
            for st in opt.state.values():
                out.extend(v for v in st.values() if isinstance(v, Tensor))
        return out

    @torch.no_grad()
    def _restore(self, saved: list[Tensor]) -> None:
        for t, s in zip(self._state_tensors(), saved, strict=True):
            t.copy_(s)

    # -- the iteration ------------------------------------------------------------------------
    def _critic_objective(self, d_params: dict[str, Tensor], d_buffers: dict[str, Tensor], x: Tensor,
                          fake: Tensor, y: Tensor | None, alpha: Tensor | None):
        state = {**d_params, **d_buffers}

        def penalty(real: Tensor, fake: Tensor, y: Tensor | None) -> Tensor:
            x_hat = plain_interpolate(real, fake, alpha)
            return penalty_at(self.D, state, x_hat, lam=self.schedule.weight, one_sided=self.schedule.one_sided,
                              labels=y)

        with self.amp.autocast():
            return critic_objective(_fcall(self.D, state), x, fake, y, loss=self.loss,
                                    penalty=penalty if alpha is not None else None,
                                    joined=self.join == "real+fake")

    def _generator_objective(self, g_params: dict[str, Tensor], g_buffers: dict[str, Tensor],
                             d_state: dict[str, Tensor], z: Tensor, y: Tensor | None):
        with self.amp.autocast():
            fake = _fcall(self.G, {**g_params, **g_buffers})(z, y)
            loss_g = generator_objective(_fcall(self.D, d_state), fake, y, loss=self.loss)
        return loss_g, loss_g

    def critic_update(self, x: Tensor, z: Tensor, y: Tensor | None, alpha: Tensor | None) -> tuple[Tensor, ...]:
        """One critic update on one staged slice (alpha None: no penalty on this update); returns
        its terms (:class:`fastwgan.objectives.CriticTerms`) as a tuple."""
        G, D = self.G, self.D
        d_params = {n: p.detach() for n, p in D.named_parameters()}
        g_state = {**{n: p.detach() for n, p in G.named_parameters()}, **dict(G.named_buffers())}
        with torch.no_grad(), self.amp.autocast():
            fake = _fcall(G, g_state)(z, y).to(x.dtype)
        grads, terms = grad(self._critic_objective, has_aux=True)(d_params, dict(D.named_buffers()), x, fake, y, alpha)
        self._update(0, [grads[n] for n in self.d_names], self.lr_d)
        return tuple(terms)

    def generator_update(self, z: Tensor, y: Tensor | None, loss_d: Tensor, penalty: Tensor, d_real: Tensor,
                         d_fake: Tensor) -> Tensor:
        """The generator update, then the metrics vector of the iteration (the critic terms given:
        the last critic update's, with the last penalty computed)."""
        G, D = self.G, self.D
        g_params = {n: p.detach() for n, p in G.named_parameters()}
        d_state = {**{n: p.detach() for n, p in D.named_parameters()}, **dict(D.named_buffers())}
        grads_g, loss_g = grad(self._generator_objective, has_aux=True)(g_params, dict(G.named_buffers()), d_state,
                                                                       z, y)
        self._update(1, [grads_g[n] for n in self.g_names], self.lr_g)
        return metrics_vector(CriticTerms(loss_d, penalty, d_real, d_fake), loss_g, [*G.parameters(), *D.parameters()])

    def run(self) -> Tensor:
        """One iteration, from the staged buffers; returns the metrics vector (on the device)."""
        y = None
        for k in range(self.n_critic):  # which updates have the penalty is fixed per k
            y = self.y[k] if self.y is not None else None
            with_penalty = self.schedule.on(k)
            alpha = self.alpha[k] if self.alpha is not None and with_penalty else None
            terms = self._critic_fns[alpha is not None](self.x[k], self.z_d[k], y, alpha)
            if with_penalty:  # the metrics show the last penalty computed (lazy: not a zero)
                penalty = terms[1]
        return self._generator_fn(self.z_g, y, terms[0], penalty, terms[2], terms[3])

    @torch.no_grad()
    def _update(self, which: int, grads: list[Tensor], lr: Tensor) -> None:
        opt = (self.opt_d, self.opt_g)[which]
        self.rules[which].update(opt, self.forms[which], grads, lr, self.capturable)


def fallback_warning(reason: str, what: str) -> None:
    """The one message a run prints when it cannot use the static step it was asked for."""
    warnings.warn(f"fastwgan: {what} is off for this run, which continues in the eager trainer: {reason}",
                  RuntimeWarning, stacklevel=3)
