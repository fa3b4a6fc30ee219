"""fastwgan: fast, tested WGAN / WGAN-GP training for PyTorch.

    import fastwgan
    result = fastwgan.train(None, None, "8gaussians", loss="wgan-gp", out="runs/8g")

``train`` (the trainer, :mod:`fastwgan.training`), ``load`` (a run folder: its models, settings and
metrics; ``sample`` / ``evaluate``), ``gradient_penalty`` (the fused penalty) and
``gradient_penalty_functional`` (its ``torch.compile``-able form), ``ClippedRMSprop`` (the fused
WGAN critic optimiser), and the modules ``models``, ``data``, ``metrics``, ``losses``, ``objectives``.
"""
from .penalty import gradient_penalty, gradient_penalty_functional
from .run import LoadedRun, load
from .training import TrainConfig, TrainingInterrupted, TrainResult, train

__version__ = "0.1.0"
__all__ = ["train", "load", "LoadedRun", "TrainConfig", "TrainResult", "TrainingInterrupted", "gradient_penalty", "gradient_penalty_functional",
           "ClippedRMSprop", "__version__"]


def __getattr__(name: str):
    # ClippedRMSprop lives with its kernels; imported on first use so `import fastwgan` stays light.
    if name == "ClippedRMSprop":
        from .optim import ClippedRMSprop

        return ClippedRMSprop
    raise AttributeError(f"module 'fastwgan' has no attribute {name!r}")
