"""varcon.methods.collapse: the collapse warnings, on epoch records taken from the
self-supervised study's runs (benchmarks/self_supervised/results/)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from varcon.methods.collapse import collapse_warnings


def _cfg(k: int, epsilon: float = 0.02, method: str = "varcon_ssl") -> SimpleNamespace:
    return SimpleNamespace(method=method, model=SimpleNamespace(head_dim=128),
                           ssl=SimpleNamespace(num_prototypes=k, dead_after=100),
                           loss=SimpleNamespace(temperature=0.1, epsilon=epsilon))


# varcon_ssl-k300-s0, epoch 2: healthy (kNN 29 and rising), yet every confidence is below 0.05
K300_EPOCH2 = {"epoch": 2, "nll": 6.92, "confidence_mean": 0.008477, "tau2_at_bounds": 1.0,
               "effective_rank": 20.0, "marginal_entropy": 5.6, "dead_prototypes": 0.0}
# varcon_ssl-proto-s0, epoch 3: collapsed, every posterior uniform at 1/K
PROTO_EPOCH3 = {"epoch": 3, "nll": math.log(100), "confidence_mean": 0.01,
                "tau2_at_bounds": 1.0, "effective_rank": 1.3, "marginal_entropy": 4.6,
                "dead_prototypes": 0.0}


def _about_tau2(warnings: list[str]) -> list[str]:
    return [w for w in warnings if w.startswith("tau2")]


def test_many_prototypes_early_in_training_put_tau2_at_its_lower_bound_without_a_warning():
    assert collapse_warnings(_cfg(300), K300_EPOCH2) == []


def test_uniform_posteriors_warn_that_tau2_sits_at_its_lower_bound_and_the_loss_is_stuck():
    warnings = collapse_warnings(_cfg(100), PROTO_EPOCH3)
    assert [w.split(":")[0] for w in warnings] == [
        "embedding collapse", "loss stuck at log K",
        "tau2 at its lower bound (tau1 - eps = 0.08) for 100% of the samples"]
    assert "mean confidence 0.0100, 1/K = 0.0100" in _about_tau2(warnings)[0]


def test_certain_posteriors_warn_that_tau2_sits_at_its_upper_bound():
    record = dict(K300_EPOCH2, confidence_mean=0.97, tau2_at_bounds=0.99, nll=0.05)
    (warning,) = collapse_warnings(_cfg(10), record)
    assert warning.startswith("tau2 at its upper bound (tau1 + eps = 0.12) for 99%")
    assert "ssl.num_prototypes" in warning


@pytest.mark.parametrize("change", [
    {"tau2_at_bounds": 0.94},  # below the threshold
    {"epoch": 1},  # the first epoch is not judged
])
def test_tau2_is_not_judged_below_the_threshold_or_in_the_first_epoch(change):
    assert _about_tau2(collapse_warnings(_cfg(100), dict(PROTO_EPOCH3, **change))) == []


def test_a_fixed_temperature_has_no_bounds_to_sit_at():
    assert _about_tau2(collapse_warnings(_cfg(100, epsilon=0.0), PROTO_EPOCH3)) == []


def test_simclr_is_judged_on_its_effective_rank_only():
    warnings = collapse_warnings(_cfg(100, method="simclr"), PROTO_EPOCH3)
    assert [w.split(":")[0] for w in warnings] == ["embedding collapse"]
