"""The experiments of the spec as study specs: sequential MNIST, the copying task and the
three MiniGrid train-vs-transfer tasks, each with a laptop preset (``cpu``) and the
reference one (``paper``)."""

import inspect
import math
from dataclasses import asdict, replace
from functools import partial

from ray import tune

from rim_rllib.mnist_data import check_mnist
from rim_rllib.models import MNIST_SIZES
from rim_rllib.rim import RIMCell
from rim_rllib.rl.ppo import REFERENCE
from rim_rllib.selection import Selection
from rim_rllib.tune.copying import CopyingTrainable
from rim_rllib.tune.minigrid import check_config as check_minigrid_config
from rim_rllib.tune.minigrid import DEFAULTS as MINIGRID_DEFAULTS
from rim_rllib.tune.minigrid import train_minigrid
from rim_rllib.tune.mnist import MnistTrainable
from rim_rllib.tune.sequence import COMMON_DEFAULTS, RIM_KWARGS
from rim_rllib.tune.study import StudySpec

MNIST_EVAL_SIZES = (16, 19, 24)
MNIST_PRESETS = {
    # Sized to learn within about 20 minutes on 2 CPU cores: small models without dropout
    # (as the LSTM), chrono initialisation, small batches, a cosine lr decay after a short
    # warm-up, 18,000 training samples per model; the 18 RIMs in one pack on 2 threads
    # (faster than two packs side by side) with the step compiled (1.7x), then the LSTMs;
    # small evaluation batches (with 18 members, batches of 50 evaluate 2x faster than
    # 500). RIMs train dense-to-sparse (k_anneal) at lr 5e-3: at 3e-3 the units are still
    # adapting to their own Ka when the cosine has taken the lr near 0 (Ka=2: 49.0% mean
    # at 3e-3, 55.8% at 5e-3; Ka 3, 4, 6 gained 3-8 points, Ka=5 lost 5 on one seed). The
    # LSTM baseline gets its own lr (model_config): at 3e-3 it reached 49.5% mean, at 6e-3
    # 58% (3 seeds, 13,500 samples). Fatigue 1 (a unit's recent wins lower its selection
    # score) spreads a small Ka's sequence over its units: Ka=1 38.3 -> 51.6% (seeds 0-2;
    # 50.9% on seeds 3-5), Ka 2-5 up 1-10 points; fatigue 0.5 / 2 / 4 gave Ka=1 49.2 /
    # 47.3 / 46.7%, decay 0.7 / 0.97 43.9 / 47.1%, annealing over 50% / none 50.3 / 47.9%.
    # The paper's unit selection (rank_by) and pixels one-hot (input_encoding): under the
    # paper's rule, one-hot against raw pixels gave Ka 6..1 76.4 / 74.6 / 73.2 / 68.6 /
    # 62.5 / 48.2% against 72.2 / 71.6 / 70.0 / 66.6 / 59.3 / 48.9% at 14x14 and the LSTM
    # 68.0 against 65.7% (seeds 0-2; docs/notebook/2026-12-01-rank-rule-and-encoding.md).
    "cpu": dict(base_config=dict(MNIST_SIZES["cpu"], input_dropout=0.0, comm_dropout=0.0,
                                 lr=5e-3, lr_schedule="cosine", warmup=0.05,
                                 batch_size=16, init="chrono", compile=True, k_anneal=0.8,
                                 fatigue=1.0, rank_by="null_attention",
                                 input_encoding="onehot",
                                 train_size=14, eval_sizes=MNIST_EVAL_SIZES,
                                 train_subset=6000, eval_subset=1000, eval_batch_size=50,
                                 transfer_eval_every=3),
                model_config={"lstm": dict(lr=6e-3)},
                seeds=[0, 1, 2], iterations=3, pack="sweep", cpus_per_trial=2),
    # The reference's sizes and training, for GPUs: the 18 RIMs of the sweep in one pack
    # on a whole GPU, their step compiled and captured as a CUDA graph (on an H200 a step
    # of 21 packed RIMs took 139 ms against 372 ms for one RIM eager: the sweep's training
    # ~4.5 GPU-hours instead of ~175; benchmarks/gpu_step.py). Then the LSTMs, one trial.
    "paper": dict(base_config=dict(MNIST_SIZES["paper"], lr=1e-3, batch_size=64,
                                   compile=True, train_size=14, eval_sizes=MNIST_EVAL_SIZES,
                                   rank_by="null_attention", input_encoding="onehot"),
                  seeds=[0, 1, 2], iterations=100, pack="sweep", gpus_per_trial=1),
}

# Training images held out for ASHA's decisions (--asha) with each preset.
MNIST_VALIDATION = {"cpu": 1000, "paper": 5000}

