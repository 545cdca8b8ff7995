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

from rim_rllib.cli import Distinct, HelpFormatter, int_at_least
from rim_rllib.tune.study import add_study_arguments
from rim_rllib.tune.tasks import PRESETS, TASKS, grid_variants, task_spec
from studies.study_cli import MATCHED_LSTM_HELP, run_and_tabulate


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    what = parser.add_argument_group("what it trains")
    what.add_argument("--task", choices=TASKS, default="mnist", help="the task")
    what.add_argument("--preset", choices=PRESETS, default="cpu",
                      help="model sizes and budgets")
    what.add_argument("--kt", type=int_at_least(1), nargs="+", action=Distinct,
                      default=[4, 6, 8], help="Kt values")
    what.add_argument("--cells", nargs="+", choices=["lstm", "gru"], action=Distinct,
                      default=["lstm", "gru"], help="RIM unit types")
    what.add_argument("--no-asha", dest="asha", action="store_false",
                      help="run every trial to the end (default: early-stop with ASHA)")
    what.add_argument("--matched-lstm", action="store_true", help=MATCHED_LSTM_HELP)
    what.add_argument("--data-dir", default=None,
                      help="MNIST IDX files (default: $RIM_DATA_DIR, then the user cache, "
                           "then download)")
    add_study_arguments(parser, asha=False, what=what)
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
