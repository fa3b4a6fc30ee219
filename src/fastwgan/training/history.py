"""Per-step metrics, kept on the device between log points, and the non-finite check.

Each step appends its metrics vector (:data:`fastwgan.objectives.METRICS`) without a host sync;
``flush`` moves all pending vectors to the host at once (one sync per log point or checkpoint,
averaged over ranks when distributed) and stops the run at the first step whose losses or
parameters are not finite, naming that step and the last good checkpoint.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from .. import distributed as dist_
from ..objectives import METRICS


class History:
    def __init__(self, records: list[dict[str, float]], info: dist_.DistInfo, losses_may_overflow: bool) -> None:
        self.records = records
        self.pending: list[tuple[int, torch.Tensor, float]] = []  # (step, device metrics, wall time)
        self.info = info
        # fp16: an inf loss on a step the GradScaler skipped is its normal back-off, not a failure;
        # the parameters (never updated from an inf gradient) are what must stay finite.
        self.checked = ("param_norm",) if losses_may_overflow else METRICS

    def add(self, step: int, metrics: torch.Tensor, wall: float) -> None:
        self.pending.append((step, metrics, wall))

    def flush(self, last_checkpoint: Path | None) -> None:
        """Move pending metrics into ``records`` (one host sync) and check them."""
        if not self.pending:
            return
        vals = dist_.all_mean(torch.stack([m for _, m, _ in self.pending]), self.info).cpu().tolist()
        new = [dict(step=s, **dict(zip(METRICS, v, strict=True)), time=wall)
               for (s, _, wall), v in zip(self.pending, vals, strict=True)]
        self.pending.clear()
        self.records.extend(new)
        for rec in new:
            self._check(rec, last_checkpoint)

    def _check(self, rec: dict[str, float], last_checkpoint: Path | None) -> None:
        bad = [k for k in self.checked if not math.isfinite(rec[k])]
        if not bad:
            return
        where = (f"the last good checkpoint is {last_checkpoint} (resume from it with resume=True / --resume, "
                 "after lowering lr)") if last_checkpoint else "no checkpoint was written before it"
        what = "parameters" if bad == ["param_norm"] else "loss"
        raise FloatingPointError(
            f"non-finite {what} ({', '.join(bad)}) at step {rec['step']}; {where}. Lower lr / lr_g (or "
            f"raise lam), check the data, or use precision='fp32'. Record: {rec}"
        )
