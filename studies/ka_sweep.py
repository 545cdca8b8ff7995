"""The main job: a Ray Tune sweep over Ka (active RIM units) with the LSTM baseline as a
row, then the train-vs-transfer table.

    python studies/ka_sweep.py                    # MNIST, 'cpu' preset: 17-60 min on 2 cores
    python studies/ka_sweep.py --task copying     # the copying task
    python studies/ka_sweep.py --task minigrid-empty
    python studies/ka_sweep.py --preset paper --address auto --storage /shared/studies
    python studies/ka_sweep.py --resume           # continue an interrupted study
    python studies/ka_sweep.py --pack seeds       # one trial per Ka, its seeds packed
    python studies/ka_sweep.py --task copying --matched-lstm  # + LSTMs as wide as Ka units

Tasks: mnist (Kt=6, Ka 1..6; train at 14x14, test at 14/16/19/24), copying (Kt=6,
Ka 1..6; train at one dormant length, test at it and 2x, 4x, 8x), and minigrid-empty,
minigrid-doorkey, minigrid-multiroom (Kt=4, Ka 1..4; train on the first environment of
the spec's table, test on the others). The presets are in rim_rllib/tune/tasks.py and
docs/reference/config.md.
"""

import sys
from pathlib import Path

if not __package__:  # run as a file (python studies/ka_sweep.py): import from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rim_rllib.tune.tasks import study_spec
from studies.study_cli import MATCHED_LSTM_HELP, run_and_tabulate, sweep_parser


def main(argv=None) -> int:
    parser, what = sweep_parser(__doc__)
    what.add_argument("--matched-lstm", action="store_true", help=MATCHED_LSTM_HELP)
    args = parser.parse_args(argv)
    path, table = run_and_tabulate(parser, args, lambda: study_spec(
        args.task, args.preset, ks=args.ka, seeds=args.seeds, name=args.name,
        data_dir=args.data_dir, asha=args.asha, pack=args.pack,
        max_pack=args.max_pack, matched_lstm=args.matched_lstm))
    print(f"\nresults: {path}\n\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
