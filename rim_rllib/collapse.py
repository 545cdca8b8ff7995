"""Unit-collapse metrics of a RIM's activation masks: does the top-Ka competition still
pick different units for different inputs and steps, or has it settled on a fixed set?

From boolean masks ``(N, T, Kt)`` (N sequences of T steps; the ``Ka`` active units of each
step are True):

- ``unit_rate``: each unit's fraction of active steps, :math:`(K_t,)`; sums to ``Ka``.
- ``usage_entropy``: the entropy of the usage distribution ``unit_rate / Ka``, divided by
  its maximum ``log Kt`` (every unit used equally): 1 for even use, 0 when one unit takes
  every activation (only possible for Ka = 1), ``log Ka / log Kt`` when the same Ka units
  always win.
- ``switch_rate``: the fraction of consecutive step pairs whose active sets differ.
- ``distinct_sets``: how many different active sets occur.
- ``min_unit_rate``, ``max_unit_rate``: the least and most used unit's rate.
"""

import math

import torch
from torch import Tensor

COLLAPSE_METRICS = ("usage_entropy", "switch_rate", "distinct_sets", "min_unit_rate",
                    "max_unit_rate")


def collapse_metrics(masks: Tensor) -> dict[str, Tensor | float]:
    """``unit_rate`` :math:`(K_t,)` and the scalars of :data:`COLLAPSE_METRICS` for boolean
    ``masks`` :math:`(N, T, K_t)`."""
    if masks.dim() != 3 or masks.dtype != torch.bool:
        raise ValueError(f"masks must be a bool tensor (sequences, steps, units), got "
                         f"{masks.dtype} of shape {tuple(masks.shape)}")
    units = masks.shape[-1]
    rate = masks.float().mean((0, 1))
    usage = rate / rate.sum().clamp_min(1e-12)
    entropy = -(usage * usage.clamp_min(1e-12).log()).sum()
    switches = (masks[:, 1:] != masks[:, :-1]).any(-1).float()
    codes = (masks.long() << torch.arange(units, device=masks.device)).sum(-1)
    return {"unit_rate": rate,
            "usage_entropy": float(entropy / math.log(units)) if units > 1 else 1.0,
            "switch_rate": float(switches.mean()) if switches.numel() else 0.0,
            "distinct_sets": float(codes.unique().numel()),
            "min_unit_rate": float(rate.min()), "max_unit_rate": float(rate.max())}
