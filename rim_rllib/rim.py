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

import functools
import math
import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rim_rllib.group import (
    GroupGRUCell,
    GroupLinear,
    GroupLSTMCell,
    check_float_tensor,
    check_positive_int,
    check_shape,
    gru_update,
    is_number,
    lstm_update,
)
from rim_rllib.selection import SELECTION_KEYS, Selection, SelectionStats

CELLS = {"lstm": GroupLSTMCell, "gru": GroupGRUCell}
#: How the top-``Ka`` ranks units: the paper's rule first (the default).
RANK_RULES = ("null_attention", "score")


def _check_cell(cell) -> None:
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")


def _check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def _check_dropout(name: str, value) -> None:
    if not is_number(value) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")


def selection_of(owner: str, selection: Selection | None, deprecated: dict
                 ) -> tuple[Selection, bool]:
    """A constructor's :class:`~rim_rllib.selection.Selection` and whether it was asked
    for the load-balancing loss the old way (``balance_loss=True``: the forward then
    stores it in ``aux_loss``), from its ``selection`` argument or, deprecated for one
    release, from the selection settings given as keyword arguments (``deprecated``)."""
    if not deprecated:
        if selection is not None and not isinstance(selection, Selection):
            raise TypeError(f"selection must be a rim_rllib.Selection or None, got "
                            f"{type(selection).__name__}")
        return (Selection() if selection is None else selection), False
    unknown = sorted(set(deprecated) - set(SELECTION_KEYS) - {"balance_loss"})
    if unknown:
        raise TypeError(f"{owner}() got an unexpected keyword argument {unknown[0]!r}")
    if selection is not None:
        raise ValueError(f"{owner}: give the selection settings as selection=Selection(...) "
                         f"or as the deprecated keyword arguments {sorted(deprecated)}, "
                         "not both")
    settings = dict(deprecated)
    balance = settings.pop("balance_loss", False)
    _check_bool("balance_loss", balance)
    advice = ("selection=Selection(" + ", ".join(f"{key}=..." for key in settings) + ")"
              if settings else "")
    if "balance_loss" in deprecated:
        advice += (" and " if advice else "") + ("forward(..., return_stats=True) with "
                                                 "stats.load_balance_loss() in the "
                                                 "training loop")
    warnings.warn(f"{owner}({', '.join(f'{key}=' for key in deprecated)}) is deprecated and "
                  f"will be removed in the next release; use {advice}",
                  DeprecationWarning, stacklevel=3)
    return Selection(**settings), balance


def checked_states(hx, cell: str, expected: tuple, like: Tensor,
                   names: tuple[str, str, str] = ("h_0", "c_0", "tiredness_0"),
                   tired: tuple | None = None) -> list[Tensor]:
    """``hx`` as a list of its parts, each checked to have its shape and ``like``'s dtype;
    zeros when ``hx`` is None. The parts: ``h`` and, for LSTM cells, ``c``, each of shape
    ``expected``; with ``tired`` (the shape of the units' tiredness, for a RIM with
    ``fatigue``) the tiredness last. One part is a tensor, several a tuple. ``names`` name
    the parts in the error messages."""
    parts = list(names[:2] if cell == "lstm" else names[:1])
    shapes = [expected] * len(parts)
    if tired is not None:
        parts.append(names[2])
        shapes.append(tired)
    if hx is None:
        return [like.new_zeros(shape) for shape in shapes]
    how = f"cell={cell!r}" + (" with fatigue" if tired is not None else "")
    if len(parts) == 1:
        if not isinstance(hx, Tensor):
            raise TypeError(f"hx must be a tensor {parts[0]} for {how}, "
                            f"got {type(hx).__name__}")
        named = [("hx", hx)]
    else:
        if not isinstance(hx, (tuple, list)) or len(hx) != len(parts):
            got = (f"a {type(hx).__name__} of {len(hx)}" if isinstance(hx, (tuple, list))
                   else type(hx).__name__)
            raise TypeError(f"hx must be a tuple ({', '.join(parts)}) for {how}, got {got}")
        named = [(f"hx[{i}]", s) for i, s in enumerate(hx)]
    for (name, s), shape in zip(named, shapes):
        check_float_tensor(name, s)
        check_shape(name, s, shape)
        if s.dtype != like.dtype:
            raise TypeError(f"{name} must have the input's dtype {like.dtype}, got {s.dtype}")
    return [s for _, s in named]


def state_tuple(parts: list[Tensor]):
    """A state's parts as ``hx`` is given: one part a tensor, several a tuple."""
    return parts[0] if len(parts) == 1 else tuple(parts)


class StepWeights(NamedTuple):
    """What a step reads besides the state and the input, prepared once per sequence by
    :meth:`RIMScan.scan` (``M K_t`` groups, ``G`` gate pre-activations per unit)."""
    w_hq: Tensor        # (MK, H, G + nh*dk): hidden-to-gates and input query, fused
    b_hq: Tensor        # (MK, 1, G + nh*dk)
    null_key: Tensor    # (M, nh*dk, nh): the null row's key per head (block-
                        # diagonal), pre-scaled
    w_in: Tensor        # (MK, D + 1, G): value map composed with the input-to-hidden map
    ih_bias: Tensor     # (MK, 1, G): added apart for GRU units (the LSTM's is in b_hq)
    w_comm: Tensor      # (MK, H, 2*nc*dq + nc*dv): communication maps, fused
    b_comm: Tensor      # (MK, 1, 2*nc*dq + nc*dv)
    out_bias: Tensor    # (MK, 1, H)
    out_weight: Tensor  # (MK, nc*dv, H)
    rank_keep: Tensor | None  # (M, max Ka, B), see RIMScan._rank_keep
    rank_bias: Tensor | None  # (M, Kt, 1): the usage band's selection bias, or None


def rank_scores(scores: Tensor, by_null: bool) -> Tensor:
    r"""What the top-``Ka`` ranks units by, from the scaled input-attention scores
    :math:`(M, K_t, B)` (a last dimension :math:`n_h` with several heads): with
    ``by_null``, of the real row minus the null row; else of the real row.

    ``by_null`` (``rank_by="null_attention"``, the paper's rule): the logit of the
    attention probability on the real row, :math:`\log p / (1 - p)` with :math:`p` the
    softmax over {real, null} averaged over heads: with one head, the score difference.
    Ranking by it ranks by :math:`p`, the least attention to the null row; and it is in
    the units of a score, so that the ranking's additive terms (score noise, the usage
    floor's bias, fatigue) mean the same under both rules. Otherwise (``rank_by="score"``,
    the community implementation's rule) the head-averaged score of the real row.
    :math:`(M, K_t, B)`.
    """
    if scores.dim() == 3:
        return scores
    if not by_null:
        return scores.mean(-1)
    # log(mean sigmoid(d)) - log(mean sigmoid(-d)), stable at any d
    return F.logsigmoid(scores).logsumexp(-1) - F.logsigmoid(-scores).logsumexp(-1)


