"""Plain PyTorch references of every fused op: the ground truth the tests compare against.

The tests' oracle only: nothing in the package imports it at run time. The ``"reference"``
backend the trainer can run is plain PyTorch too, but lives beside its kernels in
:mod:`fastwgan.ops`, so that a test compares a kernel against code the kernel does not share.
"""
