"""The obvious RIM step, written straight from the paper: a Python loop over per-unit
``nn.LSTMCell``/``nn.GRUCell`` modules and the attention computed as described.

It exists to check :class:`rim_rllib.RIMCell` against (the tests compare them number for
number) and as the baseline of ``benchmarks/rim_speed.py``. Use ``RIMCell``/``RIM`` for work.
"""

import math

import torch
from torch import Tensor, nn

from rim_rllib.rim import RIMCell


class ReferenceRIMCell(nn.Module):
    """Slow, literal RIM step with the same parameters as a :class:`RIMCell`.

    Build it with :meth:`from_cell` to copy a ``RIMCell``'s weights. ``forward`` takes
    ``x`` :math:`(B, D)` and the state ``h`` or ``(h, c)``, each :math:`(B, K_t, H)`, and
    returns ``(new_state, mask)`` with ``mask`` :math:`(B, K_t)` of 0/1 floats.
    """

    def __init__(self, input_size: int, hidden_size: int, num_units: int, k: int,
                 cell: str = "lstm", input_key_size: int = 64, input_value_size: int = 400,
                 num_input_heads: int = 1, input_dropout: float = 0.1,
                 comm_key_size: int = 32, comm_value_size: int = 100,
                 num_comm_heads: int = 4, comm_dropout: float = 0.1,
                 rank_by: str = "null_attention"):
        super().__init__()
        self.hidden_size, self.num_units, self.k, self.cell = hidden_size, num_units, k, cell
        self.rank_by = rank_by
        self.input_key_size, self.input_value_size = input_key_size, input_value_size
        self.num_input_heads = num_input_heads
        self.comm_key_size, self.comm_value_size = comm_key_size, comm_value_size
        self.num_comm_heads = num_comm_heads
        self.input_dropout = nn.Dropout(input_dropout)
        self.comm_dropout = nn.Dropout(comm_dropout)
        self.key = nn.Linear(input_size, num_input_heads * input_key_size)
        self.value = nn.Linear(input_size, num_input_heads * input_value_size)
        rnn_cell = nn.LSTMCell if cell == "lstm" else nn.GRUCell

        def per_unit(make):
            return nn.ModuleList(make() for _ in range(num_units))

        self.query = per_unit(lambda: nn.Linear(hidden_size, num_input_heads * input_key_size))
        self.rnns = per_unit(lambda: rnn_cell(input_value_size, hidden_size))
        self.comm_query = per_unit(lambda: nn.Linear(hidden_size, num_comm_heads * comm_key_size))
        self.comm_key = per_unit(lambda: nn.Linear(hidden_size, num_comm_heads * comm_key_size))
        self.comm_value = per_unit(
            lambda: nn.Linear(hidden_size, num_comm_heads * comm_value_size))
        self.comm_output = per_unit(
            lambda: nn.Linear(num_comm_heads * comm_value_size, hidden_size))

    @classmethod
    def from_cell(cls, cell: RIMCell) -> "ReferenceRIMCell":
        ref = cls(cell.input_size, cell.hidden_size, cell.num_units, cell.k, cell.cell,
                  cell.input_key_size, cell.input_value_size, cell.num_input_heads,
                  cell.input_dropout, cell.comm_key_size, cell.comm_value_size,
                  cell.num_comm_heads, cell.comm_dropout, cell.rank_by)
        ref.to(device=cell.key.weight.device, dtype=cell.key.weight.dtype)
        with torch.no_grad():
            ref.key.load_state_dict(cell.key.state_dict())
            ref.value.load_state_dict(cell.value.state_dict())
            for unit in range(cell.num_units):
                for linears, group in ((ref.query, cell.query), (ref.comm_query, cell.comm_query),
                                       (ref.comm_key, cell.comm_key),
                                       (ref.comm_value, cell.comm_value),
                                       (ref.comm_output, cell.comm_output)):
                    linears[unit].weight.copy_(group.weight[unit].t())
                    linears[unit].bias.copy_(group.bias[unit])
                rnn = ref.rnns[unit]
                rnn.weight_ih.copy_(cell.rnn.ih.weight[unit].t())
                rnn.weight_hh.copy_(cell.rnn.hh.weight[unit].t())
                rnn.bias_ih.copy_(cell.rnn.ih.bias[unit])
                rnn.bias_hh.copy_(cell.rnn.hh.bias[unit])
        return ref

    def forward(self, x: Tensor, hx):
        is_lstm = self.cell == "lstm"
        h, c = hx if is_lstm else (hx, None)
        batch, units = x.shape[0], self.num_units

        # Input attention over [x, null].
        rows = torch.stack([x, torch.zeros_like(x)], dim=1)                 # (B, 2, D)
        heads, dk, dv = self.num_input_heads, self.input_key_size, self.input_value_size
        keys = self.key(rows).view(batch, 2, heads, dk).transpose(1, 2)     # (B, nh, 2, dk)
        values = self.value(rows).view(batch, 2, heads, dv).mean(2)         # (B, 2, dv)
        queries = torch.stack([self.query[u](h[:, u]) for u in range(units)], 1)
        queries = queries.view(batch, units, heads, dk).transpose(1, 2)     # (B, nh, K, dk)
        scores = queries @ keys.transpose(-1, -2) / math.sqrt(dk)          # (B, nh, K, 2)
        probs = scores.softmax(-1).mean(1)                                  # (B, K, 2)
        # The paper: the units least attentive to the null row; the community code: the
        # highest head-averaged score of the real row.
        ranked = probs[:, :, 0] if self.rank_by == "null_attention" else scores.mean(1)[:, :, 0]
        mask = torch.zeros(batch, units, dtype=x.dtype, device=x.device)
        mask.scatter_(1, ranked.topk(self.k, dim=1).indices, 1.0)
        probs = self.input_dropout(probs)
        inputs = (probs @ values) * mask.unsqueeze(2)                        # (B, K, dv)

        # Independent dynamics, one unit at a time.
        if is_lstm:
            new = [self.rnns[u](inputs[:, u], (h[:, u], c[:, u])) for u in range(units)]
            h_new = torch.stack([n[0] for n in new], 1)
            c_new = torch.stack([n[1] for n in new], 1)
        else:
            h_new = torch.stack([self.rnns[u](inputs[:, u], h[:, u]) for u in range(units)], 1)
        m3 = mask.unsqueeze(2)
        h_new = h_new * m3 + h_new.detach() * (1 - m3)

        # Communication attention among all units, residual, sparse update.
        c_heads, c_dk, c_dv = self.num_comm_heads, self.comm_key_size, self.comm_value_size

        def per_unit(linears, size):
            out = torch.stack([linears[u](h_new[:, u]) for u in range(units)], 1)
            return out.view(batch, units, c_heads, size).transpose(1, 2)   # (B, nh, K, d)

        q, k, v = (per_unit(self.comm_query, c_dk), per_unit(self.comm_key, c_dk),
                   per_unit(self.comm_value, c_dv))
        attn = self.comm_dropout((q @ k.transpose(-1, -2) / math.sqrt(c_dk)).softmax(-1))
        context = (attn @ v).transpose(1, 2).reshape(batch, units, c_heads * c_dv)
        h_comm = torch.stack([self.comm_output[u](context[:, u]) for u in range(units)], 1)
        h_comm = h_comm + h_new
        h_out = m3 * h_comm + (1 - m3) * h
        if is_lstm:
            return (h_out, m3 * c_new + (1 - m3) * c), mask
        return h_out, mask
