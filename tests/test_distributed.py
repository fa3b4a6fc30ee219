"""Data-parallel training with DistributedDataParallel on 2 CPU processes (gloo).

What must hold (see fastwgan.distributed):
* every rank ends with identical parameters (bit for bit: they apply the same averaged gradients);
* the run equals a single process over the same global batch (2 x 8 = 16), for WGAN-GP (the
  penalty's double backward under DDP) and WGAN (clipped RMSProp);
* each update all-reduces each gradient bucket exactly once (a DDP communication hook counts);
* checkpoints are written by rank 0 only, and every rank resumes from one exactly;
* ``torchrun -m fastwgan train`` works end to end.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from fastwgan import checkpoint as ckpt
from fastwgan import distributed as fd
from fastwgan.data import as_data_source
from fastwgan.models import MLPCritic, MLPGenerator

from _tiny import QUIET_ARGS, TESTS, quick_train

SRC = str(Path(__file__).resolve().parents[1] / "src")
STEPS, N_CRITIC, B = 3, 2, 8  # per-rank batch 8, global batch 16

WORKER = textwrap.dedent("""
    import os, sys
    import torch
    import torch.distributed as dist
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
    from fastwgan import checkpoint as ckpt
    from fastwgan import distributed as fd
    from fastwgan.models import MLPCritic, MLPGenerator
    from _tiny import quick_train  # tests/ is on PYTHONPATH: the tests' quiet settings

    outdir, steps, n_critic, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    dist.init_process_group("gloo")  # the caller's own process group: train() joins it
    rank = dist.get_rank()
    reduced = []  # size of every bucket this rank all-reduced

    def counting_hook(state, bucket):
        reduced.append(bucket.buffer().numel())
        return allreduce_hook(state, bucket)

    fd.COMM_HOOKS.append((None, counting_hook))
    saved = []
    real_save = ckpt.save_checkpoint

    def recording_save(state, folder, step, keep=3):
        saved.append(step)
        return real_save(state, folder, step, keep)

    ckpt.save_checkpoint = recording_save
    for loss in ("wgan-gp", "wgan"):
        torch.manual_seed(1 + rank)  # different inits on purpose: DDP must broadcast rank 0's
        G, D = MLPGenerator(width=16), MLPCritic(width=16)
        reduced.clear()
        saved.clear()
        r = quick_train(G, D, "8gaussians", loss=loss, steps=steps, batch_size=batch, n_critic=n_critic,
                        seed=5, device="cpu", out=os.path.join(outdir, loss), checkpoint_every=2, precision="fp32",
                        log_every=1)
        torch.save({"G": G.state_dict(), "D": D.state_dict(), "reduced": list(reduced), "saved": list(saved),
                    "history": r.history, "config": r.config},
                   os.path.join(outdir, f"{loss}-rank{rank}.pt"))
        if loss == "wgan-gp":  # resume from rank 0's step-2 checkpoint on every rank
            dist.barrier()
            if rank == 0:
                os.remove(os.path.join(outdir, loss, "checkpoints", f"ckpt-{steps:08d}.pt"))
            dist.barrier()
            torch.manual_seed(99)  # other inits: everything must come from the checkpoint
            G, D = MLPGenerator(width=16), MLPCritic(width=16)
            quick_train(G, D, "8gaussians", loss=loss, steps=steps, batch_size=batch, n_critic=n_critic,
                        seed=5, device="cpu", out=os.path.join(outdir, loss), checkpoint_every=2, precision="fp32",
                        log_every=1, resume=True)
            torch.save({"G": G.state_dict(), "D": D.state_dict()}, os.path.join(outdir, f"resumed-rank{rank}.pt"))
    dist.destroy_process_group()
