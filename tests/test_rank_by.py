"""rank_by: which units a RIM activates. The paper's rule ("null_attention", the default)
keeps the Ka units with the highest input-attention probability on the real row (the least
on the null row); the community implementation's ("score") the highest raw score of the
real row. Checked against an oracle written from the weights."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from rim_rllib import RIM, RIMCell, Selection, compile_steps, pack
from rim_rllib.actor_critic import MiniGridActorCritic
from rim_rllib.models import SequenceClassifier
from rim_rllib.tune.minigrid import resolve_config as resolve_minigrid
from rim_rllib.tune.mnist import MnistTrainable

SIZES = dict(input_key_size=6, input_query_size=6, input_value_size=12, comm_key_size=5,
             comm_query_size=5, comm_value_size=7, num_comm_heads=3, input_dropout=0.0,
             comm_dropout=0.0)


def oracle_mask(cell: RIMCell, x: torch.Tensor, h: torch.Tensor, rule: str) -> torch.Tensor:
    """The active set from the weights, as the paper and the authors' code state it:
    per-head scaled scores of the real and the null (all-zero) row; "null_attention" keeps
    the k units with the highest softmax probability on the real row, averaged over
    heads, "score" those with the highest head-averaged real score. (B, Kt) bool."""
    heads, dk = cell.num_input_heads, cell.input_key_size
    batch, units = h.shape[:2]
    rows = torch.stack([x, torch.zeros_like(x)], 1)                         # (B, 2, D)
    keys = F.linear(rows, cell.key.weight, cell.key.bias).view(batch, 2, heads, dk)
    queries = torch.stack([h[:, j] @ cell.query.weight[j] + cell.query.bias[j]
                           for j in range(units)], 1).view(batch, units, heads, dk)
    scores = torch.einsum("bjhd,brhd->bjhr", queries, keys) / math.sqrt(dk)  # (B, K, nh, 2)
    if rule == "null_attention":
        ranked = scores.softmax(-1)[..., 0].mean(-1)
    else:
        ranked = scores[..., 0].mean(-1)
    top = ranked.topk(cell.k, dim=1).indices
    return torch.zeros(batch, units, dtype=torch.bool).scatter_(1, top, True)


def big_key_bias(cell: RIMCell) -> RIMCell:
    """The key map's bias large against its weights: where the two rules part."""
    with torch.no_grad():
        cell.key.bias.normal_(0, 3.0)
    return cell


@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize("rule", ["null_attention", "score"])
def test_both_rules_match_the_oracle(rule, heads):
    torch.manual_seed(0)
    cell = big_key_bias(RIMCell(4, 8, 6, 2, num_input_heads=heads, rank_by=rule, **SIZES))
    x, h, c = torch.randn(256, 4), torch.randn(256, 6, 8), torch.randn(256, 6, 8)
    _, mask = cell(x, (h, c), return_mask=True)
    assert torch.equal(mask, oracle_mask(cell, x, h, rule))


def test_the_default_is_the_papers_rule_and_the_rules_differ():
    torch.manual_seed(1)
    cell = big_key_bias(RIMCell(4, 8, 6, 2, **SIZES))
    assert cell.rank_by == "null_attention"
    x, h, c = torch.randn(256, 4), torch.randn(256, 6, 8), torch.randn(256, 6, 8)
    differ = (oracle_mask(cell, x, h, "null_attention")
              != oracle_mask(cell, x, h, "score")).any(1).float().mean()
    assert differ > 0.3  # with a key bias the community's rule is another model


@pytest.mark.parametrize("heads", [1, 2])
def test_the_papers_rule_does_not_see_the_key_bias(heads):
    """The key bias is the null row's key and shifts the real row's key alike: the
    paper's attention (and so its ranking and the whole model) is unchanged by it; the
    community's ranking moves."""
    torch.manual_seed(2)
    x = torch.randn(9, 32, 4)
    outputs = {}
    for rule in ("null_attention", "score"):
        rim = RIM(4, 8, 6, 2, num_input_heads=heads, rank_by=rule, **SIZES).eval()
        moved = copy.deepcopy(rim)
        with torch.no_grad():
            moved.cells[0].key.bias.add_(torch.randn_like(moved.cells[0].key.bias) * 3)
        outputs[rule] = rim(x, return_mask=True), moved(x, return_mask=True)
    (out, _, mask), (out_moved, _, mask_moved) = outputs["null_attention"]
    assert torch.equal(mask, mask_moved)
    torch.testing.assert_close(out, out_moved, rtol=1e-5, atol=1e-6)
    (_, _, mask), (_, _, mask_moved) = outputs["score"]
    assert not torch.equal(mask, mask_moved)


