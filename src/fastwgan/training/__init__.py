"""The training side of fastwgan, one job per module:

========================  ==================================================================
``loop``                  ``train()``: the loop, as a short orchestration of the modules below
``config``                every setting in one dataclass; paper defaults < preset < caller
``build``                 device, preset, models, noise size, optimizers, the models' probe
``inputs``                the one order of random draws (batch, z, alpha; z for G)
``eager``                 one iteration with autograd and the optimizers' own step()
``static``                one iteration as a static step: torch.compile / CUDA graphs
``functional_optim``      the optimizers' update rules in functional form (static runner)
``runner``                static when asked for and possible, else eager; the fallback
``precision``             autocast and GradScalers (AMP recipe, also for the penalty)
``history``               per-step metrics on the device; the non-finite check
``evaluate``              sample-quality metrics during and after training
``state``                 what a checkpoint holds; save and resume
``output``                metrics.jsonl, TensorBoard, summary.json, pictures
``signals``               SIGINT / SIGTERM: finish the step, checkpoint, say how to resume
``rng``                   seeding; side computations that do not move the random streams
``result``                ``TrainResult``
========================  ==================================================================

The iteration's objectives themselves are in :mod:`fastwgan.objectives`.
"""
from .config import TrainConfig
from .evaluate import evaluate
from .loop import train
from .result import TrainResult
from .rng import IsolatedRNG
from .signals import TrainingInterrupted

__all__ = ["train", "TrainConfig", "TrainResult", "TrainingInterrupted", "evaluate", "IsolatedRNG"]
