"""Many models of one shape computed as one: ``pack(models)``.

A study trains many small models that differ only in weights, seed and ``Ka``. Run alone,
each is a few dozen tiny kernels per step. A pack puts ``M`` members into the group
dimension the units already use (``M * Kt`` weight sets in every per-unit map, the input
key/value maps as ``M`` weight sets), so a step of ``M`` models costs the kernels of one;
input attention, top-``Ka`` (per member), communication attention and state stay per
member, and nothing leaks between members.

Every parameter (and buffer) of a packed module has a leading dimension of ``M * n`` laid
out member by member, so ``p.view(M, -1)[m]`` is member ``m``'s part: :func:`member_grad_norm_clip_`
relies on it, and the packed modules' ``unpack()`` uses it to hand back standalone models.
"""

import copy
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from rim_rllib.group import GroupLinear, check_float_tensor
from rim_rllib.rim import (CELLS, RIM, RIMCell, RIMScan, RIMStack, check_requests,
                           checked_states, unpack_sequence)

# RIMCell arguments a pack's members must share (k may differ).
CELL_SIZES = ("input_size", "hidden_size", "num_units", "cell", "input_key_size",
              "input_value_size", "num_input_heads", "input_dropout", "comm_key_size",
              "comm_value_size", "num_comm_heads", "comm_dropout", "rank_by", "query_bias",
              "selection")
RIM_SIZES = ("input_size", "hidden_size", "num_units", "cell", "num_layers", "bidirectional",
             "batch_first", "dropout")
# A RIMCell's input key and value maps are nn.Linear (weight out x in); packed, they are a
# GroupLinear over members (weight members x in x out).
_LINEAR_MAPS = ("key", "value")

_PACKERS: dict[type, type] = {}


def packs(model_type: type) -> Callable[[type], type]:
    """Class decorator: the decorated class packs models of ``model_type``; it is built
    as ``cls(models)``."""
    def register(cls: type) -> type:
        _PACKERS[model_type] = cls
        return cls
    return register


def pack(models) -> nn.Module:
    """One module computing all ``models`` (RIMs, sequence classifiers or MiniGrid
    actor-critics of equal sizes; weights and ``k`` may differ) with the kernels of one.

    Its forward takes the members' shared input or one input per member (leading
    dimension ``M``) and returns per-member results stacked on a leading dimension ``M``;
    ``unpack()`` returns standalone models holding the pack's (trained) weights.
    """
    models = list(models) if not isinstance(models, nn.Module) else [models]
    if not models:
        raise ValueError("pack: models is empty; expected a non-empty list of models of "
                         f"one of the types {sorted(t.__name__ for t in _PACKERS)}")
    kind = type(models[0])
    if kind not in _PACKERS:
        raise TypeError(f"pack: cannot pack {kind.__name__}; expected models of one of "
                        f"the types {sorted(t.__name__ for t in _PACKERS)}")
    for i, model in enumerate(models):
        if type(model) is not kind:
            raise TypeError(f"pack: models[{i}] is a {type(model).__name__}, models[0] a "
                            f"{kind.__name__}; a pack holds models of one type")
    return _PACKERS[kind](models)


def check_same(models: list, attributes: tuple[str, ...], what: str) -> None:
    """Raise ``ValueError`` naming the first attribute in which a member differs from
    member 0."""
    for name in attributes:
        first = getattr(models[0], name)
        for i, model in enumerate(models[1:], 1):
            if getattr(model, name) != first:
                raise ValueError(f"pack: {what} differ in {name}: models[0] has {first!r}, "
                                 f"models[{i}] has {getattr(model, name)!r}")


def stack_members(tensors: list[Tensor]) -> Tensor:
    """Members' parameters concatenated along the leading (group) dimension."""
    return torch.cat([t.detach() for t in tensors])


def _tensors(module: nn.Module) -> dict[str, Tensor]:
    return dict(module.named_parameters()) | dict(module.named_buffers())


def load_members(packed: nn.Module, models: list[nn.Module],
                 to_packed: Callable[[str, Tensor], Tensor] = lambda name, t: t) -> None:
    """Copy the members' parameters and buffers into ``packed`` (same names), each through
    ``to_packed(name, tensor)`` into its packed layout with a leading group dimension."""
    members = [_tensors(m) for m in models]
    with torch.no_grad():
        for name, tensor in _tensors(packed).items():
            tensor.copy_(stack_members([to_packed(name, m[name]) for m in members]))


def unload_members(packed: nn.Module, models: list[nn.Module],
                   from_packed: Callable[[str, Tensor], Tensor] = lambda name, t: t) -> None:
    """Copy ``packed``'s parameters and buffers into the standalone ``models`` (the
    inverse of :func:`load_members`)."""
    tensors = _tensors(packed)
    with torch.no_grad():
        for index, model in enumerate(models):
            for name, tensor in _tensors(model).items():
                part = tensors[name].view(len(models), -1, *tensors[name].shape[1:])[index]
                tensor.copy_(from_packed(name, part))


