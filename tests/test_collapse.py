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


def test_the_load_balance_loss_is_one_at_uniform_use_and_kt_when_one_unit_takes_all():
    from rim_rllib.rim import load_balance_loss
    units, batch = 4, 3
    uniform = load_balance_loss(torch.full((1, units, batch), 2.0),
                                torch.full((1, units, batch), 0.25))
    collapsed_usage = torch.zeros(1, units, batch)
    collapsed_usage[:, 0] = 8.0
    collapsed_shares = torch.zeros(1, units, batch)
    collapsed_shares[:, 0] = 8.0
    collapsed = load_balance_loss(collapsed_usage, collapsed_shares)
    assert uniform.item() == pytest.approx(1.0) and collapsed.item() == pytest.approx(units)


def test_balance_loss_on_changes_no_output_and_trains_the_selection():
    """With balance_loss the RIM's outputs are the same bit for bit; its aux_loss lies in
    [1, Kt] and has gradients into the query and key maps; a pack's members have their
    standalone losses."""
    from rim_rllib import RIM, pack
    kwargs = dict(input_dropout=0.0, comm_dropout=0.0)
    torch.manual_seed(0)
    on = RIM(3, 8, 5, 2, balance_loss=True, **kwargs)
    off = RIM(3, 8, 5, 2, **kwargs)
    off.load_state_dict(on.state_dict())
    x = torch.randn(12, 4, 3)
    assert torch.equal(on(x)[0], off(x)[0]) and off.aux_loss is None
    assert 1.0 <= on.aux_loss.item() <= 5.0
    on.aux_loss.backward()
    cell = on.cells[0]
    assert cell.query.weight.grad.abs().sum() > 0 and cell.key.weight.grad.abs().sum() > 0
    members = [RIM(3, 8, 5, k, balance_loss=True, **kwargs) for k in (1, 4)]
    packed = pack(members)
    packed(x)
    for i, member in enumerate(members):
        member(x)
        torch.testing.assert_close(packed.aux_loss[i], member.aux_loss)
    with pytest.raises(ValueError, match="balance_loss must be True or False, got 1"):
        RIM(3, 8, 5, 2, balance_loss=1)


@pytest.mark.parametrize("knob", [dict(score_noise=1.0),
                                  dict(score_noise=1.0, score_noise_type="gumbel"),
                                  dict(score_dropout=0.5)])
def test_selection_cures_vary_the_selection_in_training_only(knob):
    """The same steps select different units from one training forward to the next; in
    eval the RIM is the uncured one, bit for bit."""
    from rim_rllib import RIM
    kwargs = dict(input_dropout=0.0, comm_dropout=0.0)
    torch.manual_seed(0)
    cured = RIM(3, 8, 5, 2, **kwargs, **knob)
    plain = RIM(3, 8, 5, 2, **kwargs)
    plain.load_state_dict(cured.state_dict())
    x = torch.randn(30, 4, 3)
    first, second = (cured(x, return_mask=True)[2] for _ in range(2))
    assert not torch.equal(first, second)
    assert (first.sum(-1) == 2).all()  # still k units per step
    cured.eval()
    plain.eval()
    out_c, _, mask_c = cured(x, return_mask=True)
    out_p, _, mask_p = plain(x, return_mask=True)
    assert torch.equal(mask_c, mask_p) and torch.equal(out_c, out_p)


