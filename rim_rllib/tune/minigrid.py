"""MiniGrid as a Ray Tune trainable: PPO with a RIM (or LSTM) agent on one environment for a
frame budget, then the final policy evaluated, without training, on the training
environment and each transfer environment.

Each PPO iteration reports ``frames``, ``train_return`` (RLlib's mean episode return
while sampling), the PPO losses ``train_policy_loss``, ``train_vf_loss`` and
``train_entropy`` (the policy's entropy; with the RIM's ``balance_loss``, also
``train_balance_loss``) and ``samples_per_s`` (environment frames per
second of the iteration); every ``checkpoint_every`` iterations and after the last one the trial
saves a checkpoint (the RLlib algorithm). The last report adds ``return/<env>`` (mean
evaluation return) and, for a RIM, ``activation/<env>/u<j>`` (unit ``j``'s activation
rate) and the unit-collapse metrics ``<name>/<env>`` for every evaluation environment, and
a RIM trial writes its activation counts by what the agent sees to ``activations.parquet``
in its trial directory. ``rank_by`` (also accepted in the ``rim`` dict) is the RIM's unit
selection rule (:class:`rim_rllib.RIMCell`; default the paper's, ``"null_attention"``).
With ``k_anneal=f`` a RIM agent trains dense-to-sparse, as in the
sequence trainables: its active units fall linearly from all ``Kt`` to its ``Ka`` over the
first ``f`` of the frames, in the actions sampled and in the PPO updates alike
(:func:`rim_rllib.rl.ppo.set_dense_fraction`, set before each iteration from the frames so
far; evaluation uses ``Ka``). With ``num_env_runners=None`` a trial samples with as many env
runners as its own CPUs allow (:func:`rim_rllib.rl.ppo.default_env_runners`).
"""

import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from ray import tune

from rim_rllib.actor_critic import MiniGridActorCritic
from rim_rllib.rl.envs import check_env_id
from rim_rllib.rl.evaluate import EVAL_SEED_OFFSET, evaluate
from rim_rllib.rl.ppo import (REFERENCE, STACKS, default_env_runners, ppo_config,
                              restore_algorithm, save_algorithm, set_dense_fraction)
from rim_rllib.collapse import COLLAPSE_METRICS, collapse_metrics
from rim_rllib.tune.activations import count_activations, write_activations
from rim_rllib.rim import RANK_RULES
from rim_rllib.tune.logs import trainable_logs_in
from rim_rllib.tune.config import (check_k_anneal, check_numbers, check_rank_by,
                                   config_error, flat_config)

DEFAULTS = dict(
    env="MiniGrid-Empty-5x5-v0", eval_envs=("MiniGrid-Empty-16x16-v0",), frames=80_000,
    eval_episodes=100, memory="rim", num_units=4, hidden_size=16, k=3, cell="lstm",
    stack="new", seed=0, num_env_runners=None, ppo=None, rim=None, threads=1,
    checkpoint_every=10, k_anneal=0.0, rank_by=None,
)
FRAMES_FILE = "frames.json"
#: The kinds of the numbers in ``config['ppo']`` (:data:`rim_rllib.tune.config.NUMBER_KINDS`).
PPO_NUMBERS = {key: "positive int" for key in (
    "num_envs", "rollout_length", "num_epochs", "minibatch_size", "max_seq_len")} | {
    "lr": "positive", "gamma": "fraction", "lambda_": "fraction", "clip_param": "positive",
    "entropy_coeff": "weight", "vf_loss_coeff": "weight", "grad_clip": "positive"}