def rim_step(h: Tensor, c: Tensor | None, keys_t: Tensor, x_t: Tensor,
             keep_t: Tensor | None, comm_keep_t: Tensor | None, jitter_t: Tensor | None,
             w: StepWeights, sizes: tuple
             ) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
    """One step of ``M`` members' RIM recurrence: the state-dependent part of
    :meth:`RIMScan.scan`, a pure function so that :func:`compile_steps` can compile it.

    ``h``, ``c``: :math:`(M K_t, B, H)` (``c`` is ``None`` for GRU units); ``keys_t``
    :math:`(M, 1, B, n_h d_k)`, the step's pre-scaled input keys (minus the null row's,
    the bias, with ``by_null``); ``x_t`` :math:`(M|1, 1, B, D)`; ``keep_t``,
    ``comm_keep_t``: the step's dropout factors or ``None``;
    ``jitter_t`` :math:`(M, K_t, B)`: added to the ranked scores (:func:`rank_scores`)
    for the ranking only (score noise and dropout, fatigue; see
    :class:`~rim_rllib.selection.Selection`), or ``None``; ``sizes``: ``(M, K_t, B, G, comm
    heads, comm split, is_lstm, shares, selection, by_null)`` (``shares``: whether to
    return them; ``selection``: the :class:`~rim_rllib.selection.Selection`; ``by_null``:
    ``rank_by="null_attention"``). Returns the new ``h`` and ``c``, the 0/1 activation
    mask :math:`(M, K_t, B)` and, when ``shares``, each unit's share of the softmax over
    units of the ranked scores :math:`(M, K_t, B)` (else ``None``).
    """
    (members, units, batch, gate_size, comm_heads, comm_split, is_lstm, shares, selection,
     by_null) = sizes
    groups = members * units
    heads = w.null_key.shape[-1]
    hq = torch.baddbmm(w.b_hq, h, w.w_hq)                                  # (MK, B, G+nh*dk)
    gh, query = hq.split([gate_size, hq.shape[-1] - gate_size], dim=2)
    query = query.reshape(members, units * batch, -1)
    unit_queries = query.view(members, units, batch, -1)
    # Scaled scores per head, (M, K, B, nh): of the real row minus the null row's under
    # the paper's rule (keys_t are then bias-free: exactly 0 for a zero input, as the
    # authors' attention over two equal rows), of the real row under the community's.
    scores = (unit_queries * keys_t).view(members, units, batch, heads, -1).sum(-1)
    if by_null:
        diff = scores
    else:
        diff = scores - torch.bmm(query, w.null_key).view(members, units, batch, heads)
    if heads == 1:  # no head dimension to average over: spare the kernels
        scores, diff = scores.squeeze(-1), diff.squeeze(-1)
        p_real = torch.sigmoid(diff)  # softmax over {real, null}
    else:
        p_real = torch.sigmoid(diff).mean(-1)
    ranked = None
    if w.rank_keep is not None or shares:
        ranked = rank_scores(scores, by_null)
    if w.rank_keep is None:
        mask = torch.ones_like(p_real)
    else:
        order = selection.order(ranked, unit_queries, keys_t, w.null_key, by_null)
        order = order if w.rank_bias is None else order + w.rank_bias
        order = order if jitter_t is None else order + jitter_t
        top = order.topk(w.rank_keep.shape[1], dim=1).indices
        mask = torch.zeros_like(p_real).scatter_(1, top, w.rank_keep)
    a_real = p_real * mask
    if keep_t is None:
        a_bias = mask  # a_real + a_null, the weights of the two rows, sum to 1
    else:
        a_null = (mask - a_real) * keep_t[1]
        a_real = a_real * keep_t[0]
        a_bias = a_real + a_null
    inputs = torch.cat([a_real.unsqueeze(-1) * x_t, a_bias.unsqueeze(-1)], dim=-1)
    inputs = inputs.view(groups, batch, -1)                                # (MK, B, D+1)
    mask3 = mask.view(groups, batch, 1)
    if is_lstm:
        h_new, c_new = lstm_update(torch.baddbmm(gh, inputs, w.w_in), c)
    else:
        h_new = gru_update(torch.baddbmm(w.ih_bias, inputs, w.w_in), gh, h)

    # No gradient flows back through inactive units' new states.
    h_new = torch.lerp(h_new.detach(), h_new, mask3)
    # Communication: with few units, broadcasting over (query unit, key unit) beats
    # batched matmuls of tiny (K x K) blocks.
    q, k, v = torch.baddbmm(w.b_comm, h_new, w.w_comm).split(comm_split, dim=2)
    q, k, v = (t.view(members, units, batch, comm_heads, -1) for t in (q, k, v))
    scores = (q.unsqueeze(2) * k.unsqueeze(1)).sum(-1)                   # (M, Kq, Kk, B, nc)
    attn = scores.softmax(2)
    if comm_keep_t is not None:
        attn = attn * comm_keep_t
    context = (attn.unsqueeze(-1) * v.unsqueeze(1)).sum(2).view(groups, batch, -1)
    h_comm = torch.baddbmm(h_new + w.out_bias, context, w.out_weight)

    # Sparse update; lerp with weight 0 returns the old state bit for bit.
    h = torch.lerp(h, h_comm, mask3)
    if is_lstm:
        c = torch.lerp(c, c_new, mask3)
    return h, c, mask, (ranked.softmax(1) if shares else None)


@functools.cache
def _compiled_step(options: tuple) -> Callable:
    return torch.compile(rim_step, **dict(options))


def _step_function(options: dict | None) -> Callable:
    return rim_step if options is None else _compiled_step(tuple(sorted(options.items())))


