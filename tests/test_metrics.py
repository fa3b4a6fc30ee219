"""Tests of fastwgan.metrics on hand-computed cases and a derived band for the real-data floor."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fastwgan.data import toy_centers, toy_sample, toy_std
from fastwgan.metrics import mode_stats, real_floor_w1, sliced_wasserstein, wasserstein1

# Inputs are float64 numpy arrays, so W1 is exact up to the network simplex's float64 sums:
# n terms of size <= max cost, each rounded at 2^-53 relative -> 1e-12 is ample for n <= 100.
ATOL64 = 1e-12


def test_w1_identical_shift_and_permutation():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 2))
    assert wasserstein1(x, x) == pytest.approx(0.0, abs=ATOL64)
    assert wasserstein1(x, x[rng.permutation(60)]) == pytest.approx(0.0, abs=ATOL64)
    v = np.array([3.0, 4.0])
    # translating a cloud by v moves every point by |v| and no plan is cheaper (W1 >= |mean diff|)
    assert wasserstein1(x, x + v) == pytest.approx(5.0, abs=ATOL64 * 10)
    # float32 torch input: x + v is rounded in float32, each point off by <= ulp(|x+v| <= 10) = 1e-6
    xt = torch.from_numpy(x).float()
    assert wasserstein1(xt, xt + torch.tensor([3.0, 4.0])) == pytest.approx(5.0, abs=2e-6)


def test_w1_hand_cases():
    # two points vs two points: matching (0,0)->(0,1) and (2,0)->(2,1) costs 1 each; crossing costs sqrt(5)
    assert wasserstein1(np.array([[0.0, 0], [2, 0]]), np.array([[2.0, 1], [0, 1]])) == pytest.approx(1.0, abs=ATOL64)
    # unequal sizes, uniform weights: {0} vs {-1, +1} -> every unit of mass moves 1
    assert wasserstein1(np.array([[0.0]]), np.array([[-1.0], [1.0]])) == pytest.approx(1.0, abs=ATOL64)
    # Euclidean, not squared: {0,0} vs {(0,3),(0,3)} is 3, not 9
    assert wasserstein1(np.zeros((2, 2)), np.array([[0.0, 3], [0, 3]])) == pytest.approx(3.0, abs=ATOL64)
    # images are flattened per sample
    a = np.zeros((3, 1, 2, 2))
    assert wasserstein1(a, a + 0.5) == pytest.approx(1.0, abs=ATOL64)  # |0.5 * ones(4)| = 1


def test_w1_errors():
    with pytest.raises(ValueError, match="NaN"):
        wasserstein1(np.array([[np.nan, 0]]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="same shape"):
        wasserstein1(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="empty"):
        wasserstein1(np.zeros((0, 2)), np.zeros((2, 2)))


def test_mode_stats_hand_placed_incl_boundary():
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    std = 1.0
    pts = [
        [0.0, 0.0],  # mode 0, good
        [3.0, 0.0],  # mode 0, exactly 3 std: boundary counts as good
        [0.0, 3.0 + 1e-9],  # mode 0, just outside
        [10.0, 2.9],  # mode 1, good
        [5.0, 5.0],  # far from everything
    ] + [[10.0, 0.5]] * 5  # mode 1 good x5
    s = mode_stats(np.array(pts), centers, std)
    assert s == {"high_quality": 8 / 10, "modes_covered": 2, "n_modes": 3}
    # min_frac counts against ALL samples: mode 0 has 2 good of 10 = 0.2
    assert mode_stats(np.array(pts), centers, std, min_frac=0.2)["modes_covered"] == 2
    assert mode_stats(np.array(pts), centers, std, min_frac=0.21)["modes_covered"] == 1
    # n_std scales the radius
    assert mode_stats(np.array(pts), centers, std, n_std=0.1)["high_quality"] == pytest.approx(1 / 10)
    with pytest.raises(ValueError, match="coordinates"):
        mode_stats(np.zeros((2, 3)), centers, std)
    with pytest.raises(ValueError, match="std and n_std must be > 0"):
        mode_stats(np.zeros((2, 2)), centers, 0.0)


def test_mode_stats_on_real_toy_data_is_perfect_and_detects_collapse():
    for name in ("8gaussians", "25gaussians"):
        x = toy_sample(name, 5000, torch.Generator().manual_seed(0))
        s = mode_stats(x, toy_centers(name), toy_std(name))
        # a 2-D gaussian's radius exceeds 3 std with probability exp(-9/2) = 1.1 %; with 5000 samples
        # the good fraction is 0.989 +- 0.0015 (binomial sd), so > 0.98 holds with > 5 sd margin
        assert s["modes_covered"] == s["n_modes"] and s["high_quality"] > 0.98
        assert s["high_quality"] < 1.0 - math.exp(-4.5) + 0.01
    x = toy_sample("8gaussians", 4000, torch.Generator().manual_seed(1))
    c = toy_centers("8gaussians")
    keep = torch.cdist(x, c).argmin(1) < 3  # drop 5 of 8 modes
    assert mode_stats(x[keep], c, toy_std("8gaussians"))["modes_covered"] == 3


def test_sliced_wasserstein():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 5))
    assert sliced_wasserstein(x, x) == pytest.approx(0.0, abs=ATOL64)
    # 1-D data: every projection is +-x, so SW1 equals the exact 1-D W1 (shift -> |shift|)
    a = rng.standard_normal((30, 1))
    assert sliced_wasserstein(a, a + 2.5) == pytest.approx(2.5, abs=1e-12)
    # shift by v in d dims: each projection moves by |<v, theta>|; E|<v,theta>| over the unit
    # sphere in 2-D is |v| * 2/pi. With 4096 projections the Monte-Carlo sd is
    # |v| * sqrt(1/2 - 4/pi^2) / 64 = 0.0048 |v|; assert within 5 sd.
    b = rng.standard_normal((50, 2))
    sw = sliced_wasserstein(b, b + np.array([3.0, 4.0]), n_projections=4096)
    assert abs(sw - 5 * 2 / math.pi) < 5 * 5 * math.sqrt(0.5 - 4 / math.pi**2) / 64
    # unequal sizes: {0} vs {-1, +1} is 1 on every projection; and equal to POT's p=1 estimate
    assert sliced_wasserstein(np.zeros((1, 1)), np.array([[-1.0], [1.0]])) == pytest.approx(1.0, abs=ATOL64)
    c, d = rng.standard_normal((37, 3)), rng.standard_normal((53, 3)) + 0.3
    import ot

    theta_rng = np.random.default_rng(7)
    theta = theta_rng.standard_normal((3, 16))
    theta /= np.linalg.norm(theta, axis=0)
    # same directions in POT (it takes projections as (d, n_proj)) -> identical values
    ref = ot.sliced_wasserstein_distance(c, d, n_projections=16, p=1, projections=theta)
    assert sliced_wasserstein(c, d, n_projections=16, seed=7) == pytest.approx(ref, rel=1e-12, abs=ATOL64)
    # deterministic given the seed; images flattened
    imgs = rng.standard_normal((6, 1, 3, 3))
    assert sliced_wasserstein(imgs, imgs + 1, seed=3) == sliced_wasserstein(imgs, imgs + 1, seed=3)
    with pytest.raises(ValueError, match="n_projections"):
        sliced_wasserstein(c, d, n_projections=0)


def test_real_floor_w1_8gaussians_band():
    """The W1 floor between two real 8-gaussian samples of n = 2000 (measured: 0.055 +- 0.017 over
    30 seeds). It is dominated by the unequal mode counts of the two samples: mass must move
    between modes, and the per-mode noise contributes only ~0.004 (measured W1 of two 250-point
    N(0, 0.0141^2 I) samples). Per sample we check rigorous bounds from the realised counts:
      TV = sum_k max(0, n_k - m_k) / n of mass must leave its mode, each unit travelling at least
      the neighbour distance 2*2*sin(pi/8)/1.414 = 1.0826 minus both points' radii: W1 >= TV*(1.0826 - 2 r);
      the plan 'match within modes, move the rest anywhere' costs <= 2 r + TV * 2.8284 (diameter).
    And for the mean over seeds: E[TV] = 8 * E|N(0, 2 n p (1-p))| / (2 n) = 0.0334 (p = 1/8), so the
    mean lies in [0.0334 * 1.0826, 0.0334 * 2.8284 + 0.01] = [0.036, 0.104]; 0.06 is its middle."""
    n = 2000
    c = toy_centers("8gaussians").double()
    vals = []
    for seed in range(4):
        g = torch.Generator().manual_seed(seed)
        a, b = toy_sample("8gaussians", n, g).double(), toy_sample("8gaussians", n, g).double()
        w = wasserstein1(a, b)
        assert w == pytest.approx(real_floor_w1("8gaussians", n, seed), abs=ATOL64)
        da, db = torch.cdist(a, c), torch.cdist(b, c)
        ka, kb = da.argmin(1), db.argmin(1)
        r = max(da.min(1).values.max().item(), db.min(1).values.max().item())
        tv = (torch.bincount(ka, minlength=8) - torch.bincount(kb, minlength=8)).clamp(min=0).sum().item() / n
        nn_dist = 4 * math.sin(math.pi / 8) / 1.414
        assert tv * (nn_dist - 2 * r) <= w <= 2 * r + tv * 2 * 2 / 1.414
        vals.append(w)
    e_tv = 8 * math.sqrt(2 * n * (1 / 8) * (7 / 8)) * math.sqrt(2 / math.pi) / (2 * n)
    assert e_tv * nn_dist <= float(np.mean(vals)) <= e_tv * 2 * 2 / 1.414 + 0.01
