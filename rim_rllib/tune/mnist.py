"""Sequential MNIST as a Ray Tune trainable: train at one image size, test at several.

``input_encoding`` says how the binarised pixel enters the models (:func:`encode_pixels`):
``"raw"``, one feature (a black pixel is then the RIM's null input), or ``"onehot"``, two.

The training loop, packing, lr schedule, compilation and checkpoints are
:class:`rim_rllib.tune.sequence.SequenceTrainable`'s. With ``train_subset``, the subset of
training images is drawn once per trial, from its first member's seed: a pack's members
train on the same images, each in its own order. With ``validation=N``, N training images
(the same for every trial) are held out first and evaluated every epoch as
``accuracy_val``: what ASHA and any model selection read, so that test accuracy is only
reported. The training size is evaluated every
epoch, the other sizes every ``transfer_eval_every`` epochs and after the last one
(``epochs``, set by the study runner).

Each ``step()`` is one epoch over the training subset. Besides the shared metrics it
reports, for member ``i``, ``m<i>/accuracy_<size>`` for the training size and every
evaluation size, their means without the prefix, and ``accuracy``, the mean at the training
size. After its last epoch a RIM trial writes its units' activation counts by pixel value
and position to ``activations.parquet`` in its trial directory.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rim_rllib.mnist_data import find_data_dir, sequential_mnist
from rim_rllib.models import SequenceClassifier
from rim_rllib.tune.config import check_numbers
from rim_rllib.tune.sequence import SequenceTrainable, is_int

DEFAULTS = dict(train_size=14, eval_sizes=(16, 19, 24), train_subset=None, eval_subset=None,
                data_dir=None, transfer_eval_every=1, validation=0, input_encoding="raw")
#: How a binarised pixel is fed to the model (features per step).
INPUT_ENCODINGS = {"raw": 1, "onehot": 2}
#: The seed of the validation split: one split for every trial, so that they compare.
VALIDATION_SEED = 12345


def encode_pixels(x: Tensor, encoding: str) -> Tensor:
    """Binarised pixel sequences :math:`(..., T)` (0/1) as model input :math:`(..., T, D)`
    float: ``"raw"`` the pixel itself (:math:`D = 1`); ``"onehot"`` the pair (off, on)
    (:math:`D = 2`). Raw, a black pixel reads as 0, which is exactly the RIM's null input:
    no unit can tell it from nothing. One-hot, both values differ from the null row, and
    the input maps act as a learned embedding (as the authors' code embeds its input)."""
    if encoding == "onehot":
        return F.one_hot(x.long(), 2).float()
    return x.float().unsqueeze(-1)


def resolve_config(config: dict) -> dict:
    """The MNIST trainable's config: defaults filled in, every key checked."""
    return MnistTrainable.resolve_config(config)


class MnistTrainable(SequenceTrainable):
    """Tune trainable for sequential MNIST; config keys in :data:`DEFAULTS` and
    :data:`rim_rllib.tune.sequence.COMMON_DEFAULTS`, plus the RIM attention sizes
    (:data:`rim_rllib.tune.sequence.RIM_KWARGS`)."""

    TASK = "mnist"
    TRAIN_KEY = "train_size"
    METRIC = "accuracy"
    DEFAULTS = DEFAULTS
    POSITIVE_INTS = ("train_size", "transfer_eval_every")

    @classmethod
    def resolve_config(cls, config: dict) -> dict:
        cfg = super().resolve_config(config)
        check_numbers(cfg, {"train_subset": "positive int", "eval_subset": "positive int"},
                      optional=("train_subset", "eval_subset"))
        sizes = cfg["eval_sizes"]
        if not isinstance(sizes, (list, tuple)) or not all(is_int(size, 1) for size in sizes):
            raise ValueError(f"config['eval_sizes'] must be a list of image sizes >= 1, "
                             f"got {sizes!r}")
        cfg["eval_sizes"] = tuple(sizes)
        if cfg["input_encoding"] not in INPUT_ENCODINGS:
            raise ValueError(f"config['input_encoding'] must be one of "
                             f"{list(INPUT_ENCODINGS)} (a binarised pixel as one feature, or "
                             f"one-hot as two), got {cfg['input_encoding']!r}")
        if not is_int(cfg["validation"], 0):
            raise ValueError(f"config['validation'] must be an int >= 0 (training images "
                             f"held out for model selection), got {cfg['validation']!r}")
        return cfg

    def load_data(self) -> None:
        cfg = self.cfg
        directory = find_data_dir(cfg["data_dir"])
        x, y = sequential_mnist(directory, "train", cfg["train_size"])
        self.eval_sets = {}
        if cfg["validation"]:
            if cfg["validation"] >= len(y):
                raise ValueError(f"config['validation']={cfg['validation']} leaves no "
                                 f"training images of {len(y)}")
            order = np.random.default_rng(VALIDATION_SEED).permutation(len(y))
            held = order[:cfg["validation"]]
            self.eval_sets["val"] = (torch.from_numpy(x[held]), torch.from_numpy(y[held]))
            x, y = x[order[cfg["validation"]:]], y[order[cfg["validation"]:]]
        if cfg["train_subset"]:
            first = self.members[0]["seed"]
            keep = np.random.default_rng(first).permutation(len(y))[:cfg["train_subset"]]
            x, y = x[keep], y[keep]
        self.train_x, self.train_y = torch.from_numpy(x), torch.from_numpy(y)
        # The same test images at every size, so the sizes differ only in resolution.
        for size in (cfg["train_size"], *cfg["eval_sizes"]):
            ex, ey = sequential_mnist(directory, "test", size)
            n = cfg["eval_subset"] or len(ey)
            self.eval_sets[size] = (torch.from_numpy(ex[:n]), torch.from_numpy(ey[:n]))
        self.train_length = cfg["train_size"] ** 2

    @classmethod
    def build_model(cls, cfg, k, rim_kwargs):
        return SequenceClassifier(cfg["model"], INPUT_ENCODINGS[cfg["input_encoding"]], 10,
                                  cfg["hidden_size"], cfg["num_units"],
                                  cell=cfg["cell"], **({"k": k} if k else {}), **rim_kwargs)

    def inputs(self, x: Tensor) -> Tensor:
        return encode_pixels(x.to(self.device, non_blocking=True), self.cfg["input_encoding"])

    def member_losses(self, logits, y):                                   # (M, b, 10)
        losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(),
                                 reduction="none").view(len(self.members), -1).mean(1)
        return losses, (logits.argmax(-1) == y).sum(1)

    def evaluate(self, size: int, masks: list | None = None) -> dict[str, Tensor]:
        """Each member's test ``accuracy`` at image size ``size``, :math:`(M,)`."""
        correct = sum((logits.argmax(-1) == y).sum(1).cpu()
                      for logits, y in self.eval_outputs(size, masks))
        return {"accuracy": correct / len(self.eval_sets[size][1])}

    def activation_conditions(self, size: int) -> dict[str, np.ndarray]:
        """The pixel being read: its value (``pixel on``) and its ``position`` in the
        image (``row * size + column``)."""
        x_all, _ = self.eval_sets[size]
        position = np.tile(np.arange(size * size), len(x_all))
        return {"all": np.ones(len(position), bool),
                "pixel on": x_all.flatten().numpy().astype(bool), "position": position}
