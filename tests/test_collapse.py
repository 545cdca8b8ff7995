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


def test_dense_to_sparse_training_raises_the_active_units_in_training_only():
    """Each member activates round(k + (Kt - k) * fraction) units per training step and
    its own k in eval; at fraction 0 the RIM is the plain one, bit for bit."""
    from rim_rllib import RIM, pack
    from rim_rllib.rim import set_dense_fraction_
    kwargs = dict(input_dropout=0.0, comm_dropout=0.0)
    torch.manual_seed(0)
    members = [RIM(3, 8, 6, k, **kwargs) for k in (1, 3)]
    packed = pack(members)
    x = torch.randn(10, 4, 3)
    plain_out, _, plain_mask = packed(x, return_mask=True)
    for fraction, counts in ((1.0, (6, 6)), (0.5, (4, 4)), (0.2, (2, 4)), (0.0, (1, 3))):
        set_dense_fraction_(packed, fraction)
        mask = packed(x, return_mask=True)[2]                       # (M, T, B, L, Kt)
        assert [set(m.sum(-1).unique().tolist()) for m in mask] == [{c} for c in counts]
    set_dense_fraction_(packed, 1.0).eval()
    assert [set(m.sum(-1).unique().tolist()) for m in packed(x, return_mask=True)[2]] \
        == [{1}, {3}]
    # An RL agent acts in eval mode: with in_eval its behaviour anneals too.
    set_dense_fraction_(packed, 0.5, in_eval=True)
    assert [set(m.sum(-1).unique().tolist()) for m in packed(x, return_mask=True)[2]] \
        == [{4}, {4}]
    set_dense_fraction_(packed.train(), 0.0)
    out, _, mask = packed(x, return_mask=True)
    assert torch.equal(out, plain_out) and torch.equal(mask, plain_mask)
    with pytest.raises(ValueError, match=r"fraction must be a number in \[0, 1\], got 1.5"):
        set_dense_fraction_(packed, 1.5)
    with pytest.raises(ValueError, match=r"in_eval must be True or False, got 'yes'"):
        set_dense_fraction_(packed, 0.5, in_eval="yes")


def test_k_anneal_trains_dense_to_sparse_and_ends_at_ka(mnist_dir):
    from rim_rllib.tune.mnist import MnistTrainable
    config = dict(data_dir=str(mnist_dir), num_units=4, k=[1, 2], hidden_size=8,
                  train_size=7, eval_sizes=[9], train_subset=64, batch_size=16, epochs=2,
                  k_anneal=0.5, input_key_size=8, input_query_size=8, input_value_size=8,
                  comm_key_size=8, comm_query_size=8, comm_value_size=8)
    trainable = MnistTrainable(config=config)
    fractions = []
    real_step = trainable._train_batch

    def recording(x, y):
        fractions.append(trainable.model.memory.cells[0].dense_fraction)
        return real_step(x, y)

    trainable._train_batch = recording
    trainable.train()
    trainable.train()
    assert fractions == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match=r"config\['k_anneal'\] must be the fraction of "
                       r"training steps in \[0, 1\].*got 2"):
        MnistTrainable.resolve_config(config | {"k_anneal": 2})


def test_the_progress_table_shows_accuracy_and_collapse_first(mnist_dir):
    """Tune's progress table shows a result's first four metrics."""
    from rim_rllib.tune.mnist import MnistTrainable
    config = dict(data_dir=str(mnist_dir), num_units=4, k=2, hidden_size=8, train_size=7,
                  eval_sizes=[9], input_key_size=8, input_query_size=8, input_value_size=8,
                  comm_key_size=8, comm_query_size=8, comm_value_size=8, num_comm_heads=2)
    result = MnistTrainable(config=config).train()
    assert list(result)[:4] == ["accuracy", "switch_rate_7", "usage_entropy_7", "train_loss"]


@pytest.mark.parametrize("zeroed, decides", [("weight", "bias"), ("bias", "state")])
def test_the_score_split_finds_what_ranks_the_units(zeroed, decides):
    """With the query maps' weights at zero the bias part alone is the score, and with
    their biases at zero the state part is: each then predicts every step's active set."""
    from analysis.selection import score_parts, top_set_agreement
    from rim_rllib import pack
    from rim_rllib.models import SequenceClassifier
    torch.manual_seed(0)
    model = pack([SequenceClassifier("rim", 1, 10, 8, 4, k=k, input_dropout=0.0,
                                     comm_dropout=0.0) for k in (1, 2)]).eval()
    with torch.no_grad():
        getattr(model.memory.cells[0].query, zeroed).zero_()
        mask, bias_part, state_part = score_parts(
            model, torch.randint(0, 2, (5, 30, 1)).float())
    part = bias_part if decides == "bias" else state_part
    for member, k in enumerate((1, 2)):
        assert top_set_agreement(mask[member][:, 1:], part[member][:, 1:], k) == 1.0
