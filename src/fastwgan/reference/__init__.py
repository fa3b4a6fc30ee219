"""Plain PyTorch references of every fused op: the ground truth the tests compare against."""
