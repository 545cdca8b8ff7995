import pytest
import torch
from torch import nn

from rim_rllib import GroupGRUCell, GroupLinear, GroupLSTMCell


def test_group_linear_applies_each_units_own_map():
    layer = GroupLinear(5, 3, num_units=4)
    x = torch.randn(2, 7, 4, 5)
    out = layer(x)
    assert out.shape == (2, 7, 4, 3)
    for unit in range(4):
        expected = x[:, :, unit] @ layer.weight[unit] + layer.bias[unit]
        torch.testing.assert_close(out[:, :, unit], expected)


@pytest.mark.parametrize("group_cls, torch_cls", [(GroupLSTMCell, nn.LSTMCell),
                                                   (GroupGRUCell, nn.GRUCell)])
def test_group_cell_equals_per_unit_torch_cell(group_cls, torch_cls):
    torch.manual_seed(0)
    batch, units, din, hidden = 3, 4, 6, 5
    group = group_cls(din, hidden, units)
    x = torch.randn(batch, units, din)
    h = torch.randn(batch, units, hidden)
    c = torch.randn(batch, units, hidden)
    is_lstm = group_cls is GroupLSTMCell
    out = group(x, (h, c) if is_lstm else h)
    for unit in range(units):
        cell = torch_cls(din, hidden)
        with torch.no_grad():
            cell.weight_ih.copy_(group.ih.weight[unit].t())
            cell.weight_hh.copy_(group.hh.weight[unit].t())
            cell.bias_ih.copy_(group.ih.bias[unit])
            cell.bias_hh.copy_(group.hh.bias[unit])
        if is_lstm:
            h_ref, c_ref = cell(x[:, unit], (h[:, unit], c[:, unit]))
            torch.testing.assert_close(out[0][:, unit], h_ref)
            torch.testing.assert_close(out[1][:, unit], c_ref)
        else:
            torch.testing.assert_close(out[:, unit], cell(x[:, unit], h[:, unit]))


@pytest.mark.parametrize("group_cls", [GroupLSTMCell, GroupGRUCell])
def test_group_cell_initialisation_is_torchs_not_constant(group_cls):
    cell = group_cls(8, 16, 3)
    bound = 16 ** -0.5
    for p in cell.parameters():
        assert p.abs().max() <= bound
        assert p.std() > bound / 4  # not all one value (the reference GRU set all to 1.0)


def test_group_cell_zero_state_by_default():
    cell = GroupLSTMCell(3, 4, 2)
    x = torch.randn(5, 2, 3)
    zeros = torch.zeros(5, 2, 4)
    for a, b in zip(cell(x), cell(x, (zeros, zeros))):
        torch.testing.assert_close(a, b)


def test_group_errors_name_the_argument():
    with pytest.raises(ValueError, match="num_units"):
        GroupLinear(3, 4, 0)
    with pytest.raises(ValueError, match=r"input must have shape \(\*, num_units=2"):
        GroupLinear(3, 4, 2)(torch.randn(5, 3, 3))
    with pytest.raises(TypeError, match="floating-point"):
        GroupLinear(3, 4, 2)(torch.ones(5, 2, 3, dtype=torch.long))
    cell = GroupLSTMCell(3, 4, 2)
    with pytest.raises(ValueError, match=r"hx\[1\] must have shape \(5, 2, 4\)"):
        cell(torch.randn(5, 2, 3), (torch.zeros(5, 2, 4), torch.zeros(5, 2, 3)))
    with pytest.raises(TypeError, match="tuple"):
        cell(torch.randn(5, 2, 3), torch.zeros(5, 2, 4))
