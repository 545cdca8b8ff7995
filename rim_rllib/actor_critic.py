"""The MiniGrid agent network of the reference: a small CNN over the egocentric view, a
memory (RIM, or an LSTM baseline), and actor and critic heads. Torch only; the RLlib
modules in ``rim_rllib.rl`` wrap it for both RLlib API stacks."""

import copy

import torch
from torch import Tensor, nn

from rim_rllib.group import GroupLinear
from rim_rllib.packing import (check_same, factory_of, group_to_linear, linear_to_group,
                               load_members, pack, packs, unload_members,
                               with_memories)
from rim_rllib.rim import RIM, state_tuple
from rim_rllib.selection import SelectionStats, with_selection

MEMORIES = ("rim", "lstm")


class MiniGridActorCritic(nn.Module):
    r"""CNN (conv 16 2x2, ReLU, maxpool 2x2, conv 32 2x2, ReLU, conv 64 2x2, ReLU) over a
    ``(7, 7, 3)`` view → memory → actor (64 tanh → actions) and critic (64 tanh → 1).

    Args:
        num_actions: size of the discrete action space.
        memory: ``"rim"`` or ``"lstm"`` (an ``nn.LSTM`` of ``num_units * hidden_size``).
        num_units, hidden_size, k, cell: the RIM's :math:`K_t`, per-unit :math:`H`,
            :math:`K_a` and unit type. The reference: 4 units of 16, 64 in total.
        image_shape: the observation's ``(height, width, channels)``.
        balance_loss: a weight >= 0 of the load-balancing loss
            (:meth:`aux_loss`) that the RL losses add (a cure for unit collapse; RIM
            memories only).
        **rim_kwargs: RIM attention sizes and selection settings (``fatigue=1.0`` or
            ``selection=Selection(...)``, see :class:`rim_rllib.Selection`); by default
            ``input_value_size=64`` and ``comm_value_size=hidden_size`` as in the
            reference's MiniGrid model, and no dropout: RLlib samples with the module in
            eval mode and learns in train mode, and PPO's probability ratios assume both
            are the same policy.

    Inputs: obs, state
        - obs: :math:`(B, T, 7, 7, 3)`, any numeric dtype (MiniGrid's object/color/state
          indices, not normalised, as in the reference).
        - state: dict ``{"h": (B, S)}`` (and ``"c"`` for LSTM cells) with
          :math:`S = K_t H`, and ``"tired"`` :math:`(B, K_t)` for a RIM with ``fatigue``
          (its units' tiredness, see :class:`rim_rllib.RIMCell`); :meth:`initial_state`
          gives zeros.

    Outputs: logits :math:`(B, T, A)`, values :math:`(B, T)`, the new state dict, and with
    ``return_mask=True`` the RIM activation mask :math:`(B, T, K_t)` (with
    ``return_stats=True`` its :class:`~rim_rllib.selection.SelectionStats`; ``None`` for
    the LSTM).
    """

    def __init__(self, num_actions: int, memory: str = "rim", num_units: int = 4,
                 hidden_size: int = 16, k: int = 3, cell: str = "lstm",
                 image_shape: tuple = (7, 7, 3), balance_loss: float = 0.0, **rim_kwargs):
        super().__init__()
        if memory not in MEMORIES:
            raise ValueError(f"memory must be one of {list(MEMORIES)}, got {memory!r}")
        if (isinstance(balance_loss, bool) or not isinstance(balance_loss, (int, float))
                or balance_loss < 0 or (balance_loss and memory != "rim")):
            raise ValueError(f"balance_loss must be a weight >= 0 (positive for RIM memories "
                             f"only), got {balance_loss!r} with memory={memory!r}")
        self.balance_loss = float(balance_loss)
        height, width, channels = image_shape
        self.memory_type = memory
        self.cell = cell if memory == "rim" else "lstm"
        self.state_size = num_units * hidden_size
        # A RIM with fatigue carries its units' tiredness across forwards (the agent acts
        # one step per forward) as one more state entry.
        self.memory_keys = ("h", "c") if self.cell == "lstm" else ("h",)
        self.state_sizes = {key: self.state_size for key in self.memory_keys}
        rim_kwargs = with_selection(rim_kwargs)
        if memory == "rim" and rim_kwargs.get("selection") and \
                rim_kwargs["selection"].carries_tiredness:
            self.state_sizes["tired"] = num_units
        self.state_keys = tuple(self.state_sizes)
        self.image_shape = tuple(image_shape)
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, 16, 2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 2), nn.ReLU(),
            nn.Conv2d(32, 64, 2), nn.ReLU(), nn.Flatten())
        with torch.no_grad():
            features = self.encoder(torch.zeros(1, channels, height, width)).shape[1]
        if memory == "rim":
            rim_kwargs = dict(input_value_size=64, comm_value_size=hidden_size,
                              input_dropout=0.0, comm_dropout=0.0) | rim_kwargs
            self.memory = RIM(features, hidden_size, num_units, k, cell=cell,
                              batch_first=True, **rim_kwargs)
        else:
            self.memory = nn.LSTM(features, self.state_size, batch_first=True)
        self.actor = nn.Sequential(nn.Linear(self.state_size, 64), nn.Tanh(),
                                   nn.Linear(64, num_actions))
        self.critic = nn.Sequential(nn.Linear(self.state_size, 64), nn.Tanh(),
                                    nn.Linear(64, 1))

    def initial_state(self, batch: int | None = None, device=None) -> dict[str, Tensor]:
        """Zeros: ``(S,)`` per key without ``batch``, else ``(batch, S)`` (``K_t`` for
        ``"tired"``)."""
        return {key: torch.zeros((size,) if batch is None else (batch, size), device=device)
                for key, size in self.state_sizes.items()}

    def embed(self, obs: Tensor, state: dict[str, Tensor], return_mask: bool = False,
              valid: Tensor | None = None, return_stats: bool = False):
        """The memory's output :math:`(B, T, S)` (what both heads read), the new state and
        the activation mask or the selection stats (``None`` unless ``return_mask`` or
        ``return_stats`` and a RIM memory). ``valid`` :math:`(B, T)`: which steps are real
        (RLlib pads sequences) for a RIM's usage statistics (see :class:`rim_rllib.RIM`);
        ignored by the LSTM."""
        batch, steps = obs.shape[:2]
        if tuple(obs.shape[2:]) != self.image_shape:
            raise ValueError(f"obs must have shape (batch, time, {self.image_shape}), "
                             f"got {tuple(obs.shape)}")
        images = obs.reshape(batch * steps, *self.image_shape).permute(0, 3, 1, 2).float()
        features = self.encoder(images).view(batch, steps, -1)
        return _run_memory(self, features, state, return_mask, valid, return_stats)

    def aux_loss(self, stats: SelectionStats | None) -> Tensor | None:
        """``balance_loss`` times the load-balancing loss of a forward's selection
        ``stats`` (a scalar; the mean over members for a pack's), or ``None`` when
        off."""
        if not self.balance_loss:
            return None
        return self.balance_loss * stats.load_balance_loss().mean()

    def value(self, embeddings: Tensor) -> Tensor:
        return self.critic(embeddings).squeeze(-1)

    def forward(self, obs: Tensor, state: dict[str, Tensor], return_mask: bool = False,
                valid: Tensor | None = None, return_stats: bool = False):
        out, new_state, extra = self.embed(obs, state, return_mask, valid, return_stats)
        logits, values = self.actor(out), self.value(out)
        if return_mask or return_stats:
            return logits, values, new_state, extra
        return logits, values, new_state


