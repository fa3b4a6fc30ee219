"""Which runner does each iteration: the static step (compiled / CUDA graph) when asked for and
possible, else the eager one; a static step that fails its first call hands over to the eager runner
with the streams rewound, so the run then equals the eager run."""
from __future__ import annotations

import torch

from .. import checkpoint as ckpt
from .config import TrainConfig
from .eager import EagerStep
from .static import StaticStep, fallback_warning, static_unsupported

# compile="auto" on the CPU compiles bf16 runs of at least this many critic updates (generator
# steps x n_critic), where a cold compile (about 30 s on 2 cores) was measured to pay for itself:
# on 8gaussians the compiled step saves about 4 ms per generator step with one critic update, so
# the fast recipe's 4000 steps reach the criterion sooner eagerly from a cold cache, while 5 critic
# updates per step save enough by 2000 steps (benchmarks/RESULTS.md, "Time to quality"). fp32
# compiled steps are faster per iteration since their double backward is pruned (benchmarks/NOTES.md,
# the second pass of 2026-12-07), but whether a cold compile pays in fp32 was not measured as time
# to quality, so "auto" leaves them eager.
AUTO_COMPILE_MIN_CRITIC_UPDATES = 10_000


def auto_compiles(precision: str, device: torch.device, remaining: int, n_critic) -> bool:
    """compile="auto"'s rule: bf16 on the CPU, long enough to pay for a cold compile (an n_critic
    schedule never compiles: the static step needs a fixed n_critic)."""
    return (device.type == "cpu" and precision == "bf16" and isinstance(n_critic, int)
            and remaining * n_critic >= AUTO_COMPILE_MIN_CRITIC_UPDATES)


def static_wanted(cfg: TrainConfig, device: torch.device, remaining: int) -> tuple[bool, bool]:
    """(compile, cuda_graphs) this run asks for, "auto" resolved."""
    graphs = device.type == "cuda" and cfg.cuda_graphs in (True, "auto")
    comp = cfg.compile is True or (cfg.compile == "auto" and auto_compiles(cfg.precision, device, remaining,
                                                                           cfg.n_critic))
    return comp, graphs


def check_static_settings(cfg: TrainConfig, device: torch.device) -> None:
    if cfg.cuda_graphs is True and device.type != "cuda":
        raise ValueError(f"cuda_graphs=True needs a CUDA device, but the run is on {device}: pass "
                         "cuda_graphs='auto' (or False), or device='cuda' on a machine with a GPU")


def _what(comp: bool, graphs: bool) -> str:
    return " + ".join(w for w, on in (("torch.compile", comp), ("CUDA-graph capture", graphs)) if on)


class Runner:
    """``runner(step, feed) -> metrics vector``, static when possible, eager otherwise."""

    def __init__(self, eager: EagerStep, cfg: TrainConfig, device: torch.device, source, remaining: int,
                 distributed: bool, sample_shape: tuple[int, ...], labelled: bool) -> None:
        self.eager, self.source = eager, source
        self.static: StaticStep | None = None
        comp, graphs = static_wanted(cfg, device, remaining)
        if not (comp or graphs):
            return
        reason = static_unsupported(n_critic=cfg.n_critic, precision=cfg.precision,
                                    feature_matching=cfg.feature_matching, distributed=distributed,
                                    lr_decay=cfg.lr_decay, optimizers=(eager.opt_d, eager.opt_g))
        if reason is not None:
            if cfg.compile is True or cfg.cuda_graphs is True:
                fallback_warning(reason, _what(comp, graphs))
            return
        self.static = StaticStep(eager.G, eager.D, eager.opt_d, eager.opt_g, loss=cfg.loss, lam=cfg.lam or 0.0,
                                 penalty_every=cfg.penalty_every, n_critic=cfg.n_critic, draws=eager.draws,
                                 sample_shape=sample_shape,
                                 labelled=labelled, amp=eager.amp, compile=comp, cuda_graph=graphs)

    @property
    def mode(self) -> str:
        return "eager" if self.static is None else self.static.mode

    @property
    def compile_seconds(self) -> float:
        return 0.0 if self.static is None else self.static.compile_seconds

    def set_lr(self, lr_d: float, lr_g: float) -> None:
        for opt, lr in ((self.eager.opt_d, lr_d), (self.eager.opt_g, lr_g)):
            for group in opt.param_groups:
                group["lr"] = lr
        if self.static is not None:
            self.static.set_lr(lr_d, lr_g)

    def __call__(self, step: int, feed) -> torch.Tensor:
        if self.static is None:
            return self.eager(step, feed)
        if self.static.ready:
            self.static.stage(feed)
            return self.static()
        return self._first_static_call(step, feed)

    def _first_static_call(self, step: int, feed) -> torch.Tensor:
        rng, data = ckpt.rng_state(), self.source.state_dict()
        try:
            self.static.stage(feed)
            return self.static()
        except Exception as e:  # noqa: BLE001 - any failure to trace/compile/capture means: run eagerly
            ckpt.set_rng_state(rng)
            self.source.load_state_dict(data)
            static, self.static = self.static, None
            static.release()
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            fallback_warning(f"the model could not be {'compiled' if static.compile else 'captured'} "
                             f"({type(e).__name__}: {first[:300]}); pass compile=False / cuda_graphs=False to "
                             "skip the attempt", _what(static.compile, static.cuda_graph))
            return self.eager(step, feed)

