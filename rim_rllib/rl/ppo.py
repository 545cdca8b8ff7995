"""PPO with the reference's settings (16 envs x 128 steps per rollout, 4 epochs, minibatch
256, lr 1e-4, gamma 0.99, GAE lambda 0.95, clip 0.2, entropy 0.01, value 0.5, max grad
norm 0.5, truncated BPTT over 32 steps, no KL penalty: RLlib's default adds one, the
reference's PPO has none), on either RLlib API stack.

    from rim_rllib.rl.ppo import ppo_config
    algo = ppo_config("MiniGrid-Empty-5x5-v0", model={"memory": "rim", "k": 3}).build_algo()
    algo.train()
"""

import os

from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

import rim_rllib.rl  # noqa: F401  (registers the env names and the model name "rim")
from rim_rllib.rim import set_dense_fraction_
from rim_rllib.rl.classic import MODEL_NAME
from rim_rllib.rl.envs import check_env_id
from rim_rllib.rl.rl_module import RIMActorCriticModule, RIMPPOTorchLearner

REFERENCE = dict(num_envs=16, rollout_length=128, num_epochs=4, minibatch_size=256, lr=1e-4,
                 gamma=0.99, lambda_=0.95, clip_param=0.2, entropy_coeff=0.01,
                 vf_loss_coeff=0.5, grad_clip=0.5, max_seq_len=32)
STACKS = ("new", "classic")


def valid_env_runners(num_envs: int) -> list[int]:
    """Env-runner counts that split ``num_envs`` environments evenly (0: sample in the
    driver)."""
    return [0] + [n for n in range(1, num_envs + 1) if num_envs % n == 0]


def default_env_runners(cpus: int | None = None, num_envs: int = REFERENCE["num_envs"]) -> int:
    """Sample in the driver with 2 CPUs or fewer; with more, as many runners as spare CPUs
    allow (one CPU stays with the learner) among the counts that split ``num_envs``.
    ``cpus``: what the caller may use (default: the machine's)."""
    cpus = cpus or os.cpu_count() or 1
    return 0 if cpus <= 2 else max(n for n in valid_env_runners(num_envs) if n <= cpus - 1)


def ppo_config(env_id: str, model: dict | None = None, stack: str = "new",
               num_env_runners: int | None = None, seed: int | None = None,
               env_config: dict | None = None, **overrides) -> PPOConfig:
    """A PPOConfig for ``env_id`` with the RIM/LSTM agent ``model`` (the keys of
    :class:`rim_rllib.actor_critic.MiniGridActorCritic`), the reference settings, and
    ``overrides`` of any of them (keys of :data:`REFERENCE`)."""
    check_env_id(env_id)
    if stack not in STACKS:
        raise ValueError(f"stack must be one of {list(STACKS)}, got {stack!r}")
    unknown = set(overrides) - set(REFERENCE)
    if unknown:
        raise ValueError(f"unknown PPO setting(s) {sorted(unknown)}; "
                         f"available: {sorted(REFERENCE)}")
    s = REFERENCE | overrides
    runners = (default_env_runners(num_envs=s["num_envs"]) if num_env_runners is None
               else num_env_runners)
    if runners not in valid_env_runners(s["num_envs"]):
        raise ValueError(f"num_env_runners={runners!r} does not split num_envs="
                         f"{s['num_envs']} environments evenly; use one of "
                         f"{valid_env_runners(s['num_envs'])}")
    envs_per_runner = s["num_envs"] // max(runners, 1)
    model = dict(model or {})
    config = (
        PPOConfig()
        .environment(env_id, env_config=env_config or {})
        .env_runners(num_env_runners=runners, num_envs_per_env_runner=envs_per_runner,
                     rollout_fragment_length=s["rollout_length"])
        .training(lr=s["lr"], gamma=s["gamma"], lambda_=s["lambda_"],
                  clip_param=s["clip_param"], entropy_coeff=s["entropy_coeff"],
                  vf_loss_coeff=s["vf_loss_coeff"], grad_clip=s["grad_clip"],
                  grad_clip_by="global_norm", num_epochs=s["num_epochs"],
                  minibatch_size=s["minibatch_size"], use_kl_loss=False, kl_coeff=0.0)
        .debugging(seed=seed)
    )
    batch = s["num_envs"] * s["rollout_length"]
    if stack == "new":
        config.training(train_batch_size_per_learner=batch)
        config.rl_module(rl_module_spec=RLModuleSpec(
            module_class=RIMActorCriticModule,
            model_config=model | {"max_seq_len": s["max_seq_len"]}))
        if model.get("balance_loss"):
            config.training(learner_class=RIMPPOTorchLearner)
    else:
        config.api_stack(enable_rl_module_and_learner=False,
                         enable_env_runner_and_connector_v2=False)
        config.training(train_batch_size=batch, model={
            "custom_model": MODEL_NAME, "max_seq_len": s["max_seq_len"],
            "custom_model_config": model})
    return config


def save_algorithm(algo, directory: str) -> str:
    """Checkpoint ``algo`` into ``directory`` on either API stack; returns the path."""
    if algo.config.enable_rl_module_and_learner:
        return algo.save_to_path(directory)
    return algo.save(directory).checkpoint.path


def restore_algorithm(algo, directory: str) -> None:
    if algo.config.enable_rl_module_and_learner:
        algo.restore_from_path(directory)
    else:
        algo.restore(directory)


def set_dense_fraction(algo, fraction: float) -> None:
    """Dense-to-sparse PPO: :func:`rim_rllib.set_dense_fraction_` with ``in_eval=True`` on
    every copy of the agent's network in ``algo``, on either API stack: the learners' and
    the env runners' (which act in eval mode: the actions PPO learns from must come from
    the units it trains). No effect on an LSTM agent."""
    def anneal(module):
        set_dense_fraction_(module, fraction, in_eval=True)

    if algo.config.enable_rl_module_and_learner:
        algo.learner_group.foreach_learner(
            lambda learner: learner.module.foreach_module(lambda _, module: anneal(module)))
        algo.env_runner_group.foreach_env_runner(lambda runner: anneal(runner.module))
    else:
        algo.env_runner_group.foreach_env_runner(
            lambda worker: worker.foreach_policy(lambda policy, _: anneal(policy.model)))
