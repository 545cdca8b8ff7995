"""Unit collapse and its cures: a Ka sweep of RIMs trained with each cure, then the table of
the task's metric and the collapse metrics (switch rate, usage entropy) per cure.

    python studies/collapse.py                                   # MNIST, cpu preset
    python studies/collapse.py --ka 2 4 --cures none noise balance
    python studies/collapse.py --task minigrid-empty             # balance: sequence tasks only

Cures (off in every other study, so results stay comparable with the reference):
``noise`` Gaussian noise of scale 0.5 on the selection scores in training (noisy top-k
gating), ``gumbel`` the same with Gumbel noise, ``score-dropout`` each unit left out of a
step's ranking with probability 0.25, ``balance`` the load-balancing loss at weight 0.1
(Switch Transformer's). ``none`` is the uncured RIM. See the README's unit-collapse section.
"""

import argparse
import sys

from rim_rllib.cli import int_at_least
from rim_rllib.tune.study import add_study_arguments
from rim_rllib.tune.tasks import DEFAULT_KT, PRESETS, SEQUENCE_TASKS, TASKS, task_spec
from study_cli import run_and_tabulate

CURES = {
    "none": {},
    "noise": {"score_noise": 0.5},
    "gumbel": {"score_noise": 0.5, "score_noise_type": "gumbel"},
    "score-dropout": {"score_dropout": 0.25},
    "balance": {"balance_loss": 0.1},
}
# What RLlib's PPO loss cannot take yet: the auxiliary loss.
SEQUENCE_ONLY = ("balance",)


def cure_variants(task: str, ks, cures) -> list[dict]:
    """A RIM variant per Ka and cure; MiniGrid trials take RIM arguments under ``rim``."""
    if task in SEQUENCE_TASKS:
        kt = DEFAULT_KT[task]
        return [{"model": "rim", "num_units": kt, "k": k, "cell": "lstm", **CURES[cure]}
                for cure in cures for k in ks]
    wrong = [cure for cure in cures if cure in SEQUENCE_ONLY]
    if wrong:
        raise ValueError(f"--cures {' '.join(wrong)}: only for the sequence tasks "
                         f"{list(SEQUENCE_TASKS)} (RLlib's PPO loss does not add it)")
    return [{"memory": "rim", "num_units": DEFAULT_KT["minigrid"], "k": k, "cell": "lstm",
             "rim": CURES[cure] or None} for cure in cures for k in ks]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=TASKS, default="mnist")
    parser.add_argument("--preset", choices=PRESETS, default="cpu")
    parser.add_argument("--ka", type=int_at_least(1), nargs="+", default=None,
                        help="the Ka values (default: 1..Kt)")
    parser.add_argument("--cures", nargs="+", choices=list(CURES), default=list(CURES))
    parser.add_argument("--data-dir", default=None, help="MNIST IDX files")
    add_study_arguments(parser)
    args = parser.parse_args(argv)
    kt = DEFAULT_KT[args.task if args.task in SEQUENCE_TASKS else "minigrid"]
    ks = args.ka or range(1, kt + 1)
    by = (sorted({key for cure in args.cures for key in CURES[cure]})
          if args.task in SEQUENCE_TASKS else ["rim"])
    path, table = run_and_tabulate(parser, args, lambda: task_spec(
        args.task, args.preset, cure_variants(args.task, ks, args.cures), args.seeds,
        args.name or f"collapse-{args.task}-{args.preset}", args.data_dir, asha=args.asha,
        pack=args.pack, max_pack=args.max_pack), by=by)
    print(f"\nresults: {path}\n\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