""")


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, TESTS, os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> dict[str, list[dict]]:
    tmp = tmp_path_factory.mktemp("ddp")
    (tmp / "worker.py").write_text(WORKER)
    _torchrun(str(tmp / "worker.py"), str(tmp), str(STEPS), str(N_CRITIC), str(B), cwd=tmp)
    out = {loss: [torch.load(tmp / f"{loss}-rank{r}.pt", weights_only=False) for r in (0, 1)]
           for loss in ("wgan-gp", "wgan")}
    out["dir"] = tmp
    return out


def _single(loss: str, batch: int):
    torch.manual_seed(1)  # rank 0's init
    G, D = MLPGenerator(width=16), MLPCritic(width=16)
    init = {"G": {k: v.clone() for k, v in G.state_dict().items()}, "D": {k: v.clone() for k, v in D.state_dict().items()}}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # like the torchrun workers (OMP_NUM_THREADS=1)
    try:
        r = quick_train(G, D, "8gaussians", loss=loss, steps=STEPS, batch_size=batch, n_critic=N_CRITIC, seed=5,
                        device="cpu", log_every=1, precision="fp32")
    finally:
        torch.set_num_threads(threads)
    return {"G": G.state_dict(), "D": D.state_dict()}, init, r.history


@pytest.mark.parametrize("loss", ["wgan-gp", "wgan"])
def test_ranks_hold_identical_parameters(ranks, loss):
    a, b = ranks[loss]
    for part in ("G", "D"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    def no_time(h):
        return [{k: v for k, v in rec.items() if k != "time"} for rec in h]

    assert no_time(a["history"]) == no_time(b["history"])  # logged metrics are averaged over ranks
    assert a["config"]["world_size"] == 2


@pytest.mark.parametrize("loss", ["wgan-gp", "wgan"])
def test_data_parallel_equals_one_process_over_the_global_batch(ranks, loss):
    """Tolerance: the two runs differ only in the order of float32 sums (a mean over 16 vs the
    average of two means over 8, then DDP's bucket average), a relative gradient error of about
    n * 2^-24 ~ 1e-6 for n <= 16 terms. Adam and RMSProp divide by sqrt(v), so an update's error
    stays of that relative order except for entries whose gradient nearly cancels; allowing a
    1000x margin for that, the parameters must agree to 1e-3 of how far training moved them.
    The negative control shows the bound has teeth: a single process on one rank's batch size
    (no reduction over the global batch) misses it by orders of magnitude."""
    a = ranks[loss][0]
    single, init, hist = _single(loss, 2 * B)
    wrong, _, _ = _single(loss, B)
    control = []
    for part in ("G", "D"):
        moved = max((single[part][k] - init[part][k]).abs().max().item() for k in single[part])
        assert moved > 0
        tol = 1e-3 * moved
        for k in single[part]:
            diff = (single[part][k] - a[part][k]).abs().max().item()
            assert diff <= tol, (part, k, diff, moved)
        control.append(max((wrong[part][k] - a[part][k]).abs().max().item() for k in wrong[part]) / tol)
    assert max(control) > 10  # the un-reduced run is more than 10 tolerances away
    if loss == "wgan-gp":  # logged losses are averaged over ranks: the global-batch values. (WGAN's
        # clipped critic gives L_D ~ 1e-8 as the difference of means ~1e-3: rounding-dominated.)
        assert len(hist) == len(a["history"]) > 0
        for h1, h2 in zip(hist, a["history"], strict=True):
            assert h2["loss_d"] == pytest.approx(h1["loss_d"], rel=1e-4)
            assert h2["penalty"] == pytest.approx(h1["penalty"], rel=1e-4)


@pytest.mark.parametrize("loss", ["wgan-gp", "wgan"])
def test_each_update_all_reduces_each_gradient_once(ranks, loss):
    """The critic's update (L_D + penalty, three forwards through DDP, one backward) reduces its
    one bucket (all critic parameters) once; the generator's likewise. A second reduction of the
    penalty's gradients would show as an extra entry, a missing one as a shorter list."""
    n_d = sum(p.numel() for p in MLPCritic(width=16).parameters())
    n_g = sum(p.numel() for p in MLPGenerator(width=16).parameters())
    expected = ([n_d] * N_CRITIC + [n_g]) * STEPS
    for rank in ranks[loss]:
        assert rank["reduced"] == expected


def test_checkpoints_are_written_by_rank_zero_only(ranks):
    a, b = ranks["wgan-gp"]
    assert a["saved"] == [2, STEPS] and b["saved"] == []
    s = ckpt.load_checkpoint(ranks["dir"] / "wgan-gp" / "checkpoints" / f"ckpt-{STEPS:08d}.pt")
    for k, v in s["critic"].items():
        assert torch.equal(v, a["D"][k])


def test_every_rank_resumes_from_rank_zeros_checkpoint_exactly(ranks):
    full = ranks["wgan-gp"][0]
    for r in (0, 1):
        resumed = torch.load(ranks["dir"] / f"resumed-rank{r}.pt")
        for part in ("G", "D"):
            for k in full[part]:
                assert torch.equal(resumed[part][k], full[part][k]), (r, part, k)


def test_sharded_stream_concatenates_to_the_single_process_stream():
    for data in ("8gaussians", torch.randn(37, 3)):  # a generated stream and a finite shuffled set
        one = as_data_source(data, batch_size=8, seed=3)
        parts = [fd.ShardedSource(as_data_source(data, batch_size=4, seed=3), fd.DistInfo(r, 2)) for r in (0, 1)]
        for _ in range(12):  # crosses epoch ends of the 37-sample set
            x, _ = one.next_batch(8)
            xs = [p.next_batch(4)[0] for p in parts]
            assert torch.equal(torch.cat(xs), x)
        assert torch.equal(parts[1].state_dict()["gen"], one.state_dict()["gen"])  # checkpoints see one stream


def test_torchrun_dash_m_fastwgan_train(tmp_path):
    out = tmp_path / "run"
    r = _torchrun("-m", "fastwgan", "train", "--data", "8gaussians", "--steps", "2", "--batch-size", "8",
                  "--n-critic", "1", *QUIET_ARGS, "--out", str(out),
                  cwd=tmp_path)
    assert r.stdout.count("\"w_estimate\"") == 1  # rank 0 reports; rank 1 is quiet
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["world_size"] == 2 and summary["config"]["batch_size"] == 8
    assert (out / "checkpoints" / "ckpt-00000002.pt").exists()