COPYING_PRESETS = {
    # A dormant phase of 10 (tested at 10, 20, 40, 80: the reference's x4 and more), the
    # MNIST cpu preset's model sizes, 100,000 training sequences per model in batches of
    # 16: at a dormant length of 10, batch 16 reached 89% recall with Ka=6 where batch 64
    # reached 42% on the same samples (lr 3e-3), and lr 6e-3 took Ka=4 to 92% in 70,000.
    # Chrono initialisation (as in the MNIST preset) for the 30-step sequences: seed 0,
    # Ka 1..6 after 100,000 sequences 33 / 68 / 63 / 86 / 94 / 98% recall, against 36 /
    # 42 / 55 / 87 / 91 / 39% with PyTorch's; 9 epochs instead of 10 (in that run the
    # tenth moved no row by more than 0.6 points) and the transfer lengths tested after
    # the last one only, to keep the study within 15 minutes.
    "cpu": dict(base_config=dict(MNIST_SIZES["cpu"], input_dropout=0.0, comm_dropout=0.0,
                                 lr=6e-3, lr_schedule="cosine", warmup=0.05, batch_size=16,
                                 init="chrono", compile=True, dormant=10,
                                 rank_by="null_attention",
                                 eval_dormants=(20, 40, 80), train_sequences=10_000,
                                 eval_sequences=1_000, eval_batch_size=250,
                                 transfer_eval_every=9),
                seeds=[0, 1, 2], iterations=9, pack="sweep", cpus_per_trial=2),
    # The reference's sizes and training (its copying.py): train at 50, test at 200; like
    # the MNIST paper preset, the sweep in one compiled, CUDA-graphed pack per GPU.
    "paper": dict(base_config=dict(hidden_size=100, num_units=6, input_key_size=128,
                                   input_query_size=128, input_value_size=400,
                                   comm_key_size=128, comm_query_size=128,
                                   comm_value_size=100, num_comm_heads=4, lr=5e-4,
                                   batch_size=500, compile=True, dormant=50,
                                   eval_dormants=(100, 200, 400), train_sequences=50_000,
                                   eval_sequences=2_000, rank_by="null_attention"),
                  seeds=[0, 1, 2], iterations=100, pack="sweep", gpus_per_trial=1),
}
SEQUENCE_TASKS = {"mnist": (MnistTrainable, MNIST_PRESETS),
                  "copying": (CopyingTrainable, COPYING_PRESETS)}

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
    # Trials sample in their own process (num_env_runners=0); a preset that sets
    # num_env_runners reserves a CPU per runner in each trial's placement group.
    "cpu": dict(frame_scale=1.0, eval_episodes=20, seeds=[0, 1]),
    "paper": dict(frame_scale=1.0, eval_episodes=100, seeds=[0, 1, 2]),
}
TASKS = (*SEQUENCE_TASKS, *MINIGRID_TASKS)
PRESETS = ("cpu", "paper")

#: Wall seconds of a default study (``python studies/ka_sweep.py --task T``) measured on the
#: project's 2-core CPU machine (AMD EPYC): what :func:`estimate_seconds` scales.
MEASURED_SECONDS = {("mnist", "cpu"): 1032, ("copying", "cpu"): 738}
#: Config keys that set what a study sweeps: the scripts' own arguments change them.
SWEPT_KEYS = ("model", "memory", "num_units", "k", "cell", "seed")


DEFAULT_KT = {"mnist": 6, "copying": 6, "minigrid": 4}


def search_space(num_units: int) -> dict:
    """The ranges ``--search random|optuna`` draws from for the sequence tasks: lr
    log-uniform, Ka, the attention dropouts and the units' hidden size."""
    return dict(lr=tune.loguniform(1e-4, 1e-2), k=tune.randint(1, num_units + 1),
                input_dropout=tune.uniform(0.0, 0.3), comm_dropout=tune.uniform(0.0, 0.3),
                hidden_size=tune.choice([16, 32, 64, 100]))


def with_search(spec: StudySpec, search: str, num_samples: int | None = None, fixed=()
                ) -> StudySpec:
    """``spec`` as a ``search`` (``"random"`` or ``"optuna"``; ``"grid"`` returns it
    unchanged) of ``num_samples`` configs (default 10) of its first RIM variant drawn
    from :func:`search_space` (less the ``fixed`` keys, set on the command line), every
    seed packed in each trial. ``num_samples`` with the grid is refused: it would do
    nothing."""
    if search == "grid":
        if num_samples is not None:
            raise ValueError(f"--num-samples {num_samples}: for --search random or optuna; "
                             "the grid runs every combination of the script's arguments")
        return spec
    num_samples = 10 if num_samples is None else num_samples
    if spec.task not in SEQUENCE_TASKS:
        raise ValueError(f"--search {search}: for the sequence tasks {list(SEQUENCE_TASKS)}; "
                         f"MiniGrid studies run the grid")
    rim = next((v for v in spec.variants if v.get("model") == "rim"), None)
    if rim is None:
        raise ValueError(f"--search {search}: the study has no RIM variant to search over")
    space = {key: domain for key, domain in search_space(rim["num_units"]).items()
             if key not in fixed}
    return replace(spec, search=search, num_samples=num_samples, search_space=space,
                   variants=[{key: v for key, v in rim.items() if key != "k"}], pack="seeds",
                   max_pack=None)