@pytest.mark.parametrize("rule", ["null_attention", "score"])
@pytest.mark.parametrize("knob", [dict(fatigue=1.0), dict(usage_floor=0.1),
                                  dict(cosine_scores=True), dict(score_noise=0.5),
                                  dict(score_dropout=0.2)])
def test_pack_members_equal_standalone_models_under_every_selection_term(rule, knob):
    """Each selection term composes with either rule: a pack's members (per-member Ka)
    compute what the models compute alone. Deterministic terms are compared in training
    too (the usage floor's bias then moves alike); the random ones (score noise, score
    dropout: a pack draws for all members at once) in eval, after a training forward."""
    torch.manual_seed(3)
    models = [big_key_bias_rim(RIM(3, 8, 5, k, rank_by=rule, selection=Selection(**knob),
                                   **SIZES))
              for k in (1, 3)]
    packed = pack(copy.deepcopy(models))
    x = torch.randn(7, 4, 3)
    random = "score_noise" in knob or "score_dropout" in knob
    for mode in ("eval",) if random else ("train", "eval"):
        packed.train(mode == "train")
        out_p, _, mask_p = packed(x, return_mask=True)
        for m, model in enumerate(models):
            out, _, mask = model.train(mode == "train")(x, return_mask=True)
            assert torch.equal(mask_p[m], mask)
            torch.testing.assert_close(out_p[m], out, rtol=1e-5, atol=1e-6)
    if random:  # the term is on in training
        packed.train()
        assert not torch.equal(packed(x, return_mask=True)[2], mask_p)
    assert all(cell.rank_by == rule for cell in packed.cells)
    assert [c.rank_by for c in packed.unpack()[0].cells] == [rule]


def big_key_bias_rim(rim: RIM) -> RIM:
    for cell in rim.cells:
        big_key_bias(cell)
    return rim


def test_models_with_different_rules_do_not_pack():
    with pytest.raises(ValueError, match="differ in rank_by"):
        pack([RIM(3, 8, 5, 2), RIM(3, 8, 5, 2, rank_by="score")])


@pytest.mark.parametrize("rule", ["null_attention", "score"])
def test_the_compiled_step_ranks_as_the_eager_one(rule):
    torch.manual_seed(5)
    eager = big_key_bias_rim(RIM(3, 8, 5, 2, num_input_heads=2, rank_by=rule,
                                 selection=Selection(fatigue=0.5), **SIZES)).eval()
    compiled = compile_steps(copy.deepcopy(eager))
    x = torch.randn(6, 4, 3)
    out_e, _, mask_e = eager(x, return_mask=True)
    out_c, _, mask_c = compiled(x, return_mask=True)
    assert torch.equal(mask_e, mask_c)
    torch.testing.assert_close(out_c, out_e, rtol=1e-5, atol=1e-6)


def test_task_networks_and_trainables_take_rank_by():
    assert SequenceClassifier("rim", 2, 10, 8, 4, k=2, rank_by="score").memory.cells[
        0].rank_by == "score"
    net = MiniGridActorCritic(7, num_units=4, hidden_size=4, k=2, rank_by="score")
    assert net.memory.cells[0].rank_by == "score"
    cfg = MnistTrainable.resolve_config({"rank_by": "score"})
    assert cfg["rank_by"] == "score"
    assert resolve_minigrid({})["rank_by"] == "null_attention"
    assert resolve_minigrid({"rank_by": "score"})["rank_by"] == "score"
    assert resolve_minigrid({"rim": {"rank_by": "score"}})["rank_by"] == "score"


def test_a_bad_rule_is_named():
    with pytest.raises(ValueError, match=r"rank_by must be one of \['null_attention', "
                                         r"'score'\].*got 'null'"):
        RIMCell(3, 8, 5, 2, rank_by="null")
    with pytest.raises(ValueError, match=r"config\['rank_by'\] must be one of .* got 'raw'"):
        MnistTrainable.resolve_config({"rank_by": "raw"})
    with pytest.raises(ValueError, match=r"config\['rank_by'\] must be one of"):
        resolve_minigrid({"rank_by": 1})
    with pytest.raises(ValueError, match="contradicts"):
        resolve_minigrid({"rank_by": "score", "rim": {"rank_by": "null_attention"}})
