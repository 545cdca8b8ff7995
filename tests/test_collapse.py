"""Unit-collapse metrics of activation masks."""

import math

import pytest
import torch

from rim_rllib.collapse import collapse_metrics


def masks_from_sets(sets, units=4):
    """One sequence whose step t activates the units in sets[t]."""
    m = torch.zeros(1, len(sets), units, dtype=torch.bool)
    for t, active in enumerate(sets):
        m[0, t, list(active)] = True
    return m


def test_a_collapsed_rim_scores_low():
    metrics = collapse_metrics(masks_from_sets([(0, 1)] * 6))
    assert metrics["unit_rate"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert metrics["usage_entropy"] == pytest.approx(math.log(2) / math.log(4))
    assert metrics["switch_rate"] == 0.0 and metrics["distinct_sets"] == 1.0
    assert (metrics["min_unit_rate"], metrics["max_unit_rate"]) == (0.0, 1.0)


def test_even_use_and_switching_scores_high():
    metrics = collapse_metrics(masks_from_sets([(0, 1), (2, 3), (0, 1), (2, 3)]))
    assert metrics["unit_rate"].tolist() == [0.5] * 4
    assert metrics["usage_entropy"] == pytest.approx(1.0)
    assert metrics["switch_rate"] == 1.0 and metrics["distinct_sets"] == 2.0


def test_switches_count_within_sequences_only():
    masks = torch.cat([masks_from_sets([(0,), (0,), (1,)]), masks_from_sets([(1,)] * 3)])
    metrics = collapse_metrics(masks)                  # 1 switch in 4 consecutive pairs
    assert metrics["switch_rate"] == 0.25 and metrics["distinct_sets"] == 2.0
    assert metrics["unit_rate"].sum().item() == pytest.approx(1.0)  # Ka = 1


def test_bad_masks_are_refused():
    with pytest.raises(ValueError, match=r"masks must be a bool tensor \(sequences, steps, "
                       r"units\), got torch.float32 of shape \(2, 3\)"):
        collapse_metrics(torch.zeros(2, 3))
