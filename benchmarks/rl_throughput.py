"""PPO throughput on MiniGrid: our RIM module vs RLlib's own LSTM model of the same size.

    python benchmarks/rl_throughput.py                      # reference rollout settings
    python benchmarks/rl_throughput.py --iterations 5 --env MiniGrid-DoorKey-5x5-v0

Every model gets the same rollout settings (the reference's 16 envs x 128 steps per
iteration, 4 epochs of minibatch 256, truncated BPTT 32, sampling in the driver) and the
same CNN; env steps per second count sampling and learning. Prints a table and writes JSON.
"""

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

if not __package__:  # run as a file (python benchmarks/rl_throughput.py): import from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import write_report
from rim_rllib.cli import HelpFormatter
from rim_rllib.rl.ppo import REFERENCE, ppo_config

CNN = [[16, [2, 2], 1], [32, [2, 2], 1], [64, [2, 2], 1]]  # no max-pool in RLlib's CNN


def configs(env: str) -> dict:
    rim = dict(memory="rim", num_units=4, hidden_size=16, k=3)
    rllib_lstm = ppo_config(env, num_env_runners=0, seed=0)
    rllib_lstm.rl_module(rl_module_spec=RLModuleSpec(model_config=DefaultModelConfig(
        conv_filters=CNN, conv_activation="relu", use_lstm=True, lstm_cell_size=64,
        max_seq_len=REFERENCE["max_seq_len"], head_fcnet_hiddens=[64],
        head_fcnet_activation="tanh", vf_share_layers=True)))
    return {
        "RIM Kt=4 Ka=3 (ours)": ppo_config(env, model=rim, num_env_runners=0, seed=0),
        "LSTM 64 (ours)": ppo_config(env, model=dict(memory="lstm"), num_env_runners=0, seed=0),
        "LSTM 64 (RLlib default model)": rllib_lstm,
    }


def measure(config, iterations: int) -> dict:
    algo = config.build_algo()
    try:
        algo.train()  # warm-up: first sampling, graph building
        rates = []
        for _ in range(iterations):
            start = time.perf_counter()
            result = algo.train()
            seconds = time.perf_counter() - start
            steps = result["env_runners"]["num_env_steps_sampled"]
            rates.append(steps / seconds)
        params = sum(p.numel() for p in algo.get_module().parameters())
    finally:
        algo.stop()
    return dict(env_steps_per_s=statistics.median(rates), min=min(rates), max=max(rates),
                parameters=params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--env", default="MiniGrid-Empty-5x5-v0")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--json", type=Path,
                        default=Path("results/benchmarks/rl_throughput.json"))
    args = parser.parse_args()
    rows = []
    print(f"{'model':32} {'params':>8} {'env steps/s':>12} {'vs RLlib LSTM':>14}")
    for label, config in configs(args.env).items():
        rows.append(dict(model=label, env=args.env, **measure(config, args.iterations)))
    base = rows[-1]["env_steps_per_s"]
    for row in rows:
        row["ratio_to_rllib_lstm"] = row["env_steps_per_s"] / base
        print(f"{row['model']:32} {row['parameters']:8d} {row['env_steps_per_s']:12.0f} "
              f"{row['ratio_to_rllib_lstm']:14.2f}")
    report = dict(torch=torch.__version__, threads=torch.get_num_threads(),
                  machine=platform.machine(), settings=REFERENCE,
                  iterations=args.iterations, rows=rows)
    write_report(report, args.json)


if __name__ == "__main__":
    main()
