"""Sequence models for sequential MNIST and the copying task: a RIM or the LSTM baseline,
then a linear layer on the final state of all units (MNIST) or on their states at every
step (copying)."""

import copy

from torch import Tensor, nn

from rim_rllib.group import GroupLinear
from rim_rllib.packing import (check_same, factory_of, group_to_linear, linear_to_group,
                               load_members, pack, packs, unload_members,
                               with_memories)
from rim_rllib.rim import RIM, check_requests

MODELS = ("rim", "lstm")
READOUTS = ("last", "every")

# Model sizes of the sequential-MNIST presets (the Tune presets add budgets and lr).
MNIST_SIZES = {
    # Small enough that a Ka sweep x 3 seeds learns on a 2-core laptop in minutes.
    "cpu": dict(hidden_size=32, num_units=6, input_key_size=32, input_query_size=32,
                input_value_size=32, comm_key_size=16, comm_query_size=16,
                comm_value_size=16, num_comm_heads=1),
    # The reference implementation's.
    "paper": dict(hidden_size=100, num_units=6),
}


class SequenceClassifier(nn.Module):
    r"""RIM (``Kt`` units of ``hidden_size``) or ``nn.LSTM`` with hidden ``Kt * hidden_size``
    over a sequence, and a linear classifier on the last step's state (``readout="last"``)
    or on every step's (``readout="every"``).

    Args:
        model: ``"rim"`` or ``"lstm"`` (the baseline; ``k``, ``cell`` and ``rim_kwargs`` are
            ignored).
        input_size: features per step, :math:`D`.
        num_classes: outputs of the classifier.
        hidden_size: hidden size of each RIM unit, :math:`H`.
        num_units: RIM units, :math:`K_t`; the LSTM baseline has :math:`K_t H` hidden.
        k: active RIM units, :math:`K_a`.
        cell: RIM unit type, ``"lstm"`` or ``"gru"``.
        readout: ``"last"`` (one prediction per sequence) or ``"every"`` (one per step).
        **rim_kwargs: attention sizes, dropouts, ``rank_by``, ``query_bias`` and
            ``selection`` of :class:`rim_rllib.RIM`.

    Shape: input :math:`(B, T, D)` → logits :math:`(B, C)`, or :math:`(B, T, C)` with
    ``readout="every"``; with ``return_mask`` also the RIM's activation mask
    :math:`(B, T, K_t)`, with ``return_stats`` its
    :class:`~rim_rllib.selection.SelectionStats` (``None`` for the LSTM).
    """

    def __init__(self, model: str = "rim", input_size: int = 1, num_classes: int = 10,
                 hidden_size: int = 100, num_units: int = 6, k: int = 4, cell: str = "lstm",
                 readout: str = "last", **rim_kwargs):
        super().__init__()
        if model not in MODELS:
            raise ValueError(f"model must be one of {list(MODELS)}, got {model!r}")
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {list(READOUTS)}, got {readout!r}")
        self.model = model
        self.readout = readout
        width = num_units * hidden_size
        if model == "rim":
            self.memory = RIM(input_size, hidden_size, num_units, k, cell=cell,
                              batch_first=True, **rim_kwargs)
        else:
            self.memory = nn.LSTM(input_size, width, batch_first=True)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: Tensor, return_mask: bool = False, return_stats: bool = False):
        output, state, extra = _run_memory(self.memory, self.model, x, return_mask,
                                           return_stats, layer_dim=2)
        if self.readout == "every":
            logits = self.classifier(output)
        else:
            h_n = state[0] if isinstance(state, tuple) else state
            logits = self.classifier(h_n[-1])
        return (logits, extra) if return_mask or return_stats else logits


def _run_memory(memory: nn.Module, model: str, x: Tensor, return_mask: bool,
                return_stats: bool, layer_dim: int) -> tuple:
    """The memory's output, final state and the first layer's mask (at ``layer_dim``) or
    the selection stats, as asked for (``None`` for the LSTM)."""
    check_requests(return_mask, return_stats)
    if model != "rim" or not (return_mask or return_stats):
        return (*memory(x), None)
    output, state, extra = memory(x, return_mask=return_mask, return_stats=return_stats)
    return output, state, extra.select(layer_dim, 0) if return_mask else extra


@packs(SequenceClassifier)
class PackedSequenceClassifier(nn.Module):
    r"""``M`` :class:`SequenceClassifier` s of one shape computed as one (see
    :func:`rim_rllib.pack`): the memories packed, one linear classifier per member.

    Shape: input :math:`(B, T, D)` shared by the members or :math:`(M, B, T, D)` one batch
    per member → logits :math:`(M, B, C)` (:math:`(M, B, T, C)` with ``readout="every"``);
    with ``return_mask`` also the RIM masks :math:`(M, B, T, K_t)`, with ``return_stats``
    their :class:`~rim_rllib.selection.SelectionStats` (``None`` for the LSTM).
    """

    def __init__(self, models: list[SequenceClassifier]):
        super().__init__()
        check_same(models, ("model", "readout"), "sequence classifiers")
        self.model = models[0].model
        self.readout = models[0].readout
        self.num_members = len(models)
        self.memory = pack([m.memory for m in models])
        first = models[0].classifier
        self.classifier = GroupLinear(first.in_features, first.out_features, len(models),
                                      **factory_of(first))
        load_members(self.classifier, [m.classifier for m in models], linear_to_group)
        # A copy of member 0 without weights that matter, so unpack() can rebuild members
        # of the same structure; kept in a list so that it is not a submodule.
        self._template = [copy.deepcopy(models[0]).cpu()]

    def forward(self, x: Tensor, return_mask: bool = False, return_stats: bool = False):
        output, state, extra = _run_memory(self.memory, self.model, x, return_mask,
                                           return_stats, layer_dim=3)
        if self.readout == "every":                       # output (M, B, T, W), group last
            logits = self.classifier(output.movedim(0, -2)).movedim(-2, 0)
        else:
            h_n = state[0] if isinstance(state, tuple) else state            # (M, L, B, W)
            logits = self.classifier(h_n[:, -1].transpose(0, 1)).transpose(0, 1)
        return (logits, extra) if return_mask or return_stats else logits

    def unpack(self) -> list[SequenceClassifier]:
        """Standalone classifiers holding this pack's weights."""
        models = with_memories(self._template[0], self.memory.unpack(), self)
        unload_members(self.classifier, [m.classifier for m in models], group_to_linear)
        return models
