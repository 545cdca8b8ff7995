"""The experiments of the spec as study specs: sequential MNIST and the three MiniGrid
train-vs-transfer tasks, each with a laptop preset (``cpu``) and the reference one
(``paper``)."""

import math
from functools import partial

from rim_rllib.mnist_data import find_data_dir
from rim_rllib.models import MNIST_SIZES
from rim_rllib.rl.ppo import REFERENCE
from rim_rllib.tune.minigrid import train_minigrid
from rim_rllib.tune.mnist import MnistTrainable
from rim_rllib.tune.study import StudySpec

MNIST_EVAL_SIZES = (16, 19, 24)
MNIST_PRESETS = {
    # Sized to learn within about 20 minutes on 2 CPU cores: small models without dropout
    # (as the LSTM), chrono initialisation, small batches, 13,500 training samples per
    # model; the 18 RIMs in one pack on 2 threads (faster than two packs side by side),
    # then the LSTMs; small evaluation batches (with 18 members, batches of 50 evaluate
    # 2x faster than 500).
    "cpu": dict(base_config=dict(MNIST_SIZES["cpu"], input_dropout=0.0, comm_dropout=0.0,
                                 lr=3e-3, batch_size=16, init="chrono",
                                 train_size=14, eval_sizes=MNIST_EVAL_SIZES,
                                 train_subset=4500, eval_subset=1000, eval_batch_size=50,
                                 transfer_eval_every=3),
                seeds=[0, 1, 2], iterations=3, pack="sweep", cpus_per_trial=2),
    "paper": dict(base_config=dict(MNIST_SIZES["paper"], lr=1e-3, batch_size=64,
                                   train_size=14, eval_sizes=MNIST_EVAL_SIZES),
                  seeds=[0, 1, 2], iterations=100, pack="seeds"),
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


DEFAULT_KT = {"mnist": 6, "minigrid": 4}


def study_spec(task: str, preset: str = "cpu", ks=None, num_units: int | None = None,
               seeds=None, name: str | None = None, data_dir: str | None = None,
               asha: bool = False, pack: str | None = None,
               max_pack: int | None = None) -> StudySpec:
    """A Ka sweep (RIM with ``num_units`` LSTM units and each of ``ks`` active, plus the
    LSTM baseline) on ``task`` with ``preset``."""
    family = "mnist" if task == "mnist" else "minigrid"
    num_units = num_units or DEFAULT_KT[family]
    variants = grid_variants(task, [num_units], ["lstm"],
                             {num_units: list(ks or range(1, num_units + 1))})
    return task_spec(task, preset, variants, seeds, name or f"ka_sweep-{task}-{preset}",
                     data_dir, asha, pack, max_pack)


def grid_variants(task: str, kts, cells, ks_by_kt: dict | None = None) -> list[dict]:
    """RIM variants for every Kt in ``kts``, Ka in 1..Kt (or ``ks_by_kt[Kt]``) and cell
    in ``cells``, plus one LSTM baseline (hidden Kt * H) per Kt."""
    model_key = "model" if task == "mnist" else "memory"
    variants = []
    for kt in kts:
        ks = (ks_by_kt or {}).get(kt, range(1, kt + 1))
        for k in ks:
            if not 1 <= k <= kt:
                raise ValueError(f"Ka={k} is outside 1..Kt={kt}")
        variants += [{model_key: "rim", "num_units": kt, "k": k, "cell": cell}
                     for cell in cells for k in ks]
        variants.append({model_key: "lstm", "num_units": kt})
    return variants


def task_spec(task: str, preset: str, variants: list[dict], seeds=None, name: str = "",
              data_dir: str | None = None, asha: bool = False,
              pack: str | None = None, max_pack: int | None = None) -> StudySpec:
    """The study of ``variants`` x seeds on ``task`` with ``preset``'s sizes and budget;
    ``pack`` and ``max_pack`` (default: the preset's; ``"seeds"`` with ASHA) say how many
    models a trial trains."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {list(PRESETS)}, got {preset!r}")
    if task == "mnist":
        p = MNIST_PRESETS[preset]
        # ASHA compares trials, so by default it gets one configuration's seeds per trial.
        pack = pack or ("seeds" if asha else p["pack"])
        return StudySpec(name=name, task="mnist", trainable=MnistTrainable,
                         base_config=dict(p["base_config"], data_dir=data_dir),
                         cpus_per_trial=p.get("cpus_per_trial", 1) if pack == p["pack"] else 1,
                         variants=variants, seeds=list(seeds or p["seeds"]),
                         iterations=p["iterations"], metric="accuracy", asha=asha,
                         preflight=partial(find_data_dir, data_dir),
                         pack=pack, max_pack=max_pack or p.get("max_pack"))
    if pack not in (None, "none"):
        raise ValueError(f"--pack {pack}: MiniGrid trials train one RLlib policy each; "
                         "packing is for the MNIST trainable (use --pack none or leave it)")
    p, t = MINIGRID_PRESETS[preset], MINIGRID_TASKS[task]
    frames = int(t["frames"] * p["frame_scale"])
    batch = REFERENCE["num_envs"] * REFERENCE["rollout_length"]
    return StudySpec(name=name, task="minigrid", trainable=train_minigrid,
                     base_config=dict(env=t["env"], eval_envs=t["eval_envs"], frames=frames,
                                      eval_episodes=p["eval_episodes"], num_env_runners=0),
                     variants=variants, seeds=list(seeds or p["seeds"]),
                     iterations=math.ceil(frames / batch), metric="train_return", asha=asha)
