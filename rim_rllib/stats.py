"""Confidence intervals and the verdict statistics, the one way the project computes them:
Student-t intervals of means, and (through ``rliable``) the probability of improvement and
the interquartile mean with stratified-bootstrap intervals."""

import contextlib

import numpy as np
from rliable import library, metrics
from scipy import stats


def ci95_halfwidth(std, n):
    """Half-width of the 95% Student-t interval of a mean from its sample ``std``
    (ddof=1) over ``n`` values; NaN where ``n < 2``. Scalars or arrays."""
    n = np.asarray(n, dtype=float)
    t = stats.t.ppf(0.975, np.maximum(n - 1, 1))
    return np.where(n > 1, t * np.asarray(std, dtype=float) / np.sqrt(np.maximum(n, 1)),
                    np.nan)


#: Bootstrap replications of the verdict statistics: their interval ends move by about
#: 0.01 between seeds of the bootstrap at this count.
BOOTSTRAP_REPS = 2000


@contextlib.contextmanager
def _numpy_seed(seed: int):
    """rliable's stratified bootstrap draws its indices from NumPy's global generator
    (whatever its ``random_state``): seed it for the call, then put it back."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


def _improvement(x: np.ndarray, y: np.ndarray) -> float:
    """``rliable.metrics.probability_of_improvement`` for one task, :math:`(n, 1)` and
    :math:`(m, 1)` scores: the Mann-Whitney U over ``n m``, here in closed form (rliable's
    calls scipy's test, ~5x slower per bootstrap replication)."""
    greater = x[:, 0, None] > y[None, :, 0]
    ties = x[:, 0, None] == y[None, :, 0]
    return float(np.mean(greater + 0.5 * ties))


def probability_of_improvement(x, y, reps: int = BOOTSTRAP_REPS, seed: int = 0
                               ) -> tuple[float, float, float]:
    """P(X > Y) of two sets of runs (one score per seed each; ties count one half) over all
    pairs of their seeds, with its 95% stratified-bootstrap interval (Agarwal et al.,
    NeurIPS 2021, through ``rliable``): ``(estimate, low, high)``. Needs two runs of each;
    ``seed`` makes the interval reproducible."""
    x, y = (np.asarray(v, dtype=float).reshape(-1, 1) for v in (x, y))
    if min(len(x), len(y)) < 2:
        raise ValueError(f"probability_of_improvement needs at least 2 runs of each, got "
                         f"{len(x)} and {len(y)}")
    with _numpy_seed(seed):
        point, interval = library.get_interval_estimates({"x": (x, y)}, _improvement,
                                                         reps=reps)
    low, high = np.ravel(interval["x"])
    return float(point["x"]), float(low), float(high)


def interquartile_mean(x, reps: int = BOOTSTRAP_REPS, seed: int = 0
                       ) -> tuple[float, float, float]:
    """The interquartile mean (25% trimmed) of runs, one score per seed, with its 95%
    stratified-bootstrap interval (``rliable``): ``(estimate, low, high)``."""
    x = np.asarray(x, dtype=float).reshape(-1, 1)
    if len(x) < 2:
        raise ValueError(f"interquartile_mean needs at least 2 runs, got {len(x)}")
    with _numpy_seed(seed):
        point, interval = library.get_interval_estimates(
            {"x": x}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=reps)
    return float(point["x"][0]), float(interval["x"][0, 0]), float(interval["x"][1, 0])