def resolve_config(config: dict) -> dict:
    config = flat_config(config)
    unknown = set(config) - set(DEFAULTS) - {"epochs", "iterations"}
    if unknown:
        raise ValueError(f"unknown MiniGrid trainable config keys {sorted(unknown)}; "
                         f"expected some of {sorted(DEFAULTS)}")
    cfg = DEFAULTS | config
    for env_id in (cfg["env"], *cfg["eval_envs"]):
        check_env_id(env_id)
    if cfg["stack"] not in STACKS:
        raise ValueError(f"config['stack'] must be one of {list(STACKS)} (RLlib's API "
                         f"stacks), got {cfg['stack']!r}")
    every = cfg["checkpoint_every"]
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"config['checkpoint_every'] must be a positive int (PPO iterations "
                         f"between checkpoints; the last one is always saved), got {every!r}")
    check_numbers(cfg, {key: "positive int" for key in (
        "frames", "eval_episodes", "num_units", "hidden_size", "k", "threads")}
        | {"seed": "int >= 0", "num_env_runners": "int >= 0"}, optional=("num_env_runners",))
    check_k_anneal(cfg["k_anneal"], "frames")
    # rank_by: the top-level key, or the rim dict's, or the paper's rule; not both apart.
    in_rim = (cfg["rim"] or {}).get("rank_by")
    if None not in (cfg["rank_by"], in_rim) and cfg["rank_by"] != in_rim:
        raise ValueError(f"config['rim']['rank_by']={in_rim!r} contradicts "
                         f"config['rank_by']={cfg['rank_by']!r}; set it once")
    cfg["rank_by"] = cfg["rank_by"] or in_rim or RANK_RULES[0]
    check_rank_by(cfg["rank_by"])
    if set(cfg["ppo"] or {}) - set(REFERENCE):
        raise ValueError(f"config['ppo'] keys must be among {sorted(REFERENCE)}, "
                         f"got {sorted(cfg['ppo'])}")
    check_numbers(cfg["ppo"] or {}, PPO_NUMBERS, optional=("grad_clip",),
                  where="config['ppo']")
    return cfg


def agent_config(cfg: dict) -> dict:
    """The agent's keys (:class:`rim_rllib.actor_critic.MiniGridActorCritic`) of a
    resolved config."""
    return dict(memory=cfg["memory"], num_units=cfg["num_units"],
                hidden_size=cfg["hidden_size"], k=cfg["k"], cell=cfg["cell"],
                **({"rank_by": cfg["rank_by"]} if cfg["memory"] == "rim" else {}),
                **{key: value for key, value in (cfg["rim"] or {}).items()
                   if key != "rank_by"})


def check_config(config: dict) -> dict:
    """:func:`resolve_config`, and then what the config asks of the agent and of PPO
    checked by their own code: the agent built on the meta device (no memory), RLlib's
    validation of the PPO config. What the study runner calls before Ray starts, so that
    no trial fails on its config after it."""
    cfg = resolve_config(config)
    agent = agent_config(cfg)
    try:
        with torch.device("meta"):
            # MiniGrid's seven actions; the count changes nothing that is checked
            MiniGridActorCritic(num_actions=7, **agent)
        ppo = ppo_config(cfg["env"], agent, stack=cfg["stack"],
                         num_env_runners=cfg["num_env_runners"] or 0, seed=cfg["seed"],
                         **(cfg["ppo"] or {}))
        # validate() warns that PPO runs on the new stack, each time: the trial says it
        rllib_config_log = logging.getLogger("ray.rllib.algorithms.algorithm_config")
        level = rllib_config_log.level
        rllib_config_log.setLevel(logging.ERROR)
        try:
            ppo.validate()
        finally:
            rllib_config_log.setLevel(level)
    except (ValueError, TypeError) as err:
        raise config_error(err, cfg, nested="rim") from None
    return cfg


def _frames(result: dict) -> int:
    runners = result.get("env_runners", {})
    for value in (runners.get("num_env_steps_sampled_lifetime"),
                  result.get("num_env_steps_sampled_lifetime"),
                  result.get("timesteps_total")):
        if value is not None:
            return int(value)
    raise KeyError("no sampled-steps counter in the RLlib result")


def learner_metrics(result: dict) -> dict:
    """The iteration's PPO losses from an RLlib result of either stack, and the RIM's
    weighted load-balancing loss when it is on (``train_balance_loss``)."""
    new_stack = result.get("learners", {}).get("default_policy")
    classic = result.get("info", {}).get("learner", {}).get("default_policy", {})
    stats = new_stack if new_stack is not None else classic.get("learner_stats", {})
    metrics = {f"train_{key}": float(stats.get(key, float("nan")))
               for key in ("policy_loss", "vf_loss", "entropy")}
    balance = stats.get("balance_loss", classic.get("model", {}).get("balance_loss"))
    if balance is not None:
        metrics["train_balance_loss"] = float(balance)
    return metrics


