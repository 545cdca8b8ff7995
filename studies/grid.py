"""The full grid: Kt x Ka (1..Kt) x cell type x seed, plus an LSTM baseline per Kt, on one
task, with ASHA early stopping by default.

    python studies/grid.py --task mnist                      # Kt 4 6 8, lstm and gru cells
    python studies/grid.py --task minigrid-doorkey --kt 4 --cells lstm gru --no-asha
    python studies/grid.py --preset paper --address auto --storage s3://bucket/studies

ASHA stops the weaker half of the trials at each rung (grace 1 iteration, reduction 2) on
the training-size accuracy (MNIST) or training return (MiniGrid). Each trial takes one CPU,
and a quarter of a GPU where the cluster has GPUs; Tune runs as many at once as the
resources allow (``--max-concurrent`` caps it).
"""

import argparse
import sys
from pathlib import Path

if not __package__:  # run as a file (python studies/grid.py): import from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rim_rllib.cli import Distinct, int_at_least
from rim_rllib.tune.study import add_study_arguments
from rim_rllib.tune.tasks import PRESETS, TASKS, grid_variants, task_spec
from studies.study_cli import MATCHED_LSTM_HELP, run_and_tabulate


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=TASKS, default="mnist")
    parser.add_argument("--preset", choices=PRESETS, default="cpu")
    parser.add_argument("--kt", type=int_at_least(1), nargs="+", action=Distinct,
                        default=[4, 6, 8], help="Kt values")
    parser.add_argument("--cells", nargs="+", choices=["lstm", "gru"], action=Distinct,
                        default=["lstm", "gru"])
    parser.add_argument("--no-asha", dest="asha", action="store_false",
                        help="run every trial to the end")
    parser.add_argument("--matched-lstm", action="store_true", help=MATCHED_LSTM_HELP)
    parser.add_argument("--data-dir", default=None, help="MNIST IDX files")
    add_study_arguments(parser, asha=False)
    args = parser.parse_args(argv)
    path, table = run_and_tabulate(parser, args, lambda: task_spec(
        args.task, args.preset, grid_variants(args.task, args.kt, args.cells,
                                            matched_lstm=args.matched_lstm), args.seeds,
        args.name or f"grid-{args.task}-{args.preset}", args.data_dir, asha=args.asha,
        pack=args.pack, max_pack=args.max_pack))
    print(f"\nresults: {path}\n\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
