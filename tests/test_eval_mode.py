"""``eval_mode`` / ``modes_kept``: the one place a module's training flag is set for a block and
restored after (sampling, probing, plotting, the on_eval hook)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from fastwgan.eval_mode import eval_mode, modes_kept


def test_eval_mode_uses_running_statistics_and_restores_each_modules_own_flag():
    net, frozen = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)), nn.Linear(2, 2).eval()
    before = net[1].running_mean.clone()
    with eval_mode(net, frozen):
        assert not net.training and not net[1].training and not frozen.training
        net(torch.randn(8, 3))
    assert torch.equal(net[1].running_mean, before)  # eval: BatchNorm's statistics untouched
    assert net.training and net[1].training and not frozen.training  # each as it entered
    net(torch.randn(8, 3))
    assert not torch.equal(net[1].running_mean, before)  # negative control: in training mode it updates


def test_modes_kept_undoes_what_the_block_did_even_when_it_raises():
    g = nn.Linear(2, 2)
    with pytest.raises(RuntimeError), modes_kept(g):
        g.eval()
        raise RuntimeError("a caller's hook failed")
    assert g.training
