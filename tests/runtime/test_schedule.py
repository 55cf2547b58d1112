import itertools
import math

import pytest
import torch

from varcon.runtime.schedule import LARS, WarmupCosine, build_optimizer


def test_warmup_then_cosine():
    s = WarmupCosine(1.0, total_steps=100, warmup_steps=10, warmup_from=0.01, min_lr_ratio=0.001)
    cos = lambda t: 0.001 + (1 - 0.001) * (1 + math.cos(math.pi * t / 100)) / 2  # noqa: E731
    assert s(0) == pytest.approx(0.01)
    assert s(5) == pytest.approx(0.01 + (cos(10) - 0.01) * 0.5)
    assert s(10) == pytest.approx(cos(10))
    assert s(50) == pytest.approx(cos(50))
    assert s(100) == pytest.approx(0.001)
    values = [s(t) for t in range(100)]
    assert all(b >= a for a, b in itertools.pairwise(values[:11]))  # rises
    assert all(b <= a for a, b in itertools.pairwise(values[10:]))  # then decays


def test_no_warmup_and_apply():
    s = WarmupCosine(0.5, total_steps=10)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
    assert s.apply(opt, 0) == pytest.approx(0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        WarmupCosine(0.5, total_steps=0)


def test_lars_trust_ratio_step():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # ||w|| = 5
    b = torch.nn.Parameter(torch.tensor([1.0]))
    opt = LARS([{"params": [w]}, {"params": [b], "lars_exclude": True, "weight_decay": 0.0}],
               lr=0.1, momentum=0.0, weight_decay=0.0, eta=0.01)
    w.grad = torch.tensor([0.0, 10.0])  # ||g|| = 10 -> ratio 0.01 * 5 / 10 = 0.005
    b.grad = torch.tensor([2.0])
    opt.step()
    assert torch.allclose(w.detach(), torch.tensor([3.0, 4.0 - 0.1 * 0.005 * 10.0]))
    assert torch.allclose(b.detach(), torch.tensor([1.0 - 0.1 * 2.0]))  # plain SGD


def test_build_optimizer():
    model = torch.nn.Linear(3, 2)
    assert isinstance(build_optimizer(model, "sgd", 0.1, 0.9, 1e-4), torch.optim.SGD)
    assert isinstance(build_optimizer(model, "lars", 0.1, 0.9, 1e-4), LARS)
    with pytest.raises(ValueError, match="sgd"):
        build_optimizer(model, "adam", 0.1, 0.9, 0.0)
