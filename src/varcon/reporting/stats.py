"""Is a difference between two groups of runs more than seed noise? Paired tests over seeds.

Two runs with the same seed share their data order, initialisation and augmentation draws, so
comparing methods seed by seed removes much of the noise both share. For groups ``A`` and
``B`` measured on the seeds ``S`` both have:

    d_s = A_s - B_s                       (s in S, n = |S|)
    mean d = (1/n) sum_s d_s,   sd = sample std of d_s
    t = mean d / (sd / sqrt(n)),          n - 1 degrees of freedom
    95% interval: mean d ± t_{0.975, n-1} · sd / sqrt(n)

The interval excludes 0 exactly when the two-sided p-value is below 0.05. With 2-3 seeds only
a large and consistent difference passes (t_{0.975, 1} = 12.7, t_{0.975, 2} = 4.3).

Single runs (one seed per arm, as ablations often have) cannot estimate their own noise:
:func:`single_seed_contrast` borrows it from the seed-to-seed spread of groups that have
several seeds (:func:`pooled_seed_std`). A contrast that adds or subtracts ``m`` single runs
has std ``sigma · sqrt(m)``; beyond ``NOISE_SDS`` of those it counts.

Only numbers go in and out: :mod:`scipy.stats` gives the t distribution; callers (``varcon
report``, the studies' ``claims.py``) decide the words.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from scipy import stats

__all__ = ["ALPHA", "NOISE_SDS", "Contrast", "PairedDifference", "paired_difference",
           "pooled_seed_std", "single_seed_contrast"]

ALPHA = 0.05  # two-sided 95% intervals; one-sided claims at the same level
NOISE_SDS = 2.0  # single-seed contrasts: beyond this many standard deviations of noise

Direction = Literal["higher", "lower", "within noise", "too few seeds"]


@dataclass(frozen=True)
class PairedDifference:
    """``A - B`` paired over the seeds both groups have (see the module docstring).

    ``p_higher`` / ``p_lower``: one-sided p-values of "A is higher" / "A is lower";
    ``p_two_sided`` = 2 · min of them. ``low``/``high``: the 95% interval of the mean
    difference. With fewer than 2 paired seeds every statistic is NaN and
    :attr:`direction` is ``"too few seeds"``.
    """

    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    mean: float
    std: float
    low: float
    high: float
    p_higher: float
    p_lower: float

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def p_two_sided(self) -> float:
        return min(1.0, 2 * min(self.p_higher, self.p_lower))

    @property
    def direction(self) -> Direction:
        """``"higher"`` / ``"lower"`` when the 95% interval excludes 0, else ``"within
        noise"``; ``"too few seeds"`` below 2 paired seeds."""
        if self.n < 2:
            return "too few seeds"
        if self.p_two_sided >= ALPHA:
            return "within noise"
        return "higher" if self.mean > 0 else "lower"


def paired_difference(a: Mapping[int, float], b: Mapping[int, float],
                      confidence: float = 1 - ALPHA) -> PairedDifference:
    """``a - b`` over the seeds (keys) both have; a one-sample t-test of the differences.

    ``a``, ``b``: value by seed. Where every difference is the same (sd = 0), its sign decides
    the one-sided p-values (0 or 1; 0.5 each for a zero difference) and the interval is that
    single value.
    """
    seeds = tuple(sorted(set(a) & set(b)))
    d = tuple(float(a[s]) - float(b[s]) for s in seeds)
    nan = math.nan
    if len(d) < 2:
        mean = d[0] if d else nan
        return PairedDifference(seeds, d, mean, nan, nan, nan, nan, nan)
    mean, sd = statistics.fmean(d), statistics.stdev(d)
    if sd == 0:
        p_higher = 0.0 if mean > 0 else 1.0 if mean < 0 else 0.5
        return PairedDifference(seeds, d, mean, 0.0, mean, mean, p_higher,
                                1.0 - p_higher if mean != 0 else 0.5)
    se = sd / math.sqrt(len(d))
    t = mean / se
    p_higher = float(stats.t.sf(t, df=len(d) - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=len(d) - 1)) * se
    return PairedDifference(seeds, d, mean, sd, mean - half, mean + half, p_higher,
                            1.0 - p_higher)


def pooled_seed_std(groups: Iterable[Sequence[float]]) -> tuple[float, int] | None:
    """The seed-to-seed std pooled over groups (each: one metric over its seeds), and its
    degrees of freedom: ``sqrt(sum_g sum_s (x_gs - mean_g)^2 / sum_g (n_g - 1))``. Groups with
    one value add nothing; ``None`` when no group has two."""
    ss, df = 0.0, 0
    for values in groups:
        if len(values) >= 2:
            m = statistics.fmean(values)
            ss += sum((x - m) ** 2 for x in values)
            df += len(values) - 1
    return (math.sqrt(ss / df), df) if df else None


@dataclass(frozen=True)
class Contrast:
    """A signed sum of ``runs`` single runs against the noise ``sigma · sqrt(runs)``."""

    value: float
    sigma: float
    df: int
    runs: int

    @property
    def z(self) -> float:
        sd = self.sigma * math.sqrt(self.runs)
        return self.value / sd if sd > 0 else math.copysign(math.inf, self.value)

    @property
    def direction(self) -> Direction:
        """``"higher"`` beyond ``+NOISE_SDS`` standard deviations, ``"lower"`` below
        ``-NOISE_SDS``, else ``"within noise"``."""
        return ("higher" if self.z > NOISE_SDS else "lower" if self.z < -NOISE_SDS
                else "within noise")


def single_seed_contrast(value: float, runs: int, noise: tuple[float, int]) -> Contrast:
    """``value`` (a contrast of ``runs`` single runs) against ``noise = (sigma, df)`` from
    :func:`pooled_seed_std`."""
    sigma, df = noise
    return Contrast(float(value), float(sigma), int(df), int(runs))
