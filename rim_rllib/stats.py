"""Confidence intervals, the one way the project computes them."""

import numpy as np
from scipy import stats


def ci95_halfwidth(std, n):
    """Half-width of the 95% Student-t interval of a mean from its sample ``std``
    (ddof=1) over ``n`` values; NaN where ``n < 2``. Scalars or arrays."""
    n = np.asarray(n, dtype=float)
    t = stats.t.ppf(0.975, np.maximum(n - 1, 1))
    return np.where(n > 1, t * np.asarray(std, dtype=float) / np.sqrt(np.maximum(n, 1)),
                    np.nan)
