"""Fused kernels: one module per op (Triton for CUDA, C++ in csrc/ for the CPU).

Each op here has a same-named plain-PyTorch twin in ``fastwgan.reference``, a test module
``tests/test_<op>.py`` and a benchmark ``benchmarks/test_<op>.py``. The backend is chosen in
``fastwgan.backend`` only.
"""