@pytest.mark.parametrize("rule", ["null_attention", "score"])
def test_cosine_scores_rank_units_by_the_direction_of_their_query(rule):
    """With cosine_scores a step's active units are the top k of cos(query, key) (minus
    the cosine with the null row's key under the paper's rule), in training and eval,
    whatever the scale of a unit's query map; the dot product ranking moves with that
    scale."""
    from rim_rllib import RIMCell
    torch.manual_seed(0)
    kwargs = dict(input_dropout=0.0, comm_dropout=0.0, rank_by=rule)
    cosine = RIMCell(3, 8, 5, 2, cosine_scores=True, **kwargs)
    dot = RIMCell(3, 8, 5, 2, **kwargs)
    dot.load_state_dict(cosine.state_dict())
    x, h, c = torch.randn(64, 3), torch.randn(64, 5, 8), torch.randn(64, 5, 8)
    queries, key = cosine.query(h), cosine.key(x).unsqueeze(1)            # (B, Kt, d), (B, 1, d)
    ranked = torch.cosine_similarity(queries, key, dim=-1)
    if rule == "null_attention":
        ranked = ranked - torch.cosine_similarity(queries, cosine.key.bias, dim=-1)
    expected = torch.zeros(64, 5, dtype=torch.bool).scatter_(
        1, ranked.topk(2, dim=1).indices, True)
    for mode in (cosine.train, cosine.eval):
        mode()
        assert torch.equal(cosine(x, (h, c), return_mask=True)[1], expected)
    masks = {}
    for name, cell in (("cosine", cosine), ("dot", dot)):
        before = cell(x, (h, c), return_mask=True)[1]
        with torch.no_grad():
            cell.query.weight[0] *= 100
            cell.query.bias[0] *= 100
        masks[name] = before, cell(x, (h, c), return_mask=True)[1]
    assert torch.equal(*masks["cosine"]) and not torch.equal(*masks["dot"])
    with pytest.raises(ValueError, match="cosine_scores must be True or False, got 1"):
        RIMCell(3, 8, 5, 2, cosine_scores=1)


def test_without_query_bias_a_rim_is_the_one_with_its_query_bias_at_zero():
    """query_bias=False (the reference's query maps) computes what a RIM whose query
    biases are zero computes, packed or alone."""
    from rim_rllib import RIM, pack
    kwargs = dict(input_dropout=0.0, comm_dropout=0.0)
    torch.manual_seed(0)
    plain = RIM(3, 8, 5, 2, **kwargs)
    members = [RIM(3, 8, 5, k, query_bias=False, **kwargs) for k in (1, 2)]
    assert all(m.cells[0].query.bias is None for m in members)
    with torch.no_grad():
        plain.cells[0].query.bias.zero_()
    members[1].load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(12, 4, 3)
    out, h_n, mask = members[1](x, return_mask=True)
    out_p, h_p, mask_p = plain(x, return_mask=True)
    assert torch.equal(mask, mask_p)
    torch.testing.assert_close(out, out_p)
    packed = pack(members)
    for i, member in enumerate(members):
        torch.testing.assert_close(packed(x)[0][i], member(x)[0])
    assert [m.cells[0].query.bias for m in packed.unpack()] == [None, None]
    with pytest.raises(ValueError, match="query_bias must be True or False, got 0"):
        RIM(3, 8, 5, 2, query_bias=0)


def test_the_usage_floor_holds_every_unit_in_its_band():
    """usage_floor's selection bias moves after training forwards at Ka only, until no
    unit of a collapsed RIM is active in less than 5% or more than 95% of steps; packed
    members keep and unpack their own biases; off, no buffer is added."""
    from rim_rllib import RIM, pack, set_dense_fraction_
    # The community's ranking: this fresh RIM is collapsed under it, not under the paper's.
    kwargs = dict(input_dropout=0.0, comm_dropout=0.0, rank_by="score")
    torch.manual_seed(0)
    rim = RIM(2, 8, 4, 1, usage_floor=0.1, usage_floor_step=0.1, **kwargs)
    x = torch.randn(1, 16, 2).expand(30, 16, 2).contiguous()  # one input: collapse-prone

    def rates(model):
        return model.eval()(x, return_mask=True)[2].float().mean((0, 1, 2))

    before = rates(rim)
    assert before.min() < 0.05 and before.max() > 0.9
    bias = rim.cells[0].selection_bias
    assert torch.equal(bias, torch.zeros(4))  # eval forwards do not move it
    for _ in range(200):
        rim.train()(x)
    after = rates(rim)
    assert after.min() >= 0.05 and after.max() <= 0.95, after
    assert bias.abs().sum() > 0 and abs(float(bias.sum())) < 1e-5  # centred
    moved = bias.clone()
    rates(rim)
    assert torch.equal(bias, moved)
    set_dense_fraction_(rim.train(), 0.5)(x)  # annealed counts are not Ka's: no move
    assert torch.equal(bias, moved)
    set_dense_fraction_(rim, 0.0)

    other = RIM(2, 8, 4, 2, usage_floor=0.1, usage_floor_step=0.1, **kwargs)
    packed = pack([rim, other])
    out, _, mask = packed.eval()(x, return_mask=True)
    for i, (member, back) in enumerate(zip([rim, other], packed.unpack())):
        assert torch.equal(back.cells[0].selection_bias, member.cells[0].selection_bias)
        out_m, _, mask_m = member.eval()(x, return_mask=True)
        assert torch.equal(mask[i], mask_m)
        torch.testing.assert_close(out[i], out_m)
    assert "cells.0.selection_bias" not in RIM(2, 8, 4, 1).state_dict()
    with pytest.raises(ValueError, match=r"usage_floor must be a rate in \[0, "
                       r"k/num_units=1/4\) \(every unit can reach it\), got 0.25"):
        RIM(2, 8, 4, 1, usage_floor=0.25)
    with pytest.raises(ValueError, match="usage_floor_step must be a finite number > 0, got 0"):
        RIM(2, 8, 4, 1, usage_floor=0.1, usage_floor_step=0)