def compile_steps(module: nn.Module, **options) -> nn.Module:
    """Run the per-step function of every RIM recurrence in ``module`` (a :class:`RIM`,
    :class:`RIMCell`, a pack, or any model holding them) through ``torch.compile``, which
    fuses its few dozen small kernels; returns ``module``.

    The sequence loop stays in Python (compiling it would unroll every step), so the step
    compiles once per batch size, mode and dropout setting, whatever the sequence length.
    ``options`` go to ``torch.compile`` (default ``dynamic=False``). Measured on 2 CPU
    threads, a pack of 18 ``cpu``-preset MNIST RIMs trains ~1.6x faster after about 40 s
    of compilation; see ``benchmarks/pack_speed.py``.
    """
    options = {"dynamic": False} | options
    for sub in module.modules():
        if isinstance(sub, RIMScan):
            sub.compile_options = options
    return module


def set_dense_fraction_(module: nn.Module, fraction: float, in_eval: bool = False
                        ) -> nn.Module:
    """Dense-to-sparse training of every RIM recurrence in ``module``: in training mode
    each member (of ``k`` active units out of ``num_units``) activates
    ``round(k + (num_units - k) * fraction)`` units per step; evaluation uses ``k`` unless
    ``in_eval``. A training loop that lowers ``fraction`` from 1 to 0 over its first steps
    lets every unit learn before the top-``k`` competition starts (without it a unit that
    loses the first rankings gets no gradient to win later: unit collapse, worst at small
    ``k``). ``in_eval=True`` is for reinforcement learning, where the agent acts in eval
    mode: its behaviour policy must use the same units as the policy it learns (a training
    loop that sets it sets ``fraction`` back to 0 before evaluating). Not for CUDA-graphed
    steps (the counts are fixed at capture). Returns ``module``."""
    if not is_number(fraction) or not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be a number in [0, 1], got {fraction!r}")
    _check_bool("in_eval", in_eval)
    for sub in module.modules():
        if isinstance(sub, RIMScan):
            sub.dense_fraction = float(fraction)
            sub.dense_in_eval = in_eval
    return module


