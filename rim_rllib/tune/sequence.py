"""What the sequence-task trainables (sequential MNIST, the copying task) share: a trial
trains a pack of models (:func:`rim_rllib.pack`), every ``k`` x every ``seed`` of its
config (both may be lists; see :func:`rim_rllib.tune.config.pack_members`), each with its
own initialisation, data order, per-member gradient clipping and Adam state (Adam is
elementwise, so one optimiser over the pack updates each member exactly as its own would).

The RIM's selection settings are flat config keys (``fatigue``, ``score_noise``, ...; the
fields of :class:`rim_rllib.Selection`). ``balance_loss=w`` (a weight; 0, the default, is
off) adds ``w`` times each RIM's load-balancing loss
(:func:`rim_rllib.selection.load_balance_loss`, from the selection statistics its forward
returns; a cure for unit collapse) to its training loss and reports its mean as
``train_balance_loss``. ``init="chrono"`` gives
every LSTM (RIM units and the baseline) the chrono initialisation
(:func:`rim_rllib.init.chrono_init_`) for the task's training length;
``k_anneal=f`` trains each RIM dense-to-sparse: its active units fall linearly from all
``Kt`` to its ``Ka`` over the first ``f`` of the training steps
(:func:`rim_rllib.rim.set_dense_fraction_`; evaluation always uses ``Ka``).
``lr_schedule="cosine"`` decays ``lr`` to 0 over the ``epochs`` after a linear rise over the
first ``warmup`` fraction of steps; ``compile=True`` runs the RIM step through
``torch.compile`` (:func:`rim_rllib.compile_steps`; compiled once per process and batch
size). On CUDA the training data sit on the device and, with ``cuda_graph=True`` (the
default; ignored on CPU), the whole training step is captured once as a CUDA graph and
replayed (:class:`rim_rllib.cuda_graph.GraphedStep`): a graph has fixed shapes, so the last
batch of an epoch is dropped when it is short, and the non-finite-loss check reads the
device every ``NAN_CHECK_EVERY`` batches instead of every batch (its error names the batch
range).

Each ``step()`` is one epoch. It reports, for member ``i``, ``m<i>/train_loss`` and the
task's evaluation metrics as ``m<i>/<metric>``, and the mean over members without the
prefix (what schedulers and the progress table read), plus ``samples_per_s``
(model-samples: members x sequences), ``lr`` and ``eval_seconds``. RIM trials also report
at the training key each member's unit-collapse metrics (``usage_entropy``, ``switch_rate``,
``distinct_sets``, ``min_unit_rate``, ``max_unit_rate``; see :mod:`rim_rllib.collapse`). Checkpoints hold the
pack, optimiser, lr schedule and RNG states, so a restored trial continues exactly where it
stopped.
"""

import json
import math
import os
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from ray import tune
from torch import Tensor, nn

from rim_rllib.collapse import COLLAPSE_METRICS, collapse_metrics
from rim_rllib.cuda_graph import GraphedStep, capturable_adam
from rim_rllib.group import is_number
from rim_rllib.init import chrono_init_
from rim_rllib.packing import optimise_members_, pack
from rim_rllib.rim import compile_steps, set_dense_fraction_
from rim_rllib.selection import SELECTION_KEYS, with_selection
from rim_rllib.tune.activations import count_activations, write_activations
from rim_rllib.tune.config import (as_list, check_k_anneal, check_numbers, check_rank_by,
                                   config_error, flat_config, pack_members)

#: The RIM's arguments a trial config may set: its own, then the selection settings'.
RIM_KWARGS = ("input_key_size", "input_value_size", "input_query_size", "num_input_heads",
              "input_dropout", "comm_key_size", "comm_value_size", "comm_query_size",
              "num_comm_heads", "comm_dropout", "rank_by", "query_bias", *SELECTION_KEYS)