def linear_to_group(name: str, tensor: Tensor) -> Tensor:
    """An ``nn.Linear`` parameter (weight out x in) in ``GroupLinear`` layout with one
    group (weight 1 x in x out)."""
    return (tensor.t() if name.endswith("weight") else tensor).unsqueeze(0)


def group_to_linear(name: str, tensor: Tensor) -> Tensor:
    """The inverse of :func:`linear_to_group`."""
    return tensor[0].t() if name.endswith("weight") else tensor[0]


def _cell_to_packed(name: str, tensor: Tensor) -> Tensor:
    return linear_to_group(name, tensor) if name.split(".")[0] in _LINEAR_MAPS else tensor


def _packed_to_cell(name: str, tensor: Tensor) -> Tensor:
    return group_to_linear(name, tensor) if name.split(".")[0] in _LINEAR_MAPS else tensor


def with_memories(template: nn.Module, memories: list[nn.Module],
                  like: nn.Module) -> list[nn.Module]:
    """Copies of ``template`` (a task network holding a ``memory``), one per unpacked
    memory, on ``like``'s device and dtype: the standalone members a packed task network
    then fills with its other weights."""
    models = []
    for memory in memories:
        model = copy.deepcopy(template).to(**factory_of(like))
        model.memory = memory
        models.append(model)
    return models


def factory_of(module: nn.Module) -> dict:
    param = next(module.parameters())
    return {"device": param.device, "dtype": param.dtype}


class PackedRIMCell(RIMScan):
    """``M`` :class:`RIMCell` s of equal sizes as one cell whose per-unit maps hold
    ``M * Kt`` weight sets; member ``m`` keeps its own ``k``. Used by :class:`PackedRIM`
    (its ``scan`` takes :math:`(M, T, B, D)` input and :math:`(M K_t, B, H)` states)."""

    def __init__(self, cells: list[RIMCell]):
        super().__init__()
        check_same(cells, CELL_SIZES + ("legacy_balance",), "RIM cells")
        for name in CELL_SIZES + ("legacy_balance",):
            setattr(self, name, getattr(cells[0], name))
        self.num_members = len(cells)
        self.ks = tuple(cell.k for cell in cells)
        members, units, heads = self.num_members, self.num_units, self.num_input_heads
        hidden, factory = self.hidden_size, factory_of(cells[0])
        comm_heads = self.num_comm_heads
        self.key = GroupLinear(self.input_size, heads * self.input_key_size, members, **factory)
        self.value = GroupLinear(self.input_size, heads * self.input_value_size, members,
                                 **factory)
        groups = members * units
        self.query = GroupLinear(hidden, heads * self.input_key_size, groups,
                                 bias=self.query_bias, **factory)
        self.rnn = CELLS[self.cell](self.input_value_size, hidden, groups, **factory)
        self.comm_query = GroupLinear(hidden, comm_heads * self.comm_key_size, groups, **factory)
        self.comm_key = GroupLinear(hidden, comm_heads * self.comm_key_size, groups, **factory)
        self.comm_value = GroupLinear(hidden, comm_heads * self.comm_value_size, groups,
                                      **factory)
        self.comm_output = GroupLinear(comm_heads * self.comm_value_size, hidden, groups,
                                       **factory)
        self.register_buffer("selection_bias", torch.zeros(groups, **factory))
        load_members(self, cells, _cell_to_packed)

    def _input_maps(self):
        return self.key.weight, self.key.bias, self.value.weight, self.value.bias

    def _member_ks(self) -> tuple[int, ...]:
        return self.ks

    def unpack(self) -> list[RIMCell]:
        """Standalone cells holding this pack's weights."""
        sizes = {name: getattr(self, name) for name in CELL_SIZES}
        cells = [RIMCell(k=k, input_query_size=self.input_key_size,
                         comm_query_size=self.comm_key_size, **sizes, **factory_of(self))
                 for k in self.ks]
        for cell in cells:
            cell.legacy_balance = self.legacy_balance
        unload_members(self, cells, _packed_to_cell)
        return cells

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_units={self.num_units}, "
                f"ks={self.ks}, cell={self.cell!r}")


