"""A ``torch.autograd.Function`` base whose ``apply`` costs what the C++ call costs.

``Function.apply`` of torch 2.13 binds every call's arguments with ``inspect.signature`` when the
Function has a ``setup_context`` (the form ``torch.func`` transforms need), about 50-70 us a call:
more than a ReLU on a 256 x 256 batch, and a WGAN-GP iteration makes dozens of such calls
(``benchmarks/results/eager_overhead.md``). The binding only fills in default arguments; every
Function here is called with all its arguments, positionally, so outside ``torch.func`` transforms
it is skipped and the rest of torch's ``apply`` (unwrapping tensors left over from a finished
transform, then the C++ entry) runs as torch runs it. Inside a transform torch's own ``apply`` runs
unchanged.
"""
from __future__ import annotations

import torch
from torch._functorch.utils import unwrap_dead_wrappers


class Function(torch.autograd.Function):
    """Subclass instead of ``torch.autograd.Function``; call ``apply`` with every argument."""

    @classmethod
    def apply(cls, *args):
        if torch._C._are_functorch_transforms_active():
            return super().apply(*args)
        return super(torch.autograd.Function, cls).apply(*unwrap_dead_wrappers(args))