def with_overrides(spec: StudySpec, overrides: dict, epochs: int | None = None,
                   frames: int | None = None) -> StudySpec:
    """``spec`` with trial config ``overrides`` over its preset's and its variants' values,
    and another budget: ``epochs`` for the sequence tasks, ``frames`` for MiniGrid. Every
    trial config it makes is checked by the trainable's own validation first (its
    ``check_config``: the keys, every value's type and range, and the networks and the
    optimiser built from them), so a wrong key or value is a ``ValueError`` that names it
    (and lists the valid keys) before Ray starts."""
    swept = [key for key in overrides if key in SWEPT_KEYS]
    if swept:
        raise ValueError(f"--set {swept[0]}=...: {swept[0]!r} is what the study sweeps; use "
                         "the script's own arguments (--ka, --kt, --cells, --seeds)")
    minigrid = spec.task == "minigrid"
    if minigrid and epochs is not None:
        raise ValueError(f"--epochs {epochs}: MiniGrid trials train for a number of frames; "
                         "use --frames")
    if not minigrid and frames is not None:
        raise ValueError(f"--frames {frames}: for the MiniGrid tasks; the {spec.task} task "
                         "trains for --epochs")
    base = spec.base_config | overrides | ({"frames": frames} if frames else {})
    iterations = (_ppo_iterations(base["frames"]) if minigrid
                  else epochs or spec.iterations)
    variants = [variant | {key: value for key, value in overrides.items() if key in variant}
                for variant in spec.variants]
    check = check_minigrid_config if minigrid else spec.trainable.check_config
    for variant in variants:
        check(dict(base, variant=variant, seed=spec.seeds[0], epochs=iterations))
    return replace(spec, base_config=base, variants=variants, iterations=iterations)


def estimate_seconds(spec: StudySpec, preset: str) -> float | None:
    """The study's wall time on a 2-core CPU machine, scaled linearly in models, epochs and
    training samples from the preset's measured default study (:data:`MEASURED_SECONDS`);
    ``None`` where there is no measurement (MiniGrid, the GPU presets)."""
    measured = MEASURED_SECONDS.get((spec.task, preset))
    if measured is None:
        return None
    default = study_spec(spec.task, preset)
    size_key = "train_subset" if spec.task == "mnist" else "train_sequences"
    samples = spec.base_config.get(size_key, spec.trainable.DEFAULTS[size_key]) or 60_000
    return (measured * spec.num_models / default.num_models
            * spec.iterations / default.iterations
            * samples / default.base_config[size_key])


def _ppo_iterations(frames: int) -> int:
    return math.ceil(frames / (REFERENCE["num_envs"] * REFERENCE["rollout_length"]))


def study_spec(task: str, preset: str = "cpu", ks=None, num_units: int | None = None,
               seeds=None, name: str | None = None, data_dir: str | None = None,
               asha: bool = False, pack: str | None = None,
               max_pack: int | None = None, matched_lstm: bool = False) -> StudySpec:
    """A Ka sweep (RIM with ``num_units`` LSTM units and each of ``ks`` active, plus the
    LSTM baseline; with ``matched_lstm`` also an LSTM as wide as each Ka's active units,
    see :func:`grid_variants`) on ``task`` with ``preset``."""
    num_units = num_units or DEFAULT_KT[task if task in SEQUENCE_TASKS else "minigrid"]
    variants = grid_variants(task, [num_units], ["lstm"],
                             {num_units: list(ks or range(1, num_units + 1))}, matched_lstm)
    return task_spec(task, preset, variants, seeds, name or f"ka_sweep-{task}-{preset}",
                     data_dir, asha, pack, max_pack)


