"""Experiments on how a RIM selects its active units, beyond the paper's rule.

The paper's RIM ranks its units by their attention to the input (``rank_by``, a model
argument) and activates the top ``Ka``. Everything this project has tried against *unit
collapse* (some units never winning the ranking) changes that ranking, and lives here, in
one frozen configuration object given to the model as ``selection=``::

    from rim_rllib import RIM, Selection
    rim = RIM(1, 32, 6, 2, selection=Selection(fatigue=1.0, score_noise=0.5))

``Selection()`` (every experiment off) is the paper's selection. The object is hashable,
so it stays a static argument of the compiled step (:func:`rim_rllib.compile_steps`); the
recurrence calls its methods at fixed points (the per-step jitter, the ranked order, the
tiredness, the usage floor's bias), so that a new experiment is a field and a method here.

The load-balancing loss is not a setting: a training loop asks the forward for the
selection statistics (``return_stats=True``, as Hugging Face's mixture-of-experts models
return router logits on request) and adds ``stats.load_balance_loss()`` with the weight
it chooses.
"""

from dataclasses import dataclass, fields
from typing import NamedTuple

import torch
from torch import Tensor

from rim_rllib.group import is_number

SCORE_NOISE_TYPES = ("gaussian", "gumbel")


@dataclass(frozen=True)
class Selection:
    r"""How the top-``Ka`` ranking is changed; every experiment is off by default.

    Args:
        score_noise: in training, add ``score_noise`` times standard noise of
            ``score_noise_type`` (``"gaussian"`` or ``"gumbel"``) to the ranked scores
            before the top-``k`` (noisy top-k gating; the attention itself is unchanged).
        score_noise_type: ``"gaussian"`` or ``"gumbel"``.
        score_dropout: in training, drop each unit from the top-``k`` ranking of a step
            with this probability (it wins only if fewer than ``k`` others remain).
        cosine_scores: rank the units by the cosine of their query and the input's key
            instead of the scaled dot product, in training and evaluation (the attention
            itself is unchanged). A unit's query grows with its state, and an inactive
            unit's state is frozen: with dot products a unit that lost the first steps
            from the zero state keeps a small query and loses every later step; the
            cosine ranks by direction alone (cosine routing, Chi et al., 2022).
        usage_floor: hold each unit's activation rate within ``[usage_floor,
            1 - usage_floor]``, ``0 <= usage_floor < k / num_units`` (0: off). A per-unit
            bias (the model's ``selection_bias`` buffer), added to the ranked scores in
            training and evaluation, moves by ``usage_floor_step`` after every training
            forward that is not annealed (:func:`rim_rllib.set_dense_fraction_`): up for a
            unit active in fewer than ``usage_floor`` of that forward's steps, down above
            ``1 - usage_floor``, not inside the band. No gradient and no loss term: the
            auxiliary-loss-free load balancing of DeepSeek-V3 (Wang et al., 2024) with a
            band instead of a target.
        usage_floor_step: how far the bias moves per training forward, > 0.
        fatigue: lower each unit's ranked score, in training and evaluation, by
            ``fatigue`` times its *tiredness*: ``fatigue_decay * tiredness + active``
            after each step (0: off). A unit that won the last steps yields to one that
            has rested, so a small ``k`` spreads a sequence over the units. The tiredness
            is part of the recurrent state (``hx``), so a sequence run in pieces, or step
            by step as an agent acts, is the sequence run whole.
        fatigue_decay: how much tiredness a unit keeps per step, in ``[0, 1)``.

    The ranking's additive terms are in the units of the ranked score (see
    :func:`rim_rllib.rim.rank_scores`), so they mean the same under both ``rank_by``
    rules.
    """

    score_noise: float = 0.0
    score_noise_type: str = "gaussian"
    score_dropout: float = 0.0
    cosine_scores: bool = False
    usage_floor: float = 0.0
    usage_floor_step: float = 0.01
    fatigue: float = 0.0
    fatigue_decay: float = 0.9

    def __post_init__(self):
        def number(name: str, accept, expected: str) -> None:
            value = getattr(self, name)
            if not is_number(value) or not accept(value):
                raise ValueError(f"{name} must be {expected}, got {value!r}")
            object.__setattr__(self, name, float(value))  # 1 and 1.0: one static argument

        number("score_noise", lambda v: v >= 0, "a finite scale >= 0")
        if self.score_noise_type not in SCORE_NOISE_TYPES:
            raise ValueError(f"score_noise_type must be one of {list(SCORE_NOISE_TYPES)}, "
                             f"got {self.score_noise_type!r}")
        number("score_dropout", lambda v: 0 <= v < 1, "a probability in [0, 1)")
        if not isinstance(self.cosine_scores, bool):
            raise ValueError(f"cosine_scores must be True or False, got {self.cosine_scores!r}")
        number("usage_floor", lambda v: 0 <= v < 1, "a rate in [0, 1)")
        number("usage_floor_step", lambda v: v > 0, "a finite number > 0")
        number("fatigue", lambda v: v >= 0, "a finite number >= 0")
        number("fatigue_decay", lambda v: 0 <= v < 1, "a number in [0, 1)")

    def check_for(self, k: int, num_units: int) -> None:
        """Refuse settings a model of ``k`` active units out of ``num_units`` cannot
        meet."""
        if not self.usage_floor < k / num_units:
            raise ValueError(f"usage_floor must be a rate in [0, k/num_units={k}/{num_units}) "
                             f"(every unit can reach it), got {self.usage_floor!r}")

    @property
    def carries_tiredness(self) -> bool:
        """Whether the recurrent state holds the units' tiredness (``fatigue > 0``)."""
        return self.fatigue > 0

    def jitter(self, training: bool, like: Tensor, shape: tuple) -> list:
        """Per-step additions to the ranked scores, ``shape`` :math:`(T, M, K_t, B)`
        unbound over steps: noise and, for units dropped from the ranking, a score too
        low to win; ``None`` per step when neither applies (always in evaluation)."""
        if not training or (self.score_noise == 0 and self.score_dropout == 0):
            return [None] * shape[0]
        jitter = like.new_zeros(shape)
        if self.score_noise:
            if self.score_noise_type == "gumbel":
                draws = -torch.empty_like(jitter).exponential_().log()
            else:
                draws = torch.randn_like(jitter)
            jitter = jitter + self.score_noise * draws
        if self.score_dropout:
            dropped = torch.rand(shape, device=like.device) < self.score_dropout
            jitter = jitter.masked_fill(dropped, -1e4)
        return jitter.unbind(0)

    def order(self, ranked: Tensor, unit_queries: Tensor, keys_t: Tensor, null_key: Tensor,
              by_null: bool) -> Tensor:
        """What the top-``k`` orders the units by, :math:`(M, K_t, B)`: the ranked scores
        (:func:`rim_rllib.rim.rank_scores`), or with ``cosine_scores`` the cosine of each
        unit's query :math:`(M, K_t, B, E)` and the real row's key :math:`(M, 1, B, E)`
        (with ``by_null``, bias-free, minus the cosine with the null row's key, ``null_key``
        :math:`(M, E, n_h)` block-diagonal). Runs inside the compiled step."""
        if not self.cosine_scores:
            return ranked

        def cosine(key: Tensor) -> Tensor:
            dot = (unit_queries * key).sum(-1)
            return dot / (unit_queries.norm(dim=-1) * key.norm(dim=-1)).clamp_min(1e-12)

        if not by_null:
            return cosine(keys_t)
        null_vector = null_key.sum(-1)[:, None, None]                      # (M, 1, 1, E)
        return cosine(keys_t + null_vector) - cosine(null_vector)

    def penalty(self, tiredness: Tensor) -> Tensor:
        """The ranked-score change of units as tired as ``tiredness``."""
        return tiredness * -self.fatigue

    def tire(self, tiredness: Tensor, mask: Tensor) -> Tensor:
        """The tiredness after a step whose activation mask is ``mask``."""
        return tiredness * self.fatigue_decay + mask

    @torch.no_grad()
    def move_bias_(self, bias: Tensor, rate: Tensor) -> None:
        """One step of the usage floor's rule on ``bias`` :math:`(M, K_t)` for the
        activation rates :math:`(M, K_t)` of a training forward, in place; then each
        member's biases are centred (only their differences rank). A member whose units
        were all active throughout (``k = num_units``) has no selection to balance."""
        push = (rate < self.usage_floor).to(rate.dtype) - (rate > 1 - self.usage_floor).to(
            rate.dtype)
        selecting = rate.min(dim=1, keepdim=True).values < 1
        moved = bias + self.usage_floor_step * push * selecting
        bias.copy_(moved - moved.mean(dim=1, keepdim=True))


