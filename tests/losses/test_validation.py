"""Input and option validation: ValueError whose message names the problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import make_batch, supcon_reference, varcon_reference

from varcon.losses import SupConLoss, VarConLoss, supcon_loss, varcon_loss

Z, Y = make_batch([0, 0, 1, 1, 2], dim=4, seed=0, dtype=torch.float32)

# Every entry point: functional and module form of both losses.
ENTRY_POINTS = {
    "varcon_loss": lambda z, y, **kw: varcon_loss(z, y, **kw),
    "supcon_loss": lambda z, y, **kw: supcon_loss(z, y, **kw),
    "VarConLoss": lambda z, y, **kw: VarConLoss(**kw)(z, y),
    "SupConLoss": lambda z, y, **kw: SupConLoss(**kw)(z, y),
}

BAD_INPUTS = {
    "features_1d": (Z[:, 0], Y, {}, r"features must be 2-D"),
    "features_3d": (Z[:, :, None], Y, {}, r"features must be 2-D"),
    "integer_features": (Z.long(), Y, {}, r"floating-point"),
    "labels_2d": (Z, Y[:, None], {}, r"labels must be 1-D"),
    "labels_0d": (Z[:1], Y[0], {}, r"labels must be 1-D"),
    "float_labels": (Z, Y.float(), {}, r"labels must be integer"),
    "bool_labels": (Z, Y > 0, {}, r"labels must be integer"),
    "length_mismatch": (Z, Y[:-1], {}, r"5 rows but labels has 4"),
    "empty_batch": (Z[:0], Y[:0], {}, r"empty"),
    "label_too_large": (Z, Y, {"num_classes": 2}, r"labels must lie in \[0, num_classes\)"),
    "label_negative": (
        Z,
        torch.tensor([0, -1, 1, 1, 0]),
        {"num_classes": 3},
        r"\[0, num_classes\)",
    ),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_inputs(entry, case):
    z, y, kwargs, message = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        ENTRY_POINTS[entry](z, y, **kwargs)


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("temperature", [0.0, -0.1, float("nan"), float("inf")])
def test_bad_temperature(entry, temperature):
    kwargs = {"temperature": temperature}
    if entry.lower().startswith("varcon"):
        kwargs["epsilon"] = 0.0
    with pytest.raises(ValueError, match="temperature"):
        ENTRY_POINTS[entry](Z, Y, **kwargs)


@pytest.mark.parametrize("entry", ["varcon_loss", "VarConLoss"])
@pytest.mark.parametrize(
    ("temperature", "epsilon"), [(0.1, -0.01), (0.1, 0.1), (0.1, 0.2), (1.0, 1.5)]
)
def test_bad_epsilon(entry, temperature, epsilon):
    with pytest.raises(ValueError, match="epsilon"):
        ENTRY_POINTS[entry](Z, Y, temperature=temperature, epsilon=epsilon)


@pytest.mark.parametrize("entry", ["varcon_loss", "VarConLoss"])
def test_epsilon_just_below_temperature_is_accepted(entry):
    out = ENTRY_POINTS[entry](Z.double(), Y, temperature=0.1, epsilon=0.0999)
    ref = varcon_reference(Z, Y, 0.1, 0.0999).loss.mean()
    np.testing.assert_allclose(out.item(), ref, rtol=1e-6)


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("reduction", ["avg", "Mean", "", "batchmean"])
def test_unknown_reduction(entry, reduction):
    with pytest.raises(ValueError, match="reduction"):
        ENTRY_POINTS[entry](Z, Y, reduction=reduction)


@pytest.mark.parametrize("cls", [VarConLoss, SupConLoss])
@pytest.mark.parametrize("scale", ["mean", "Exact", "world", ""])
def test_unknown_gradient_scale(cls, scale):
    with pytest.raises(ValueError, match="gradient_scale"):
        cls(gradient_scale=scale)


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("num_classes", [0, -3, 2.5])
def test_bad_num_classes(entry, num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        ENTRY_POINTS[entry](Z, Y, num_classes=num_classes)


def test_hyperparameters_are_checked_at_construction():
    with pytest.raises(ValueError, match="temperature"):
        VarConLoss(temperature=0.0)
    with pytest.raises(ValueError, match="epsilon"):
        VarConLoss(temperature=0.1, epsilon=0.1)
    with pytest.raises(ValueError, match="reduction"):
        VarConLoss(reduction="avg")
    with pytest.raises(ValueError, match="temperature"):
        SupConLoss(temperature=-1.0)
    with pytest.raises(ValueError, match="reduction"):
        SupConLoss(reduction="avg")


@pytest.mark.parametrize("scale", [0.05, 3.0, 40.0])
def test_non_normalised_features_are_accepted(scale):
    z, y = make_batch([0, 0, 1, 1, 1, 2, 3, 3], dim=6, seed=5, normalise=False)
    z = z * scale
    got_v = varcon_loss(z, y, 0.5, 0.1, reduction="none")
    got_s = supcon_loss(z, y, 0.5, reduction="none")
    assert torch.isfinite(got_v).all() and torch.isfinite(got_s).all()
    np.testing.assert_allclose(
        got_v.numpy(), varcon_reference(z, y, 0.5, 0.1).loss, rtol=1e-6, atol=1e-9
    )
    np.testing.assert_allclose(got_s.numpy(), supcon_reference(z, y, 0.5), rtol=1e-6, atol=1e-9)
    # the module forms accept them too
    assert torch.isfinite(VarConLoss(0.5, 0.1)(z.float(), y))
    assert torch.isfinite(SupConLoss(0.5)(z.float(), y))


def test_valid_edge_inputs_are_accepted():
    # a single row, int32 labels, labels equal to num_classes - 1
    out = varcon_loss(Z[:1], Y[:1].int(), num_classes=1)
    assert out.item() == 0.0
    out = varcon_loss(Z, Y.int(), num_classes=3)
    assert torch.isfinite(out)
    out = supcon_loss(Z, Y.to(torch.int16), num_classes=3)
    assert torch.isfinite(out)
