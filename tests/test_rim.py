import itertools

import pytest
import torch

from rim_rllib import RIM, RIMCell
from rim_rllib.reference import ReferenceRIMCell

SMALL = dict(input_key_size=6, input_query_size=6, input_value_size=12, num_input_heads=2,
             comm_key_size=5, comm_query_size=5, comm_value_size=7, num_comm_heads=3)


def random_state(cell, batch, gen=None):
    shape = (batch, cell.num_units, cell.hidden_size)
    h = torch.randn(shape, generator=gen)
    return (h, torch.randn(shape, generator=gen)) if cell.cell == "lstm" else h


def hidden(state):
    return state[0] if isinstance(state, tuple) else state


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
@pytest.mark.parametrize("k", [2, 4])
def test_cell_matches_literal_reference(cell_type, k):
    torch.manual_seed(0)
    cell = RIMCell(5, 8, 4, k, cell=cell_type, **SMALL).eval()
    ref = ReferenceRIMCell.from_cell(cell).eval()
    state = random_state(cell, 6)
    ref_state = state
    for _ in range(4):
        x = torch.randn(6, 5)
        state, mask = cell(x, state, return_mask=True)
        ref_state, ref_mask = ref(x, ref_state)
        assert torch.equal(mask, ref_mask.bool())
        for a, b in zip(state if cell_type == "lstm" else [state],
                        ref_state if cell_type == "lstm" else [ref_state]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
def test_rim_sequence_equals_stepping_the_cell(cell_type):
    torch.manual_seed(1)
    rim = RIM(3, 8, 5, 3, cell=cell_type, **SMALL).eval()
    x = torch.randn(9, 4, 3)
    out, h_n, mask = rim(x, return_mask=True)
    cell = rim.cells[0]
    state = None
    for t in range(9):
        state, step_mask = cell(x[t], state, return_mask=True)
        torch.testing.assert_close(out[t], hidden(state).flatten(1), rtol=1e-5, atol=1e-6)
        assert torch.equal(mask[t, :, 0], step_mask)
    torch.testing.assert_close(hidden(h_n)[0], hidden(state).flatten(1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
def test_exactly_k_units_active_per_sample(cell_type):
    torch.manual_seed(2)
    rim = RIM(3, 8, 6, 4, cell=cell_type, num_layers=2, bidirectional=True, **SMALL)
    _, _, mask = rim(torch.randn(7, 10, 3), return_mask=True)
    assert mask.shape == (7, 10, 4, 6) and mask.dtype == torch.bool
    assert (mask.sum(-1) == 4).all()
    assert mask.any(0).any(0).all(), "every unit should be active at some point"


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
def test_inactive_units_keep_their_state_bit_for_bit(cell_type):
    torch.manual_seed(3)
    cell = RIMCell(5, 8, 6, 2, cell=cell_type, **SMALL).train()  # dropout on
    state = random_state(cell, 16)
    new, mask = cell(torch.randn(16, 5), state, return_mask=True)
    inactive = ~mask
    assert inactive.any()
    olds = state if cell_type == "lstm" else (state,)
    news = new if cell_type == "lstm" else (new,)
    for old, fresh in zip(olds, news):
        assert torch.equal(fresh[inactive], old[inactive])
        assert not torch.equal(fresh[mask], old[mask])


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
def test_no_gradient_through_inactive_units_new_state(cell_type):
    torch.manual_seed(4)
    cell = RIMCell(5, 8, 4, 2, cell=cell_type, **SMALL)
    new, mask = cell(torch.randn(1, 5), random_state(cell, 1), return_mask=True)
    sum(s.sum() for s in (new if cell_type == "lstm" else (new,))).backward()
    for unit in range(4):
        for weight in (cell.rnn.ih.weight, cell.rnn.hh.weight, cell.query.weight):
            grad_norm = weight.grad[unit].abs().sum()
            if mask[0, unit]:
                assert grad_norm > 0
            else:
                # Its new state still feeds the active units' communication keys and
                # values: without gradient blocking this would be non-zero.
                assert grad_norm == 0


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
@pytest.mark.parametrize("rank_by", ["null_attention", "score"])
def test_all_parameters_get_gradients_over_a_sequence(cell_type, rank_by):
    """Every parameter gets a gradient; under the paper's rule the input key map's bias,
    the null row's key, cancels out of the attention: its gradient is there, and zero."""
    torch.manual_seed(5)
    rim = RIM(3, 8, 4, 2, cell=cell_type, num_layers=2, rank_by=rank_by, **SMALL)
    out, _ = rim(torch.randn(12, 8, 3))
    out.pow(2).sum().backward()
    for name, p in rim.named_parameters():
        assert p.grad is not None, name
        if rank_by == "null_attention" and name.endswith("key.bias") and "comm" not in name:
            assert not p.grad.any(), name
        else:
            assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("cell_type, layers, bidirectional, batch_first",
                         list(itertools.product(["lstm", "gru"], [1, 3], [False, True],
                                                [False, True])))
def test_shapes(cell_type, layers, bidirectional, batch_first):
    T, B, D, K, H = 5, 3, 4, 4, 6
    rim = RIM(D, H, K, 2, cell=cell_type, num_layers=layers, bidirectional=bidirectional,
              batch_first=batch_first, **SMALL)
    dirs = 2 if bidirectional else 1
    x = torch.randn(B, T, D) if batch_first else torch.randn(T, B, D)
    out, state, mask = rim(x, return_mask=True)
    lead = (B, T) if batch_first else (T, B)
    assert out.shape == (*lead, dirs * K * H)
    assert mask.shape == (*lead, layers * dirs, K)
    states = state if cell_type == "lstm" else (state,)
    assert len(states) == (2 if cell_type == "lstm" else 1)
    for s in states:
        assert s.shape == (layers * dirs, B, K * H)
    # The final state given back continues the sequence.
    out2, _ = rim(x, state)
    assert out2.shape == out.shape


def test_batch_first_is_a_transpose():
    torch.manual_seed(6)
    rim = RIM(4, 5, 3, 2, bidirectional=True, **SMALL).eval()
    x = torch.randn(7, 2, 4)
    out, (h, c) = rim(x)
    rim.batch_first = True
    out_bf, (h_bf, c_bf) = rim(x.transpose(0, 1))
    torch.testing.assert_close(out_bf.transpose(0, 1), out)
    torch.testing.assert_close(h_bf, h)
    torch.testing.assert_close(c_bf, c)


def test_zero_initial_state_by_default():
    torch.manual_seed(7)
    rim = RIM(4, 5, 3, 2, num_layers=2, **SMALL).eval()
    x = torch.randn(6, 2, 4)
    zeros = torch.zeros(2, 2, 15)
    out, (h, c) = rim(x)
    out_z, (h_z, c_z) = rim(x, (zeros, zeros))
    assert torch.equal(out, out_z) and torch.equal(h, h_z) and torch.equal(c, c_z)


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
def test_state_carries_across_chunks(cell_type):
    torch.manual_seed(8)
    rim = RIM(4, 5, 4, 2, cell=cell_type, num_layers=2, **SMALL).eval()
    x = torch.randn(10, 3, 4)
    out, state = rim(x)
    first, mid = rim(x[:4])
    second, end = rim(x[4:], mid)
    torch.testing.assert_close(torch.cat([first, second]), out)
    for a, b in zip(end if cell_type == "lstm" else (end,),
                    state if cell_type == "lstm" else (state,)):
        torch.testing.assert_close(a, b)


def test_unbatched_input_equals_batch_of_one():
    torch.manual_seed(9)
    rim = RIM(4, 5, 3, 2, bidirectional=True, **SMALL).eval()
    x = torch.randn(6, 4)
    out, (h, c), mask = rim(x, return_mask=True)
    out_b, (h_b, c_b), mask_b = rim(x.unsqueeze(1), return_mask=True)
    torch.testing.assert_close(out, out_b.squeeze(1))
    torch.testing.assert_close(h, h_b.squeeze(1))
    assert torch.equal(mask, mask_b.squeeze(1))
    assert out.shape == (6, 30) and h.shape == (2, 15) and mask.shape == (6, 2, 3)


def test_eval_is_deterministic_and_training_uses_dropout():
    torch.manual_seed(10)
    rim = RIM(4, 5, 3, 2, input_dropout=0.5, comm_dropout=0.5)
    x = torch.randn(6, 2, 4)
    rim.eval()
    assert torch.equal(rim(x)[0], rim(x)[0])
    rim.train()
    assert not torch.equal(rim(x)[0], rim(x)[0])
    torch.manual_seed(11)
    first = rim(x)[0]
    torch.manual_seed(11)
    assert torch.equal(first, rim(x)[0])


def test_factory_kwargs_set_dtype():
    rim = RIM(4, 5, 3, 2, dtype=torch.float64, **SMALL)
    assert all(p.dtype == torch.float64 for p in rim.parameters())
    out, (h, c) = rim(torch.randn(3, 2, 4, dtype=torch.float64))
    assert out.dtype == h.dtype == torch.float64


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(k=0), ValueError, r"k must be an int with 1 <= k <= num_units=3, got 0"),
    (dict(k=4), ValueError, r"k must be .* got 4"),
    (dict(cell="rnn"), ValueError, r"cell must be one of \['gru', 'lstm'\], got 'rnn'"),
    (dict(hidden_size=0), ValueError, r"hidden_size must be a positive int, got 0"),
    (dict(input_query_size=8), ValueError, r"input_query_size must equal input_key_size=64"),
    (dict(comm_query_size=8), ValueError, r"comm_query_size must equal comm_key_size=32"),
    (dict(input_dropout=1.0), ValueError, r"input_dropout must be a probability in \[0, 1\)"),
    (dict(num_layers=0), ValueError, r"num_layers must be a positive int"),
])
def test_bad_arguments(kwargs, error, match):
    args = dict(input_size=4, hidden_size=5, num_units=3, k=2) | kwargs
    with pytest.raises(error, match=match):
        RIM(**args)


