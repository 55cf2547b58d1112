"""Projection head."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from varcon.models import ProjectionHead


def test_output_unit_norm_and_shape() -> None:
    torch.manual_seed(0)
    head = ProjectionHead(16, 32, 8)
    out = head(torch.randn(5, 16) * 10)
    assert out.shape == (5, 8)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(5))


def test_structure_and_default_hidden() -> None:
    head = ProjectionHead(24)
    assert [type(m) for m in head.mlp] == [nn.Linear, nn.ReLU, nn.Linear]
    assert (head.mlp[0].in_features, head.mlp[0].out_features) == (24, 24)
    assert (head.mlp[2].in_features, head.mlp[2].out_features) == (24, 128)
    assert (head.in_dim, head.hidden_dim, head.out_dim) == (24, 24, 128)


def test_equals_normalised_mlp() -> None:
    torch.manual_seed(0)
    head = ProjectionHead(6, 5, 4)
    x = torch.randn(3, 6)
    z = head.mlp[2](torch.relu(head.mlp[0](x)))
    torch.testing.assert_close(head(x), z / z.norm(dim=1, keepdim=True))


@pytest.mark.parametrize("dims", [(0, None, 4), (4, 0, 4), (4, None, 0)])
def test_invalid_dims(dims: tuple[int, int | None, int]) -> None:
    with pytest.raises(ValueError):
        ProjectionHead(*dims)