def test_fatigue_makes_a_small_k_take_turns():
    """With fatigue, a unit that won the last steps yields: at a fatigue far above the
    scores a Ka=1 RIM activates its units in turn (every Kt consecutive steps use each
    once), in training and evaluation, where without it some units never run. Each call
    starts rested unless it is given the tiredness to carry on from; a pack's members
    are their standalone models."""
    from rim_rllib import RIM, pack
    # The community's ranking: this fresh RIM is collapsed under it, not under the paper's.
    kwargs = dict(input_dropout=0.0, comm_dropout=0.0, rank_by="score")
    torch.manual_seed(0)
    x = torch.randn(1, 5, 2).expand(24, 5, 2).contiguous()  # one input: collapse-prone
    plain = RIM(2, 8, 4, 1, **kwargs)
    assert plain(x, return_mask=True)[2].float().mean((0, 1, 2)).min() == 0  # idle units
    tired = RIM(2, 8, 4, 1, fatigue=1e4, fatigue_decay=0.5, **kwargs)
    tired.load_state_dict(plain.state_dict())
    for mode in (tired.train, tired.eval):
        mask = mode()(x, return_mask=True)[2][:, :, 0].float()              # (T, B, Kt)
        windows = mask.unfold(0, 4, 1).sum(-1)                       # (T - 3, B, Kt)
        assert torch.equal(windows, torch.ones_like(windows))
    assert torch.equal(tired(x[:4], return_mask=True)[2], tired(x[4:8], return_mask=True)[2])

    whole, (h, c), mask, t_n = tired(x, return_mask=True, tiredness=torch.zeros(1, 5, 4))
    state, t, pieces = None, torch.zeros(1, 5, 4), []
    for piece in x.split(5):
        out, state, m, t = tired(piece, state, return_mask=True, tiredness=t)
        pieces.append(m)
    assert torch.equal(torch.cat(pieces), mask) and torch.equal(t, t_n)
    torch.testing.assert_close(state, (h, c))
    assert t_n.shape == (1, 5, 4) and t_n.sum(-1).max() < 2  # 1 + 0.5 + 0.25 + ...

    other = RIM(2, 8, 4, 2, fatigue=1e4, fatigue_decay=0.5, **kwargs)
    packed = pack([tired, other])
    out, _, mask, t_n = packed.eval()(x, return_mask=True, tiredness=torch.zeros(2, 1, 5, 4))
    for i, member in enumerate([tired, other]):
        out_m, _, mask_m, t_m = member.eval()(x, return_mask=True,
                                              tiredness=torch.zeros(1, 5, 4))
        assert torch.equal(mask[i], mask_m) and torch.equal(t_n[i], t_m)
        torch.testing.assert_close(out[i], out_m)
    with pytest.raises(ValueError, match="fatigue must be a finite number >= 0, got -1"):
        RIM(2, 8, 4, 1, fatigue=-1)
    with pytest.raises(ValueError, match=r"fatigue_decay must be a number in \[0, 1\), "
                       r"got 1"):
        RIM(2, 8, 4, 1, fatigue=1, fatigue_decay=1)
    with pytest.raises(ValueError, match=r"tiredness must have shape \(1, 5, 4\)"):
        tired(x, tiredness=torch.zeros(5, 4))
    with pytest.raises(ValueError, match="tiredness is the state of fatigue: for RIMs with "
                       "fatigue > 0, this one has fatigue=0"):
        plain(x, tiredness=torch.zeros(1, 5, 4))