class RIMScan(nn.Module):
    """The RIM recurrence over ``M`` models at once (``M = 1`` for :class:`RIMCell`).

    Every per-unit map holds ``M * Kt`` weight sets (member-major: member ``m``'s unit ``j``
    is group ``m * Kt + j``), so the per-step matmuls are one batched matmul whatever ``M``;
    the attention and the top-``Ka`` are computed per member. Subclasses set the sizes and
    provide the input key/value maps and each member's ``k``.
    """

    num_members: int
    #: ``torch.compile`` keyword arguments for the per-step function, or ``None`` to run it
    #: eagerly; set by :func:`compile_steps`.
    compile_options: dict | None = None
    #: What the top-``Ka`` ranks units by (:data:`RANK_RULES`; see :class:`RIMCell`).
    rank_by: str = "null_attention"
    #: The selection experiments (:class:`~rim_rllib.selection.Selection`).
    selection: Selection = Selection()
    #: Whether the per-unit query maps have a bias.
    query_bias: bool = True
    #: Built with the deprecated ``balance_loss=True``: every forward stores its
    #: load-balancing loss in :attr:`aux_loss`.
    legacy_balance: bool = False
    aux_loss: Tensor | None = None
    #: In training, how far each member's number of active units is raised from its ``k``
    #: towards ``num_units`` (0: ``k``, 1: every unit); set by :func:`set_dense_fraction_`.
    dense_fraction: float = 0.0
    #: Whether :attr:`dense_fraction` applies in eval mode too; see :func:`set_dense_fraction_`.
    dense_in_eval: bool = False
    #: ``((ks, width, device, dtype), rank keep)`` of the last :meth:`_rank_keep`.
    _rank_keep_cache: tuple = (None, None)

    def _input_maps(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Key weight :math:`(M, D, n_h d_k)`, key bias :math:`(M, n_h d_k)`, value weight
        :math:`(M, D, n_h d_v)`, value bias :math:`(M, n_h d_v)`."""
        raise NotImplementedError

    def _member_ks(self) -> tuple[int, ...]:
        raise NotImplementedError

    def _dropout_scales(self, p: float, like: Tensor, shape: tuple) -> list:
        """Per-step dropout factors (0 or 1/(1-p)), or ``None`` per step when inactive."""
        if not self.training or p == 0:
            return [None] * shape[0]
        keep = torch.rand(shape, device=like.device, dtype=like.dtype) >= p
        return (keep.to(like.dtype) / (1 - p)).unbind(0)

    @property
    def is_lstm(self) -> bool:
        return self.cell == "lstm"

    def query_bias_or_zeros(self) -> Tensor:
        """The per-unit query maps' bias, :math:`(M K_t, d_q)`: zeros when they have none
        (``query_bias=False``, the reference's maps)."""
        bias = self.query.bias
        return bias if bias is not None else self.query.weight.new_zeros(
            self.query.weight.shape[0], self.query.out_features)

    def _rank_keep(self, batch: int, like: Tensor) -> Tensor | None:
        """Which of the ``max(k)`` best-ranked units each member keeps, :math:`(M, k_{max},
        B)` (1 for the first ``k_m`` of member ``m``), or ``None`` when every unit of every
        member is active. One top-k at the largest k and this rank mask give every member
        its own ``k`` without a per-member ``topk``."""
        ks = self._member_ks()
        # While annealing, the ranking keeps all num_units places, so that the counts can
        # change every step without a new shape (and a recompiled step).
        annealing = (self.training or self.dense_in_eval) and self.dense_fraction > 0
        if annealing:
            ks = tuple(round(k + (self.num_units - k) * self.dense_fraction) for k in ks)
        elif min(ks) == self.num_units:
            return None
        width = self.num_units if annealing else max(ks)
        # Made once per set of k and kept: a copy from the host waits for the device, which
        # a CUDA graph capture forbids, and this runs in every captured step.
        key = (ks, width, like.device, like.dtype)
        if self._rank_keep_cache[0] != key:
            ranks = torch.arange(width).unsqueeze(0)
            keep = (ranks < torch.tensor(ks).unsqueeze(1)).to(like.device, like.dtype)
            self._rank_keep_cache = (key, keep)
        return self._rank_keep_cache[1].unsqueeze(-1).expand(-1, -1, batch)

    def scan(self, x: Tensor, state: list[Tensor], return_mask: bool = False,
             valid: Tensor | None = None, tiredness: Tensor | None = None,
             hold: list[bool] | None = None, stats: bool = False):
        """Run the recurrence over a sequence; the building block of ``RIM``.

        Args:
            x: :math:`(M, T, B, D)`, or :math:`(1, T, B, D)` read by every member; already
                validated.
            state: ``[h]`` or ``[h, c]``, each units-first :math:`(M K_t, B, H)`.
            return_mask: collect each step's activation mask.
            valid: :math:`(T, B)` weights (1: a real step, 0: padding) for the unit-usage
                statistics (``stats``, the usage floor), or ``None`` (all real).
            tiredness: :math:`(M, K_t, B)`, the units' tiredness before the first step
                (``fatigue`` only), or ``None`` for zeros.
            hold: for variable-length batches, per step whether ``valid`` marks any
                padding there; at those steps the padded sequences keep their state and
                tiredness and activate no unit (a sequence's final state is the one after
                its own last step). ``None``: every step is computed as real.
            stats: also sum each unit's activations and selection-softmax shares over
                the real steps.

        Returns:
            ``(outputs, final_state, masks, tiredness, counts)``: ``outputs`` a list of
            ``T`` tensors :math:`(M K_t, B, H)`, ``final_state`` like ``state``, ``masks`` a
            list of ``T`` bool tensors :math:`(M, K_t, B)` (empty unless ``return_mask``),
            the tiredness after the last step (``None`` without ``fatigue``), and with
            ``stats`` the summed ``(usage, shares)``, each :math:`(M, K_t, B)` (else
            ``None``).
        """
        selection = self.selection
        members, units = self.num_members, self.num_units
        groups = members * units
        _, steps, batch, _ = x.shape
        heads, dk, dv = self.num_input_heads, self.input_key_size, self.input_value_size
        gate_size = self.rnn.num_gates * self.hidden_size
        key_w, key_b, value_w, value_b = self._input_maps()
        x_flat = x.reshape(x.shape[0], steps * batch, -1).expand(members, -1, -1)

        # Input attention: keys of every step at once, pre-scaled so that a dot product
        # with a query, summed per head, is that head's scaled score. The null row's key is
        # the bias, laid out block-diagonally so that one matmul gives every head's score.
        scale = 1.0 / math.sqrt(dk)
        keys = torch.baddbmm(key_b.unsqueeze(1), x_flat, key_w)             # (M, TB, E)
        if self.rank_by == "null_attention":
            # What the step needs: the real row's keys minus the null row's, 0 exactly
            # for a zero input. The bias cancels, so it gets a zero gradient, not none
            # (DistributedDataParallel and RLlib's learners expect every parameter used).
            keys = keys - key_b.unsqueeze(1)
        keys = keys.mul_(scale)
        keys = keys.view(members, steps, 1, batch, -1).transpose(0, 1)      # (T, M, 1, B, E)
        head_of = torch.eye(heads, device=x.device, dtype=x.dtype).repeat_interleave(dk, 0)
        null_key = (key_b * scale).unsqueeze(-1) * head_of                  # (M, nh*dk, nh)

        # Values averaged over heads, composed with each unit's input-to-hidden weights:
        # unit k's input is a_real * W_k v(x_t) + a_null * W_k v(0), with v(x) = W_v x + v(0),
        # so one group matmul of [a_real * x_t, a_real + a_null] with [W_k W_v; W_k v(0)]
        # per step gives it, and no (T, B, Kt, gates) tensor of projected inputs is built.
        w_ih = self.rnn.ih.weight.view(members, units, dv, gate_size)
        v_weight = value_w.view(members, -1, heads, dv).mean(2)             # (M, D, dv)
        v_bias = value_b.view(members, 1, heads, dv).mean(2, keepdim=True)  # (M, 1, 1, dv)
        w_in = torch.matmul(torch.cat([v_weight, v_bias[:, 0]], 1).unsqueeze(1), w_ih)
        w_in = w_in.view(groups, -1, gate_size)                             # (MK, D+1, G)
        x_steps = x.view(-1, steps, 1, batch, x.shape[-1]).unbind(1)       # (M|1, 1, B, D)

        # h -> (hidden gates | input-attention query) in one group matmul.
        hh_bias = self.rnn.hh.bias
        if self.is_lstm:  # the LSTM sums both biases; the GRU needs b_ih apart (gate n)
            hh_bias = hh_bias + self.rnn.ih.bias
        w_hq = torch.cat([self.rnn.hh.weight, self.query.weight], dim=2)
        b_hq = torch.cat([hh_bias, self.query_bias_or_zeros()], dim=1).unsqueeze(1)
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
        keep = self._dropout_scales(self.input_dropout, x,
                                    (steps, 2, members, units, batch))
        comm_keep = self._dropout_scales(self.comm_dropout, x,
                                         (steps, members, units, units, batch, c_heads))
        jitter = selection.jitter(self.training, x, (steps, members, units, batch))

        rank_bias = (self.selection_bias.view(members, units, 1) if selection.usage_floor
                     else None)
        weights = StepWeights(w_hq, b_hq, null_key, w_in, ih_bias, w_comm, b_comm,
                              out_bias, self.comm_output.weight, self._rank_keep(batch, x),
                              rank_bias)
        sizes = (members, units, batch, gate_size, c_heads, comm_split, self.is_lstm,
                 stats, selection, self.rank_by == "null_attention")
        step = _step_function(self.compile_options)
        h = state[0]
        c = state[1] if self.is_lstm else None
        outputs, masks = [], []
        usage = shares = x.new_zeros(members, units, batch)
        valid_steps = [None] * steps if valid is None else valid.unbind(0)
        holding = hold or [False] * steps
        if not selection.carries_tiredness:
            tiredness = None
        elif tiredness is None:
            tiredness = x.new_zeros(members, units, batch)
        for keys_t, x_t, keep_t, comm_keep_t, jitter_t, valid_t, hold_t in zip(
                keys.unbind(0), x_steps, keep, comm_keep, jitter, valid_steps, holding):
            if tiredness is not None:
                penalty = selection.penalty(tiredness)
                jitter_t = penalty if jitter_t is None else jitter_t + penalty
            h_step, c_step, mask, share = step(h, c, keys_t, x_t, keep_t, comm_keep_t,
                                               jitter_t, weights, sizes)
            if hold_t:  # padding: the state waits and no unit is active
                real = valid_t > 0                                          # (B,)
                h = torch.where(real.view(1, -1, 1), h_step, h)
                c = None if c is None else torch.where(real.view(1, -1, 1), c_step, c)
                mask = mask * valid_t
            else:
                h, c = h_step, c_step
            if stats:
                shares = shares + (share if valid_t is None else share * valid_t)
            if stats or selection.usage_floor:
                usage = usage + (mask if valid_t is None else mask * valid_t)
            if tiredness is not None:
                tired = selection.tire(tiredness, mask)
                tiredness = torch.where(real, tired, tiredness) if hold_t else tired
            outputs.append(h)
            if return_mask:
                masks.append(mask.bool())
        # While annealing the counts are not the model's Ka: nothing to hold them to.
        if selection.usage_floor and self.training and self.dense_fraction == 0:
            counted = steps * batch if valid is None else valid.sum()
            if counted > 0:
                selection.move_bias_(self.selection_bias.view(members, units),
                                     usage.sum(-1) / counted)
        return (outputs, ([h, c] if self.is_lstm else [h]), masks, tiredness,
                (usage, shares) if stats else None)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Before the selection buffer was always registered it existed only with a usage
        # floor: a checkpoint without it had a zero bias.
        if prefix + "selection_bias" not in state_dict:
            state_dict[prefix + "selection_bias"] = torch.zeros_like(self.selection_bias)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class RIMCell(RIMScan):
    r"""One step of a Recurrent Independent Mechanisms layer.

    At each step the input ``x`` and a null (all-zero) input are read through an input
    attention in which every unit queries with its own previous state; the ``k`` units
    that pay the least attention to the null input are active (the paper's rule). Every
    unit runs its own LSTM or GRU on what it read (inactive units read zeros); active
    units then read all units' new states through a multi-head communication attention
    with a residual connection and take the result; inactive units keep their previous
    state exactly and pass no gradient back through their new state.

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
        rank_by: how the ``k`` active units are chosen. ``"null_attention"`` (the paper's
            rule and the authors' code): the ``k`` with the highest input-attention
            probability on the real row (softmax over {real, null}, averaged over input
            heads), i.e. the least on the null row. ``"score"`` (the community
            implementation's rule): the ``k`` with the highest head-averaged score of the
            real row. The two agree only when the key map has no bias (the null row's
            score is then 0). Under the paper's rule the key map's bias has no effect (it
            is the null row's key and shifts the real row's alike; its gradient is zero);
            it is kept so that both rules have the same weights.
        query_bias: give each unit's query map a bias (the reference's have none; without
            one, a unit whose state is zero scores 0 on every input).
        selection: the selection experiments (:class:`~rim_rllib.selection.Selection`:
            score noise and dropout, cosine scores, the usage floor, fatigue); ``None``
            for none, the paper's selection. The keyword arguments of these settings
            (``score_noise=...``, ``balance_loss=True``) are deprecated.

    Buffers: ``selection_bias`` :math:`(K_t,)`, the usage floor's ranking bias (zeros
    unless ``selection.usage_floor``).

    Inputs: input, hx
        - input: :math:`(B, D)`.
        - hx: for ``"lstm"`` a tuple ``(h, c)``, for ``"gru"`` a tensor ``h``; each
          :math:`(B, K_t, H)`. With ``selection.fatigue`` the units' tiredness
          :math:`(B, K_t)` is a last entry (``(h, c, tiredness)``, ``(h, tiredness)``).
          Zeros when omitted.

    Outputs: hx' (same structure and shapes as ``hx``); with ``return_mask=True`` also the
    activation mask, a bool tensor :math:`(B, K_t)`; with ``return_stats=True`` instead a
    :class:`~rim_rllib.selection.SelectionStats` (mask :math:`(B, K_t)`, usage and shares
    :math:`(B, K_t)`).
    """

    def __init__(self, input_size: int, hidden_size: int, num_units: int, k: int,
                 cell: str = "lstm", input_key_size: int = 64, input_value_size: int = 400,
                 input_query_size: int = 64, num_input_heads: int = 1,
                 input_dropout: float = 0.1, comm_key_size: int = 32,
                 comm_value_size: int = 100, comm_query_size: int = 32,
                 num_comm_heads: int = 4, comm_dropout: float = 0.1,
                 rank_by: str = "null_attention", query_bias: bool = True,
                 selection: Selection | None = None, device=None, dtype=None,
                 **deprecated):
        super().__init__()
        selection, self.legacy_balance = selection_of("RIMCell", selection, deprecated)
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
        if rank_by not in RANK_RULES:
            raise ValueError(f"rank_by must be one of {list(RANK_RULES)} (the paper's rule "
                             f"first), got {rank_by!r}")
        _check_bool("query_bias", query_bias)
        selection.check_for(k, num_units)
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
        self.rank_by = rank_by
        self.query_bias = query_bias
        self.selection = selection
        self.register_buffer("selection_bias", torch.zeros(num_units, **factory))

        self.key = nn.Linear(input_size, num_input_heads * input_key_size, **factory)
        self.value = nn.Linear(input_size, num_input_heads * input_value_size, **factory)
        self.query = GroupLinear(hidden_size, num_input_heads * input_query_size, num_units,
                                 bias=query_bias, **factory)
        self.rnn = CELLS[cell](input_value_size, hidden_size, num_units, **factory)
        self.comm_query = GroupLinear(hidden_size, num_comm_heads * comm_query_size,
                                      num_units, **factory)
        self.comm_key = GroupLinear(hidden_size, num_comm_heads * comm_key_size, num_units,
                                    **factory)
        self.comm_value = GroupLinear(hidden_size, num_comm_heads * comm_value_size,
                                      num_units, **factory)
        self.comm_output = GroupLinear(num_comm_heads * comm_value_size, hidden_size,
                                       num_units, **factory)

    num_members = 1

    def _input_maps(self):
        return (self.key.weight.t().unsqueeze(0), self.key.bias.unsqueeze(0),
                self.value.weight.t().unsqueeze(0), self.value.bias.unsqueeze(0))

    def _member_ks(self) -> tuple[int, ...]:
        return (self.k,)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_units={self.num_units}, "
                f"k={self.k}, cell={self.cell!r}, rank_by={self.rank_by!r}"
                + ("" if self.selection == Selection() else f", selection={self.selection}"))

    def forward(self, input: Tensor, hx=None, return_mask: bool = False,
                return_stats: bool = False):
        check_float_tensor("input", input)
        if input.dim() != 2 or input.shape[1] != self.input_size:
            raise ValueError(f"input must have shape (batch, input_size={self.input_size}), "
                             f"got {tuple(input.shape)}")
        check_requests(return_mask, return_stats)
        batch = input.shape[0]
        carried = self.selection.carries_tiredness
        states = checked_states(hx, self.cell, (batch, self.num_units, self.hidden_size),
                                input, names=("h", "c", "tiredness"),
                                tired=(batch, self.num_units) if carried else None)
        tiredness = states.pop().t().unsqueeze(0) if carried else None
        stats = return_stats or self.legacy_balance
        # The scan works units-first: (K, B, H).
        outs, final, masks, tiredness, counts = self.scan(
            input.view(1, 1, batch, -1), [s.transpose(0, 1).contiguous() for s in states],
            return_mask or stats, tiredness=tiredness, stats=stats)
        new = [s.transpose(0, 1) for s in final]
        if carried:
            new.append(tiredness[0].t())
        mask = masks[0][0].t() if masks else None
        counts = None if counts is None else tuple(t[0].t() for t in counts)
        extra = asked_for(self, mask, counts, return_mask, return_stats)
        return (state_tuple(new), *extra) if extra else state_tuple(new)


def asked_for(module: nn.Module, mask: Tensor | None, counts: tuple | None,
              return_mask: bool, return_stats: bool) -> tuple:
    """What a forward returns after its state: ``(mask,)``, ``(stats,)`` or ``()``, from
    the ``mask`` and the summed ``(usage, shares)`` laid out as it returns them; the
    deprecated ``aux_loss`` stored on ``module``."""
    if counts is not None:
        stats = SelectionStats(mask, *counts)
        if module.legacy_balance:
            module.aux_loss = stats.load_balance_loss()
        if return_stats:
            return (stats,)
    return (mask,) if return_mask else ()


def check_requests(return_mask: bool, return_stats: bool) -> None:
    """A forward returns one extra value at most: the mask or the stats (which hold it)."""
    if return_mask and return_stats:
        raise ValueError("pass return_mask or return_stats, not both: the stats hold the "
                         "mask (stats.mask)")


def reverse_each(t: Tensor, reverse: Tensor, time_dim: int, batch_dim: int) -> Tensor:
    """``t`` with each sequence's steps in the order ``reverse`` :math:`(T, B)` gives (its
    own steps backwards, its padding in place), over ``t``'s time and batch dims."""
    shape = [1] * t.dim()
    shape[time_dim], shape[batch_dim] = reverse.shape
    return t.gather(time_dim, reverse.view(shape).expand_as(t))


def unpack_sequence(input, lengths, valid, batch_first: bool):
    """``(input, lengths, packed)``: a ``PackedSequence`` as the padded tensor and the
    lengths ``nn.LSTM`` would see (in the batch's own order, laid out as ``batch_first``
    says), with ``packed`` the original; any other input as it is, ``packed`` ``None``."""
    if not isinstance(input, PackedSequence):
        return input, lengths, None
    if lengths is not None or valid is not None:
        raise ValueError("a PackedSequence carries its lengths: pass neither lengths nor "
                         "valid with one")
    padded, lengths = pad_packed_sequence(input, batch_first=batch_first)
    return padded, lengths, input


def pack_like(padded: Tensor, like: PackedSequence, lengths: Tensor, batch_first: bool
              ) -> PackedSequence:
    """``padded`` :math:`(T, B, *)` (:math:`(B, T, *)` with ``batch_first``), in the
    batch's own order, packed as ``like`` is: its batch sizes and sort order."""
    time_major = padded.transpose(0, 1) if batch_first else padded
    lengths = lengths.cpu()
    if like.sorted_indices is not None:
        time_major = time_major.index_select(1, like.sorted_indices)
        lengths = lengths[like.sorted_indices.cpu()]
    data = pack_padded_sequence(time_major, lengths).data
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


class RIMStack(nn.Module):
    """Layers and directions of RIM cells over ``M`` models at once (``M = 1`` for
    :class:`RIM`); subclasses set ``cells``, the sizes, ``num_members`` and check inputs."""

    num_members: int
    #: With cells built with the deprecated ``balance_loss=True``: the last forward's
    #: load-balancing loss, the mean over layers and directions (a scalar for
    #: :class:`RIM`, :math:`(M,)` for a pack).
    aux_loss: Tensor | None = None

    @property
    def selection(self) -> Selection:
        """The cells' :class:`~rim_rllib.selection.Selection`."""
        return self.cells[0].selection

    @property
    def legacy_balance(self) -> bool:
        """Whether the cells were built with the deprecated ``balance_loss=True``."""
        return self.cells[0].legacy_balance

    def _check_valid(self, valid, steps: int, batch: int | None, like: Tensor
                     ) -> Tensor | None:
        """``valid`` (``(T, B)``, ``(B, T)`` with ``batch_first``, ``(T,)`` unbatched:
        ``batch`` is None) as time-major :math:`(T, B)` weights in ``like``'s dtype."""
        if valid is None:
            return None
        if batch is None:
            expected, order = (steps,), "seq_len"
        elif self.batch_first:
            expected, order = (batch, steps), "batch, seq_len"
        else:
            expected, order = (steps, batch), "seq_len, batch"
        if not isinstance(valid, Tensor) or tuple(valid.shape) != expected:
            got = tuple(valid.shape) if isinstance(valid, Tensor) else type(valid).__name__
            raise ValueError(f"valid must be a tensor of shape ({order})={expected} (1 for "
                             f"a real step, 0 for padding), got {got}")
        weights = valid.to(like.dtype)
        if batch is None:
            return weights.unsqueeze(1)
        return weights.t() if self.batch_first else weights

    def _check_lengths(self, lengths, valid: Tensor | None, steps: int, batch: int | None,
                       like: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """``(lengths, valid)``: ``lengths`` (:math:`(B,)`, each in ``1..steps``) as a long
        tensor on ``like``'s device and the :math:`(T, B)` real-step weights it marks;
        without lengths, ``(None, valid)``."""
        if lengths is None:
            return None, valid
        if valid is not None:
            raise ValueError("pass lengths or valid, not both: lengths mark the padding")
        if batch is None:
            raise ValueError("lengths needs batched input (seq_len, batch, input_size); "
                             "an unbatched sequence is one length")
        lengths = torch.as_tensor(lengths)
        if (lengths.shape != (batch,) or lengths.is_floating_point()
                or lengths.dtype == torch.bool or not bool(((lengths >= 1)
                                                            & (lengths <= steps)).all())):
            raise ValueError(f"lengths must be {batch} ints in 1..seq_len={steps}, one per "
                             f"sequence of the batch, got {lengths.tolist()}")
        lengths = lengths.to(like.device, torch.long)
        steps_in = torch.arange(steps, device=like.device).unsqueeze(1) < lengths
        return lengths, steps_in.to(like.dtype)

    def _packed_like(self, result: tuple, packed: PackedSequence | None, lengths,
                     members_dim: int | None = None) -> tuple:
        """A forward's ``result`` with its output (and mask, alone or in the stats) packed
        as the input ``packed`` was; as it is when the input was no ``PackedSequence``. A
        pack's outputs lead with the members' dim ``members_dim`` (0), which moves after
        the packed one."""
        if packed is None:
            return result

        def repack(t: Tensor) -> PackedSequence:
            t = t if members_dim is None else t.movedim(members_dim, 2)
            return pack_like(t, packed, lengths, self.batch_first)

        out, states, *rest = result
        if rest and isinstance(rest[0], SelectionStats):
            rest[0] = rest[0]._replace(mask=repack(rest[0].mask))
        elif rest:
            rest[0] = repack(rest[0])
        return (repack(out), states, *rest)

    def _finish(self, output: Tensor, h_n: list[Tensor], mask: Tensor | None,
                counts: tuple | None, return_mask: bool, return_stats: bool) -> tuple:
        """``(output, hx')`` and the mask or the stats as asked for, from the last
        layer's ``output``, the final state's parts ``h_n`` (tiredness last), the ``mask``
        and the summed ``(usage, shares)``, all laid out as the forward returns them;
        the deprecated ``aux_loss`` stored."""
        return (output, state_tuple(h_n),
                *asked_for(self, mask, counts, return_mask, return_stats))

    def _run_layers(self, x: Tensor, states: list[Tensor], return_mask: bool,
                    valid: Tensor | None = None, tiredness: Tensor | None = None,
                    lengths: Tensor | None = None, stats: bool = False):
        r"""Every layer and direction over ``x``.

        Args:
            x: :math:`(M, T, B, D)`, or :math:`(1, T, B, D)` read by every member.
            states: ``[h_0]`` or ``[h_0, c_0]``, each :math:`(M, L \cdot dirs, B, K_t H)`.
            valid: :math:`(T, B)` step weights for the usage statistics, or ``None``.
            tiredness: :math:`(M, L \cdot dirs, B, K_t)` (``fatigue`` only), or ``None``
                for zeros.
            lengths: :math:`(B,)` each sequence's length (``valid`` is then its steps):
                padding holds the state, and the backward direction reads each sequence
                from its own last step.
            stats: also the unit-usage statistics (and the mask).

        Returns: output :math:`(M, T, B, dirs \cdot K_t H)` (zeros at the padding with
        ``lengths``, as ``pad_packed_sequence`` gives it), ``[h_n(, c_n)]`` like
        ``states``, the mask :math:`(M, T, B, L \cdot dirs, K_t)` (``None`` unless
        ``return_mask`` or ``stats``), the final tiredness like ``tiredness`` (``None``
        without ``fatigue``) and with ``stats`` the summed ``(usage, shares)``, each
        :math:`(M, L \cdot dirs, B, K_t)` (else ``None``).
        """
        members, units, hidden = self.num_members, self.num_units, self.hidden_size
        _, steps, batch, _ = x.shape
        finals, masks, tired, counts = [], [], [], []
        return_mask = return_mask or stats
        reverse = hold = None
        if lengths is not None:
            # The steps with padding, the same read either way (padding stays last): one
            # host sync per forward, and the steps without any need not hold.
            hold = (valid == 0).any(1).tolist()
        if lengths is not None and self.bidirectional:
            # Each sequence's own steps backwards, its padding left in place.
            t = torch.arange(steps, device=x.device).unsqueeze(1)
            reverse = torch.where(t < lengths, lengths - 1 - t, t)          # (T, B)
        for layer in range(self.num_layers):
            layer_outputs = []
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                state = [s[:, index].reshape(members, batch, units, hidden).transpose(1, 2)
                         .reshape(members * units, batch, hidden) for s in states]
                seq, steps_valid = x, valid
                if direction and reverse is not None:
                    seq = reverse_each(x, reverse, 1, 2)
                elif direction:
                    seq = x.flip(1)
                    steps_valid = None if valid is None else valid.flip(0)
                start = None if tiredness is None else tiredness[:, index].transpose(1, 2)
                outs, final, step_masks, end, summed = self.cells[index].scan(
                    seq, state, return_mask, steps_valid, start, hold, stats)
                if end is not None:
                    tired.append(end.transpose(1, 2))                          # (M, B, K)
                if summed is not None:
                    counts.append([t.view(members, units, batch).transpose(1, 2)
                                   for t in summed])                           # (M, B, K)
                out = torch.stack(outs).view(steps, members, units, batch, hidden)
                if direction and reverse is not None:
                    out = reverse_each(out, reverse, 0, 3)
                    if return_mask:
                        step_masks = reverse_each(torch.stack(step_masks), reverse, 0, 3
                                                  ).unbind(0)
                elif direction:
                    out = out.flip(0)
                    step_masks = step_masks[::-1]
                layer_outputs.append(out.permute(1, 0, 3, 2, 4).reshape(members, steps, batch, -1))
                finals.append([f.view(members, units, batch, hidden).transpose(1, 2)
                               .reshape(members, batch, -1) for f in final])
                if return_mask:                                            # (M, T, B, K)
                    masks.append(torch.stack(step_masks, 1).transpose(2, 3))
            x = torch.cat(layer_outputs, dim=-1) if self.bidirectional else layer_outputs[0]
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout)
        if lengths is not None:
            x = x * valid.unsqueeze(-1)
        h_n = [torch.stack([f[i] for f in finals], 1) for i in range(len(states))]
        return (x, h_n, (torch.stack(masks, dim=3) if return_mask else None),
                torch.stack(tired, 1) if tired else None,
                tuple(torch.stack(c, 1) for c in zip(*counts)) if stats else None)


class RIM(RIMStack):
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
        input_key_size, input_query_size, input_value_size: every layer's, see
            :class:`RIMCell`.
        num_input_heads, input_dropout: every layer's, see :class:`RIMCell`.
        comm_key_size, comm_query_size, comm_value_size: every layer's, see
            :class:`RIMCell`.
        num_comm_heads, comm_dropout: every layer's, see :class:`RIMCell`.
        rank_by: how every layer chooses its active units, see :class:`RIMCell`.
        query_bias: whether the per-unit query maps have a bias, see :class:`RIMCell`.
        selection: the selection experiments of every layer
            (:class:`~rim_rllib.selection.Selection`), ``None`` for none.

    Inputs: input, hx
        - input: :math:`(T, B, D)`, :math:`(B, T, D)` with ``batch_first``,
          :math:`(T, D)` unbatched, or a ``PackedSequence`` of variable-length
          sequences (``torch.nn.utils.rnn.pack_padded_sequence``, sorted or not), as
          ``nn.LSTM`` takes it: each sequence is then run as if alone, padding never
          activates a unit, enters the usage statistics or moves the state.
        - hx: ``(h_0, c_0)`` for ``"lstm"``, ``h_0`` for ``"gru"``; each
          :math:`(L \cdot dirs, B, K_t \cdot H)` (no batch dim when unbatched), with unit
          ``j``'s state at features ``j*H:(j+1)*H``. With ``selection.fatigue`` the
          units' tiredness :math:`(L \cdot dirs, B, K_t)` is a last entry
          (``(h_0, c_0, tiredness_0)``, ``(h_0, tiredness_0)``). Zeros when omitted.
        - valid (keyword, optional): :math:`(T, B)` (:math:`(B, T)` with ``batch_first``,
          :math:`(T)` unbatched), 1 for a real step and 0 for padding: the unit-usage
          statistics (``return_stats``, the usage floor) count real steps only. The
          outputs are computed for every step either way.
        - lengths (keyword, optional): :math:`(B,)` ints, each sequence's length in a
          padded batch: the same as packing it (final states after each sequence's own
          last step, the backward direction from it, padding inactive), with the
          output and mask zero at the padding. Not with ``valid``.

    Outputs: ``output, h_n (or (h_n, c_n))``, and the mask or the stats when asked for
        - output: :math:`(T, B, dirs \cdot K_t \cdot H)` (batch first with ``batch_first``),
          the last layer's states at every step; a ``PackedSequence`` packed as the input
          was when it was one (and so is the mask).
        - h_n, c_n: like ``hx``, the final states of every layer and direction (and the
          tiredness after the last step, with ``fatigue``).
        - mask (only with ``return_mask=True``): bool :math:`(T, B, L \cdot dirs, K_t)`
          (batch first with ``batch_first``), which units were active at each step, layers
          and directions ordered like ``h_n``.
        - stats (only with ``return_stats=True``, not with ``return_mask``): a
          :class:`~rim_rllib.selection.SelectionStats` (the mask, each unit's usage and
          selection shares); ``stats.load_balance_loss()`` is the load-balancing loss a
          training loop may add.
    """

    def __init__(self, input_size: int, hidden_size: int, num_units: int, k: int,
                 cell: str = "lstm", num_layers: int = 1, bidirectional: bool = False,
                 batch_first: bool = False, dropout: float = 0.0,
                 input_key_size: int = 64, input_value_size: int = 400,
                 input_query_size: int = 64, num_input_heads: int = 1,
                 input_dropout: float = 0.1, comm_key_size: int = 32,
                 comm_value_size: int = 100, comm_query_size: int = 32,
                 num_comm_heads: int = 4, comm_dropout: float = 0.1,
                 rank_by: str = "null_attention", query_bias: bool = True,
                 selection: Selection | None = None, device=None, dtype=None,
                 **deprecated):
        super().__init__()
        selection, legacy_balance = selection_of("RIM", selection, deprecated)
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
        self.num_members = 1
        layer_out = self.num_directions * num_units * hidden_size
        cell_args = dict(
            cell=cell, input_key_size=input_key_size, input_value_size=input_value_size,
            input_query_size=input_query_size, num_input_heads=num_input_heads,
            input_dropout=input_dropout, comm_key_size=comm_key_size,
            comm_value_size=comm_value_size, comm_query_size=comm_query_size,
            num_comm_heads=num_comm_heads, comm_dropout=comm_dropout, rank_by=rank_by,
            query_bias=query_bias, selection=selection, device=device, dtype=dtype)
        self.cells = nn.ModuleList(
            RIMCell(input_size if layer == 0 else layer_out, hidden_size, num_units, k,
                    **cell_args)
            for layer in range(num_layers) for _ in range(self.num_directions))
        for rim_cell in self.cells:
            rim_cell.legacy_balance = legacy_balance

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_units={self.num_units}, "
                f"k={self.k}, cell={self.cell!r}, num_layers={self.num_layers}, "
                f"bidirectional={self.bidirectional}, batch_first={self.batch_first}")

    def forward(self, input: Tensor | PackedSequence, hx=None, return_mask: bool = False,
                valid: Tensor | None = None, lengths: Tensor | None = None,
                return_stats: bool = False, tiredness=None):
        if tiredness is not None:
            raise TypeError("RIM.forward's tiredness= is gone: the tiredness travels in hx, "
                            "as its last entry ((h_0, c_0, tiredness_0) for cell='lstm')")
        check_requests(return_mask, return_stats)
        input, lengths, packed = unpack_sequence(input, lengths, valid, self.batch_first)
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
        tiredness = states.pop().unsqueeze(0) if self.selection.carries_tiredness else None
        valid = self._check_valid(valid, steps, batch if batched else None, x)
        lengths, valid = self._check_lengths(lengths, valid, steps, batch if batched else None,
                                             x)
        stats = return_stats or self.legacy_balance
        out, h_n, mask, tired, counts = self._run_layers(
            x.unsqueeze(0), [s.unsqueeze(0) for s in states], return_mask, valid, tiredness,
            lengths, stats)
        x, h_n = out[0], [s[0] for s in h_n] + ([tired[0]] if tired is not None else [])
        if counts is not None:
            counts = tuple(t[0] for t in counts)  # (L*dirs, B, K), B = 1 unbatched
        if not batched:
            h_n = [s.squeeze(1) for s in h_n]
            x = x.squeeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        if mask is not None:
            mask = mask[0]                                                  # (T, B, L*dirs, K)
            if not batched:
                mask = mask.squeeze(1)
            elif self.batch_first:
                mask = mask.transpose(0, 1)
        result = self._finish(x, h_n, mask, counts, return_mask, return_stats)
        return self._packed_like(result, packed, lengths)

    def _initial_states(self, hx, x: Tensor, batched: bool) -> list[Tensor]:
        layers = self.num_layers * self.num_directions
        width = self.num_units * self.hidden_size
        units = (layers, x.shape[1], self.num_units) if batched else (layers, self.num_units)
        expected = (layers, x.shape[1], width) if batched else (layers, width)
        states = checked_states(hx, self.cell, expected, x,
                                tired=units if self.selection.carries_tiredness else None)
        return states if batched else [s.unsqueeze(1) for s in states]
