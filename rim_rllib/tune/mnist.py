"""Sequential MNIST as a Ray Tune trainable: train at one image size, test at several.

Each ``step()`` is one epoch over the training subset; it reports the training loss and
accuracy, the test accuracy at the training size (``accuracy``, and ``accuracy_<size>`` for
every size), and the throughput. Checkpoints hold the model, optimiser and RNG states, so
a restored trial continues exactly where it stopped. After its last epoch (``epochs`` in the
config, set by the study runner) a RIM trial writes its units' activation counts by pixel
value and position to ``activations.parquet`` in its trial directory.
"""

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from ray import tune

from rim_rllib.mnist_data import find_data_dir, sequential_mnist
from rim_rllib.models import SequenceClassifier
from rim_rllib.tune.config import flat_config
from rim_rllib.tune.activations import count_activations, write_activations

RIM_KWARGS = ("input_key_size", "input_value_size", "input_query_size", "num_input_heads",
              "input_dropout", "comm_key_size", "comm_value_size", "comm_query_size",
              "num_comm_heads", "comm_dropout")

DEFAULTS = dict(
    model="rim", cell="lstm", num_units=6, k=4, hidden_size=100,
    lr=1e-3, batch_size=64, train_size=14, eval_sizes=(16, 19, 24),
    train_subset=None, eval_subset=None, eval_batch_size=500, seed=0, data_dir=None,
    threads=1,
)


def resolve_config(config: dict) -> dict:
    """Defaults filled in, a study's ``variant`` dict merged, every key checked."""
    config = flat_config(config)
    unknown = set(config) - set(DEFAULTS) - set(RIM_KWARGS) - {"epochs"}
    if unknown:
        raise ValueError(f"unknown MNIST trainable config keys {sorted(unknown)}; expected "
                         f"some of {sorted(set(DEFAULTS) | set(RIM_KWARGS))}")
    cfg = DEFAULTS | config
    for key in ("train_size", "batch_size", "num_units", "hidden_size", "k", "threads"):
        if isinstance(cfg[key], bool) or not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ValueError(f"config[{key!r}] must be a positive int, got {cfg[key]!r}")
    cfg["eval_sizes"] = tuple(cfg["eval_sizes"])
    return cfg


