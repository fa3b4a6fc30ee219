"""The ``fastwgan`` command line (also ``python -m fastwgan``).

    fastwgan train --data 8gaussians --loss wgan-gp --steps 2000 --out runs/8g
    fastwgan sample --run runs/8g --n 1000 --out samples.npy --seed 0
    fastwgan eval --run runs/8g --n 5000
    fastwgan export --run runs/8g --out G.pt2
    fastwgan info

Every anticipated error ends as one line ``fastwgan: error: <what and the fix>`` on stderr, status
2 for bad input and 1 for a failed run; ``--debug`` shows the traceback instead. A SIGINT/SIGTERM
during training exits with the trainer's status (130 / 143) after its checkpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # torch is imported only by the commands that need it (a fast --help)
    import torch

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

after training:
  fastwgan sample --run runs/8g --n 1000 --out samples.npy --seed 0   # .pt / .npy tensor, or .png
  fastwgan sample --run runs/digits --n 64 --labels 3 --out threes.png
  fastwgan eval --run runs/8g --n 5000                                # metrics again, as JSON
  fastwgan export --run runs/8g --out G.pt2                           # loads without fastwgan
  fastwgan info                                                       # versions, backends, "auto"

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
    t.add_argument("--penalty-every", type=int,
                   help="lazy penalty: on every K-th critic update only, weighted K * lambda (K divides n_critic)")
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
    t.add_argument("--overwrite", action="store_true",
                   help="--out holds another run: move it aside into OUT/previous-run-<time>/ and start a new one")
    t.add_argument("--recipe", choices=("fast", "textbook"),
                   help="fast (default): the preset's measured faster recipe, precision and compile chosen per "
                        "machine; textbook: the papers' recipe, fp32, eager")
    t.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"),
                   help="auto (default with the fast recipe: bf16 on CPUs with bf16 instructions and on CUDA, else "
                        "fp32); fp32; bf16 autocast (CPU or CUDA); fp16 autocast + GradScaler (CUDA)")
    t.add_argument("--compile", choices=("auto", "on", "off"),
                   help="run each whole iteration under torch.compile (auto, the default: bf16 CPU runs long "
                        "enough to pay for the compile; `fastwgan info` says how long)")
    t.add_argument("--cuda-graphs", default="auto", choices=("auto", "on", "off"),
                   help="capture each whole iteration in a CUDA graph (auto: on CUDA)")
    t.add_argument("--tensorboard", action="store_true", help="write TensorBoard event files to OUT/tb")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--no-plots", action="store_true", help="skip samples.png and learning_curve.png")
    _after_training_parsers(sub)
    return p


def _positive(v: str) -> int:
    try:
        n = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{v!r} is not an integer") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer (a number of samples), got {n}")
    return n


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="the run folder (train's --out)")
    p.add_argument("--checkpoint", help="a checkpoint file (default: the newest readable one in RUN/checkpoints)")


def _after_training_parsers(sub) -> None:
    s = sub.add_parser("sample", help="draw samples from a trained run's generator")
    _run_args(s)
    s.add_argument("--n", type=_positive, required=True, help="number of samples")
    s.add_argument("--out", required=True, help="FILE.pt / FILE.npy (a tensor) or FILE.png (a grid / scatter)")
    s.add_argument("--labels", type=int, nargs="+", help="class ids for a conditional run: one for all, or N")
    s.add_argument("--seed", type=int, help="seed of the noise (the same seed gives the same samples)")
    e = sub.add_parser("eval", help="recompute the data set's metrics of a trained run, printed as JSON")
    _run_args(e)
    e.add_argument("--n", type=_positive, default=2000, help="generated and real samples each (default 2000)")
    e.add_argument("--data", help="the data set, when the run does not record it (a built-in name or a folder)")
    e.add_argument("--seed", type=int, default=0)
    x = sub.add_parser("export", help="write the generator as a file that loads without fastwgan")
    _run_args(x)
    x.add_argument("--out", required=True, help="output file, e.g. G.pt2 (torch.export) or G.pt (TorchScript)")
    x.add_argument("--format", default="auto", choices=("auto", "export", "torchscript"),
                   help="auto: torch.export, else TorchScript (script, then trace)")
    sub.add_parser("info", help="versions, usable kernel backends, CPU bf16 support, what 'auto' picks here")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = _parser()
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    commands = {"train": _train, "sample": _sample, "eval": _eval, "export": _export, "info": _info}
    if args.command not in commands:
        parser.print_help()
        return 2
    try:
        return commands[args.command](args)
    except SystemExit:  # TrainingInterrupted (130 / 143) and argparse exits pass through as they are
        raise
    except Exception as e:  # noqa: BLE001 - one readable line; --debug for the traceback
        if debug:
            raise
        print(f"fastwgan: error: {_one_line(e)}", file=sys.stderr)
        return 2 if isinstance(e, BAD_INPUT) else 1


# bad input (status 2): a setting, a file or a missing optional package the user can fix; anything
# else (a non-finite loss, a failed build) is a failed run (status 1)
BAD_INPUT = (ValueError, TypeError, OSError, ImportError)


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split()) or type(e).__name__
    if not isinstance(e, (ValueError, TypeError, OSError, ImportError, RuntimeError)):
        msg = f"{type(e).__name__}: {msg} (an unexpected error: rerun with --debug for the traceback)"
    return msg


def _check_backend(requested: str, device: torch.device) -> None:
    """An explicit --backend that cannot run on ``device`` is bad input, said before any work."""
    if requested == "auto":
        return
    from . import backend

    for op in ("clipped_rmsprop", "gradient_penalty"):
        try:
            backend.resolve(op, device, requested)
        except RuntimeError as e:
            raise ValueError(f"--backend {requested}: {e}") from None


def _train(args) -> int:
    from pathlib import Path

    import fastwgan

    from .hardware import resolve_device

    # --device decided where the trainer decides it (hardware.resolve_device), said before any work
    _check_backend(args.backend, resolve_device(args.device, setting="--device"))
    n_critic = args.n_critic
    if n_critic is not None and n_critic.isdigit():
        n_critic = int(n_critic)
    out = args.out or str(Path("runs") / f"{Path(args.data).name}-{args.loss}")
    try:
        result = fastwgan.train(
            None, None, args.data, loss=args.loss, steps=args.steps, batch_size=args.batch_size,
            n_critic=n_critic, lr=args.lr, lr_g=args.lr_g, lr_decay=args.lr_decay, betas=tuple(args.betas) if args.betas else None,
            clip=args.clip, lam=args.lam, penalty_every=args.penalty_every, z_dim=args.z_dim, feature_matching=args.feature_matching,
            seed=args.seed, device=args.device, backend=args.backend, out=out,
            log_every=args.log_every, eval_every=args.eval_every, eval_samples=args.eval_samples,
            image_size=args.image_size, checkpoint_every=args.checkpoint_every,
            resume=args.resume, overwrite=args.overwrite, tensorboard=args.tensorboard, progress=not args.no_progress,
            keep_checkpoints=args.keep_checkpoints, recipe=args.recipe, precision=args.precision,
            plots=not args.no_plots,
            compile=_on_off(args.compile), cuda_graphs=_on_off(args.cuda_graphs),
        )
    except fastwgan.TrainingInterrupted as e:  # SIGINT/SIGTERM: the trainer checkpointed and printed how to resume
        return int(e.code)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 reports
        print(json.dumps(result.metrics, indent=2))
        pics = "" if args.no_plots else "samples.png, learning_curve.png, "
        print(f"wrote {result.out} ({pics}metrics.jsonl, summary.json, checkpoints/)")
    return 0


def _sample(args) -> int:
    from .run import load, sample_path, write_samples

    sample_path(args.out)  # a bad --out is said before the run is loaded
    run = load(args.run, checkpoint=args.checkpoint)
    shape = write_samples(run, args.n, args.out, labels=args.labels, seed=args.seed,
                          title=f"{args.n} samples, {run.path.name} step {run.step}")
    print(f"wrote {args.out}: {args.n} samples of shape {shape} from {run.checkpoint}")
    return 0


def _eval(args) -> int:
    from .run import load

    run = load(args.run, checkpoint=args.checkpoint)
    metrics = run.evaluate(args.n, data=args.data, seed=args.seed)
    print(json.dumps(dict(metrics, step=run.step, checkpoint=str(run.checkpoint)), indent=2))
    return 0


def _export(args) -> int:
    from .export import export_generator
    from .run import load
    from .run_folder import refuse_checkpoint_folder

    refuse_checkpoint_folder(args.out)  # said before the run is loaded
    run = load(args.run, checkpoint=args.checkpoint)
    report = export_generator(run.generator, run.noise_shape, args.out, n_classes=run.n_classes, route=args.format)
    print(json.dumps(dict(report, step=run.step, z_dim=run.z_dim, z_shape=list(run.noise_shape),
                          n_classes=run.n_classes), indent=2))
    return 0


def _info(args) -> int:
    from .info import info

    print(json.dumps(info(), indent=2))
    return 0


def _on_off(v: str) -> bool | str:
    return {"on": True, "off": False}.get(v, v)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
