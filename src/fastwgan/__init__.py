"""fastwgan: fast, tested WGAN / WGAN-GP training for PyTorch."""
__version__ = "0.1.0"
