"""The selection experiments (rim_rllib.selection): each setting's effect, the statistics
a forward returns for the load-balancing loss, the deprecated keyword arguments, and
checkpoints written before the settings moved into Selection."""

import dataclasses
from pathlib import Path

import pytest
import torch

from rim_rllib import RIM, RIMCell, Selection, pack, set_dense_fraction_
from rim_rllib.selection import SELECTION_KEYS, load_balance_loss

QUIET = dict(input_dropout=0.0, comm_dropout=0.0)
FIXTURE = Path(__file__).parent / "data" / "rim_before_selection.pt"


def test_a_selection_is_a_frozen_hashable_value_and_off_by_default():
    """Selection() is the paper's selection; equal settings are one value (one compiled
    step), so it can be a static argument; it cannot be changed after construction."""
    assert Selection() == Selection(fatigue=0, score_noise=0.0)
    assert hash(Selection(fatigue=1)) == hash(Selection(fatigue=1.0))
    assert len({Selection(), Selection(), Selection(fatigue=1.0)}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        Selection().fatigue = 1.0
    assert RIM(3, 8, 5, 2).cells[0].selection == Selection()
    assert SELECTION_KEYS == tuple(f.name for f in dataclasses.fields(Selection))


def test_state_dict_keys_do_not_depend_on_the_selection_settings():
    keys = {tuple(RIM(3, 8, 5, 2, selection=selection).state_dict())
            for selection in (Selection(), Selection(usage_floor=0.1),
                              Selection(fatigue=1.0, cosine_scores=True))}
    assert len(keys) == 1 and "cells.0.selection_bias" in next(iter(keys))


def test_the_deprecated_keyword_arguments_warn_and_build_the_same_model():
    torch.manual_seed(0)
    new = RIM(3, 8, 5, 2, selection=Selection(score_noise=0.5, fatigue=1.0), **QUIET)
    with pytest.warns(DeprecationWarning, match=r"RIM\(score_noise=, fatigue=\) is "
                      r"deprecated .* use selection=Selection\(score_noise=\.\.\., "
                      r"fatigue=\.\.\.\)"):
        old = RIM(3, 8, 5, 2, score_noise=0.5, fatigue=1.0, **QUIET)
    assert old.cells[0].selection == new.cells[0].selection
    old.load_state_dict(new.state_dict())
    x = torch.randn(9, 4, 3)
    torch.testing.assert_close(old.eval()(x)[0], new.eval()(x)[0])
    with pytest.warns(DeprecationWarning, match="RIMCell"):
        assert RIMCell(3, 8, 5, 2, cosine_scores=True).selection.cosine_scores
    with pytest.raises(TypeError, match="RIM\\(\\) got an unexpected keyword argument "
                       "'fatigeu'"):
        RIM(3, 8, 5, 2, fatigeu=1.0)
    with pytest.raises(ValueError, match="not both"):
        RIM(3, 8, 5, 2, selection=Selection(), fatigue=1.0)
    with pytest.raises(TypeError, match="selection must be a rim_rllib.Selection or None, "
                       "got dict"):
        RIM(3, 8, 5, 2, selection={"fatigue": 1.0})


def test_checkpoints_written_before_selection_still_load():
    """tests/data/rim_before_selection.pt was written at 351fa26, when the usage floor's
    buffer existed only with a floor and the settings were keyword arguments: both RIMs
    load it and compute what they computed then."""
    saved = torch.load(FIXTURE, weights_only=True)
    x, sizes = saved["input"], saved["sizes"]
    plain = RIM(3, 4, 4, 2, **sizes)
    assert "cells.0.selection_bias" not in saved["plain"]["state_dict"]
    plain.load_state_dict(saved["plain"]["state_dict"])  # strict: no key missing
    torch.testing.assert_close(plain.eval()(x)[0], saved["plain"]["output"])
    old = saved["floor_fatigue"]
    model = RIM(3, 4, 4, 2, selection=Selection(**old["kwargs"]), **sizes)
    model.load_state_dict(old["state_dict"])
    output, (_, _, tiredness) = model.eval()(x)
    torch.testing.assert_close(output, old["output"])
    torch.testing.assert_close(tiredness, old["tiredness"])


def test_the_load_balance_loss_is_one_at_uniform_use_and_kt_when_one_unit_takes_all():
    units, batch = 4, 3
    uniform = load_balance_loss(torch.full((1, batch, units), 2.0),
                                torch.full((1, batch, units), 0.25))
    collapsed_usage = torch.zeros(1, batch, units)
    collapsed_usage[..., 0] = 8.0
    collapsed = load_balance_loss(collapsed_usage, collapsed_usage.clone())
    assert uniform.item() == pytest.approx(1.0) and collapsed.item() == pytest.approx(units)


def test_the_stats_give_the_load_balance_loss_and_change_no_output():
    """return_stats adds the stats and nothing else: the outputs are the same bit for bit,
    the mask is return_mask's, the loss lies in [1, Kt] with gradients into the query and
    key maps, and a pack's members have their standalone losses."""
    torch.manual_seed(0)
    rim = RIM(3, 8, 5, 2, **QUIET)
    x = torch.randn(12, 4, 3)
    out, state = rim(x)
    out_s, state_s, stats = rim(x, return_stats=True)
    assert torch.equal(out, out_s) and torch.equal(state[0], state_s[0])
    assert torch.equal(stats.mask, rim(x, return_mask=True)[2])
    assert stats.usage.shape == stats.shares.shape == (1, 4, 5)
    assert torch.equal(stats.usage.sum(-1), torch.full((1, 4), 12.0 * 2))  # T x Ka
    loss = stats.load_balance_loss()
    assert loss.shape == () and 1.0 <= loss.item() <= 5.0
    loss.backward()
    cell = rim.cells[0]
    assert cell.query.weight.grad.abs().sum() > 0 and cell.key.weight.grad.abs().sum() > 0
    assert not hasattr(rim, "aux_loss") or rim.aux_loss is None  # not kept on the module
    members = [RIM(3, 8, 5, k, **QUIET) for k in (1, 4)]
    packed_loss = pack(members)(x, return_stats=True)[2].load_balance_loss()
    assert packed_loss.shape == (2,)
    for i, member in enumerate(members):
        torch.testing.assert_close(packed_loss[i],
                                   member(x, return_stats=True)[2].load_balance_loss())
    with pytest.raises(ValueError, match="pass return_mask or return_stats, not both"):
        rim(x, return_mask=True, return_stats=True)


def test_the_deprecated_balance_loss_still_fills_aux_loss():
    torch.manual_seed(0)
    with pytest.warns(DeprecationWarning, match="return_stats=True"):
        old = RIM(3, 8, 5, 2, balance_loss=True, **QUIET)
    x = torch.randn(12, 4, 3)
    out = old(x)
    assert len(out) == 2
    torch.testing.assert_close(old.aux_loss, old(x, return_stats=True)[2].load_balance_loss())
    with pytest.raises(ValueError, match="balance_loss must be True or False, got 1"):
        RIM(3, 8, 5, 2, balance_loss=1)


@pytest.mark.parametrize("knob", [dict(score_noise=1.0),
                                  dict(score_noise=1.0, score_noise_type="gumbel"),
                                  dict(score_dropout=0.5)])
def test_selection_cures_vary_the_selection_in_training_only(knob):
    """The same steps select different units from one training forward to the next; in
    eval the RIM is the uncured one, bit for bit."""
    torch.manual_seed(0)
    cured = RIM(3, 8, 5, 2, selection=Selection(**knob), **QUIET)
    plain = RIM(3, 8, 5, 2, **QUIET)
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
    torch.manual_seed(0)
    kwargs = dict(QUIET, rank_by=rule)
    cosine = RIMCell(3, 8, 5, 2, selection=Selection(cosine_scores=True), **kwargs)
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
        Selection(cosine_scores=1)


def test_without_query_bias_a_rim_is_the_one_with_its_query_bias_at_zero():
    """query_bias=False (the reference's query maps) computes what a RIM whose query
    biases are zero computes, packed or alone."""
    torch.manual_seed(0)
    plain = RIM(3, 8, 5, 2, **QUIET)
    members = [RIM(3, 8, 5, k, query_bias=False, **QUIET) for k in (1, 2)]
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
    members keep and unpack their own biases; off, the bias stays zero."""
    # The community's ranking: this fresh RIM is collapsed under it, not under the paper's.
    kwargs = dict(QUIET, rank_by="score")
    floor = Selection(usage_floor=0.1, usage_floor_step=0.1)
    torch.manual_seed(0)
    rim = RIM(2, 8, 4, 1, selection=floor, **kwargs)
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

    other = RIM(2, 8, 4, 2, selection=floor, **kwargs)
    packed = pack([rim, other])
    out, _, mask = packed.eval()(x, return_mask=True)
    for i, (member, back) in enumerate(zip([rim, other], packed.unpack())):
        assert torch.equal(back.cells[0].selection_bias, member.cells[0].selection_bias)
        out_m, _, mask_m = member.eval()(x, return_mask=True)
        assert torch.equal(mask[i], mask_m)
        torch.testing.assert_close(out[i], out_m)
    off = RIM(2, 8, 4, 1, **kwargs)
    for _ in range(3):
        off.train()(x)
    assert torch.equal(off.cells[0].selection_bias, torch.zeros(4))
    with pytest.raises(ValueError, match=r"usage_floor must be a rate in \[0, "
                       r"k/num_units=1/4\) \(every unit can reach it\), got 0.25"):
        RIM(2, 8, 4, 1, selection=Selection(usage_floor=0.25))
    with pytest.raises(ValueError, match="usage_floor_step must be a finite number > 0, got 0"):
        Selection(usage_floor=0.1, usage_floor_step=0)


def test_fatigue_makes_a_small_k_take_turns():
    """With fatigue, a unit that won the last steps yields: at a fatigue far above the
    scores a Ka=1 RIM activates its units in turn (every Kt consecutive steps use each
    once), in training and evaluation, where without it some units never run. The
    tiredness is the state's last entry: a sequence run in pieces is the sequence run
    whole; a pack's members are their standalone models."""
    # The community's ranking: this fresh RIM is collapsed under it, not under the paper's.
    kwargs = dict(QUIET, rank_by="score")
    tiring = Selection(fatigue=1e4, fatigue_decay=0.5)
    torch.manual_seed(0)
    x = torch.randn(1, 5, 2).expand(24, 5, 2).contiguous()  # one input: collapse-prone
    plain = RIM(2, 8, 4, 1, **kwargs)
    assert plain(x, return_mask=True)[2].float().mean((0, 1, 2)).min() == 0  # idle units
    tired = RIM(2, 8, 4, 1, selection=tiring, **kwargs)
    tired.load_state_dict(plain.state_dict())
    for mode in (tired.train, tired.eval):
        mask = mode()(x, return_mask=True)[2][:, :, 0].float()              # (T, B, Kt)
        windows = mask.unfold(0, 4, 1).sum(-1)                       # (T - 3, B, Kt)
        assert torch.equal(windows, torch.ones_like(windows))

    whole, (h, c, t_n), mask = tired(x, return_mask=True)
    state, pieces = None, []
    for piece in x.split(5):
        out, state, m = tired(piece, state, return_mask=True)
        pieces.append(m)
    assert torch.equal(torch.cat(pieces), mask)
    torch.testing.assert_close(state, (h, c, t_n))
    assert t_n.shape == (1, 5, 4) and t_n.sum(-1).max() < 2  # 1 + 0.5 + 0.25 + ...

    other = RIM(2, 8, 4, 2, selection=tiring, **kwargs)
    packed = pack([tired, other])
    out, (_, _, t_p), mask = packed.eval()(x, return_mask=True)
    assert t_p.shape == (2, 1, 5, 4)
    for i, member in enumerate([tired, other]):
        out_m, (_, _, t_m), mask_m = member.eval()(x, return_mask=True)
        assert torch.equal(mask[i], mask_m) and torch.equal(t_p[i], t_m)
        torch.testing.assert_close(out[i], out_m)
    with pytest.raises(ValueError, match="fatigue must be a finite number >= 0, got -1"):
        Selection(fatigue=-1)
    with pytest.raises(ValueError, match=r"fatigue_decay must be a number in \[0, 1\), "
                       r"got 1"):
        Selection(fatigue=1, fatigue_decay=1)
    with pytest.raises(TypeError, match=r"hx must be a tuple \(h_0, c_0, tiredness_0\) for "
                       r"cell='lstm' with fatigue, got a tuple of 2"):
        tired(x, (h, c))
    with pytest.raises(ValueError, match=r"hx\[2\] must have shape \(1, 5, 4\)"):
        tired(x, (h, c, torch.zeros(5, 4)))
    with pytest.raises(TypeError, match="tiredness travels in hx"):
        tired(x, tiredness=torch.zeros(1, 5, 4))


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
    torch.manual_seed(0)
    rim = RIM(3, 8, 5, 2, batch_first=True,
              selection=Selection(usage_floor=0.35, usage_floor_step=0.1), **QUIET)
    x = torch.randn(4, 9, 3)
    padded = torch.cat([x, 5 * torch.randn(4, 6, 3)], dim=1)
    valid = torch.arange(15).expand(4, -1) < 9
    for model, check in ((rim, lambda loss: loss), (pack([rim, rim]), lambda loss: loss[0])):
        start = [cell.selection_bias.clone() for cell in model.cells]
        loss = check(model(x, return_stats=True)[2].load_balance_loss())
        moved = model.cells[0].selection_bias.clone()
        model.cells[0].selection_bias.copy_(start[0])
        stats = model(padded, valid=valid, return_stats=True)[2]
        torch.testing.assert_close(check(stats.load_balance_loss()), loss)
        assert torch.equal(model.cells[0].selection_bias, moved)
        assert not torch.equal(moved, start[0])
        # counting the padding changes the statistics
        stats = model(padded, return_stats=True)[2]
        assert not torch.allclose(check(stats.load_balance_loss()), loss)
    with pytest.raises(ValueError, match=r"valid must be a tensor of shape \(batch, "
                       r"seq_len\)=\(4, 15\) \(1 for a real step, 0 for padding\), "
                       r"got \(15, 4\)"):
        rim(padded, valid=valid.t())


def test_bad_selection_settings_are_named():
    with pytest.raises(ValueError, match="score_noise must be a finite scale >= 0, got -1"):
        Selection(score_noise=-1)
    for name, value in (("score_noise", float("nan")), ("fatigue", float("inf")),
                        ("score_dropout", float("nan"))):
        with pytest.raises(ValueError, match=rf"{name} must be .*, got {value}"):
            Selection(**{name: value})
    with pytest.raises(ValueError, match=r"input_dropout must be .*, got nan"):
        RIM(3, 8, 5, 2, input_dropout=float("nan"))
    with pytest.raises(ValueError, match=r"score_noise_type must be one of \['gaussian', "
                       r"'gumbel'\], got 'normal'"):
        Selection(score_noise_type="normal")
    with pytest.raises(ValueError, match=r"score_dropout must be a probability in \[0, 1\)"):
        Selection(score_dropout=1.0)