def test_an_agent_with_fatigue_carries_the_tiredness_step_by_step():
    """The MiniGrid actor-critic keeps a RIM's tiredness in its state: acting one step
    per forward gives the whole episode's forward, and the tiredness moves the units."""
    from rim_rllib.actor_critic import MiniGridActorCritic
    torch.manual_seed(0)
    net = MiniGridActorCritic(7, k=1, fatigue=1e4).eval()
    assert net.state_keys == ("h", "c", "tired")
    assert net.initial_state(3)["tired"].shape == (3, 4)
    obs = torch.randint(0, 6, (3, 10, 7, 7, 3))
    logits, values, state, mask = net(obs, net.initial_state(3), return_mask=True)
    step_state, step_masks = net.initial_state(3), []
    for t in range(10):
        step_logits, _, step_state, m = net(obs[:, t:t + 1], step_state, return_mask=True)
        torch.testing.assert_close(step_logits[:, 0], logits[:, t])
        step_masks.append(m)
    assert torch.equal(torch.cat(step_masks, 1), mask)
    torch.testing.assert_close(step_state, state)
    assert mask[:, :-1].ne(mask[:, 1:]).any(-1).all()  # Ka=1, fatigue 1e4: switch each step


def test_usage_statistics_count_only_the_valid_steps():
    """With valid marking padding, the load-balancing loss and the usage floor's move are
    those of the unpadded sequences (padding comes after them, so outputs agree there)."""
    from rim_rllib import RIM, pack
    kwargs = dict(input_dropout=0.0, comm_dropout=0.0, balance_loss=True, usage_floor=0.35,
                  usage_floor_step=0.1, batch_first=True)
    torch.manual_seed(0)
    rim = RIM(3, 8, 5, 2, **kwargs)
    x = torch.randn(4, 9, 3)
    padded = torch.cat([x, 5 * torch.randn(4, 6, 3)], dim=1)
    valid = torch.arange(15).expand(4, -1) < 9
    for model, check in ((rim, lambda loss: loss), (pack([rim, rim]), lambda loss: loss[0])):
        start = [cell.selection_bias.clone() for cell in model.cells]
        model(x)
        loss, moved = check(model.aux_loss), model.cells[0].selection_bias.clone()
        model.cells[0].selection_bias.copy_(start[0])
        model(padded, valid=valid)
        torch.testing.assert_close(check(model.aux_loss), loss)
        assert torch.equal(model.cells[0].selection_bias, moved)
        assert not torch.equal(moved, start[0])
        model(padded)  # counting the padding changes the statistics
        assert not torch.allclose(check(model.aux_loss), loss)
    with pytest.raises(ValueError, match=r"valid must be a tensor of shape \(batch, "
                       r"seq_len\)=\(4, 15\) \(1 for a real step, 0 for padding\), "
                       r"got \(15, 4\)"):
        rim(padded, valid=valid.t())


def test_bad_selection_cures_are_named():
    from rim_rllib import RIM
    with pytest.raises(ValueError, match="score_noise must be a finite scale >= 0, got -1"):
        RIM(3, 8, 5, 2, score_noise=-1)
    for name, value in (("score_noise", float("nan")), ("fatigue", float("inf")),
                        ("score_dropout", float("nan")), ("input_dropout", float("nan"))):
        with pytest.raises(ValueError, match=rf"{name} must be .*, got {value}"):
            RIM(3, 8, 5, 2, **{name: value})
    with pytest.raises(ValueError, match=r"score_noise_type must be one of \['gaussian', "
                       r"'gumbel'\], got 'normal'"):
        RIM(3, 8, 5, 2, score_noise_type="normal")
    with pytest.raises(ValueError, match=r"score_dropout must be a probability in \[0, 1\)"):
        RIM(3, 8, 5, 2, score_dropout=1.0)


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
