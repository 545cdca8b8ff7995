"""The main job: a Ray Tune sweep over Ka (active RIM units) with the LSTM baseline as a
row, then the train-vs-transfer table.

    python studies/ka_sweep.py                    # 'cpu' preset: ~15 min on 2 CPU cores
    python studies/ka_sweep.py --preset paper --address auto --storage s3://bucket/studies
    python studies/ka_sweep.py --resume           # continue an interrupted study

Presets (task mnist: train at 14x14, test at 14/16/19/24):
  cpu    Kt=6, Ka in 1..6 + LSTM(Kt*H), 2 seeds; reduced to fit a laptop: H=16 per unit,
         small attention (keys 32, values 32, comm keys 16, comm values 16, 2 comm heads),
         4,000 training images, 3 epochs, 1,000 test images per size, lr 3e-3.
  paper  the reference configuration: H=100, default attention sizes, full 60k/10k,
         lr 1e-3, batch 64, 100 epochs, 3 seeds; meant for a GPU cluster.
"""

import argparse
import sys

from analysis.tables import build_table, summarise, write_table
from rim_rllib.tune.mnist import MnistTrainable
from rim_rllib.tune.results import read_results
from rim_rllib.tune.study import StudySpec, add_study_arguments, run_study

EVAL_SIZES = (16, 19, 24)


def mnist_variants(num_units: int, ks, cell: str = "lstm") -> list[dict]:
    rims = [dict(model="rim", num_units=num_units, k=k, cell=cell) for k in ks]
    return rims + [dict(model="lstm", num_units=num_units)]


PRESETS = {
    "cpu": dict(
        base_config=dict(hidden_size=16, input_key_size=32, input_query_size=32,
                         input_value_size=32, comm_key_size=16, comm_query_size=16,
                         comm_value_size=16, num_comm_heads=2, lr=3e-3, batch_size=64,
                         train_size=14, eval_sizes=EVAL_SIZES, train_subset=4000,
                         eval_subset=1000),
        variants=mnist_variants(6, range(1, 7)), seeds=[0, 1], iterations=3),
    "paper": dict(
        base_config=dict(hidden_size=100, lr=1e-3, batch_size=64, train_size=14,
                         eval_sizes=EVAL_SIZES),
        variants=mnist_variants(6, range(1, 7)), seeds=[0, 1, 2], iterations=100),
}


def make_spec(args: argparse.Namespace) -> StudySpec:
    preset = PRESETS[args.preset]
    base = dict(preset["base_config"], data_dir=args.data_dir)
    return StudySpec(name=args.name or f"ka_sweep-{args.task}-{args.preset}", task=args.task,
                     trainable=MnistTrainable, base_config=base,
                     variants=preset["variants"], seeds=args.seeds or preset["seeds"],
                     iterations=preset["iterations"], metric="accuracy", asha=args.asha)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=["mnist"], default="mnist")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--data-dir", default=None,
                        help="MNIST IDX files (default: $RIM_DATA_DIR, then the user cache, "
                             "then download)")
    add_study_arguments(parser)
    args = parser.parse_args(argv)
    path = run_study(make_spec(args), address=args.address, storage=args.storage,
                     resume=args.resume, max_concurrent=args.max_concurrent)
    results = read_results(path)
    print(f"\nresults: {path}\n")
    print(write_table(build_table(results), path.parent, summarise(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