#: The field names of :class:`Selection`: also the trainables' flat config keys.
SELECTION_KEYS = tuple(f.name for f in fields(Selection))


def with_selection(kwargs: dict) -> dict:
    """Model keyword arguments with the selection settings among them (flat, as the
    trainables' configs name them: ``fatigue``, ``score_noise``, ...) gathered into one
    ``selection=Selection(...)``."""
    settings = {key: value for key, value in kwargs.items() if key in SELECTION_KEYS}
    rest = {key: value for key, value in kwargs.items() if key not in SELECTION_KEYS}
    if not settings:
        return rest
    if rest.get("selection") is not None:
        raise ValueError(f"give the selection settings {sorted(settings)} or selection=, "
                         "not both")
    return rest | {"selection": Selection(**settings)}


def load_balance_loss(usage: Tensor, shares: Tensor) -> Tensor:
    r"""The load-balancing loss of Switch Transformers (Fedus et al., 2021) for top-``Ka``
    unit selection: :math:`K_t \sum_j f_j P_j`, with :math:`f_j` unit ``j``'s share of the
    activations and :math:`P_j` its mean share of the selection softmax. It is 1 when every
    unit is selected equally often and equally likely, up to :math:`K_t` when one unit
    takes everything; its gradient (through :math:`P` only) lowers the ranked scores of
    the units used most.

    Args: ``usage``, how often each unit was active, and ``shares``, its summed softmax
    share, both :math:`(*, B, K_t)` summed over steps. Returns :math:`(*)`.
    """
    used = usage.sum(-2)
    fraction = used / used.sum(-1, keepdim=True)
    mean_share = shares.sum(-2) / shares.sum((-1, -2)).unsqueeze(-1)
    return usage.shape[-1] * (fraction * mean_share).sum(-1)


class SelectionStats(NamedTuple):
    r"""What a forward with ``return_stats=True`` returns about its unit selection.

    For :class:`rim_rllib.RIM` (a pack adds a leading members dimension :math:`M`):

    - mask: bool :math:`(T, B, L \cdot dirs, K_t)` (batch first with ``batch_first``),
      which units were active at each step, as ``return_mask=True`` gives it.
    - usage: :math:`(L \cdot dirs, B, K_t)`, each unit's active real steps per sequence
      (:math:`B = 1` for an unbatched input).
    - shares: :math:`(L \cdot dirs, B, K_t)`, each unit's selection-softmax share (over
      units, of the ranked scores) summed over real steps; carries the gradient.

    For :class:`rim_rllib.RIMCell` each is :math:`(B, K_t)`.
    """

    mask: Tensor
    usage: Tensor
    shares: Tensor

    def load_balance_loss(self) -> Tensor:
        """:func:`load_balance_loss` of each layer and direction, averaged over them: a
        scalar for a RIM or a cell, :math:`(M,)` for a pack."""
        loss = load_balance_loss(self.usage, self.shares)
        return loss if self.usage.dim() == 2 else loss.mean(-1)