COMMON_DEFAULTS = dict(
    model="rim", cell="lstm", num_units=6, k=4, hidden_size=100, lr=1e-3, batch_size=64,
    eval_batch_size=500, seed=0, threads=1, grad_clip=1.0, init="default", compile=False,
    lr_schedule="constant", warmup=0.0, cuda_graph=True, balance_loss=0.0, k_anneal=0.0,
)
#: On CUDA, batches between reads of the device-side non-finite-loss flag (each read waits
#: for the GPU); on CPU every batch is checked.
NAN_CHECK_EVERY = 100
INITS = ("default", "chrono")
LR_SCHEDULES = ("constant", "cosine")


def rim_config(cfg: dict) -> dict:
    """The RIM keyword arguments (attention sizes, dropouts, ``selection``) of a resolved
    trial config."""
    return with_selection({key: cfg[key] for key in RIM_KWARGS if key in cfg})


def is_int(value, low: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= low


def lr_factor(step: int, schedule: str, total: int, warmup: int) -> float:
    """The multiple of ``lr`` for optimiser step ``step`` (from 0) of ``total``: a linear
    rise over the first ``warmup`` steps, then constant or a cosine decay to 0 at
    ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def trial_checkpoint(checkpoint: str | os.PathLike, task: str) -> tuple[Path, dict]:
    """A sequence-task trial's checkpoint folder (absolute) and the trial's config (its
    ``params.json`` beside it), for an evaluator; ``FileNotFoundError`` naming ``task``
    when it is not one."""
    checkpoint = Path(checkpoint).resolve()
    params = checkpoint.parent / "params.json"
    if not (checkpoint / "state.pt").is_file() or not params.is_file():
        raise FileNotFoundError(f"{checkpoint} is not {task} trial checkpoint (expected "
                                f"state.pt in it and the trial's params.json beside it)")
    return checkpoint, json.loads(params.read_text())


class SequenceTrainable(tune.Trainable):
    """Base of the sequence-task trainables. Subclasses set :attr:`TASK` (the results'
    task name), :attr:`TRAIN_KEY`, :attr:`DEFAULTS` (added to :data:`COMMON_DEFAULTS`,
    with ``transfer_eval_every``) and :attr:`POSITIVE_INTS`, and implement
    :meth:`load_data`, :meth:`build_model`, :meth:`inputs`, :meth:`member_losses`,
    :meth:`evaluate` and :meth:`activation_conditions`."""

    TASK = ""
    #: The config key of what the task trains on and evaluates at (image size, dormant
    #: length); ``eval_sets`` is keyed by its values.
    TRAIN_KEY = ""
    #: The metric reported again without its ``_<key>`` suffix at the training key: what
    #: schedulers and the progress table read.
    METRIC = ""
    DEFAULTS: dict = {}
    POSITIVE_INTS: tuple[str, ...] = ()

    @classmethod
    def resolve_config(cls, config: dict) -> dict:
        """Defaults filled in, a study's ``variant`` dict merged, every key checked."""
        config = flat_config(config)
        defaults = COMMON_DEFAULTS | cls.DEFAULTS
        unknown = set(config) - set(defaults) - set(RIM_KWARGS) - {"epochs"}
        if unknown:
            raise ValueError(f"unknown {cls.TASK} trainable config keys {sorted(unknown)}; "
                             f"expected some of {sorted(set(defaults) | set(RIM_KWARGS))}")
        cfg = defaults | config
        check_numbers(cfg, {key: "positive int" for key in (
            "batch_size", "eval_batch_size", "num_units", "hidden_size", "threads",
            *cls.POSITIVE_INTS)} | {"lr": "positive", "grad_clip": "positive",
                                    "balance_loss": "weight"}, optional=("grad_clip",))
        for key, low in (("k", 1), ("seed", 0)):
            if not as_list(cfg[key]) or not all(is_int(v, low) for v in as_list(cfg[key])):
                raise ValueError(f"config[{key!r}] must be an int >= {low} or a non-empty "
                                 f"list of them, got {cfg[key]!r}")
        if not isinstance(cfg["compile"], bool):
            raise ValueError(f"config['compile'] must be True or False (compile the RIM "
                             f"step with torch.compile), got {cfg['compile']!r}")
        if not isinstance(cfg["cuda_graph"], bool):
            raise ValueError(f"config['cuda_graph'] must be True or False (on CUDA, capture "
                             f"the training step as a CUDA graph), got {cfg['cuda_graph']!r}")
        if cfg["lr_schedule"] not in LR_SCHEDULES:
            raise ValueError(f"config['lr_schedule'] must be one of {list(LR_SCHEDULES)}, "
                             f"got {cfg['lr_schedule']!r}")
        if cfg["lr_schedule"] == "cosine" and not is_int(cfg.get("epochs"), 1):
            raise ValueError("config['lr_schedule']='cosine' decays over config['epochs'] "
                             f"(set by the study runner), got epochs={cfg.get('epochs')!r}")
        check_k_anneal(cfg["k_anneal"], "steps")
        if "rank_by" in cfg:
            check_rank_by(cfg["rank_by"])
        if not is_number(cfg["warmup"]) or not 0 <= cfg["warmup"] < 1:
            raise ValueError(f"config['warmup'] must be the fraction of training steps in "
                             f"[0, 1) over which lr rises linearly, got {cfg['warmup']!r}")
        if cfg["init"] not in INITS:
            raise ValueError(f"config['init'] must be one of {list(INITS)}, "
                             f"got {cfg['init']!r}")
        return cfg

    @classmethod
    def check_config(cls, config: dict) -> dict:
        """:meth:`resolve_config`, and then what the config asks of the networks and the
        optimiser checked by their own constructors, on the meta device (no memory, no
        data): the RIMs' sizes, dropouts and selection settings (``k`` <= ``num_units``
        too) and Adam's lr. What the study runner calls before Ray starts, so that no
        trial fails on its config after it."""
        cfg = cls.resolve_config(config)
        try:
            with torch.device("meta"):
                for k in as_list(cfg["k"]) if cfg["model"] == "rim" else [None]:
                    cls.build_model(cfg, k, rim_config(cfg))
            capturable_adam([torch.zeros(1, requires_grad=True)], cfg["lr"],
                            torch.device("cpu"))
        except (ValueError, TypeError) as err:
            raise config_error(err, cfg) from None
        return cfg

    def setup(self, config: dict) -> None:
        cfg = self.cfg = self.resolve_config(config)
        self.members = pack_members(cfg)
        torch.set_num_threads(cfg["threads"])
        self.device = self.trial_device()
        self.load_data()
        self.num_train = len(self.train_y)
        self.graphed = cfg["cuda_graph"] and self.device.type == "cuda"
        if self.graphed and cfg["k_anneal"] and cfg["model"] == "rim":
            warnings.warn("config['k_anneal'] changes the number of active units every step, "
                          "which a CUDA graph cannot replay: this trial trains without one")
            self.graphed = False
        if self.graphed and self.num_train < cfg["batch_size"]:
            raise ValueError(f"config['batch_size']={cfg['batch_size']} is larger than the "
                             f"{self.num_train} training sequences; a CUDA-graphed step "
                             "drops the short batch, so no batch would be left (lower "
                             "batch_size or set cuda_graph=False)")
        self.train_x, self.train_y = self.train_x.to(self.device), self.train_y.to(self.device)

        rim_kwargs = rim_config(cfg)
        self.balance_weight = cfg["balance_loss"] if cfg["model"] == "rim" else 0.0
        models = []
        for member in self.members:
            torch.manual_seed(member["seed"])  # each member's own initialisation
            model = self.build_model(cfg, member["k"], rim_kwargs)
            if cfg["init"] == "chrono":
                chrono_init_(model, self.train_length)
            models.append(model)
        self.model = pack(models).to(self.device)
        if cfg["compile"]:
            compile_steps(self.model)
        self.optimizer = capturable_adam(self.model.parameters(), cfg["lr"], self.device)
        batches = (self.num_train // cfg["batch_size"] if self.graphed
                   else math.ceil(self.num_train / cfg["batch_size"]))
        steps = batches * cfg.get("epochs", 1)
        self.anneal_steps = cfg["k_anneal"] * steps if cfg["model"] == "rim" else 0
        self.lr_factor = partial(lr_factor, schedule=cfg["lr_schedule"], total=steps,
                                 warmup=round(cfg["warmup"] * steps))
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.lr_factor)
        torch.manual_seed(self.members[0]["seed"])  # dropout draws
        self.graphed_step = GraphedStep(self.train_step) if self.graphed else None
        self.epoch = 0

    def trial_device(self) -> torch.device:
        """CUDA when Tune gave this trial a GPU (Ray does not hide the node's GPUs from a
        trial that asked for none, so availability alone would crowd them onto
        ``cuda:0``) and CUDA is there; outside Tune, CUDA when available."""
        resources = self.trial_resources
        given = (resources.required_resources.get("GPU", 0) > 0 if resources is not None
                 else True)
        return torch.device("cuda" if given and torch.cuda.is_available() else "cpu")

    # -- what a task provides ----------------------------------------------------------

    #: Steps of a training sequence (what chrono initialisation is sized for).
    train_length: int
    train_x: Tensor
    train_y: Tensor
    #: Keyed by the task's size / length (the training one first), and ``"val"`` for a
    #: validation split held out of the training data (evaluated every epoch).
    eval_sets: dict[int | str, tuple[Tensor, Tensor]]

    def load_data(self) -> None:
        """Load or generate ``train_x``, ``train_y`` and ``eval_sets`` (training value
        first) and set :attr:`train_length`."""
        raise NotImplementedError

    @classmethod
    def build_model(cls, cfg: dict, k: int | None, rim_kwargs: dict) -> nn.Module:
        """One member's model (``k`` is ``None`` for the LSTM baseline)."""
        raise NotImplementedError

    def inputs(self, x: Tensor) -> Tensor:
        """Stored sequences as the model's input, on the device."""
        raise NotImplementedError

    def member_losses(self, output: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Each member's mean loss :math:`(M,)` (differentiable) and its number of right
        predictions :math:`(M,)` (the training accuracy's numerator, per sequence)."""
        raise NotImplementedError

    def evaluate(self, key: int, masks: list | None = None) -> dict[str, Tensor]:
        """Each member's metrics on ``eval_sets[key]``, name -> :math:`(M,)`, from
        :meth:`eval_outputs` (pass ``masks`` on to it)."""
        raise NotImplementedError

    def activation_conditions(self, key: int) -> dict[str, np.ndarray]:
        """Conditions (name -> one value per step of every sequence of ``eval_sets[key]``,
        sequence-major) under which unit activations are counted."""
        raise NotImplementedError

    # -- evaluation and activations -------------------------------------------------------

    def eval_batches(self, key: int):
        """``eval_sets[key]`` in batches of ``eval_batch_size``, on the device."""
        x_all, y_all = self.eval_sets[key]
        step = self.cfg["eval_batch_size"]
        for first in range(0, len(y_all), step):
            yield (self.inputs(x_all[first:first + step]),
                   y_all[first:first + step].to(self.device))

    def eval_outputs(self, key: int, masks: list | None = None):
        """The model's outputs and the targets on ``eval_sets[key]``, batch by batch;
        with a ``masks`` list, each batch's RIM activation masks are appended to it."""
        for x, y in self.eval_batches(key):
            if masks is None:
                yield self.model(x), y
            else:
                output, mask = self.model(x, return_mask=True)
                masks.append(mask.cpu())
                yield output, y

    def evaluate_members(self, last: bool) -> dict[str, list[float]]:
        """``<metric>_<key>`` per member: the training key every epoch, the others every
        ``transfer_eval_every`` epochs and after the last one; for RIMs also the collapse
        metrics (:mod:`rim_rllib.collapse`) at the training key."""
        cfg, metrics = self.cfg, {}
        for key in self.eval_sets:
            train_key = key == cfg[self.TRAIN_KEY]
            if (train_key or key == "val" or last
                    or self.epoch % cfg["transfer_eval_every"] == 0):
                masks = [] if train_key and cfg["model"] == "rim" else None
                with torch.no_grad():
                    self.model.eval()
                    metrics |= {f"{name}_{key}": values.tolist()
                                for name, values in self.evaluate(key, masks).items()}
                if masks:
                    masks = torch.cat(masks, dim=1)                        # (M, N, T, Kt)
                    metrics |= self.collapse_members(masks, key)
                    if last:
                        self.record_activations(masks)
        return metrics

    def collapse_members(self, masks: Tensor, key: int) -> dict[str, list[float]]:
        """Each member's :data:`~rim_rllib.collapse.COLLAPSE_METRICS` from its masks
        :math:`(M, N, T, K_t)`, as ``<name>_<key>``."""
        per_member = [collapse_metrics(member_masks) for member_masks in masks]
        return {f"{name}_{key}": [m[name] for m in per_member] for name in COLLAPSE_METRICS}

    @torch.no_grad()
    def activation_counts(self, key: int, masks: Tensor | None = None) -> pd.DataFrame:
        """How often each member's units are active under each of
        :meth:`activation_conditions`, over ``eval_sets[key]`` (from its ``masks``
        :math:`(M, N, T, K_t)` when the caller has them); a ``member`` column tells the
        members apart."""
        if masks is None:
            masks = []
            self.model.eval()
            for _ in self.eval_outputs(key, masks):
                pass
            masks = torch.cat(masks, dim=1)
        conditions = self.activation_conditions(key)
        return pd.concat([count_activations(member_masks.flatten(0, 1).numpy(), conditions)
                          .assign(member=i, Ka=self.members[i]["k"],
                                  seed=self.members[i]["seed"])
                          for i, member_masks in enumerate(masks)], ignore_index=True)

    def record_activations(self, masks: Tensor) -> None:
        """Write the activation counts at the training key, from its evaluation's
        ``masks``, into the trial directory."""
        cfg = self.cfg
        key = cfg[self.TRAIN_KEY]
        write_activations(self.activation_counts(key, masks).assign(eval_on=str(key)),
                          self.logdir,
                          trial_id=self.trial_id, task=self.TASK, train_on=str(key),
                          Kt=cfg["num_units"])

    # -- the shared loop -----------------------------------------------------------------

    def _describe(self, member: int) -> str:
        cfg, m = self.cfg, self.members[member]
        return (f"member {member} (model={cfg['model']}, Kt={cfg['num_units']}, "
                f"Ka={m['k']}, seed={m['seed']}, lr={cfg['lr']})")

    def train_step(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One optimiser step of every member on a batch; returns each member's task loss,
        number of right predictions and load-balancing loss (zeros when off), :math:`(M,)`.
        It never waits for the device, so that
        :class:`~rim_rllib.cuda_graph.GraphedStep` can capture it."""
        if self.balance_weight:
            output, stats = self.model(x, return_stats=True)
            losses, right = self.member_losses(output, y)
            balance = stats.load_balance_loss()
            objective = losses + self.balance_weight * balance
        else:
            losses, right = self.member_losses(self.model(x), y)
            balance, objective = torch.zeros_like(losses), losses
        optimise_members_(self.model, self.optimizer, objective, self.cfg["grad_clip"])
        return losses.detach(), right, balance.detach()

    def _train_batch(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        graphed = self.graphed_step
        if graphed is not None:
            try:
                return graphed(x, y)
            except RuntimeError as error:
                if graphed.captured or graphed.calls <= graphed.warmup:
                    raise  # not the capture's fault
                # A capture that fails (an op CUDA graphs do not allow) costs speed, not
                # the trial: this batch and the rest train eagerly.
                warnings.warn(f"capturing the training step as a CUDA graph failed "
                              f"({error}); this trial trains without it")
                self.graphed_step = None
        return self.train_step(x, y)

    def _check_finite(self, bad_loss: Tensor, batches: str) -> None:
        bad = ~torch.isfinite(bad_loss)
        if bad.any():
            member = int(bad.nonzero()[0])
            raise FloatingPointError(
                f"loss is {bad_loss[member].item()} at epoch {self.epoch + 1}, {batches} "
                f"for {self._describe(member)}; lower lr or check the inputs")

    def step(self) -> dict:
        cfg = self.cfg
        members, size, batch_size = len(self.members), self.num_train, cfg["batch_size"]
        self.model.train()
        # Each member's own data order, from its seed and the epoch.
        orders = torch.stack([torch.randperm(size, generator=torch.Generator().manual_seed(
            m["seed"] * 100_003 + self.epoch)) for m in self.members])    # (M, N)
        orders = orders.to(self.device)
        # A graph has fixed shapes: a graphed epoch drops its short last batch.
        end = size - size % batch_size if self.graphed else size
        check_every = NAN_CHECK_EVERY if self.device.type == "cuda" else 1
        total_loss = torch.zeros(members, device=self.device)
        correct = torch.zeros(members, device=self.device)
        balance_total = torch.zeros(members, device=self.device)
        # Each member's first non-finite loss of the epoch (finite: none yet), read every
        # check_every batches.
        bad_loss = torch.zeros(members, device=self.device)
        checked = 0
        start = time.perf_counter()
        for batch, first in enumerate(range(0, end, batch_size)):
            if self.anneal_steps:  # from the schedule's step count, so restores resume it
                done = self.lr_scheduler.last_epoch / self.anneal_steps
                set_dense_fraction_(self.model, max(0.0, 1.0 - done))
            idx = orders[:, first:first + batch_size]
            losses, right, balance = self._train_batch(self.inputs(self.train_x[idx]),
                                                       self.train_y[idx])
            bad_loss = torch.where(torch.isfinite(bad_loss) & ~torch.isfinite(losses),
                                   losses, bad_loss)
            total_loss += losses * idx.shape[1]
            correct += right
            balance_total += balance * idx.shape[1]
            self.lr_scheduler.step()
            if batch + 1 - checked == check_every or first + batch_size >= end:
                self._check_finite(bad_loss, f"batch {batch}" if batch == checked
                                   else f"batches {checked}-{batch}")
                checked = batch + 1
        # Reading the sums waits for the device, so the time covers the whole epoch.
        per_member = {"train_loss": (total_loss / end).tolist(),
                      "train_accuracy": (correct / end).tolist()}
        if self.balance_weight:
            per_member["train_balance_loss"] = (balance_total / end).tolist()
        train_seconds = time.perf_counter() - start
        self.epoch += 1

        start = time.perf_counter()
        last = self.epoch == cfg.get("epochs")
        per_member |= self.evaluate_members(last)
        key = cfg[self.TRAIN_KEY]
        means = {name: float(np.mean(values)) for name, values in per_member.items()}
        # Tune's progress table shows the first four metrics of a result: the task metric,
        # the collapse of the units (RIMs) and the training loss.
        metrics = {self.METRIC: means[f"{self.METRIC}_{key}"]}
        metrics |= {name: means[name] for name in (f"switch_rate_{key}", f"usage_entropy_{key}",
                                                  "train_loss") if name in means}
        metrics |= dict(epoch=self.epoch, samples_per_s=members * end / train_seconds,
                        # From the schedule, not the optimiser: on CUDA its lr is float32.
                        lr=cfg["lr"] * self.lr_factor(self.lr_scheduler.last_epoch))
        for name, values in per_member.items():
            metrics[name] = means[name]
            metrics.update({f"m{i}/{name}": v for i, v in enumerate(values)})
        metrics["eval_seconds"] = time.perf_counter() - start
        return metrics

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        torch.save(dict(model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
                        lr_scheduler=self.lr_scheduler.state_dict(), epoch=self.epoch,
                        torch_rng=torch.get_rng_state(),
                        cuda_rng=(torch.cuda.get_rng_state(self.device)
                                  if self.device.type == "cuda" else None)),
                   Path(checkpoint_dir) / "state.pt")

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        state = torch.load(Path(checkpoint_dir) / "state.pt", map_location=self.device,
                           weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "lr_scheduler" in state:  # checkpoints from before lr schedules had none
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self.epoch = state["epoch"]
        torch.set_rng_state(state["torch_rng"].cpu())  # map_location moved it
        if state.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        if self.graphed_step is not None:  # the graph would step the replaced tensors
            self.graphed_step = GraphedStep(self.train_step)
