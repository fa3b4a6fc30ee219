"""The textbook baselines under bf16 compute what PyTorch's AMP recipe computes: every forward uses
the weights as they are at that step. (One autocast context around many steps would not: autocast
caches its bf16 copy of each weight until the context exits, so later forwards would use the first
step's weights; the planted version of that fault fails both tests.)"""
import itertools

import torch
import torch.nn.functional as F
from torch import nn

from _textbook import TextbookLoop
from _textbook_mnist import textbook_mnist_step


def record_forwards(layer: nn.Linear) -> list:
    calls = []
    layer.register_forward_hook(lambda m, inp, out: calls.append((inp[0].detach(), out.detach(),
                                                                  m.weight.detach().clone())))
    return calls


def assert_current_weights(calls: list) -> None:
    moved = False
    for x, out, w in calls:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            expected = F.linear(x, w)  # w is a fresh tensor: nothing cached for it
        assert torch.equal(out, expected), "a forward used weights other than the current ones"
        moved |= not torch.equal(w, calls[0][2])
    assert moved, "the weights never changed: the check above could not fail"


def test_toy_loop_bf16_uses_the_current_weights():
    torch.manual_seed(0)
    G, D = nn.Linear(2, 2), nn.Linear(2, 1, bias=False)
    calls = record_forwards(D)
    loop = TextbookLoop(G, D, lambda n: torch.randn(n, 2), batch=8, lr=0.1, n_critic=2, precision="bf16")
    loop.run(2)
    assert len(calls) == 2 * (2 * 3 + 1)  # per critic step real, fake, x_hat; then the generator's
    assert_current_weights(calls)


def test_mnist_step_bf16_uses_the_current_weights():
    torch.manual_seed(0)
    G, D = nn.Linear(3, 4), nn.Linear(4, 1, bias=False)
    calls = record_forwards(D)
    opt_d, opt_g = (torch.optim.Adam(m.parameters(), lr=0.1) for m in (D, G))
    batches = (torch.randn(8, 4) for _ in itertools.count())
    for _ in range(2):
        textbook_mnist_step(G, D, opt_d, opt_g, batches, z_dim=3, n_critic=2, bf16=True)
    assert_current_weights(calls)
