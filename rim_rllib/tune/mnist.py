"""Sequential MNIST as a Ray Tune trainable: train at one image size, test at several.

A trial trains a pack of models (:func:`rim_rllib.pack`): every ``k`` x every ``seed`` of
its config (both may be lists; see :func:`rim_rllib.tune.config.pack_members`), each with
its own initialisation, data order, per-member gradient clipping and Adam state (Adam is
elementwise, so one optimiser over the pack updates each member exactly as its own would).
With ``train_subset``, the subset of training images is drawn once per trial, from its
first member's seed: a pack's members train on the same images, each in its own order.
``init="chrono"`` gives every LSTM (RIM units and the baseline) the chrono initialisation
for sequences of the training length (:func:`rim_rllib.init.chrono_init_`);
``lr_schedule="cosine"`` decays ``lr`` to 0 over the ``epochs`` after a linear rise over the
first ``warmup`` fraction of steps (the ``cpu`` preset's short budgets gain most from it);
``compile=True`` runs the RIM step through ``torch.compile``
(:func:`rim_rllib.compile_steps`; compiled once per process and batch size). The training
size is evaluated every epoch, the other sizes every ``transfer_eval_every`` epochs and
after the last one (``epochs``, set by the study runner).

Each ``step()`` is one epoch over the training subset. It reports, for member ``i``,
``m<i>/train_loss``, ``m<i>/accuracy_<size>`` for the training size and every evaluation
size, and the mean over members without the prefix (``train_loss``, ``train_accuracy``,
``accuracy_<size>``, and ``accuracy`` at the training size: what schedulers and the
progress table read), plus ``samples_per_s`` (model-samples: members x images). Checkpoints
hold the pack, optimiser and RNG states, so a restored trial continues exactly where it
stopped. After its last epoch (``epochs`` in the config, set by the study runner) a RIM
trial writes its units' activation counts by pixel value and position to
``activations.parquet`` in its trial directory.
"""

import math
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from ray import tune

from rim_rllib.mnist_data import find_data_dir, sequential_mnist
from rim_rllib.init import chrono_init_
from rim_rllib.models import SequenceClassifier
from rim_rllib.packing import member_grad_norm_clip_, pack
from rim_rllib.rim import compile_steps
from rim_rllib.tune.config import as_list, flat_config, pack_members
from rim_rllib.tune.activations import count_activations, write_activations

RIM_KWARGS = ("input_key_size", "input_value_size", "input_query_size", "num_input_heads",
              "input_dropout", "comm_key_size", "comm_value_size", "comm_query_size",
              "num_comm_heads", "comm_dropout")

DEFAULTS = dict(
    model="rim", cell="lstm", num_units=6, k=4, hidden_size=100,
    lr=1e-3, batch_size=64, train_size=14, eval_sizes=(16, 19, 24),
    train_subset=None, eval_subset=None, eval_batch_size=500, seed=0, data_dir=None,
    threads=1, grad_clip=1.0, init="default", transfer_eval_every=1, compile=False,
    lr_schedule="constant", warmup=0.0,
)
INITS = ("default", "chrono")
LR_SCHEDULES = ("constant", "cosine")


def resolve_config(config: dict) -> dict:
    """Defaults filled in, a study's ``variant`` dict merged, every key checked."""
    config = flat_config(config)
    unknown = set(config) - set(DEFAULTS) - set(RIM_KWARGS) - {"epochs"}
    if unknown:
        raise ValueError(f"unknown MNIST trainable config keys {sorted(unknown)}; expected "
                         f"some of {sorted(set(DEFAULTS) | set(RIM_KWARGS))}")
    cfg = DEFAULTS | config
    for key in ("train_size", "batch_size", "num_units", "hidden_size", "threads",
                "transfer_eval_every"):
        if not _is_int(cfg[key], 1):
            raise ValueError(f"config[{key!r}] must be a positive int, got {cfg[key]!r}")
    for key, low in (("k", 1), ("seed", 0)):
        if not as_list(cfg[key]) or not all(_is_int(v, low) for v in as_list(cfg[key])):
            raise ValueError(f"config[{key!r}] must be an int >= {low} or a non-empty list "
                             f"of them, got {cfg[key]!r}")
    if cfg["grad_clip"] is not None and not (isinstance(cfg["grad_clip"], (int, float))
                                             and cfg["grad_clip"] > 0):
        raise ValueError(f"config['grad_clip'] must be a positive number (the per-model "
                         f"gradient-norm bound) or None, got {cfg['grad_clip']!r}")
    if not isinstance(cfg["compile"], bool):
        raise ValueError(f"config['compile'] must be True or False (compile the RIM step "
                         f"with torch.compile), got {cfg['compile']!r}")
    if cfg["lr_schedule"] not in LR_SCHEDULES:
        raise ValueError(f"config['lr_schedule'] must be one of {list(LR_SCHEDULES)}, "
                         f"got {cfg['lr_schedule']!r}")
    if cfg["lr_schedule"] == "cosine" and not _is_int(cfg.get("epochs"), 1):
        raise ValueError("config['lr_schedule']='cosine' decays over config['epochs'] "
                         f"(set by the study runner), got epochs={cfg.get('epochs')!r}")
    if (isinstance(cfg["warmup"], bool) or not isinstance(cfg["warmup"], (int, float))
            or not 0 <= cfg["warmup"] < 1):
        raise ValueError(f"config['warmup'] must be the fraction of training steps in "
                         f"[0, 1) over which lr rises linearly, got {cfg['warmup']!r}")
    if cfg["init"] not in INITS:
        raise ValueError(f"config['init'] must be one of {list(INITS)}, got {cfg['init']!r}")
    cfg["eval_sizes"] = tuple(cfg["eval_sizes"])
    return cfg