def _run_memory(net, features: Tensor, state: dict[str, Tensor], return_mask: bool,
                valid: Tensor | None = None, return_stats: bool = False):
    """``net``'s memory (one model's or a pack's: a leading ``M`` throughout) over the
    encoded ``features`` from the state dict ``state``: the output, the new state dict and
    the first layer's activation mask or the selection stats (``None`` unless asked for
    and a RIM). The memory takes each state entry with a layers dimension before the
    batch's."""
    hx = state_tuple([state[key].unsqueeze(-3) for key in net.state_keys])
    extra = None
    if net.memory_type == "rim":
        out, new, *asked = net.memory(features, hx, return_mask=return_mask, valid=valid,
                                      return_stats=return_stats)
        if asked:
            extra = asked[0][..., 0, :] if return_mask else asked[0]
    else:
        out, new = net.memory(features, hx)
    new = new if isinstance(new, tuple) else (new,)  # a GRU's h alone
    return out, {key: s.squeeze(-3) for key, s in zip(net.state_keys, new)}, extra


def _grouped_encoder(first: nn.Sequential, members: int) -> nn.Sequential:
    """The CNN ``first`` with each convolution grouped over ``members`` (member m's
    channels at ``m * C:(m + 1) * C``)."""
    layers = []
    for layer in first:
        if isinstance(layer, nn.Conv2d):
            layer = nn.Conv2d(members * layer.in_channels, members * layer.out_channels,
                              layer.kernel_size, groups=members, **factory_of(layer))
        else:
            layer = copy.deepcopy(layer)
        layers.append(layer)
    return nn.Sequential(*layers[:-1])  # without Flatten: members are split apart first


