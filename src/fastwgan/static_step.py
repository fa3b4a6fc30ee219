"""One whole training iteration as a static step: compilable, and capturable in a CUDA graph.

One generator iteration of Algorithm 1 (WGAN, Arjovsky et al. 2017; WGAN-GP, Gulrajani et al. 2017)

    for k in 1..n_critic:   theta_D <- opt_D(theta_D, grad_theta_D [E D(G(z_k)) - E D(x_k) + P_k])
    theta_G <- opt_G(theta_G, grad_theta_G [-E D(G(z))])

is written here as one function of preallocated tensors with no host synchronisation and no
data-dependent Python branch, which is what ``torch.compile(fullgraph=True)`` and a CUDA graph both
need:

* every gradient is a ``torch.func.grad`` over ``functional_call`` (the penalty's input gradient
  nested inside the parameter gradient, :func:`fastwgan.penalty.penalty_at`). Eager
  ``autograd.grad(create_graph=True)`` and ``.backward()`` cannot be traced whole (aot_autograd
  refuses double backward; ``Optimizer.step`` graph-breaks on purpose);
* the optimizer updates call torch's functional Adam / RMSprop (``torch.optim.adam.adam``) on the
  optimizers' own state tensors, and the registered ``fastwgan::clipped_rmsprop_`` op for
  ClippedRMSprop, so a checkpoint's optimizer state_dict is the eager trainer's, and a run can be
  resumed in either mode. Under compilation and in CUDA graphs Adam runs in its capturable form,
  with the learning rate a device tensor (a linear decay then changes a value, not the graph);
* the data batches, the noise z and the interpolation weights alpha are staged into static buffers
  before each call, in the eager trainer's order, from the same random streams: the static and the
  eager trainer draw identical numbers, and checkpoints / resume behave the same;
* the losses, the Wasserstein estimate and the parameters' norm come back as one device vector,
  read by the trainer every ``log_every`` steps.

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
from torch.optim.adam import adam as _adam
from torch.optim.rmsprop import rmsprop as _rmsprop

from .losses import critic_loss, generator_loss
from .penalty import penalty_at
from .reference.gradient_penalty import interpolate

__all__ = ["StaticStep", "static_unsupported"]


def static_unsupported(*, n_critic: Any, precision: str, feature_matching: bool, distributed: bool,
                       loss: str, lr_decay: str, optimizers: tuple[torch.optim.Optimizer, ...]) -> str | None:
    """Why a run cannot use the static step (None: it can). Each reason names what to change."""
    if not isinstance(n_critic, int):
        return "an n_critic schedule changes the step's shape from step to step: pass an int n_critic"
    if precision == "fp16":
        return "precision='fp16' needs GradScaler's host-side skip/back-off: use precision='bf16' or 'fp32'"
    if feature_matching:
        return "feature_matching=True calls critic.features, which the static step does not trace"
    if distributed:
        return "DistributedDataParallel's gradient hooks need the eager backward"
    if loss == "wgan" and lr_decay != "none":
        return "ClippedRMSprop takes its learning rate as a number: use lr_decay='none' with loss='wgan'"
    for opt in optimizers:
        if type(opt).__name__ not in ("Adam", "RMSprop", "ClippedRMSprop"):
            return f"optimizer {type(opt).__name__} has no functional form here"
        for g in opt.param_groups:
            if g.get("amsgrad") or g.get("maximize") or g.get("momentum", 0) or g.get("centered") \
                    or g.get("weight_decay", 0) or g.get("differentiable"):
                return "the static step implements plain Adam / RMSprop (no amsgrad, momentum, weight decay)"
    return None


def _call(module: nn.Module, state: dict[str, Tensor], x: Tensor, y: Tensor | None) -> Tensor:
    return functional_call(module, state, (x,) if y is None else (x, y))


class StaticStep:
    """Preallocated buffers + the pure iteration function ``run``; see the module docstring.

    ``stage(feed)`` fills the buffers for one iteration (host side: data copies and on-device random
    draws); ``__call__()`` runs the iteration (eager, compiled or replayed from a CUDA graph) and
    returns the device vector (w_estimate, loss_d, penalty, loss_g, param_norm).
    """

    def __init__(self, generator: nn.Module, critic: nn.Module, opt_d: torch.optim.Optimizer,
                 opt_g: torch.optim.Optimizer, *, loss: str, lam: float, n_critic: int, batch_size: int,
                 z_dim: int, sample_shape: tuple[int, ...], data_dtype: torch.dtype, labelled: bool,
                 device: torch.device, autocast_dtype: torch.dtype | None = None, compile: bool = False,
                 cuda_graph: bool = False) -> None:
        self.G, self.D, self.opt_d, self.opt_g = generator, critic, opt_d, opt_g
        self.loss, self.lam, self.n_critic = loss, float(lam), n_critic
        self.gp = loss in ("wgan-gp", "wgan-lp") and lam > 0
        self.device, self.autocast_dtype = device, autocast_dtype
        self.compile, self.cuda_graph = compile, cuda_graph
        # capturable Adam: step counts and lr on the device, no .item() (needed by CUDA graphs; under
        # torch.compile it is what the compiled optimizers use too). Eager CPU Adam is not capturable.
        self.capturable = compile or cuda_graph
        nc, B = n_critic, batch_size
        self.x = torch.zeros(nc, B, *sample_shape, dtype=data_dtype, device=device)
        self.y = torch.zeros(nc, B, dtype=torch.long, device=device) if labelled else None
        z_dtype = next(generator.parameters()).dtype  # the generator's dtype (fp32 unless a test runs fp64)
        self.z_d = torch.zeros(nc, B, z_dim, dtype=z_dtype, device=device)
        self.alpha = torch.zeros(nc, B, dtype=data_dtype, device=device) if self.gp else None
        self.z_g = torch.zeros(B, z_dim, dtype=z_dtype, device=device)
        self.lr_d = torch.tensor(float(opt_d.param_groups[0]["lr"]), device=device)
        self.lr_g = torch.tensor(float(opt_g.param_groups[0]["lr"]), device=device)
        self._init_optimizer_state(opt_d)
        self._init_optimizer_state(opt_g)
        self._forms = {id(o): self._functional_form(o) for o in (opt_d, opt_g) if type(o).__name__ != "ClippedRMSprop"}
        self.d_names = [n for n, _ in critic.named_parameters()]
        self.g_names = [n for n, _ in generator.named_parameters()]
        self.compile_seconds = 0.0
        self._fn: Callable[[], Tensor] = self.run
        self._graph: Any = None
        self._out: Tensor | None = None
        self._ready = False

    @property
    def ready(self) -> bool:
        """Compiled / captured and run once: from here on a failure is a real error."""
        return self._ready

    @property
    def mode(self) -> str:
        return "+".join(m for m, on in (("compiled", self.compile), ("cuda-graph", self.cuda_graph)) if on) or "eager"

    def release(self) -> None:
        """Hand the optimizers back to the eager trainer (after a failed first call)."""
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
        """Copy n_critic batches into the buffers and draw z and alpha on the device, in the eager
        trainer's order (batch k, z_k, alpha_k, ..., then z for the generator): same numbers."""
        for k in range(self.n_critic):
            x, y = feed.next_batch(self.x.shape[1])
            self.x[k].copy_(x, non_blocking=True)
            if self.y is not None:
                self.y[k].copy_(y, non_blocking=True)
            self.z_d[k].normal_()
            if self.alpha is not None:
                self.alpha[k].uniform_()
        self.z_g.normal_()

    def set_lr(self, lr_d: float, lr_g: float) -> None:
        """New learning rates (a value written into a device tensor: nothing recompiles)."""
        self.lr_d.fill_(lr_d)
        self.lr_g.fill_(lr_g)
        for opt, lr in ((self.opt_d, lr_d), (self.opt_g, lr_g)):
            for group in opt.param_groups:
                group["lr"] = lr

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
        (a sweep, a test session) would fail with "recompile limit exceeded". A copy per instance
        gives each its own cache entry, freed with the instance."""
        fn = StaticStep.run
        code = fn.__code__.replace()  # an equal, distinct code object
        own = types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
        return types.MethodType(own, self)

    def _capture(self, saved: list[Tensor]) -> None:
        """CUDA graph of one iteration: warm-up on a side stream (lazy inits, compilation, cuBLAS
        workspaces happen there, not in the graph), state restored, then capture into one private
        memory pool. The graph holds the only iteration there is, so capture order = replay order."""
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._fn()
        torch.cuda.current_stream(self.device).wait_stream(side)
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
        for t, s in zip(self._state_tensors(), saved):
            t.copy_(s)

    def _init_optimizer_state(self, opt: torch.optim.Optimizer) -> None:
        """Create the state the eager optimizers would create at their first step (same keys and
        dtypes, so state_dicts match). In a CUDA graph, Adam / RMSprop are capturable: their step
        counts live on the device (ClippedRMSprop's kernels never read theirs on the host)."""
        from torch.optim.optimizer import _get_scalar_dtype

        name = type(opt).__name__
        on_device = self.cuda_graph and name != "ClippedRMSprop"
        for group in opt.param_groups:
            if on_device:
                group["capturable"] = True
            for p in group["params"]:
                st = opt.state[p]
                if len(st) == 0:
                    st["step"] = torch.zeros((), dtype=_get_scalar_dtype())
                    if name == "Adam":
                        st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                        st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    else:
                        st["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if on_device:
                    st["step"] = st["step"].to(p.device)

    # -- the iteration ------------------------------------------------------------------------
    def _autocast(self):
        if self.autocast_dtype is None:
            import contextlib

            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _critic_loss(self, d_params: dict[str, Tensor], d_buffers: dict[str, Tensor], x: Tensor,
                     fake: Tensor, y: Tensor | None, alpha: Tensor | None):
        state = {**d_params, **d_buffers}
        with self._autocast():
            d_real = _call(self.D, state, x, y).reshape(-1).float()
            d_fake = _call(self.D, state, fake, y).reshape(-1).float()
            loss_d = critic_loss(self.loss, d_real, d_fake)
            if alpha is not None:
                x_hat = interpolate(x, fake, alpha)
                pen = penalty_at(self.D, state, x_hat, lam=self.lam, one_sided=self.loss == "wgan-lp", labels=y)
            else:
                pen = torch.zeros((), device=x.device)
        return loss_d + pen, (loss_d, pen, d_real, d_fake)

    def _generator_loss(self, g_params: dict[str, Tensor], g_buffers: dict[str, Tensor],
                        d_state: dict[str, Tensor], z: Tensor, y: Tensor | None):
        with self._autocast():
            fake = _call(self.G, {**g_params, **g_buffers}, z, y)
            loss_g = generator_loss(self.loss, _call(self.D, d_state, fake, y).reshape(-1).float())
        return loss_g, loss_g

    def run(self) -> Tensor:
        """One iteration, from the staged buffers; returns the metrics vector (on the device)."""
        G, D = self.G, self.D
        d_params = {n: p.detach() for n, p in D.named_parameters()}
        g_params = {n: p.detach() for n, p in G.named_parameters()}
        d_buffers, g_buffers = dict(D.named_buffers()), dict(G.named_buffers())
        y = None
        for k in range(self.n_critic):
            x = self.x[k]
            y = self.y[k] if self.y is not None else None
            with torch.no_grad(), self._autocast():
                fake = _call(G, {**g_params, **g_buffers}, self.z_d[k], y).to(x.dtype)
            alpha = self.alpha[k] if self.alpha is not None else None
            grads, (loss_d, pen, d_real, d_fake) = grad(self._critic_loss, has_aux=True)(
                d_params, d_buffers, x, fake, y, alpha)
            self._update(self.opt_d, [grads[n] for n in self.d_names], self.lr_d)
        w_est = d_real.mean() - d_fake.mean()
        d_state = {**{n: p.detach() for n, p in D.named_parameters()}, **d_buffers}
        grads_g, loss_g = grad(self._generator_loss, has_aux=True)(g_params, g_buffers, d_state, self.z_g, y)
        self._update(self.opt_g, [grads_g[n] for n in self.g_names], self.lr_g)
        with torch.no_grad():
            pnorm = torch.nn.utils.get_total_norm([*G.parameters(), *D.parameters()])
            return torch.stack([t.detach().float() for t in (w_est, loss_d, pen, loss_g, pnorm)])

    def _functional_form(self, opt: torch.optim.Optimizer) -> tuple[list[Tensor], list[list[Tensor]], dict]:
        """(params, state lists, constant hyper-parameters) of an optimizer, read once here: inside
        the compiled step, reading ``param_groups`` would make torch.compile guard on the whole
        group dict, so a new lr value (lr_decay) would recompile every step."""
        group = opt.param_groups[0]  # one group: the trainer builds them so
        params = list(group["params"])
        name = type(opt).__name__
        if name == "Adam":
            b1, b2 = group["betas"]
            keys = ("exp_avg", "exp_avg_sq", "step")
            hp = dict(beta1=float(b1), beta2=float(b2), eps=float(group["eps"]))
        else:  # RMSprop (the WGAN generator's), constant lr (static_unsupported checks it)
            keys = ("square_avg", "step")
            hp = dict(lr=float(group["lr"]), alpha=float(group["alpha"]), eps=float(group["eps"]))
        return params, [[opt.state[p][k] for p in params] for k in keys], hp

    @torch.no_grad()
    def _update(self, opt: torch.optim.Optimizer, grads: list[Tensor], lr: Tensor) -> None:
        """The optimizer's own update rule on its own state, in functional form."""
        if type(opt).__name__ == "ClippedRMSprop":  # its registered op (constant lr, one group)
            opt.step_with_grads(grads)
            return
        params, states, hp = self._forms[id(opt)]
        if type(opt).__name__ == "Adam":
            m, v, steps = states
            _adam(params, grads, m, v, [], steps, foreach=False, capturable=self.capturable, amsgrad=False,
                  lr=lr if self.capturable else float(opt.param_groups[0]["lr"]), weight_decay=0.0,
                  maximize=False, **hp)
        else:
            sq, steps = states
            _rmsprop(params, grads, sq, [], [], steps, foreach=False, weight_decay=0.0, momentum=0.0,
                     centered=False, capturable=self.capturable, **hp)


def fallback_warning(reason: str, what: str) -> None:
    """The one message a run prints when it cannot use the static step it was asked for."""
    warnings.warn(f"fastwgan: {what} is off for this run, which continues in the eager trainer: {reason}",
                  RuntimeWarning, stacklevel=3)
