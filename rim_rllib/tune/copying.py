"""The copying task as a Ray Tune trainable: train with one dormant length, test with longer
ones (see :mod:`rim_rllib.copying_data`).

The training loop, packing, lr schedule, compilation and checkpoints are
:class:`rim_rllib.tune.sequence.SequenceTrainable`'s. The model reads one symbol per step as
a one-hot vector of :data:`~rim_rllib.copying_data.NUM_INPUTS` features, so that the RIM's
(or the LSTM's) linear input maps act as a learned embedding of the symbols: the reference
fed the symbol's number as one feature, which puts the unordered symbols on a line the
model must first learn to cut. A linear readout of all units' states gives
:data:`~rim_rllib.copying_data.NUM_CLASSES` logits at every step; the loss is the
cross-entropy over all steps, as in the reference.

As in the reference, the ``train_sequences`` training sequences are drawn once per trial
(from its first member's seed) and every member trains on them in its own order; the test
sequences of each dormant length are drawn from a fixed seed, the same for every trial.

Each ``step()`` is one epoch. Besides the shared metrics it reports, for member ``i`` and
each dormant length ``T`` (the training one every epoch, ``eval_dormants`` every
``transfer_eval_every`` epochs and after the last one): ``m<i>/recall_ce_<T>``, the
cross-entropy on the 10 recall steps (the paper's metric), ``m<i>/recall_accuracy_<T>``,
the fraction of recalled symbols right, and ``m<i>/sequence_accuracy_<T>``, the fraction of
sequences with all 10 right; their means without the prefix, and ``recall_accuracy``, the
mean at the training length. After its last epoch a RIM trial writes its units' activation
counts by phase (``storage``, ``dormant``, ``marker``, ``recall``) to
``activations.parquet``.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rim_rllib.copying_data import (NUM_CLASSES, NUM_INPUTS, NUM_RECALL, copying_batch,
                                    sequence_length)
from rim_rllib.models import SequenceClassifier
from rim_rllib.tune.sequence import SequenceTrainable, is_int

DEFAULTS = dict(dormant=50, eval_dormants=(100, 200, 400), train_sequences=50_000,
                eval_sequences=2_000, transfer_eval_every=1)
EVAL_SEED = 20_190_910  # the test sequences' seed: every trial tests on the same ones


def phases(dormant: int) -> np.ndarray:
    """The phase of each step of a sequence with dormant length ``dormant``."""
    return np.array(["storage"] * NUM_RECALL + ["dormant"] * (dormant - 1) + ["marker"]
                    + ["recall"] * NUM_RECALL)


class CopyingTrainable(SequenceTrainable):
    """Tune trainable for the copying task; config keys in :data:`DEFAULTS` and
    :data:`rim_rllib.tune.sequence.COMMON_DEFAULTS`, plus the RIM attention sizes."""

    TASK = "copying"
    TRAIN_KEY = "dormant"
    METRIC = "recall_accuracy"
    DEFAULTS = DEFAULTS
    POSITIVE_INTS = ("dormant", "train_sequences", "eval_sequences", "transfer_eval_every")

    @classmethod
    def resolve_config(cls, config: dict) -> dict:
        cfg = super().resolve_config(config)
        dormants = cfg["eval_dormants"]
        if not isinstance(dormants, (list, tuple)) or not all(is_int(d, 1) for d in dormants):
            raise ValueError(f"config['eval_dormants'] must be a list of dormant lengths "
                             f">= 1, got {dormants!r}")
        cfg["eval_dormants"] = tuple(dormants)
        return cfg

    def load_data(self) -> None:
        cfg = self.cfg
        rng = np.random.default_rng(self.members[0]["seed"])
        x, y = copying_batch(cfg["train_sequences"], cfg["dormant"], rng)
        self.train_x, self.train_y = torch.from_numpy(x), torch.from_numpy(y)
        self.eval_sets = {}
        for dormant in dict.fromkeys((cfg["dormant"], *cfg["eval_dormants"])):
            ex, ey = copying_batch(cfg["eval_sequences"], dormant,
                                   np.random.default_rng([EVAL_SEED, dormant]))
            self.eval_sets[dormant] = (torch.from_numpy(ex), torch.from_numpy(ey))
        self.train_length = sequence_length(cfg["dormant"])

    @classmethod
    def build_model(cls, cfg, k, rim_kwargs):
        return SequenceClassifier(cfg["model"], NUM_INPUTS, NUM_CLASSES, cfg["hidden_size"],
                                  cfg["num_units"], cell=cfg["cell"],
                                  **({"k": k} if k else {}), readout="every", **rim_kwargs)

    def inputs(self, x: Tensor) -> Tensor:
        return F.one_hot(x.to(self.device, non_blocking=True), NUM_INPUTS).float()

    def member_losses(self, logits, y):                                   # (M, b, T, C)
        losses = F.cross_entropy(logits.flatten(0, 2), y.flatten(),
                                 reduction="none").view(len(self.members), -1).mean(1)
        right = (logits[:, :, -NUM_RECALL:].argmax(-1) == y[:, :, -NUM_RECALL:])
        return losses, right.float().mean(-1).sum(1)  # recall accuracy x sequences

    def evaluate(self, dormant: int, masks: list | None = None) -> dict[str, Tensor]:
        """Each member's ``recall_ce``, ``recall_accuracy`` and ``sequence_accuracy`` on
        the test sequences of dormant length ``dormant``, each :math:`(M,)`."""
        members = len(self.members)
        sums = torch.zeros(3, members)
        for logits, y in self.eval_outputs(dormant, masks):
            logits = logits[:, :, -NUM_RECALL:]                            # (M, b, 10, C)
            target = y[:, -NUM_RECALL:].expand(members, -1, -1)
            ce = F.cross_entropy(logits.flatten(0, 2), target.flatten(), reduction="none")
            right = logits.argmax(-1) == target
            sums += torch.stack([ce.view(members, -1).mean(1) * len(y),
                                 right.float().mean(-1).sum(1),
                                 right.all(-1).float().sum(1)]).cpu()
        sums /= len(self.eval_sets[dormant][1])
        return dict(zip(("recall_ce", "recall_accuracy", "sequence_accuracy"), sums))

    def activation_conditions(self, dormant: int) -> dict[str, np.ndarray]:
        """The phase of the step: ``storage``, ``dormant``, ``marker`` or ``recall``."""
        steps = np.tile(phases(dormant), len(self.eval_sets[dormant][1]))
        return {"all": np.ones(len(steps), bool), "phase": steps}
