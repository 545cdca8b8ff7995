"""Recurrent Independent Mechanisms (Goyal et al., 2019, arXiv:1909.10893).

``RIMCell`` is one step of ``Kt`` recurrent units of which the ``Ka`` that attend most to
the input update; ``RIM`` runs it over sequences with the interface of ``nn.LSTM``.

Performance: all work that does not depend on the recurrent state leaves the time loop.
Keys of every step come from one matmul; because a unit's input is
``mask * (p_real * v(x_t) + p_null * v(0))`` and both the value map and the unit's
input-to-hidden map are linear, ``W_k v(x_t)`` for all steps and units is one matmul too.
Inside the loop the per-unit query map is fused with the hidden-to-hidden map, and the
communication query/key/value maps with each other, so a step runs a handful of kernels.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rim_rllib.group import (
    GroupGRUCell,
    GroupLinear,
    GroupLSTMCell,
    check_float_tensor,
    check_positive_int,
    check_shape,
    gru_update,
    lstm_update,
)

CELLS = {"lstm": GroupLSTMCell, "gru": GroupGRUCell}


def _check_cell(cell) -> None:
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")


def _check_dropout(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")


class RIMCell(nn.Module):
    r"""One step of a Recurrent Independent Mechanisms layer.

    At each step the input ``x`` and a null (all-zero) input are read through an input
    attention in which every unit queries with its own previous state; the ``k`` units
    scoring highest on the real input are active. Every unit runs its own LSTM or GRU on
    what it read (inactive units read zeros); active units then read all units' new states
    through a multi-head communication attention with a residual connection and take the
    result; inactive units keep their previous state exactly and pass no gradient back
    through their new state.

    Args:
        input_size: features of the input, :math:`D`.
        hidden_size: hidden size of each unit, :math:`H`.
        num_units: number of units, :math:`K_t`.
        k: number of active units per step, :math:`K_a`, ``1 <= k <= num_units``.
        cell: ``"lstm"`` or ``"gru"``.
        input_key_size, input_query_size: size of input-attention keys and queries (equal).
        input_value_size: size of the value each unit reads.
        num_input_heads: input-attention heads; scores are averaged over heads, and so are
            values.
        input_dropout: dropout on the input-attention probabilities.
        comm_key_size, comm_query_size: size of communication keys and queries (equal).
        comm_value_size: size of each communication head's value (any size).
        num_comm_heads: communication-attention heads.
        comm_dropout: dropout on the communication-attention probabilities.

    Inputs: input, hx
        - input: :math:`(B, D)`.
        - hx: for ``"lstm"`` a tuple ``(h, c)``, for ``"gru"`` a tensor ``h``; each
          :math:`(B, K_t, H)`. Zeros when omitted.

    Outputs: hx' (same structure and shapes as ``hx``), and with ``return_mask=True``
    also the activation mask, a bool tensor :math:`(B, K_t)`.
    """

    def __init__(self, input_size: int, hidden_size: int, num_units: int, k: int,
                 cell: str = "lstm", input_key_size: int = 64, input_value_size: int = 400,
                 input_query_size: int = 64, num_input_heads: int = 1,
                 input_dropout: float = 0.1, comm_key_size: int = 32,
                 comm_value_size: int = 100, comm_query_size: int = 32,
                 num_comm_heads: int = 4, comm_dropout: float = 0.1,
                 device=None, dtype=None):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_units", num_units), ("input_key_size", input_key_size),
                            ("input_value_size", input_value_size),
                            ("input_query_size", input_query_size),
                            ("num_input_heads", num_input_heads),
                            ("comm_key_size", comm_key_size),
                            ("comm_value_size", comm_value_size),
                            ("comm_query_size", comm_query_size),
                            ("num_comm_heads", num_comm_heads)):
            check_positive_int(name, value)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_units:
            raise ValueError(f"k must be an int with 1 <= k <= num_units={num_units}, got {k!r}")
        _check_cell(cell)
        if input_query_size != input_key_size:
            raise ValueError(f"input_query_size must equal input_key_size={input_key_size} "
                             f"(queries and keys are dotted), got {input_query_size}")
        if comm_query_size != comm_key_size:
            raise ValueError(f"comm_query_size must equal comm_key_size={comm_key_size} "
                             f"(queries and keys are dotted), got {comm_query_size}")
        _check_dropout("input_dropout", input_dropout)
        _check_dropout("comm_dropout", comm_dropout)
        factory = {"device": device, "dtype": dtype}
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_units = num_units
        self.k = k
        self.cell = cell
        self.input_key_size = input_key_size
        self.input_value_size = input_value_size
        self.num_input_heads = num_input_heads
        self.input_dropout = input_dropout
        self.comm_key_size = comm_key_size
        self.comm_value_size = comm_value_size
        self.num_comm_heads = num_comm_heads
        self.comm_dropout = comm_dropout

        self.key = nn.Linear(input_size, num_input_heads * input_key_size, **factory)
        self.value = nn.Linear(input_size, num_input_heads * input_value_size, **factory)
        self.query = GroupLinear(hidden_size, num_input_heads * input_query_size, num_units,
                                 **factory)
        self.rnn = CELLS[cell](input_value_size, hidden_size, num_units, **factory)
        self.comm_query = GroupLinear(hidden_size, num_comm_heads * comm_query_size,
                                      num_units, **factory)
        self.comm_key = GroupLinear(hidden_size, num_comm_heads * comm_key_size, num_units,
                                    **factory)
        self.comm_value = GroupLinear(hidden_size, num_comm_heads * comm_value_size,
                                      num_units, **factory)
        self.comm_output = GroupLinear(num_comm_heads * comm_value_size, hidden_size,
                                       num_units, **factory)

    @property
    def is_lstm(self) -> bool:
        return self.cell == "lstm"

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_units={self.num_units}, "
                f"k={self.k}, cell={self.cell!r}")

    def forward(self, input: Tensor, hx=None, return_mask: bool = False):
        check_float_tensor("input", input)
        if input.dim() != 2 or input.shape[1] != self.input_size:
            raise ValueError(f"input must have shape (batch, input_size={self.input_size}), "
                             f"got {tuple(input.shape)}")
        batch = input.shape[0]
        shape = (batch, self.num_units, self.hidden_size)
        if hx is None:
            zeros = input.new_zeros(shape)
            hx = (zeros, zeros) if self.is_lstm else zeros
        states = self._unpack_state(hx, shape, input.dtype)
        # The scan works units-first: (K, B, H).
        outs, final, masks = self.scan(input.unsqueeze(0),
                                       [s.transpose(0, 1).contiguous() for s in states],
                                       return_mask)
        new = tuple(s.transpose(0, 1) for s in final)
        new = new if self.is_lstm else new[0]
        return (new, masks[0].t()) if return_mask else new

    def _unpack_state(self, hx, shape, dtype) -> list[Tensor]:
        if self.is_lstm:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("hx must be a tuple (h, c) for cell='lstm', "
                                f"got {type(hx).__name__}")
            names = ("hx[0]", "hx[1]")
        else:
            if not isinstance(hx, Tensor):
                raise TypeError(f"hx must be a tensor h for cell='gru', got {type(hx).__name__}")
            hx, names = (hx,), ("hx",)
        for name, s in zip(names, hx):
            check_float_tensor(name, s)
            check_shape(name, s, shape)
            if s.dtype != dtype:
                raise TypeError(f"{name} must have the input's dtype {dtype}, got {s.dtype}")
        return list(hx)

    def _dropout_scales(self, p: float, like: Tensor, shape: tuple) -> list:
        """Per-step dropout factors (0 or 1/(1-p)), or ``None`` per step when inactive."""
        if not self.training or p == 0:
            return [None] * shape[0]
        keep = torch.rand(shape, device=like.device, dtype=like.dtype) >= p
        return (keep.to(like.dtype) / (1 - p)).unbind(0)

    def scan(self, x: Tensor, state: list[Tensor], return_mask: bool = False):
        """Run the cell over a sequence; the building block of ``RIM``.

        Args:
            x: :math:`(T, B, D)`, already validated.
            state: ``[h]`` or ``[h, c]``, each units-first :math:`(K_t, B, H)`.
            return_mask: collect each step's activation mask.

        Returns:
            ``(outputs, final_state, masks)``: ``outputs`` a list of ``T`` tensors
            :math:`(K_t, B, H)`, ``final_state`` like ``state``, ``masks`` a list of ``T``
            bool tensors :math:`(K_t, B)` (empty unless ``return_mask``).
        """
        steps, batch, _ = x.shape
        units = self.num_units
        heads, dk, dv = self.num_input_heads, self.input_key_size, self.input_value_size
        gate_size = self.rnn.num_gates * self.hidden_size

        # Input attention: keys of every step at once, pre-scaled so that a dot product
        # with a query is the head-averaged scaled score. The null row's key is the bias.
        scale = 1.0 / (heads * math.sqrt(dk))
        keys = F.linear(x, self.key.weight, self.key.bias).mul_(scale)     # (T, B, nh*dk)
        null_key = self.key.bias * scale                                    # (nh*dk,)

        # Values averaged over heads, composed with each unit's input-to-hidden weights:
        # proj[t][:, k] = W_k v(x_t) (without b_ih), for all t and k in one matmul.
        w_ih = self.rnn.ih.weight                                           # (K, dv, G)
        v_weight = self.value.weight.view(heads, dv, -1).mean(0)            # (dv, D)
        v_bias = self.value.bias.view(heads, dv).mean(0)                    # (dv,)
        w_x = torch.matmul(v_weight.t(), w_ih)                              # (K, D, G)
        w_x = w_x.permute(1, 0, 2).reshape(self.input_size, units * gate_size)
        proj_null = torch.matmul(v_bias, w_ih)                              # (K, G) = W_k v(0)
        proj = torch.addmm(proj_null.view(-1), x.reshape(steps * batch, -1), w_x)
        proj = proj.view(steps, batch, units, gate_size)
        proj_null = proj_null.unsqueeze(1)

        # h -> (hidden gates | input-attention query) in one group matmul.
        hh_bias = self.rnn.hh.bias
        if self.is_lstm:  # the LSTM sums both biases; the GRU needs b_ih apart (gate n)
            hh_bias = hh_bias + self.rnn.ih.bias
        w_hq = torch.cat([self.rnn.hh.weight, self.query.weight], dim=2)
        b_hq = torch.cat([hh_bias, self.query.bias], dim=1).unsqueeze(1)
        ih_bias = self.rnn.ih.bias.unsqueeze(1)  # the GRU adds it apart from gate n's h-part

        c_heads, c_dq, c_dv = self.num_comm_heads, self.comm_key_size, self.comm_value_size
        q_scale = 1.0 / math.sqrt(c_dq)  # folded into the query map
        w_comm = torch.cat([self.comm_query.weight * q_scale, self.comm_key.weight,
                            self.comm_value.weight], dim=2)
        b_comm = torch.cat([self.comm_query.bias * q_scale, self.comm_key.bias,
                            self.comm_value.bias], dim=1).unsqueeze(1)
        comm_split = [c_heads * c_dq, c_heads * c_dq, c_heads * c_dv]
        out_bias = self.comm_output.bias.unsqueeze(1)

        # Dropout masks do not depend on the state: draw every step's at once.
        keep = self._dropout_scales(self.input_dropout, x, (steps, 2, units, batch))
        comm_keep = self._dropout_scales(self.comm_dropout, x,
                                         (steps, units, units, batch, c_heads))

        h = state[0]
        c = state[1] if self.is_lstm else None
        outputs, masks = [], []
        for keys_t, proj_t, keep_t, comm_keep_t in zip(keys.unbind(0), proj.unbind(0), keep,
                                                       comm_keep):
            hq = torch.baddbmm(b_hq, h, w_hq)                              # (K, B, G+nh*dk)
            gh, query = hq.split([gate_size, heads * dk], dim=2)
            real = (query * keys_t).sum(-1)                                # (K, B)
            p_real = torch.sigmoid(real - query @ null_key)  # softmax over {real, null}
            if self.k < units:
                top = real.topk(self.k, dim=0).indices
                mask = torch.zeros_like(real).scatter_(0, top, 1.0)
            else:
                mask = torch.ones_like(real)
            a_real = p_real * mask
            if keep_t is None:
                a_null = mask - a_real
            else:
                a_null = (mask - a_real) * keep_t[1]
                a_real = a_real * keep_t[0]
            a_real, a_null, mask3 = a_real.unsqueeze(-1), a_null.unsqueeze(-1), mask.unsqueeze(-1)
            proj_t = proj_t.transpose(0, 1)                                # (K, B, G)
            if self.is_lstm:
                gates = torch.baddbmm(torch.addcmul(gh, a_real, proj_t), a_null, proj_null)
                h_new, c_new = lstm_update(gates, c)
            else:
                gx = torch.baddbmm(torch.addcmul(ih_bias, a_real, proj_t), a_null, proj_null)
                h_new = gru_update(gx, gh, h)

            # No gradient flows back through inactive units' new states.
            h_new = torch.lerp(h_new.detach(), h_new, mask3)
            # Communication: with few units, broadcasting over (query unit, key unit) beats
            # batched matmuls of tiny (K x K) blocks.
            q, k, v = torch.baddbmm(b_comm, h_new, w_comm).split(comm_split, dim=2)
            q, k, v = (t.view(units, batch, c_heads, -1) for t in (q, k, v))
            scores = (q.unsqueeze(1) * k).sum(-1)                         # (Kq, Kk, B, nh)
            attn = scores.softmax(1)
            if comm_keep_t is not None:
                attn = attn * comm_keep_t
            context = (attn.unsqueeze(-1) * v).sum(1).view(units, batch, -1)
            h_comm = torch.baddbmm(h_new + out_bias, context, self.comm_output.weight)

            # Sparse update; lerp with weight 0 returns the old state bit for bit.
            h = torch.lerp(h, h_comm, mask3)
            if self.is_lstm:
                c = torch.lerp(c, c_new, mask3)
            outputs.append(h)
            if return_mask:
                masks.append(mask.bool())
        return outputs, ([h, c] if self.is_lstm else [h]), masks


class RIM(nn.Module):
    r"""A multi-layer Recurrent Independent Mechanisms network, used like ``nn.LSTM``.

    Each layer (and direction) is a :class:`RIMCell` of ``num_units`` units of size
    ``hidden_size``; a layer's output at a step is all its units' states concatenated,
    :math:`K_t \cdot H` features (twice that when bidirectional), and the next layer reads
    it.

    Args:
        input_size: features of the input, :math:`D`.
        hidden_size: hidden size of each unit, :math:`H`.
        num_units: units per layer, :math:`K_t`.
        k: active units per step, :math:`K_a`.
        cell: ``"lstm"`` or ``"gru"``.
        num_layers: stacked RIM layers.
        bidirectional: run each layer forwards and backwards and concatenate.
        batch_first: input and output are :math:`(B, T, \cdot)` instead of
            :math:`(T, B, \cdot)`. States are not affected, as in ``nn.LSTM``.
        dropout: dropout on each layer's output except the last, as in ``nn.LSTM``.
        **cell_kwargs: attention sizes and dropouts, passed to every :class:`RIMCell`.

    Inputs: input, hx
        - input: :math:`(T, B, D)`, :math:`(B, T, D)` with ``batch_first``, or
          :math:`(T, D)` unbatched.
        - hx: ``(h_0, c_0)`` for ``"lstm"``, ``h_0`` for ``"gru"``; each
          :math:`(L \cdot dirs, B, K_t \cdot H)` (no batch dim when unbatched), with unit
          ``j``'s state at features ``j*H:(j+1)*H``. Zeros when omitted.

    Outputs: output, h_n (or (h_n, c_n)) [, mask]
        - output: :math:`(T, B, dirs \cdot K_t \cdot H)` (batch first with ``batch_first``),
          the last layer's states at every step.
        - h_n, c_n: like ``hx``, the final states of every layer and direction.
        - mask (only with ``return_mask=True``): bool :math:`(T, B, L \cdot dirs, K_t)`
          (batch first with ``batch_first``), which units were active at each step, layers
          and directions ordered like ``h_n``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_units: int, k: int,
                 cell: str = "lstm", num_layers: int = 1, bidirectional: bool = False,
                 batch_first: bool = False, dropout: float = 0.0, device=None, dtype=None,
                 **cell_kwargs):
        super().__init__()
        check_positive_int("num_layers", num_layers)
        _check_dropout("dropout", dropout)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_units = num_units
        self.k = k
        self.cell = cell
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.batch_first = batch_first
        self.dropout = dropout
        self.num_directions = 2 if bidirectional else 1
        layer_out = self.num_directions * num_units * hidden_size
        self.cells = nn.ModuleList(
            RIMCell(input_size if layer == 0 else layer_out, hidden_size, num_units, k,
                    cell=cell, device=device, dtype=dtype, **cell_kwargs)
            for layer in range(num_layers) for _ in range(self.num_directions))

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_units={self.num_units}, "
                f"k={self.k}, cell={self.cell!r}, num_layers={self.num_layers}, "
                f"bidirectional={self.bidirectional}, batch_first={self.batch_first}")

    def forward(self, input: Tensor, hx=None, return_mask: bool = False):
        check_float_tensor("input", input)
        if input.dim() not in (2, 3) or input.shape[-1] != self.input_size:
            raise ValueError(
                "input must have shape (seq_len, batch, input_size) "
                f"({'batch first' if self.batch_first else 'time first'}) or "
                f"(seq_len, input_size) with input_size={self.input_size}, "
                f"got {tuple(input.shape)}")
        batched = input.dim() == 3
        x = input if batched else input.unsqueeze(1)
        if batched and self.batch_first:
            x = x.transpose(0, 1)
        steps, batch, _ = x.shape
        if steps == 0:
            raise ValueError("input must have at least one time step, got seq_len=0")
        states = self._initial_states(hx, x, batched)

        units, hidden = self.num_units, self.hidden_size
        finals, masks = [], []
        for layer in range(self.num_layers):
            layer_outputs = []
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                state = [s[index].view(batch, units, hidden).transpose(0, 1).contiguous()
                         for s in states]
                seq = x.flip(0) if direction else x
                outs, final, step_masks = self.cells[index].scan(seq, state, return_mask)
                out = torch.stack(outs)                                     # (T, K, B, H)
                if direction:
                    out = out.flip(0)
                    step_masks = step_masks[::-1]
                layer_outputs.append(out.permute(0, 2, 1, 3).reshape(steps, batch, -1))
                finals.append([f.transpose(0, 1).reshape(batch, -1) for f in final])
                if return_mask:
                    masks.append(torch.stack(step_masks).transpose(1, 2))  # (T, B, K)
            x = torch.cat(layer_outputs, dim=-1) if self.bidirectional else layer_outputs[0]
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout)

        h_n = [torch.stack([f[i] for f in finals]) for i in range(len(states))]
        if not batched:
            h_n = [s.squeeze(1) for s in h_n]
            x = x.squeeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        h_n = tuple(h_n) if self.cell == "lstm" else h_n[0]
        if not return_mask:
            return x, h_n
        mask = torch.stack(masks, dim=2)                                    # (T, B, L*dirs, K)
        if not batched:
            mask = mask.squeeze(1)
        elif self.batch_first:
            mask = mask.transpose(0, 1)
        return x, h_n, mask

    def _initial_states(self, hx, x: Tensor, batched: bool) -> list[Tensor]:
        batch = x.shape[1]
        layers = self.num_layers * self.num_directions
        width = self.num_units * self.hidden_size
        if hx is None:
            zeros = x.new_zeros(layers, batch, width)
            return [zeros, zeros] if self.cell == "lstm" else [zeros]
        if self.cell == "lstm":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("hx must be a tuple (h_0, c_0) for cell='lstm', "
                                f"got {type(hx).__name__}")
            named = list(zip(("hx[0]", "hx[1]"), hx))
        else:
            if not isinstance(hx, Tensor):
                raise TypeError(f"hx must be a tensor h_0 for cell='gru', got {type(hx).__name__}")
            named = [("hx", hx)]
        expected = (layers, batch, width) if batched else (layers, width)
        states = []
        for name, s in named:
            check_float_tensor(name, s)
            check_shape(name, s, expected)
            if s.dtype != x.dtype:
                raise TypeError(f"{name} must have the input's dtype {x.dtype}, got {s.dtype}")
            states.append(s if batched else s.unsqueeze(1))
        return states