def test_bad_inputs():
    rim = RIM(4, 5, 3, 2)
    with pytest.raises(ValueError, match=r"input_size=4, got \(6, 2, 7\)"):
        rim(torch.randn(6, 2, 7))
    with pytest.raises(TypeError, match="input must be a floating-point tensor"):
        rim(torch.ones(6, 2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="input must be a torch.Tensor"):
        rim([[1.0]])
    with pytest.raises(ValueError, match=r"hx\[0\] must have shape \(1, 2, 15\), got \(1, 2, 5\)"):
        rim(torch.randn(6, 2, 4), (torch.zeros(1, 2, 5), torch.zeros(1, 2, 15)))
    with pytest.raises(TypeError, match=r"tuple \(h_0, c_0\) for cell='lstm'"):
        rim(torch.randn(6, 2, 4), torch.zeros(1, 2, 15))
    with pytest.raises(TypeError, match="dtype"):
        rim(torch.randn(6, 2, 4), (torch.zeros(1, 2, 15, dtype=torch.float64),) * 2)
    with pytest.raises(ValueError, match="seq_len=0"):
        rim(torch.randn(0, 2, 4))
    cell = RIMCell(4, 5, 3, 2, cell="gru")
    with pytest.raises(ValueError, match=r"hx must have shape \(2, 3, 5\)"):
        cell(torch.randn(2, 4), torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"input must have shape \(batch, input_size=4\)"):
        cell(torch.randn(2, 3, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
def test_cuda_matches_cpu(cell_type):
    torch.manual_seed(12)
    rim = RIM(4, 8, 5, 3, cell=cell_type, num_layers=2, bidirectional=True, **SMALL).eval()
    x = torch.randn(9, 6, 4)
    out, state, mask = rim(x, return_mask=True)
    rim_gpu = rim.to("cuda")
    out_g, state_g, mask_g = rim_gpu(x.cuda(), return_mask=True)
    assert torch.equal(mask_g.cpu(), mask)
    torch.testing.assert_close(out_g.cpu(), out, rtol=1e-4, atol=1e-5)
    rim_gpu.train()
    out_g, _ = rim_gpu(x.cuda())
    out_g.sum().backward()
    assert all(p.grad is not None and p.grad.is_cuda for p in rim_gpu.parameters())
