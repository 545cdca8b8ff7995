"""pack(): member i of a pack computes exactly what the standalone model computes."""

import copy

import pytest
import torch
from torch import nn

from rim_rllib import RIM, PackedRIM, Selection, compile_steps, pack
from rim_rllib.init import chrono_init_
from rim_rllib.actor_critic import MiniGridActorCritic
from rim_rllib.models import SequenceClassifier
from rim_rllib.packing import member_grad_norm_clip_

SMALL = dict(input_key_size=6, input_query_size=6, input_value_size=12, num_input_heads=2,
             comm_key_size=5, comm_query_size=5, comm_value_size=7, num_comm_heads=3)
NO_DROPOUT = dict(SMALL, input_dropout=0.0, comm_dropout=0.0)


def rims(ks, **kwargs):
    torch.manual_seed(0)
    return [RIM(3, 8, 5, k, **(NO_DROPOUT | kwargs)) for k in ks]


def states(h_n, cell):
    return list(h_n) if cell == "lstm" else [h_n]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, False), (1, True),
                                                  (2, True)])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_member_equals_the_standalone_model(cell, layers, bidirectional, mode):
    models = rims([1, 3, 5, 3], cell=cell, num_layers=layers, bidirectional=bidirectional)
    packed = pack(models)
    for m in [packed, *models]:
        m.train(mode == "train")
    x = torch.randn(4, 7, 6, 3)
    out, h_n, mask = packed(x, return_mask=True)
    assert out.shape == (4, 7, 6, (2 if bidirectional else 1) * 5 * 8)
    assert mask.shape == (4, 7, 6, layers * (2 if bidirectional else 1), 5)
    # A loss that reaches every output, final state and layer.
    (out.square().sum() + sum(s.sum() for s in states(h_n, cell))).backward()
    member_grads = unpacked_grads(packed)
    for i, model in enumerate(models):
        o, h, m = model(x[i], return_mask=True)
        (o.square().sum() + sum(s.sum() for s in states(h, cell))).backward()
        assert torch.equal(m, mask[i])
        assert (m.sum(-1) == model.k).all()
        torch.testing.assert_close(o, out[i], rtol=1e-5, atol=1e-6)
        for a, b in zip(states(h, cell), states(h_n, cell)):
            torch.testing.assert_close(a, b[i], rtol=1e-5, atol=1e-6)
        for (name, p), (_, g) in zip(model.named_parameters(),
                                     member_grads[i].named_parameters()):
            torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-5,
                                       msg=f"gradient of {name}")


def unpacked_grads(packed):
    """The pack's gradients as standalone models (member i's gradient in model i's
    layout), through unpack()."""
    with torch.no_grad():
        saved = [p.clone() for p in packed.parameters()]
        for p in packed.parameters():
            p.copy_(p.grad)
        models = packed.unpack()
        for p, value in zip(packed.parameters(), saved):
            p.copy_(value)
    return models