def grid_variants(task: str, kts, cells, ks_by_kt: dict | None = None,
                  matched_lstm: bool = False) -> list[dict]:
    """RIM variants for every Kt in ``kts``, Ka in 1..Kt (or ``ks_by_kt[Kt]``) and cell
    in ``cells``, plus one LSTM baseline (hidden Kt * H) per Kt. With ``matched_lstm``
    also one per Ka (hidden Ka * H, in the table's row with Kt = Ka): the control for
    what a RIM gets from its inactive units beyond the width it updates per step."""
    model_key = "model" if task in SEQUENCE_TASKS else "memory"
    variants, active = [], set()
    for kt in kts:
        ks = (ks_by_kt or {}).get(kt, range(1, kt + 1))
        for k in ks:
            if not 1 <= k <= kt:
                raise ValueError(f"Ka={k} is outside 1..Kt={kt}")
        variants += [{model_key: "rim", "num_units": kt, "k": k, "cell": cell}
                     for cell in cells for k in ks]
        variants.append({model_key: "lstm", "num_units": kt})
        active.update(ks)
    if matched_lstm:
        variants += [{model_key: "lstm", "num_units": k}
                     for k in sorted(active - set(kts), reverse=True)]
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
    if task in SEQUENCE_TASKS:
        trainable, presets = SEQUENCE_TASKS[task]
        p = presets[preset]
        # ASHA compares trials, so by default it gets one configuration's seeds per trial.
        pack = pack or ("seeds" if asha else p["pack"])
        # Per-model settings of the preset ride in the variants (they show in trial names).
        variants = [variant | p.get("model_config", {}).get(variant["model"], {})
                    for variant in variants]
        mnist = task == "mnist"
        # A preset's per-trial resources are sized for its own packing.
        own = pack == p["pack"]
        base_config = p["base_config"] | ({"data_dir": data_dir} if mnist else {})
        metric = trainable.METRIC
        if asha and mnist:  # ASHA selects on held-out training images, not on the test set
            base_config |= {"validation": MNIST_VALIDATION[preset]}
            metric = f"{metric}_val"
        return StudySpec(name=name, task=task, trainable=trainable,
                         base_config=base_config,
                         cpus_per_trial=p.get("cpus_per_trial", 1) if own else 1,
                         # Smaller packs share a GPU four ways.
                         gpus_per_trial=(p.get("gpus_per_trial", 0) if own
                                         else min(p.get("gpus_per_trial", 0), 0.25)),
                         variants=variants, seeds=list(seeds or p["seeds"]),
                         iterations=p["iterations"], metric=metric, asha=asha,
                         preflight=partial(check_mnist, data_dir) if mnist else None,
                         pack=pack, max_pack=max_pack or p.get("max_pack"))
    if pack not in (None, "none"):
        raise ValueError(f"--pack {pack}: MiniGrid trials train one RLlib policy each; "
                         "packing is for the MNIST trainable (use --pack none or leave it)")
    if max_pack is not None:
        raise ValueError(f"--max-pack {max_pack}: MiniGrid trials train one RLlib policy "
                         "each; packing is for the sequence tasks")
    p, t = MINIGRID_PRESETS[preset], MINIGRID_TASKS[task]
    frames = int(t["frames"] * p["frame_scale"])
    runners = p.get("num_env_runners", 0)
    return StudySpec(name=name, task="minigrid", trainable=train_minigrid, helper_cpus=runners,
                     base_config=dict(env=t["env"], eval_envs=t["eval_envs"], frames=frames,
                                      eval_episodes=p["eval_episodes"],
                                      num_env_runners=runners),
                     variants=variants, seeds=list(seeds or p["seeds"]),
                     iterations=_ppo_iterations(frames), metric="train_return", asha=asha)


def config_keys(task: str) -> dict:
    """Every trial config key of ``task``'s trainable and its default (for the sequence
    tasks with the RIM's own arguments' defaults)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    if task not in SEQUENCE_TASKS:
        return dict(MINIGRID_DEFAULTS)
    cell = inspect.signature(RIMCell).parameters
    return (COMMON_DEFAULTS | SEQUENCE_TASKS[task][0].DEFAULTS
            | {key: cell[key].default for key in RIM_KWARGS if key in cell}
            | asdict(Selection()))


def study_setting(spec: StudySpec, key: str) -> str | None:
    """What ``spec`` sets trial config ``key`` to, in words: the values it sweeps
    (``1 / 2 / 3``), or its base config's value with a model's own beside it
    (``0.005; lstm 0.006``); ``None`` where it leaves the trainable's default."""
    holding = [variant for variant in spec.variants if key in variant]
    if key in SWEPT_KEYS and holding:
        values = sorted({repr(v[key]) for v in holding}, key=lambda text: (len(text), text))
        return " / ".join(values)
    parts = [repr(spec.base_config[key])] if key in spec.base_config else []
    by_model: dict = {}
    for variant in holding:
        model = variant.get("model", variant.get("memory"))
        by_model.setdefault(model, set()).add(repr(variant[key]))
    parts += [f"{model} " + " / ".join(sorted(values)) for model, values in by_model.items()]
    return "; ".join(parts) or None
