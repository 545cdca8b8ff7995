"""Per-unit ("group") linear maps and recurrent cells.

A group layer holds ``num_units`` independent sets of weights and applies set ``k`` to
unit ``k``'s features, for all units in one batched matmul (no Python loop over units).
"""

import math

import torch
from torch import Tensor, nn


def is_number(value) -> bool:
    """A finite int or float, not a bool (which Python counts as an int)."""
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value))


def check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_float_tensor(name: str, value) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")


def check_shape(name: str, value: Tensor, expected: tuple) -> None:
    if tuple(value.shape) != tuple(expected):
        raise ValueError(
            f"{name} must have shape {tuple(expected)}, got {tuple(value.shape)}"
        )


class GroupLinear(nn.Module):
    r"""``num_units`` independent linear maps applied to ``num_units`` feature vectors.

    Args:
        in_features: size of each unit's input.
        out_features: size of each unit's output.
        num_units: number of units, each with its own weight and bias.
        bias: if ``False``, the layer has no bias.

    Shape:
        - input: :math:`(*, K, D_{in})` where :math:`K` is ``num_units``.
        - output: :math:`(*, K, D_{out})`.

    Attributes:
        weight: :math:`(K, D_{in}, D_{out})`, initialised from
            :math:`\mathcal{U}(-1/\sqrt{D_{in}}, 1/\sqrt{D_{in}})` like ``nn.Linear``.
        bias: :math:`(K, D_{out})`, same initialisation.
    """

    def __init__(self, in_features: int, out_features: int, num_units: int,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features),
                            ("num_units", num_units)):
            check_positive_int(name, value)
        factory = {"device": device, "dtype": dtype}
        self.in_features = in_features
        self.out_features = out_features
        self.num_units = num_units
        self.weight = nn.Parameter(torch.empty(num_units, in_features, out_features, **factory))
        self.bias = (nn.Parameter(torch.empty(num_units, out_features, **factory))
                     if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor) -> Tensor:
        check_float_tensor("input", input)
        if input.dim() < 2 or input.shape[-2:] != (self.num_units, self.in_features):
            raise ValueError(
                f"input must have shape (*, num_units={self.num_units}, "
                f"in_features={self.in_features}), got {tuple(input.shape)}")
        lead = input.shape[:-2]
        units_first = input.reshape(-1, self.num_units, self.in_features).transpose(0, 1)
        if self.bias is None:
            out = torch.bmm(units_first, self.weight)
        else:
            out = torch.baddbmm(self.bias.unsqueeze(1), units_first, self.weight)
        return out.transpose(0, 1).reshape(*lead, self.num_units, self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"num_units={self.num_units}, bias={self.bias is not None}")


def lstm_update(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """LSTM state update from summed gate pre-activations in ``nn.LSTMCell`` order
    (input, forget, cell, output). ``gates`` is ``(..., 4H)``, ``c`` is ``(..., H)``."""
    # One sigmoid over all four gates is cheaper than three launches on small tensors.
    sig = gates.sigmoid()
    i, f, _, o = sig.chunk(4, dim=-1)
    g = gates.chunk(4, dim=-1)[2].tanh()
    c_new = torch.addcmul(f * c, i, g)
    return o * c_new.tanh(), c_new


def gru_update(gx: Tensor, gh: Tensor, h: Tensor) -> Tensor:
    """GRU state update from input and hidden pre-activations in ``nn.GRUCell`` order
    (reset, update, new). ``gx`` and ``gh`` are ``(..., 3H)``, ``h`` is ``(..., H)``."""
    rz = (gx[..., : 2 * h.shape[-1]] + gh[..., : 2 * h.shape[-1]]).sigmoid()
    r, z = rz.chunk(2, dim=-1)
    n = torch.addcmul(gx[..., 2 * h.shape[-1]:], r, gh[..., 2 * h.shape[-1]:]).tanh()
    return torch.lerp(n, h, z)


class _GroupRNNCellBase(nn.Module):
    num_gates: int

    def __init__(self, input_size: int, hidden_size: int, num_units: int,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_units", num_units)):
            check_positive_int(name, value)
        factory = {"device": device, "dtype": dtype}
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_units = num_units
        gates = self.num_gates * hidden_size
        self.ih = GroupLinear(input_size, gates, num_units, bias=bias, **factory)
        self.hh = GroupLinear(hidden_size, gates, num_units, bias=bias, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same initialisation as nn.LSTMCell / nn.GRUCell: every weight and bias from
        # U(-1/sqrt(H), 1/sqrt(H)).
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _check(self, input: Tensor, h: Tensor, name: str) -> None:
        check_float_tensor("input", input)
        if input.dim() != 3 or input.shape[1:] != (self.num_units, self.input_size):
            raise ValueError(
                f"input must have shape (batch, num_units={self.num_units}, "
                f"input_size={self.input_size}), got {tuple(input.shape)}")
        check_float_tensor(name, h)
        check_shape(name, h, (input.shape[0], self.num_units, self.hidden_size))

    def _zeros(self, input: Tensor) -> Tensor:
        return input.new_zeros(input.shape[0], self.num_units, self.hidden_size)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_units={self.num_units}, "
                f"bias={self.ih.bias is not None}")


class GroupLSTMCell(_GroupRNNCellBase):
    r"""``num_units`` independent LSTM cells stepped together.

    Unit ``k`` computes exactly ``nn.LSTMCell`` with weights ``ih.weight[k].T``,
    ``hh.weight[k].T`` and biases ``ih.bias[k]``, ``hh.bias[k]``.

    Args:
        input_size: features each unit reads, :math:`D`.
        hidden_size: hidden size of each unit, :math:`H`.
        num_units: number of units, :math:`K`.
        bias: if ``False``, no biases.

    Inputs: input, (h_0, c_0)
        - input: :math:`(B, K, D)`.
        - h_0, c_0: :math:`(B, K, H)` each; zeros when the tuple is omitted.

    Outputs: (h_1, c_1), each :math:`(B, K, H)`.
    """

    num_gates = 4

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None):
        if hx is None:
            hx = (self._zeros(input), self._zeros(input))
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError("hx must be a tuple (h, c) for an LSTM cell, "
                            f"got {type(hx).__name__}")
        h, c = hx
        self._check(input, h, "hx[0]")
        self._check(input, c, "hx[1]")
        return lstm_update(self.ih(input) + self.hh(h), c)


class GroupGRUCell(_GroupRNNCellBase):
    r"""``num_units`` independent GRU cells stepped together.

    Unit ``k`` computes exactly ``nn.GRUCell`` with weights ``ih.weight[k].T``,
    ``hh.weight[k].T`` and biases ``ih.bias[k]``, ``hh.bias[k]``.

    Inputs: input, h_0
        - input: :math:`(B, K, D)`.
        - h_0: :math:`(B, K, H)`; zeros when omitted.

    Outputs: h_1, :math:`(B, K, H)`.
    """

    num_gates = 3

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        if hx is None:
            hx = self._zeros(input)
        self._check(input, hx, "hx")
        return gru_update(self.ih(input), self.hh(hx), hx)