def test_shared_input_and_batch_first():
    models = rims([2, 4], batch_first=True)
    packed = pack(models).eval()
    x = torch.randn(6, 9, 3)                                              # (B, T, D) shared
    out, (h_n, c_n), mask = packed(x, return_mask=True)
    assert out.shape == (2, 6, 9, 40) and mask.shape == (2, 6, 9, 1, 5)
    for i, model in enumerate(models):
        o, (h, c), m = model.eval()(x, return_mask=True)
        torch.testing.assert_close(o, out[i], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(c, c_n[i], rtol=1e-5, atol=1e-6)
        assert torch.equal(m, mask[i])


def test_initial_states_are_per_member():
    models = rims([2, 2], cell="gru")
    packed = pack(models).eval()
    x, h0 = torch.randn(5, 3, 3), torch.randn(2, 1, 3, 40)
    out, h_n = packed(x, h0)
    for i, model in enumerate(models):
        o, h = model.eval()(x, h0[i])
        torch.testing.assert_close(o, out[i], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(h, h_n[i], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"hx must have shape \(2, 1, 3, 40\)"):
        packed(x, h0[:1])


def test_a_pack_of_one_equals_the_model_and_unpack_round_trips():
    model = rims([3], cell="lstm", num_layers=2)[0]
    packed = pack([model])
    x = torch.randn(6, 4, 3)
    torch.testing.assert_close(packed(x)[0][0], model(x)[0], rtol=1e-6, atol=1e-7)
    again = pack(packed.unpack())
    for (name, a), (_, b) in zip(again.named_parameters(), packed.named_parameters()):
        assert torch.equal(a, b), name
    for (name, a), (_, b) in zip(packed.unpack()[0].named_parameters(),
                                 model.named_parameters()):
        assert torch.equal(a, b), name
    assert isinstance(packed, PackedRIM) and packed.ks == (3,)


def test_members_do_not_leak_into_each_other():
    models = rims([2, 2, 2])
    packed = pack(models)
    x = torch.randn(3, 5, 2, 3, requires_grad=True)
    out, _ = packed(x)
    out[1].sum().backward()
    assert x.grad[1].abs().sum() > 0
    assert x.grad[0].abs().sum() == 0 and x.grad[2].abs().sum() == 0
    for name, p in packed.named_parameters():
        parts = p.grad.view(3, -1)
        assert parts[0].abs().sum() == 0 and parts[2].abs().sum() == 0, name


@pytest.mark.parametrize("model", ["rim", "lstm"])
@pytest.mark.parametrize("readout", ["last", "every"])
def test_sequence_classifiers_pack(model, readout):
    torch.manual_seed(0)
    kwargs = NO_DROPOUT if model == "rim" else {}
    models = [SequenceClassifier(model, 1, 10, 8, 4, k, readout=readout, **kwargs)
              for k in (1, 2, 4)]
    packed = pack(models)
    x = torch.randn(3, 5, 11, 1)
    logits = packed(x)
    assert logits.shape == ((3, 5, 10) if readout == "last" else (3, 5, 11, 10))
    for i, m in enumerate(models):
        torch.testing.assert_close(logits[i], m(x[i]), rtol=1e-5, atol=1e-6)
    for a, b in zip(packed.unpack(), models):
        for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
            assert torch.equal(p, q), name
    if model == "rim":
        _, mask = packed(x, return_mask=True)
        assert mask.shape == (3, 5, 11, 4)
        assert mask.sum(-1)[1].eq(2).all()


def test_lstm_baselines_pack():
    torch.manual_seed(0)
    lstms = [nn.LSTM(3, 7, batch_first=True) for _ in range(2)]
    packed = pack(lstms)
    x = torch.randn(2, 4, 5, 3)
    out, (h_n, c_n) = packed(x)
    for i, lstm in enumerate(lstms):
        o, (h, c) = lstm(x[i])
        torch.testing.assert_close(o, out[i])
        torch.testing.assert_close(c, c_n[i])
    with pytest.raises(ValueError, match="only single-layer, unidirectional"):
        pack([nn.LSTM(3, 7, num_layers=2)])


def test_member_grad_clipping_equals_clipping_each_model():
    torch.manual_seed(0)
    models = [SequenceClassifier("rim", 1, 10, 8, 4, 2, **NO_DROPOUT) for _ in range(3)]
    packed = pack(models)
    x, y = torch.randn(3, 4, 6, 1), torch.randint(0, 10, (3, 4))
    scale = torch.tensor([1.0, 100.0, 0.01]).view(3, 1, 1)  # one small, one large gradient
    loss = lambda logits, target: nn.functional.cross_entropy(logits, target, reduction="sum")
    sum(loss(packed(x)[i] * scale[i], y[i]) for i in range(3)).backward()
    norms = member_grad_norm_clip_(packed, 3, 0.5)
    member_grads = unpacked_grads(packed)
    for i, model in enumerate(models):
        loss(model(x[i]) * scale[i], y[i]).backward()
        norm = nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        torch.testing.assert_close(norms[i], norm)
        for (name, p), (_, g) in zip(model.named_parameters(),
                                     member_grads[i].named_parameters()):
            torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_bad_packs_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="pack: models is empty"):
        pack([])
    with pytest.raises(TypeError, match="pack: cannot pack Linear"):
        pack([nn.Linear(2, 2)])
    with pytest.raises(TypeError, match=r"models\[1\] is a SequenceClassifier"):
        pack([RIM(3, 8, 5, 2), SequenceClassifier("rim", 3, 10, 8, 5, 2)])
    with pytest.raises(ValueError, match=r"RIMs differ in hidden_size: models\[0\] has 8, "
                       r"models\[1\] has 9"):
        pack([RIM(3, 8, 5, 2), RIM(3, 9, 5, 2)])
    with pytest.raises(ValueError, match="RIM cells differ in comm_value_size"):
        pack([RIM(3, 8, 5, 2), RIM(3, 8, 5, 2, comm_value_size=3)])
    with pytest.raises(ValueError, match="sequence classifiers differ in model"):
        pack([SequenceClassifier("rim"), SequenceClassifier("lstm")])
    with pytest.raises(ValueError, match=r"input must have shape .*members=2"):
        pack([RIM(3, 8, 5, 2), RIM(3, 8, 5, 1)])(torch.randn(3, 4, 5, 3))


def test_chrono_init_sets_lstm_gate_biases():
    torch.manual_seed(0)
    rim, lstm = RIM(1, 8, 4, 2), nn.LSTM(1, 8)
    chrono_init_(rim, 196)
    chrono_init_(lstm, 196)
    cell = rim.cells[0].rnn
    forget = cell.hh.bias[:, 8:16]
    assert forget.min() >= 0 and forget.max() <= torch.log(torch.tensor(195.0))
    assert torch.equal(cell.hh.bias[:, :8], -forget)
    assert (cell.ih.bias[:, :16] == 0).all()
    assert torch.equal(lstm.bias_hh_l0[:8], -lstm.bias_hh_l0[8:16])
    with pytest.raises(ValueError, match="max_steps must be an int >= 3"):
        chrono_init_(lstm, 1)


@pytest.mark.parametrize("memory", ["rim", "lstm"])
def test_minigrid_actor_critics_pack(memory):
    torch.manual_seed(0)
    models = [MiniGridActorCritic(7, memory=memory, k=k) for k in (1, 3)]
    packed = pack(models)
    obs = torch.randint(0, 6, (2, 3, 4, 7, 7, 3)).float()
    state = packed.initial_state(3)
    state = {key: torch.randn_like(s) for key, s in state.items()}
    logits, values, new, mask = packed(obs, state, return_mask=True)
    assert logits.shape == (2, 3, 4, 7) and values.shape == (2, 3, 4)
    for i, model in enumerate(models):
        l, v, n, m = model(obs[i], {key: s[i] for key, s in state.items()}, return_mask=True)
        torch.testing.assert_close(logits[i], l, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(values[i], v, rtol=1e-5, atol=1e-5)
        for key in n:
            torch.testing.assert_close(new[key][i], n[key], rtol=1e-5, atol=1e-5)
        assert (m is None) == (memory == "lstm")
        if m is not None:
            assert torch.equal(mask[i], m)
    for a, b in zip(packed.unpack(), models):
        for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
            assert torch.equal(p, q), name


def count_ops(fn) -> int:
    """Number of aten operations ``fn`` dispatches (what becomes kernels)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.calls += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return Count.calls


def test_a_pack_runs_the_operations_of_one_model():
    """Per time step, a pack of 5 (same or different Ka) runs exactly the forward
    operations of a single model (backward mirrors them); only a few set-up operations
    per sequence differ."""
    models = {"one": pack(rims([2])), "same Ka": pack(rims([2, 2, 2, 2, 2])),
              "mixed Ka": pack(rims([1, 2, 3, 4, 5]))}

    inputs = {steps: torch.randn(steps, 4, 3) for steps in (10, 20)}

    def ops(model, steps):
        model(inputs[steps])  # what is made once and kept (the rank mask) is made here
        return count_ops(lambda: model(inputs[steps]))

    for name in ("same Ka", "mixed Ka"):
        extra = [ops(models[name], steps) - ops(models["one"], steps) for steps in (10, 20)]
        assert extra[0] == extra[1] and extra[0] <= 12, (name, extra)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_compiled_steps_compute_what_eager_steps_compute(cell):
    """compile_steps changes the speed, not the numbers: outputs, masks, final states and
    gradients of a pack with per-member Ka and dropout on, in training."""
    torch.manual_seed(0)
    models = [RIM(3, 8, 5, k, cell=cell, selection=Selection(score_noise=0.3), **SMALL)
              for k in (1, 3, 5)]
    eager = pack(models)
    compiled = compile_steps(copy.deepcopy(eager))
    x = torch.randn(3, 7, 6, 3)
    results = []
    for packed in (eager, compiled):
        torch.manual_seed(1)  # the same dropout draws
        out, h_n, mask = packed(x, return_mask=True)
        (out.square().sum() + sum(s.sum() for s in states(h_n, cell))).backward()
        results.append((out, states(h_n, cell), mask,
                        [p.grad for p in packed.parameters()]))
    (out_e, h_e, mask_e, grads_e), (out_c, h_c, mask_c, grads_c) = results
    assert torch.equal(mask_e, mask_c)
    torch.testing.assert_close(out_c, out_e, rtol=1e-5, atol=1e-6)
    for a, b in zip(h_c, h_e):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads_c, grads_e):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert all(cell.compile_options == {"dynamic": False} for cell in compiled.cells)
    assert all(cell.compile_options is None for cell in eager.cells)
