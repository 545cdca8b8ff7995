"""The three MiniGrid train-vs-transfer tables of the reference (Empty, MultiRoom, DoorKey):
RIM Kt=4 with Ka=3 and Ka=2, and the LSTM baseline, trained on the starred environment and
evaluated without training on the others.

    python studies/minigrid_transfer.py                       # all three, 'cpu' preset
    python studies/minigrid_transfer.py --tasks minigrid-empty --seeds 0 1 2
    python studies/minigrid_transfer.py --preset paper --address auto --storage /shared
"""

import argparse
import sys
from pathlib import Path

if not __package__:  # run as a file (python studies/minigrid_transfer.py): import from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rim_rllib.cli import Distinct, HelpFormatter
from rim_rllib.tune.study import add_study_arguments
from rim_rllib.tune.tasks import MINIGRID_TASKS, PRESETS, study_spec
from studies.study_cli import run_and_tabulate

REFERENCE_KA = (3, 2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    what = parser.add_argument_group("what it trains")
    what.add_argument("--tasks", nargs="+", choices=list(MINIGRID_TASKS), action=Distinct,
                      default=list(MINIGRID_TASKS), help="the MiniGrid tasks, one study each")
    what.add_argument("--preset", choices=PRESETS, default="cpu",
                      help="budgets: frames and evaluation episodes")
    add_study_arguments(parser, sequence_tasks=False, what=what)
    args = parser.parse_args(argv)
    if args.name and len(args.tasks) > 1:
        parser.exit(2, f"{parser.prog}: error: --name {args.name} names one study, and "
                       f"--tasks runs {len(args.tasks)}; name one task with --tasks, or "
                       "leave the names to the script (minigrid_transfer-TASK-PRESET)\n")
    tables = []
    for task in args.tasks:
        name = args.name or f"minigrid_transfer-{task}-{args.preset}"
        path, table = run_and_tabulate(parser, args, lambda: study_spec(
            task, args.preset, ks=REFERENCE_KA, seeds=args.seeds, name=name,
            asha=args.asha))
        tables.append((task, path, table))
    for task, path, markdown in tables:
        print(f"\n{task} ({path})\n\n{markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