class PackedRIM(RIMStack):
    r"""``M`` :class:`RIM` s of equal sizes computed as one (see :func:`pack`).

    Inputs: input, hx
        - input: :math:`(T, B, D)` read by every member, or :math:`(M, T, B, D)` one
          sequence per member (:math:`(B, T, D)` / :math:`(M, B, T, D)` with
          ``batch_first``), or a ``PackedSequence`` read by every member. No unbatched
          form.
        - hx: ``(h_0, c_0)`` or ``h_0``, each :math:`(M, L \cdot dirs, B, K_t H)`, and
          with ``selection.fatigue`` the tiredness :math:`(M, L \cdot dirs, B, K_t)` last;
          zeros when omitted.
        - valid (keyword, optional): :math:`(T, B)` (:math:`(B, T)` with ``batch_first``)
          real-step weights for the usage statistics, shared by the members; see
          :class:`~rim_rllib.RIM`.
        - lengths (keyword, optional): :math:`(B,)` the sequences' lengths, shared by the
          members; see :class:`~rim_rllib.RIM`.

    Outputs: ``output, h_n (or (h_n, c_n))`` and the mask or the stats when asked for
    (``return_mask``, ``return_stats``), member ``m``'s at index ``m`` of a leading
    dimension :math:`M`: output :math:`(M, T, B, dirs \cdot K_t H)` (batch first with
    ``batch_first``), the state like ``hx``, mask bool :math:`(M, T, B, L \cdot dirs, K_t)`
    (batch first with ``batch_first``), the stats'
    usage and shares :math:`(M, L \cdot dirs, B, K_t)`. With a ``PackedSequence`` input the
    output and the mask are packed as it was, the members after the packed dimension:
    data :math:`(N, M, dirs \cdot K_t H)` and :math:`(N, M, L \cdot dirs, K_t)`.
    """

    def __init__(self, rims: list[RIM]):
        super().__init__()
        check_same(rims, RIM_SIZES, "RIMs")
        for name in RIM_SIZES:
            setattr(self, name, getattr(rims[0], name))
        self.num_directions = rims[0].num_directions
        self.num_members = len(rims)
        self.ks = tuple(rim.k for rim in rims)
        self.cells = nn.ModuleList(PackedRIMCell([rim.cells[i] for rim in rims])
                                   for i in range(len(rims[0].cells)))

    def extra_repr(self) -> str:
        return (f"members={self.num_members}, {self.input_size}, {self.hidden_size}, "
                f"num_units={self.num_units}, ks={self.ks}, cell={self.cell!r}, "
                f"num_layers={self.num_layers}, bidirectional={self.bidirectional}, "
                f"batch_first={self.batch_first}")

    def forward(self, input: Tensor | PackedSequence, hx=None, return_mask: bool = False,
                valid: Tensor | None = None, lengths: Tensor | None = None,
                return_stats: bool = False):
        check_requests(return_mask, return_stats)
        input, lengths, packed = unpack_sequence(input, lengths, valid, self.batch_first)
        check_float_tensor("input", input)
        members = self.num_members
        if (input.dim() not in (3, 4) or input.shape[-1] != self.input_size
                or (input.dim() == 4 and input.shape[0] != members)):
            order = "batch, seq_len" if self.batch_first else "seq_len, batch"
            raise ValueError(f"input must have shape ({order}, input_size) shared by the "
                             f"members or (members={members}, {order}, input_size) with "
                             f"input_size={self.input_size}, got {tuple(input.shape)}")
        x = input if input.dim() == 4 else input.unsqueeze(0)
        if self.batch_first:
            x = x.transpose(1, 2)
        if x.shape[1] == 0:
            raise ValueError("input must have at least one time step, got seq_len=0")
        expected = (members, self.num_layers * self.num_directions, x.shape[2],
                    self.num_units * self.hidden_size)
        carried = self.selection.carries_tiredness
        states = checked_states(hx, self.cell, expected, x,
                                tired=expected[:3] + (self.num_units,) if carried else None)
        tiredness = states.pop() if carried else None
        valid = self._check_valid(valid, x.shape[1], x.shape[2], x)
        lengths, valid = self._check_lengths(lengths, valid, x.shape[1], x.shape[2], x)
        out, h_n, mask, tired, counts = self._run_layers(
            x, states, return_mask, valid, tiredness, lengths,
            return_stats or self.legacy_balance)
        if self.batch_first:
            out = out.transpose(1, 2)
            mask = None if mask is None else mask.transpose(1, 2)
        result = self._finish(out, h_n + ([tired] if carried else []), mask, counts,
                              return_mask, return_stats)
        return self._packed_like(result, packed, lengths, members_dim=0)

    def unpack(self) -> list[RIM]:
        """Standalone RIMs holding this pack's weights, in member order."""
        cells = [cell.unpack() for cell in self.cells]
        rims = []
        for member, k in enumerate(self.ks):
            rim = RIM(**{name: getattr(self, name) for name in RIM_SIZES}, k=k,
                      **factory_of(self))
            rim.cells = nn.ModuleList(layer[member] for layer in cells)
            rims.append(rim)
        return rims


packs(RIM)(PackedRIM)


