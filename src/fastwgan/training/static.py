"""The static runner: one whole iteration as one function of preallocated buffers, with no host
synchronisation and no data-dependent Python branch, which is what ``torch.compile(fullgraph=True)``
and a CUDA graph both need. The algorithm is :mod:`fastwgan.objectives`'s, the random draws are
:mod:`fastwgan.training.inputs`'s; what is particular here:

* every gradient is a ``torch.func.grad`` over ``functional_call`` (the penalty's input gradient
  nested inside the parameter gradient, :func:`fastwgan.penalty.penalty_at`): eager
  ``autograd.grad(create_graph=True)`` and ``.backward()`` cannot be traced whole (aot_autograd
  refuses double backward; ``Optimizer.step`` graph-breaks on purpose);
* the optimizers run in functional form on their own state (:mod:`.functional_optim`);
* the inputs are staged into static buffers before each call, drawn by the eager runner's code in
  its order from the same streams: the two runners draw identical numbers;
* the metrics come back as one device vector, read by the loop at log points.

The compiled step uses torch's own activations (see :mod:`fastwgan.ops.activations`): the pruned
double backward is an eager-mode saving; inductor plans its own graph.
"""
from __future__ import annotations

import time
import types
import warnings
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad

from ..cache import use_compile_cache
from ..objectives import PenaltySchedule, critic_objective, generator_objective, metrics_vector
from ..ops.gradient_penalty import plain_interpolate
from ..penalty import penalty_at
from . import functional_optim
from .inputs import Draws
from .precision import Amp

__all__ = ["StaticStep", "static_unsupported", "fallback_warning"]


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


class StaticStep:
    """Preallocated buffers + the pure iteration function ``run``.

    ``stage(feed)`` fills the buffers for one iteration (host side: data copies and on-device random
    draws); ``__call__()`` runs the iteration (eager, compiled or replayed from a CUDA graph) and
    returns the metrics vector (:data:`fastwgan.objectives.METRICS`).
    """

    def __init__(self, generator: nn.Module, critic: nn.Module, opt_d: torch.optim.Optimizer,
                 opt_g: torch.optim.Optimizer, *, loss: str, lam: float, n_critic: int, draws: Draws,
                 penalty_every: int = 1,
                 sample_shape: tuple[int, ...], labelled: bool, amp: Amp, compile: bool = False,
                 cuda_graph: bool = False) -> None:
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
        self.compile_seconds = 0.0
        self._fn: Callable[[], Tensor] = self.run
        self._graph: Any = None
        self._out: Tensor | None = None
        self._ready = False

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
        self._graph, self._fn = None, self.run
        if self.cuda_graph:
            for opt in (self.opt_d, self.opt_g):
                for group in opt.param_groups:
                    if "capturable" in group:
                        group["capturable"] = False
                for st in opt.state.values():
                    if isinstance(st.get("step"), Tensor):
                        st["step"] = st["step"].cpu()

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
        return self._fn()

    def _prepare(self) -> None:
        """Compile and/or capture; the time it takes is ``compile_seconds``. Raises on failure,
        with every parameter, buffer and optimizer state restored to what it was."""
        t0 = time.perf_counter()
        saved = [t.detach().clone() for t in self._state_tensors()]
        try:
            if self.compile:
                use_compile_cache()  # compiled graphs persist in fastwgan's cache folder, for later runs
                # dynamic=False: a static step; without it dynamo turns a float that differed between
                # two compiled runs (clip, lam) into a symbol, which ClippedRMSprop cannot take
                self._fn = torch.compile(self._own_run(), fullgraph=True, dynamic=False)
            if self.cuda_graph:
                self._capture(saved)
            elif self.compile:
                self._fn()  # traces and compiles now; this call's update is undone below
                self._restore(saved)
        except Exception:
            self._restore(saved)
            self._fn, self._graph = self.run, None
            raise
        self._ready = True
        self.compile_seconds = time.perf_counter() - t0

    def _own_run(self) -> Callable[[], Tensor]:
        """``self.run`` on a private copy of its code object. Dynamo caches compiled graphs per
        code object and guards them on ``self``, so every StaticStep sharing ``StaticStep.run``
        would count against one recompile limit (8): the ninth ``train(compile=True)`` in a process
        would fail with "recompile limit exceeded". A copy per instance gives each its own entry."""
        fn = StaticStep.run
        own = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
        return types.MethodType(own, self)

    def _capture(self, saved: list[Tensor]) -> None:
        """CUDA graph of one iteration: warm-up on a side stream (lazy inits, compilation, cuBLAS
        workspaces happen there, not in the graph), state restored, then capture into one private
        memory pool. The graph holds the only iteration there is, so capture order = replay order."""
        side = torch.cuda.Stream(self.draws.device)
        side.wait_stream(torch.cuda.current_stream(self.draws.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._fn()
        torch.cuda.current_stream(self.draws.device).wait_stream(side)
        self._restore(saved)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=torch.cuda.graph_pool_handle()):
            self._out = self._fn()
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
                                    penalty=penalty if alpha is not None else None)

    def _generator_objective(self, g_params: dict[str, Tensor], g_buffers: dict[str, Tensor],
                             d_state: dict[str, Tensor], z: Tensor, y: Tensor | None):
        with self.amp.autocast():
            fake = _fcall(self.G, {**g_params, **g_buffers})(z, y)
            loss_g = generator_objective(_fcall(self.D, d_state), fake, y, loss=self.loss)
        return loss_g, loss_g

    def run(self) -> Tensor:
        """One iteration, from the staged buffers; returns the metrics vector (on the device)."""
        G, D = self.G, self.D
        d_params = {n: p.detach() for n, p in D.named_parameters()}
        g_params = {n: p.detach() for n, p in G.named_parameters()}
        d_buffers, g_buffers = dict(D.named_buffers()), dict(G.named_buffers())
        y = None
        for k in range(self.n_critic):  # unrolled: which updates have the penalty is fixed per k
            y = self.y[k] if self.y is not None else None
            with torch.no_grad(), self.amp.autocast():
                fake = _fcall(G, {**g_params, **g_buffers})(self.z_d[k], y).to(self.x.dtype)
            with_penalty = self.schedule.on(k)
            alpha = self.alpha[k] if self.alpha is not None and with_penalty else None
            grads, terms = grad(self._critic_objective, has_aux=True)(d_params, d_buffers, self.x[k], fake, y, alpha)
            if with_penalty:  # the metrics show the last penalty computed (lazy: not a zero)
                penalty = terms.penalty
            self._update(0, [grads[n] for n in self.d_names], self.lr_d)
        terms = terms._replace(penalty=penalty)
        d_state = {**{n: p.detach() for n, p in D.named_parameters()}, **d_buffers}
        grads_g, loss_g = grad(self._generator_objective, has_aux=True)(g_params, g_buffers, d_state, self.z_g, y)
        self._update(1, [grads_g[n] for n in self.g_names], self.lr_g)
        return metrics_vector(terms, loss_g, [*G.parameters(), *D.parameters()])

    @torch.no_grad()
    def _update(self, which: int, grads: list[Tensor], lr: Tensor) -> None:
        opt = (self.opt_d, self.opt_g)[which]
        self.rules[which].update(opt, self.forms[which], grads, lr, self.capturable)


def fallback_warning(reason: str, what: str) -> None:
    """The one message a run prints when it cannot use the static step it was asked for."""
    warnings.warn(f"fastwgan: {what} is off for this run, which continues in the eager trainer: {reason}",
                  RuntimeWarning, stacklevel=3)