def _network(algo, stack: str):
    return algo.get_module().net if stack == "new" else algo.get_policy().model.net


def train_minigrid(config: dict) -> None:
    """The Tune function trainable (see the module docstring)."""
    cfg = resolve_config(config)
    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(cfg["seed"])
    model = agent_config(cfg)
    runners = cfg["num_env_runners"]
    if runners is None:  # as many as the trial's own CPUs allow, not the node's
        cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", 1)
        runners = default_env_runners(int(cpus), (cfg["ppo"] or {}).get(
            "num_envs", REFERENCE["num_envs"]))
    with trainable_logs_in(tune.get_context().get_trial_dir()):  # RLlib's Algorithm
        algo = ppo_config(cfg["env"], model, stack=cfg["stack"], num_env_runners=runners,
                          seed=cfg["seed"], **(cfg["ppo"] or {})).build_algo()
    frames = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            restore_algorithm(algo, directory)
            frames = json.loads((Path(directory) / FRAMES_FILE).read_text())["frames"]
    anneal_frames = cfg["k_anneal"] * cfg["frames"] if cfg["memory"] == "rim" else 0
    iteration = 0
    try:
        while frames < cfg["frames"]:
            iteration += 1
            if anneal_frames:
                set_dense_fraction(algo, max(0.0, 1.0 - frames / anneal_frames))
            start = time.perf_counter()
            result = algo.train()
            seconds = time.perf_counter() - start
            new_frames = max(frames, _frames(result))
            metrics = dict(frames=new_frames, train_return=result.get("env_runners", {}).get(
                "episode_return_mean", float("nan")),
                           samples_per_s=(new_frames - frames) / seconds,
                           **learner_metrics(result))
            frames = new_frames
            done = frames >= cfg["frames"]
            if done:
                if anneal_frames:
                    set_dense_fraction(algo, 0.0)
                metrics.update(_evaluate_all(_network(algo, cfg["stack"]), cfg))
            if not (done or iteration % cfg["checkpoint_every"] == 0):
                tune.report(metrics)
                continue
            with tempfile.TemporaryDirectory() as directory:
                save_algorithm(algo, directory)
                (Path(directory) / FRAMES_FILE).write_text(json.dumps({"frames": frames}))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
    finally:
        algo.stop()


def _evaluate_all(net, cfg: dict) -> dict:
    """Evaluation returns and activation rates per environment; for a RIM also the
    activation counts by what the agent sees, into the trial's activations.parquet."""
    metrics, counts = {}, []
    for env_id in dict.fromkeys((cfg["env"], *cfg["eval_envs"])):
        result = evaluate(net, env_id, cfg["eval_episodes"], seed=EVAL_SEED_OFFSET + cfg["seed"])
        metrics[f"return/{env_id}"] = result["mean_return"]
        for unit, rate in enumerate(result["activation_rate"] or []):
            metrics[f"activation/{env_id}/u{unit}"] = rate
        if result["activation_rate"] is not None:
            # The episodes' steps as one sequence: an episode boundary counts as a step.
            collapse = collapse_metrics(torch.from_numpy(result["masks"]).bool()[None])
            metrics.update({f"{name}/{env_id}": collapse[name] for name in COLLAPSE_METRICS})
            conditions = dict(result["conditions"], all=np.ones(result["frames"], bool))
            counts.append(count_activations(result["masks"], conditions)
                          .assign(eval_on=env_id))
    if counts:
        context = tune.get_context()
        write_activations(pd.concat(counts), context.get_trial_dir(),
                          trial_id=context.get_trial_id(), task="minigrid",
                          train_on=cfg["env"], Kt=cfg["num_units"], Ka=cfg["k"],
                          seed=cfg["seed"])
    return metrics
