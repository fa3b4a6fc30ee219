"""The ``fastwgan`` command line (also ``python -m fastwgan``).

    fastwgan train --data 8gaussians --loss wgan-gp --steps 2000 --out runs/8g
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

EPILOG = """\
examples:
  fastwgan train --data 8gaussians                      # WGAN-GP with the data set's measured preset
  fastwgan train --data 25gaussians --loss wgan --steps 5000 --out runs/25g-wgan
  fastwgan train --data digits --loss wgan-gp --tensorboard
  fastwgan train --data path/to/images --image-size 32 --steps 20000
  fastwgan train --data 8gaussians --seed 1 --checkpoint-every 500 --out runs/8g   # Ctrl-C, then:
  fastwgan train --data 8gaussians --seed 1 --checkpoint-every 500 --out runs/8g --resume
  torchrun --nproc_per_node=2 -m fastwgan train --data 8gaussians   # data parallel (gloo/nccl)
  fastwgan train --data digits --precision bf16                     # mixed precision
  fastwgan train --data 8gaussians --precision bf16 --compile on    # whole step compiled (fastest on CPU)

built-in data sets: 8gaussians, 25gaussians, swissroll (2-D toys of gan_toy.py), digits
(scikit-learn's bundled 8x8 digits, with labels), or a folder of images.
Every setting not given comes from the loss's paper defaults and the data set's preset; the run
folder gets metrics.jsonl, samples.png, learning_curve.png, summary.json and checkpoints/.
"""


def _parser() -> argparse.ArgumentParser:
    from .losses import LOSSES

    p = argparse.ArgumentParser(prog="fastwgan", description="Fast, tested WGAN / WGAN-GP training.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    t = sub.add_parser("train", help="train a GAN on a built-in data set or a folder of images",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--data", required=True, help="built-in data set name or a folder of images")
    t.add_argument("--loss", default="wgan-gp", choices=LOSSES,
                   help="wgan (clipping + RMSProp), wgan-gp, wgan-lp (one-sided), gan, ns-gan (default: wgan-gp)")
    t.add_argument("--steps", type=int, help="generator iterations (default: the data set's preset)")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--n-critic", help="critic updates per generator step: an int or 'wgan-original'")
    t.add_argument("--lr", type=float, help="learning rate (both models unless --lr-g)")
    t.add_argument("--lr-g", type=float, help="generator learning rate")
    t.add_argument("--lr-decay", choices=("none", "linear"), help="learning-rate schedule (linear: to 0 at the end)")
    t.add_argument("--betas", type=float, nargs=2, metavar=("B1", "B2"), help="Adam betas")
    t.add_argument("--clip", type=float, help="WGAN weight-clipping bound c")
    t.add_argument("--lam", type=float, help="gradient-penalty weight lambda")
    t.add_argument("--z-dim", type=int, help="noise size")
    t.add_argument("--feature-matching", action="store_true", help="feature-matching generator loss")
    t.add_argument("--image-size", type=int, help="resize images to this size (image folders; default 32)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    t.add_argument("--backend", default="auto", choices=("auto", "triton", "cpp", "reference"),
                   help="fused-kernel backend (default auto; env FASTWGAN_BACKEND also works)")
    t.add_argument("--out", help="run folder (default runs/<data>-<loss>)")
    t.add_argument("--log-every", type=int)
    t.add_argument("--eval-every", type=int)
    t.add_argument("--eval-samples", type=int, default=2000)
    t.add_argument("--checkpoint-every", type=int, help="also checkpoint every N steps")
    t.add_argument("--keep-checkpoints", type=int, default=3, help="keep the newest K checkpoints (default 3)")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    t.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="fp32; bf16 autocast (CPU or CUDA); fp16 autocast + GradScaler (CUDA)")
    t.add_argument("--compile", default="auto", choices=("auto", "on", "off"),
                   help="run each whole iteration under torch.compile (auto: bf16 CPU runs of >= 2000 steps)")
    t.add_argument("--cuda-graphs", default="auto", choices=("auto", "on", "off"),
                   help="capture each whole iteration in a CUDA graph (auto: on CUDA)")
    t.add_argument("--tensorboard", action="store_true", help="write TensorBoard event files to OUT/tb")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--no-plots", action="store_true", help="skip samples.png and learning_curve.png")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command != "train":
        parser.print_help()
        return 2
    from pathlib import Path

    from .trainer import TrainingInterrupted, train

    n_critic = args.n_critic
    if n_critic is not None and n_critic.isdigit():
        n_critic = int(n_critic)
    out = args.out or str(Path("runs") / f"{Path(args.data).name}-{args.loss}")
    try:
        result = train(
            None, None, args.data, loss=args.loss, steps=args.steps, batch_size=args.batch_size,
            n_critic=n_critic, lr=args.lr, lr_g=args.lr_g, lr_decay=args.lr_decay, betas=tuple(args.betas) if args.betas else None,
            clip=args.clip, lam=args.lam, z_dim=args.z_dim, feature_matching=args.feature_matching,
            seed=args.seed, device=args.device, backend=args.backend, out=out,
            log_every=args.log_every, eval_every=args.eval_every, eval_samples=args.eval_samples,
            image_size=args.image_size, checkpoint_every=args.checkpoint_every,
            resume=args.resume, tensorboard=args.tensorboard, progress=not args.no_progress,
            keep_checkpoints=args.keep_checkpoints, precision=args.precision, plots=not args.no_plots,
            compile=_on_off(args.compile), cuda_graphs=_on_off(args.cuda_graphs),
        )
    except TrainingInterrupted as e:  # SIGINT/SIGTERM: the trainer checkpointed and printed how to resume
        return int(e.code)
    except FloatingPointError as e:  # non-finite loss/parameters: names the step and the last good checkpoint
        print(f"fastwgan: error: {e}", file=sys.stderr)
        return 1
    except (ValueError, TypeError) as e:
        print(f"fastwgan: error: {e}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 reports
        print(json.dumps(result.metrics, indent=2))
        pics = "" if args.no_plots else "samples.png, learning_curve.png, "
        print(f"wrote {result.out} ({pics}metrics.jsonl, summary.json, checkpoints/)")
    return 0


def _on_off(v: str) -> bool | str:
    return {"on": True, "off": False}.get(v, v)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
