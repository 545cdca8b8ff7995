"""Unit collapse and its cures: a Ka sweep of RIMs trained with each cure, then the table of
the task's metric and the collapse metrics (switch rate, usage entropy) per cure.

    python studies/collapse.py                                   # MNIST, cpu preset
    python studies/collapse.py --ka 2 4 --cures none noise balance
    python studies/collapse.py --task minigrid-empty
    python studies/collapse.py --task minigrid-empty --ka 3 --cures none anneal-fatigue --fatigue 20

Cures (each off here unless it is the cure, the MNIST ``cpu`` preset's own included, so
that ``none`` is the reference's RIM):
``noise`` Gaussian noise of scale 0.5 on the selection scores in training (noisy top-k
gating), ``gumbel`` the same with Gumbel noise, ``score-dropout`` each unit left out of a
step's ranking with probability 0.25, ``balance`` the load-balancing loss at weight 0.1
(Switch Transformer's), ``anneal`` dense-to-sparse training over the first 80% of the steps
(``k_anneal``: of the frames on MiniGrid, where the agent also acts with the annealed units),
``balance-anneal`` both of the last two (annealing gives the units that lose the first
rankings the gradient that the loss then needs to balance them), ``floor`` a selection bias
that holds every unit's activation rate within [0.1, 0.9] (``usage_floor``; no loss term),
``anneal-floor`` annealing and the floor, ``fatigue`` a unit's recent wins lowering its
selection score (``fatigue``, 1 unless ``--fatigue`` says otherwise; on MiniGrid the
tiredness is carried through the episode as state), ``anneal-fatigue`` annealing and
fatigue (the MNIST ``cpu`` preset's default).
``none`` is the uncured RIM. See docs/guide/analysis.md (unit collapse and its cures).
"""

import sys
from pathlib import Path

if not __package__:  # run as a file (python studies/collapse.py): import from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rim_rllib.cli import Distinct, float_at_least
from rim_rllib.tune.tasks import DEFAULT_KT, SEQUENCE_TASKS, task_spec
from studies.study_cli import run_and_tabulate, sweep_parser

CURES = {
    "none": {},
    "noise": {"score_noise": 0.5},
    "gumbel": {"score_noise": 0.5, "score_noise_type": "gumbel"},
    "score-dropout": {"score_dropout": 0.25},
    "balance": {"balance_loss": 0.1},
    "anneal": {"k_anneal": 0.8},
    "balance-anneal": {"balance_loss": 0.1, "k_anneal": 0.8},
    "floor": {"usage_floor": 0.1},
    "anneal-floor": {"k_anneal": 0.8, "usage_floor": 0.1},
    "fatigue": {"fatigue": 1.0},
    "anneal-fatigue": {"k_anneal": 0.8, "fatigue": 1.0},
}
# Cure keys of the training loop; MiniGrid trials take the others (RIM arguments) under
# ``rim``.
LOOP_KEYS = ("k_anneal",)


def cure_variants(task: str, ks, cures, fatigue: float = 1.0) -> list[dict]:
    """A RIM variant per Ka in ``ks`` (``None``: 1..Kt) and cure, the fatigue cures at
    ``fatigue``; MiniGrid trials take RIM arguments under ``rim``."""
    kt = DEFAULT_KT[task if task in SEQUENCE_TASKS else "minigrid"]
    ks = ks or range(1, kt + 1)
    for k in ks:
        if not 1 <= k <= kt:
            raise ValueError(f"Ka={k} is outside 1..Kt={kt}")
    cure_keys = {cure: {key: fatigue if key == "fatigue" else value
                        for key, value in CURES[cure].items()} for cure in cures}
    if task in SEQUENCE_TASKS:
        # One cure at a time: a preset's own cures are off unless they are the cure.
        return [{"model": "rim", "num_units": kt, "k": k, "cell": "lstm", "k_anneal": 0.0,
                 "fatigue": 0.0, **cure_keys[cure]} for cure in cures for k in ks]
    variants = []
    for cure in cures:
        rim = {key: value for key, value in cure_keys[cure].items() if key not in LOOP_KEYS}
        loop = {key: value for key, value in cure_keys[cure].items() if key in LOOP_KEYS}
        variants += [{"memory": "rim", "num_units": kt, "k": k, "cell": "lstm",
                      "k_anneal": 0.0, "rim": rim or None, **loop} for k in ks]
    return variants


def main(argv=None) -> int:
    parser, what = sweep_parser(__doc__)
    what.add_argument("--cures", nargs="+", choices=list(CURES), action=Distinct, default=None,
                      help="the cures, one variant each (default: every cure)")
    what.add_argument("--fatigue", type=float_at_least(0.0), default=1.0,
                      help="the fatigue cures' strength (the Selection's fatigue)")
    args = parser.parse_args(argv)
    args.cures = args.cures or list(CURES)
    by = sorted({key for cure in args.cures for key in CURES[cure]})
    if args.task not in SEQUENCE_TASKS:  # RIM arguments ride in one ``rim`` dict there
        by = [key for key in by if key in LOOP_KEYS] + ["rim"]
    path, table = run_and_tabulate(parser, args, lambda: task_spec(
        args.task, args.preset, cure_variants(args.task, args.ka, args.cures, args.fatigue),
        args.seeds,
        args.name or f"collapse-{args.task}-{args.preset}", args.data_dir, asha=args.asha,
        pack=args.pack, max_pack=args.max_pack), by=by)
    print(f"\nresults: {path}\n\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