def lr_factor(step: int, schedule: str, total: int, warmup: int) -> float:
    """The multiple of ``lr`` for optimiser step ``step`` (from 0) of ``total``: a linear
    rise over the first ``warmup`` steps, then constant or a cosine decay to 0 at
    ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def _is_int(value, low: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= low


class MnistTrainable(tune.Trainable):
    """Tune trainable for sequential MNIST; config keys in :data:`DEFAULTS` plus the RIM
    attention sizes (:data:`RIM_KWARGS`)."""

    def setup(self, config: dict) -> None:
        cfg = self.cfg = resolve_config(config)
        self.members = pack_members(cfg)
        torch.set_num_threads(cfg["threads"])
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        directory = find_data_dir(cfg["data_dir"])

        x, y = sequential_mnist(directory, "train", cfg["train_size"])
        if cfg["train_subset"]:
            first = self.members[0]["seed"]
            keep = np.random.default_rng(first).permutation(len(y))[:cfg["train_subset"]]
            x, y = x[keep], y[keep]
        self.train_x, self.train_y = torch.from_numpy(x), torch.from_numpy(y)
        # The same test images at every size, so the sizes differ only in resolution.
        self.eval_sets = {}
        for size in (cfg["train_size"], *cfg["eval_sizes"]):
            ex, ey = sequential_mnist(directory, "test", size)
            n = cfg["eval_subset"] or len(ey)
            self.eval_sets[size] = (torch.from_numpy(ex[:n]), torch.from_numpy(ey[:n]))

        rim_kwargs = {key: cfg[key] for key in RIM_KWARGS if key in cfg}
        models = []
        for member in self.members:
            torch.manual_seed(member["seed"])  # each member's own initialisation
            k = {"k": member["k"]} if cfg["model"] == "rim" else {}
            model = SequenceClassifier(cfg["model"], 1, 10, cfg["hidden_size"],
                                       cfg["num_units"], cell=cfg["cell"], **k, **rim_kwargs)
            if cfg["init"] == "chrono":
                chrono_init_(model, cfg["train_size"] ** 2)
            models.append(model)
        self.model = pack(models).to(self.device)
        if cfg["compile"]:
            compile_steps(self.model)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg["lr"])
        steps_per_epoch = math.ceil(len(self.train_y) / cfg["batch_size"])
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, partial(lr_factor, schedule=cfg["lr_schedule"],
                                    total=steps_per_epoch * cfg.get("epochs", 1),
                                    warmup=round(cfg["warmup"] * steps_per_epoch
                                                 * cfg.get("epochs", 1))))
        torch.manual_seed(self.members[0]["seed"])  # dropout draws
        self.epoch = 0

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device, torch.float32, non_blocking=True).unsqueeze(-1)

    def _describe(self, member: int) -> str:
        cfg, m = self.cfg, self.members[member]
        return (f"member {member} (model={cfg['model']}, Kt={cfg['num_units']}, "
                f"Ka={m['k']}, seed={m['seed']}, lr={cfg['lr']})")

    def step(self) -> dict:
        cfg = self.cfg
        members, size = len(self.members), len(self.train_y)
        self.model.train()
        # Each member's own data order, from its seed and the epoch.
        orders = torch.stack([torch.randperm(size, generator=torch.Generator().manual_seed(
            m["seed"] * 100_003 + self.epoch)) for m in self.members])    # (M, N)
        total_loss = torch.zeros(members, device=self.device)
        correct = torch.zeros(members, device=self.device)
        start = time.perf_counter()
        for batch, first in enumerate(range(0, size, cfg["batch_size"])):
            idx = orders[:, first:first + cfg["batch_size"]]
            x, y = self._inputs(self.train_x[idx]), self.train_y[idx].to(self.device)
            logits = self.model(x)                                          # (M, b, 10)
            losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(),
                                     reduction="none").view(members, -1).mean(1)
            finite = torch.isfinite(losses)
            if not finite.all():
                bad = int((~finite).nonzero()[0])
                raise FloatingPointError(
                    f"loss is {losses[bad].item()} at epoch {self.epoch + 1}, batch {batch} "
                    f"for {self._describe(bad)}; lower lr or check the inputs")
            self.optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # members share no weights: each gets its own gradient
            if cfg["grad_clip"]:
                member_grad_norm_clip_(self.model, members, cfg["grad_clip"])
            self.optimizer.step()
            self.lr_scheduler.step()
            total_loss += losses.detach() * idx.shape[1]
            correct += (logits.argmax(-1) == y).sum(1)
        train_seconds = time.perf_counter() - start
        self.epoch += 1

        per_member = {"train_loss": (total_loss / size).tolist(),
                      "train_accuracy": (correct / size).tolist()}
        start = time.perf_counter()
        last = self.epoch == cfg.get("epochs")
        for size_ in self.eval_sets:
            if (size_ == cfg["train_size"] or last
                    or self.epoch % cfg["transfer_eval_every"] == 0):
                per_member[f"accuracy_{size_}"] = self.evaluate(size_).tolist()
        metrics = dict(epoch=self.epoch, samples_per_s=members * size / train_seconds)
        for name, values in per_member.items():
            metrics[name] = float(np.mean(values))
            metrics.update({f"m{i}/{name}": v for i, v in enumerate(values)})
        metrics["accuracy"] = metrics[f"accuracy_{cfg['train_size']}"]
        metrics["eval_seconds"] = time.perf_counter() - start
        if last and cfg["model"] == "rim":
            self.record_activations()
        metrics["lr"] = self.lr_scheduler.get_last_lr()[0]
        return metrics

    @torch.no_grad()
    def activation_counts(self, size: int) -> pd.DataFrame:
        """How often each member's units are active by the pixel being read: its value
        (``pixel on``) and its ``position`` in the image (``row * size + column``), over
        the test images at ``size``; a ``member`` column tells the members apart."""
        self.model.eval()
        x_all, _ = self.eval_sets[size]
        masks = torch.cat([self.model(x, return_mask=True)[1].cpu()
                           for x, _ in self._eval_batches(size)], dim=1)  # (M, N, T, Kt)
        position = np.tile(np.arange(size * size), len(x_all))
        conditions = {"all": np.ones(len(position), bool),
                      "pixel on": x_all.flatten().numpy().astype(bool), "position": position}
        return pd.concat([count_activations(member_masks.flatten(0, 1).numpy(), conditions)
                          .assign(member=i, Ka=self.members[i]["k"],
                                  seed=self.members[i]["seed"])
                          for i, member_masks in enumerate(masks)], ignore_index=True)

    def record_activations(self) -> None:
        """Write the activation counts at the training size into the trial directory."""
        cfg = self.cfg
        counts = self.activation_counts(cfg["train_size"]).assign(eval_on=str(cfg["train_size"]))
        write_activations(counts, self.logdir, trial_id=self.trial_id, task="mnist",
                          train_on=str(cfg["train_size"]), Kt=cfg["num_units"])

    @torch.no_grad()
    def evaluate(self, size: int) -> torch.Tensor:
        """Each member's test accuracy at image size ``size`` (one of the configured
        sizes), :math:`(M,)`."""
        self.model.eval()
        correct = sum((self.model(x).argmax(-1) == y).sum(1).cpu()
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
                        lr_scheduler=self.lr_scheduler.state_dict(), epoch=self.epoch,
                        torch_rng=torch.get_rng_state()),
                   Path(checkpoint_dir) / "state.pt")

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        state = torch.load(Path(checkpoint_dir) / "state.pt", map_location=self.device,
                           weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "lr_scheduler" in state:  # checkpoints from before lr schedules had none
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self.epoch = state["epoch"]
        torch.set_rng_state(state["torch_rng"])