def _grouped_head(first: nn.Sequential, members: int) -> nn.Sequential:
    return nn.Sequential(*(GroupLinear(layer.in_features, layer.out_features, members,
                                       **factory_of(layer))
                           if isinstance(layer, nn.Linear) else copy.deepcopy(layer)
                           for layer in first))


@packs(MiniGridActorCritic)
class PackedMiniGridActorCritic(nn.Module):
    r"""``M`` :class:`MiniGridActorCritic` s of one shape computed as one (see
    :func:`rim_rllib.pack`): grouped convolutions, the memories packed, per-member heads.

    Inputs: obs :math:`(B, T, 7, 7, 3)` shared or :math:`(M, B, T, 7, 7, 3)` per member;
    state dict of :math:`(M, B, S)` tensors (:meth:`initial_state` gives zeros).

    Outputs: logits :math:`(M, B, T, A)`, values :math:`(M, B, T)`, the new state dict,
    and with ``return_mask=True`` the RIM masks :math:`(M, B, T, K_t)` (``None`` for the
    LSTM).
    """

    def __init__(self, models: list[MiniGridActorCritic]):
        super().__init__()
        check_same(models, ("memory_type", "cell", "state_size", "image_shape"),
                   "actor-critics")
        first, members = models[0], len(models)
        self.num_members = members
        self.memory_type, self.cell = first.memory_type, first.cell
        self.state_size, self.image_shape = first.state_size, first.image_shape
        self.memory_keys, self.state_keys = first.memory_keys, first.state_keys
        self.state_sizes = first.state_sizes
        self.encoder = _grouped_encoder(first.encoder, members)
        self.memory = pack([m.memory for m in models])
        self.actor = _grouped_head(first.actor, members)
        self.critic = _grouped_head(first.critic, members)
        load_members(self.encoder, [m.encoder for m in models])
        for head in ("actor", "critic"):
            load_members(getattr(self, head), [getattr(m, head) for m in models],
                         linear_to_group)
        self._template = [copy.deepcopy(first).cpu()]  # structure for unpack(), not a submodule

    def initial_state(self, batch: int, device=None) -> dict[str, Tensor]:
        """Zeros, :math:`(M, B, S)` per key (:math:`(M, B, K_t)` for ``"tired"``)."""
        return {key: torch.zeros((self.num_members, batch, size), device=device)
                for key, size in self.state_sizes.items()}

    def forward(self, obs: Tensor, state: dict[str, Tensor], return_mask: bool = False,
                return_stats: bool = False):
        members = self.num_members
        if tuple(obs.shape[-3:]) != self.image_shape or obs.dim() not in (5, 6):
            raise ValueError(f"obs must have shape (batch, time, {self.image_shape}) or "
                             f"(members={members}, batch, time, {self.image_shape}), "
                             f"got {tuple(obs.shape)}")
        obs = obs.expand(members, *obs.shape[-5:]) if obs.dim() == 5 else obs
        batch, steps = obs.shape[1:3]
        height, width, channels = self.image_shape
        # (M, B, T, H, W, C) -> (B*T, M*C, H, W): member m's image in channels m*C..
        images = obs.float().permute(1, 2, 0, 5, 3, 4).reshape(batch * steps,
                                                               members * channels, height,
                                                               width)
        features = self.encoder(images).view(batch, steps, members, -1).permute(2, 0, 1, 3)
        out, new_state, extra = _run_memory(self, features, state, return_mask,
                                            return_stats=return_stats)
        rows = out.permute(1, 2, 0, 3).reshape(batch * steps, members, -1)  # (BT, M, S)
        logits = self.actor(rows).view(batch, steps, members, -1).permute(2, 0, 1, 3)
        values = self.critic(rows).view(batch, steps, members).permute(2, 0, 1)
        if return_mask or return_stats:
            return logits, values, new_state, extra
        return logits, values, new_state

    def unpack(self) -> list[MiniGridActorCritic]:
        """Standalone actor-critics holding this pack's weights."""
        models = with_memories(self._template[0], self.memory.unpack(), self)
        unload_members(self.encoder, [m.encoder for m in models])
        for head in ("actor", "critic"):
            unload_members(getattr(self, head), [getattr(m, head) for m in models],
                           group_to_linear)
        return models
