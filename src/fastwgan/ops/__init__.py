"""Fused kernels: one module per op (Triton for CUDA, C++ in csrc/ for the CPU), each beside its
plain-PyTorch form (the ``"reference"`` backend).

Each op here has a same-named textbook twin in ``fastwgan.reference`` (the tests' oracle, which
nothing here imports), a test module ``tests/test_<op>.py`` and a benchmark
``benchmarks/test_<op>.py``. The backend is chosen in ``fastwgan.backend`` only.
"""
