"""The experiments of the spec as study specs: sequential MNIST and the three MiniGrid
train-vs-transfer tasks, each with a laptop preset (``cpu``) and the reference one
(``paper``)."""

import math
from functools import partial

from rim_rllib.mnist_data import find_data_dir
from rim_rllib.rl.ppo import REFERENCE
from rim_rllib.tune.minigrid import train_minigrid
from rim_rllib.tune.mnist import MnistTrainable
from rim_rllib.tune.study import StudySpec

MNIST_EVAL_SIZES = (16, 19, 24)
MNIST_PRESETS = {
    # Reduced to finish in about 15 minutes on 2 CPU cores.
    "cpu": dict(base_config=dict(hidden_size=16, input_key_size=32, input_query_size=32,
                                 input_value_size=32, comm_key_size=16, comm_query_size=16,
                                 comm_value_size=16, num_comm_heads=2, lr=3e-3,
                                 batch_size=64, train_size=14, eval_sizes=MNIST_EVAL_SIZES,
                                 train_subset=6000, eval_subset=1000),
                seeds=[0, 1], iterations=3),
    "paper": dict(base_config=dict(hidden_size=100, lr=1e-3, batch_size=64, train_size=14,
                                   eval_sizes=MNIST_EVAL_SIZES),
                  seeds=[0, 1, 2], iterations=100),
}

MINIGRID_TASKS = {
    "minigrid-empty": dict(env="MiniGrid-Empty-5x5-v0",
                           eval_envs=("MiniGrid-Empty-16x16-v0",), frames=80_000),
    "minigrid-multiroom": dict(env="MiniGrid-MultiRoom-N2-S4-v0",
                               eval_envs=("MiniGrid-MultiRoom-N4-S5-v0",
                                          "MiniGrid-MultiRoom-N6-v0"), frames=1_000_000),
    "minigrid-doorkey": dict(env="MiniGrid-DoorKey-5x5-v0",
                             eval_envs=("MiniGrid-DoorKey-6x6-v0", "MiniGrid-DoorKey-8x8-v0",
                                        "MiniGrid-DoorKey-16x16-v0"), frames=300_000),
}
MINIGRID_PRESETS = {
    # The reference's frames; 20 evaluation episodes per environment and 2 seeds.
    "cpu": dict(frame_scale=1.0, eval_episodes=20, seeds=[0, 1]),
    "paper": dict(frame_scale=1.0, eval_episodes=100, seeds=[0, 1, 2]),
}
TASKS = ("mnist", *MINIGRID_TASKS)
PRESETS = ("cpu", "paper")


def study_spec(task: str, preset: str = "cpu", ks=None, num_units: int | None = None,
               seeds=None, name: str | None = None, data_dir: str | None = None,
               asha: bool = False) -> StudySpec:
    """A Ka sweep (RIM with ``num_units`` units and each of ``ks`` active, plus the LSTM
    baseline) on ``task`` with ``preset``."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {list(PRESETS)}, got {preset!r}")
    name = name or f"ka_sweep-{task}-{preset}"
    if task == "mnist":
        num_units = num_units or 6
        p = MNIST_PRESETS[preset]
        variants = _variants("model", num_units, ks or range(1, num_units + 1))
        return StudySpec(name=name, task="mnist", trainable=MnistTrainable,
                         base_config=dict(p["base_config"], data_dir=data_dir),
                         variants=variants, seeds=list(seeds or p["seeds"]),
                         iterations=p["iterations"], metric="accuracy", asha=asha,
                         preflight=partial(find_data_dir, data_dir))
    num_units = num_units or 4
    p, t = MINIGRID_PRESETS[preset], MINIGRID_TASKS[task]
    frames = int(t["frames"] * p["frame_scale"])
    batch = REFERENCE["num_envs"] * REFERENCE["rollout_length"]
    return StudySpec(name=name, task="minigrid", trainable=train_minigrid,
                     base_config=dict(env=t["env"], eval_envs=t["eval_envs"], frames=frames,
                                      eval_episodes=p["eval_episodes"], num_env_runners=0),
                     variants=_variants("memory", num_units, ks or range(1, num_units + 1)),
                     seeds=list(seeds or p["seeds"]), iterations=math.ceil(frames / batch),
                     metric="train_return", asha=asha)


def _variants(model_key: str, num_units: int, ks) -> list[dict]:
    for k in ks:
        if not 1 <= k <= num_units:
            raise ValueError(f"Ka={k} is outside 1..Kt={num_units}")
    rims = [{model_key: "rim", "num_units": num_units, "k": k, "cell": "lstm"} for k in ks]
    return rims + [{model_key: "lstm", "num_units": num_units}]