class MnistTrainable(tune.Trainable):
    """Tune trainable for sequential MNIST; config keys in :data:`DEFAULTS` plus the RIM
    attention sizes (:data:`RIM_KWARGS`)."""

    def setup(self, config: dict) -> None:
        cfg = self.cfg = resolve_config(config)
        torch.set_num_threads(cfg["threads"])
        torch.manual_seed(cfg["seed"])
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        directory = find_data_dir(cfg["data_dir"])

        x, y = sequential_mnist(directory, "train", cfg["train_size"])
        if cfg["train_subset"]:
            keep = np.random.default_rng(cfg["seed"]).permutation(len(y))[:cfg["train_subset"]]
            x, y = x[keep], y[keep]
        self.train_x, self.train_y = torch.from_numpy(x), torch.from_numpy(y)
        # The same test images at every size, so the sizes differ only in resolution.
        self.eval_sets = {}
        for size in (cfg["train_size"], *cfg["eval_sizes"]):
            ex, ey = sequential_mnist(directory, "test", size)
            n = cfg["eval_subset"] or len(ey)
            self.eval_sets[size] = (torch.from_numpy(ex[:n]), torch.from_numpy(ey[:n]))

        rim_kwargs = {key: cfg[key] for key in RIM_KWARGS if key in cfg}
        self.model = SequenceClassifier(cfg["model"], 1, 10, cfg["hidden_size"],
                                        cfg["num_units"], cfg["k"], cfg["cell"],
                                        **rim_kwargs).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg["lr"])
        self.epoch = 0

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device, torch.float32, non_blocking=True).unsqueeze(-1)

    def step(self) -> dict:
        cfg = self.cfg
        self.model.train()
        order = torch.randperm(len(self.train_y),
                               generator=torch.Generator().manual_seed(
                                   cfg["seed"] * 100_003 + self.epoch))
        total_loss, correct, start = 0.0, 0, time.perf_counter()
        for batch, first in enumerate(range(0, len(order), cfg["batch_size"])):
            idx = order[first:first + cfg["batch_size"]]
            x, y = self._inputs(self.train_x[idx]), self.train_y[idx].to(self.device)
            logits = self.model(x)
            loss = F.cross_entropy(logits, y)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(
                    f"loss is {loss.item()} at epoch {self.epoch + 1}, batch {batch} "
                    f"(model={cfg['model']}, Kt={cfg['num_units']}, Ka={cfg['k']}, "
                    f"lr={cfg['lr']}, seed={cfg['seed']}); lower lr or check the inputs")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total_loss += loss.item() * len(idx)
            correct += (logits.argmax(-1) == y).sum().item()
        train_seconds = time.perf_counter() - start
        self.epoch += 1

        metrics = dict(epoch=self.epoch, train_loss=total_loss / len(order),
                       train_accuracy=correct / len(order),
                       samples_per_s=len(order) / train_seconds)
        start = time.perf_counter()
        for size in self.eval_sets:
            metrics[f"accuracy_{size}"] = self.evaluate(size)
        metrics["accuracy"] = metrics[f"accuracy_{cfg['train_size']}"]
        metrics["eval_seconds"] = time.perf_counter() - start
        if self.epoch == cfg.get("epochs") and cfg["model"] == "rim":
            self.record_activations()
        return metrics

    @torch.no_grad()
    def activation_counts(self, size: int) -> pd.DataFrame:
        """How often each unit is active by the pixel being read: its value (``pixel on``)
        and its ``position`` in the image (``row * size + column``), over the test images
        at ``size``."""
        self.model.eval()
        x_all, _ = self.eval_sets[size]
        masks = torch.cat([self.model(x, return_mask=True)[1].cpu()
                           for x, _ in self._eval_batches(size)])
        masks = masks.flatten(0, 1).numpy()                               # (N*T, Kt)
        position = np.tile(np.arange(size * size), len(x_all))
        return count_activations(masks, {"all": np.ones(len(masks), bool),
                                         "pixel on": x_all.flatten().numpy().astype(bool),
                                         "position": position})

    def record_activations(self) -> None:
        """Write the activation counts at the training size into the trial directory."""
        cfg = self.cfg
        counts = self.activation_counts(cfg["train_size"]).assign(eval_on=str(cfg["train_size"]))
        write_activations(counts, self.logdir, trial_id=self.trial_id, task="mnist",
                          train_on=str(cfg["train_size"]), Kt=cfg["num_units"], Ka=cfg["k"],
                          seed=cfg["seed"])

    @torch.no_grad()
    def evaluate(self, size: int) -> float:
        """Test accuracy at image size ``size`` (one of the configured sizes)."""
        self.model.eval()
        correct = sum((self.model(x).argmax(-1) == y).sum().item()
                      for x, y in self._eval_batches(size))
        return correct / len(self.eval_sets[size][1])

    def _eval_batches(self, size: int):
        """The test set at ``size`` in batches of ``eval_batch_size``, on the device."""
        x_all, y_all = self.eval_sets[size]
        step = self.cfg["eval_batch_size"]
        for first in range(0, len(y_all), step):
            yield (self._inputs(x_all[first:first + step]),
                   y_all[first:first + step].to(self.device))

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        torch.save(dict(model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
                        epoch=self.epoch, torch_rng=torch.get_rng_state()),
                   Path(checkpoint_dir) / "state.pt")

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        state = torch.load(Path(checkpoint_dir) / "state.pt", map_location=self.device,
                           weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = state["epoch"]
        torch.set_rng_state(state["torch_rng"])