def member_grad_norm_clip_(module: nn.Module, members: int, max_norm: float) -> Tensor:
    """Clip each member's gradient to a total 2-norm of ``max_norm``, as
    ``torch.nn.utils.clip_grad_norm_`` would on that member alone; returns the members'
    norms before clipping, :math:`(M,)`."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        raise ValueError("member_grad_norm_clip_: no parameter has a gradient")
    squares = torch.stack([g.view(members, -1).pow(2).sum(1) for g in grads]).sum(0)
    norms = squares.sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.view(members, -1).mul_(scale.unsqueeze(1))
    return norms


def optimise_members_(module: nn.Module, optimizer: torch.optim.Optimizer, losses: Tensor,
                      max_norm: float | None) -> None:
    """One optimiser step of a pack's ``M`` members on their losses :math:`(M,)`: drop the
    old gradients, backward of the sum (members share no weights, so each gets its own
    gradient), each member's gradient clipped to ``max_norm`` (``None``: no clipping),
    then ``optimizer.step()``. It never waits for the device, so a CUDA graph can capture
    it (:class:`rim_rllib.cuda_graph.GraphedStep`)."""
    optimizer.zero_grad(set_to_none=True)
    losses.sum().backward()
    if max_norm:
        member_grad_norm_clip_(module, losses.shape[0], max_norm)
    optimizer.step()


class PackedLSTM(nn.Module):
    r"""``M`` single-layer ``nn.LSTM`` s of equal sizes, the LSTM baseline's pack.

    The weights are stacked like a RIM pack's (``weight_ih_l0`` :math:`(M, 4W, D)`, ...),
    but the members run one after another through torch's fused LSTM: on CPU that was
    faster than one group-LSTM recurrence over all members (7 LSTMs of 96, T=196, B=64,
    forward and backward: 0.55 s against 0.91 s).

    Inputs: input :math:`(T, B, D)` shared or :math:`(M, T, B, D)` per member (batch
    first with ``batch_first``); ``hx`` ``(h_0, c_0)``, each :math:`(M, 1, B, W)`, zeros
    when omitted.

    Outputs: output :math:`(M, T, B, W)` (batch first with ``batch_first``) and
    ``(h_n, c_n)``, each :math:`(M, 1, B, W)`.
    """

    WEIGHTS = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")

    def __init__(self, lstms: list[nn.LSTM]):
        super().__init__()
        check_same(lstms, ("input_size", "hidden_size", "num_layers", "bidirectional",
                           "batch_first", "bias", "proj_size"), "LSTMs")
        first = lstms[0]
        if first.num_layers != 1 or first.bidirectional or first.proj_size or not first.bias:
            raise ValueError("pack: only single-layer, unidirectional nn.LSTMs with biases "
                             f"and no projection pack, got {first}")
        self.input_size, self.hidden_size = first.input_size, first.hidden_size
        self.batch_first = first.batch_first
        self.num_members = len(lstms)
        for name in self.WEIGHTS:
            shape = getattr(first, name).shape
            self.register_parameter(name, nn.Parameter(
                torch.empty(len(lstms), *shape, **factory_of(first))))
        load_members(self, lstms, lambda name, t: t.unsqueeze(0))

    def forward(self, input: Tensor, hx=None):
        check_float_tensor("input", input)
        members, width = self.num_members, self.hidden_size
        if (input.dim() not in (3, 4) or input.shape[-1] != self.input_size
                or (input.dim() == 4 and input.shape[0] != members)):
            raise ValueError(f"input must have shape (seq_len, batch, input_size) or "
                             f"(members={members}, seq_len, batch, input_size) with "
                             f"input_size={self.input_size}, got {tuple(input.shape)}")
        batch = input.shape[-3] if self.batch_first else input.shape[-2]
        if hx is None:
            zeros = input.new_zeros(members, 1, batch, width)
            hx = (zeros, zeros)
        outputs, h_n, c_n = [], [], []
        for m in range(members):
            x = input[m] if input.dim() == 4 else input
            out, h, c = torch.lstm(x, (hx[0][m], hx[1][m]),
                                   [getattr(self, name)[m] for name in self.WEIGHTS],
                                   True, 1, 0.0, self.training, False, self.batch_first)
            outputs.append(out)
            h_n.append(h)
            c_n.append(c)
        return torch.stack(outputs), (torch.stack(h_n), torch.stack(c_n))

    def unpack(self) -> list[nn.LSTM]:
        """Standalone ``nn.LSTM`` s holding this pack's weights."""
        lstms = [nn.LSTM(self.input_size, self.hidden_size, batch_first=self.batch_first,
                         **factory_of(self)) for _ in range(self.num_members)]
        unload_members(self, lstms, lambda name, t: t[0])
        return lstms


packs(nn.LSTM)(PackedLSTM)
