"""Fuzzing (hypothesis): whatever the inputs, the losses raise nothing but ValueError, and
when they return, the loss is finite for finite inputs."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from varcon.losses import SupConLoss, VarConLoss, supcon_loss, varcon_loss

SETTINGS = settings(max_examples=120, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64,
          torch.int32, torch.uint8]
SCALES = [0.0, 1e-30, 1e-6, 1.0, 1e3, 1e6, 1e30, 1e300]
HYPER = st.one_of(
    st.sampled_from([0.0, -0.1, -1.0, math.nan, math.inf, -math.inf, 1e-8, 0.07, 0.1, 0.5, 1.0,
                     100.0, 1e308]),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
)


@st.composite
def batches(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, dict[str, object]]:
    n = draw(st.integers(0, 12))
    d = draw(st.integers(1, 6))
    shape: tuple[int, ...] = draw(st.sampled_from([(n, d), (n, 2, d), (n,), (n, d, 1)]))
    dtype = draw(st.sampled_from(DTYPES))
    scale = draw(st.sampled_from(SCALES))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * scale
    pattern = draw(st.sampled_from(["random", "zeros", "constant", "one_hot", "sign"]))
    if pattern == "zeros":
        x = torch.zeros(shape, dtype=torch.float64)
    elif pattern == "constant":
        x = torch.full(shape, scale, dtype=torch.float64)
    elif pattern == "one_hot" and len(shape) == 2 and n:
        x = torch.nn.functional.one_hot(torch.arange(n) % d, d).double() * scale
    elif pattern == "sign":
        x = x.sign() * scale
    if dtype.is_floating_point:
        x = x.to(dtype)
    else:
        x = x.clamp(-100, 100).to(dtype)
    n_labels = draw(st.sampled_from([n, n, n, max(n - 1, 0), n + 1]))
    label_kind = draw(st.sampled_from(["few", "all_same", "all_distinct", "negative", "float",
                                       "big"]))
    if label_kind == "few":
        labels = torch.randint(0, 3, (n_labels,), generator=g)
    elif label_kind == "all_same":
        labels = torch.zeros(n_labels, dtype=torch.long)
    elif label_kind == "all_distinct":
        labels = torch.arange(n_labels)
    elif label_kind == "negative":
        labels = -torch.arange(n_labels)
    elif label_kind == "float":
        labels = torch.zeros(n_labels)
    else:
        labels = torch.full((n_labels,), 10**6, dtype=torch.long)
    options: dict[str, object] = {
        "num_classes": draw(st.sampled_from([None, None, 1, 3, 12, 0, -1])),
        "reduction": draw(st.sampled_from(["mean", "sum", "none", "max"])),
    }
    return x, labels, options


def _finite_result(out: object) -> None:
    loss = out[0] if isinstance(out, tuple) else out
    assert isinstance(loss, torch.Tensor)
    assert torch.isfinite(loss.float()).all(), loss


def _inputs_finite(x: torch.Tensor) -> bool:
    return bool(torch.isfinite(x.double()).all()) if x.numel() else True


@SETTINGS
@given(batch=batches(), temperature=HYPER, epsilon=HYPER, stats=st.booleans())
def test_varcon_loss_fuzz(batch, temperature, epsilon, stats):
    x, labels, options = batch
    try:
        out = varcon_loss(x, labels, temperature, epsilon, return_stats=stats, **options)
    except ValueError:
        return
    if _inputs_finite(x):
        _finite_result(out)


@SETTINGS
@given(batch=batches(), temperature=HYPER)
def test_supcon_loss_fuzz(batch, temperature):
    x, labels, options = batch
    try:
        out = supcon_loss(x, labels, temperature, **options)
    except ValueError:
        return
    if _inputs_finite(x):
        _finite_result(out)


@SETTINGS
@given(batch=batches(), temperature=HYPER, epsilon=HYPER)
def test_loss_modules_fuzz(batch, temperature, epsilon):
    x, labels, options = batch
    for make in (lambda: VarConLoss(temperature, epsilon, **options),
                 lambda: SupConLoss(temperature, **options)):
        try:
            loss_fn = make()
            out = loss_fn(x, labels)
        except ValueError:
            continue
        if _inputs_finite(x):
            _finite_result(out)


@SETTINGS
@given(batch=batches())
def test_normalised_features_give_finite_loss_and_gradient(batch):
    """The training case: L2-normalised float features, valid labels: always a finite loss
    and finite gradients (no ValueError allowed either, except for invalid shapes)."""
    x, labels, _ = batch
    if x.dim() != 2 or not x.is_floating_point() or x.shape[0] == 0 or \
            labels.shape[0] != x.shape[0]:
        return
    z = torch.nn.functional.normalize(x.float().nan_to_num(), dim=1).requires_grad_(True)
    y = torch.randint(0, 3, (x.shape[0],), generator=torch.Generator().manual_seed(0))
    for loss in (varcon_loss(z, y, 0.1, 0.02), supcon_loss(z, y, 0.1)):
        assert torch.isfinite(loss)
        (grad,) = torch.autograd.grad(loss, z, allow_unused=True)
        assert grad is None or torch.isfinite(grad).all()


FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


@st.composite
def valid_batches(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """Well-formed calls with extreme values: any float dtype, norms from 0 to huge."""
    n = draw(st.integers(1, 10))
    d = draw(st.integers(1, 5))
    dtype = draw(st.sampled_from(FLOATS))
    scale = draw(st.sampled_from([0.0, 1e-30, 1e-3, 1.0, 1e3, 1e6, 1e12, 1e20, 1e30]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x = (torch.randn(n, d, generator=g, dtype=torch.float64) * scale)
    if draw(st.booleans()):
        x[draw(st.integers(0, n - 1))] = 0.0  # a zero row
    x = x.to(dtype)
    labels = torch.randint(0, draw(st.integers(1, 4)), (n,), generator=g)
    t = draw(st.floats(1e-3, 10.0))
    e = draw(st.floats(0.0, 0.999)) * t
    return x, labels, t, e


def _representable(x: torch.Tensor, temperature: float) -> bool:
    """The pairwise logits z_i.z_j / t fit float32 (the losses' compute type for halves)."""
    return float(x.double().norm(dim=1).max()) ** 2 / temperature < 1e36


@SETTINGS
@given(batch=valid_batches(), reduction=st.sampled_from(["mean", "sum", "none"]))
def test_wellformed_extreme_inputs_give_finite_losses(batch, reduction):
    x, labels, t, e = batch
    if not torch.isfinite(x.double()).all():
        return  # e.g. float16 cannot hold the drawn values
    _finite_result(varcon_loss(x, labels, t, e, reduction=reduction, return_stats=True))
    if _representable(x, t):
        _finite_result(supcon_loss(x, labels, t, reduction=reduction))


@pytest.mark.xfail(strict=True, reason="known: SupCon overflows to NaN when |z|^2/t exceeds "
                   "float32 (finite but huge, un-normalised features); VarCon stays finite")
def test_supcon_huge_norm_features_known_overflow():
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(0)) * 1e20
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    assert torch.isfinite(varcon_loss(x, labels, 0.1, 0.02))
    assert torch.isfinite(supcon_loss(x, labels, 0.1))
