"""What every study script does after parsing its arguments: build the study, run it on
Ray, write and return its train-vs-transfer table; bad input ends in one line."""

import argparse
from typing import Callable

from analysis.tables import build_table, summarise, write_table
from rim_rllib.tune.results import read_results
from rim_rllib.cli import int_at_least
from rim_rllib.tune.study import (StudySpec, add_study_arguments, execute_study,
                                  exit_on_input_error, local_output_dir)
from rim_rllib.tune.tasks import PRESETS, TASKS


def sweep_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments of a Ka sweep script: task, preset, Ka values, MNIST data, and every
    study argument."""
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=TASKS, default="mnist")
    parser.add_argument("--preset", choices=PRESETS, default="cpu")
    parser.add_argument("--ka", type=int_at_least(1), nargs="+", default=None,
                        help="the Ka values (default: 1..Kt)")
    parser.add_argument("--data-dir", default=None,
                        help="MNIST IDX files (default: $RIM_DATA_DIR, then the user cache, "
                             "then download)")
    add_study_arguments(parser)
    return parser


def run_and_tabulate(parser: argparse.ArgumentParser, args: argparse.Namespace,
                     make_spec: Callable[[], StudySpec], by=()) -> tuple[str, str]:
    """Returns the results' location and the table's Markdown (rows also split by the
    trial config keys ``by``), followed by one line per
    distinct trial error when some trials failed. A spec that cannot be built (Ka > Kt,
    nothing to run) exits with status 2; an unreachable address, unwritable storage or
    missing data with status 1, and so does a study in which no trial finished (with its
    error lines)."""
    try:
        spec = make_spec()
    except ValueError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    outcome = exit_on_input_error(parser.prog, execute_study, spec, address=args.address,
                                  storage=args.storage, resume=args.resume,
                                  max_concurrent=args.max_concurrent,
                                  gpus_per_trial=args.gpus_per_trial,
                                  shared_storage=args.shared_storage)
    results = read_results(outcome.path)
    if not (results["final"] & results["value"].notna()).any():
        parser.exit(1, f"{parser.prog}: error: no trial of study {spec.name!r} finished\n"
                    + "".join(f"{line}\n" for line in outcome.failures))
    summary = summarise(results, by)
    table = write_table(build_table(results, by=by, summary=summary),
                        local_output_dir(outcome.path, spec.name), summary)
    stopped = results.loc[results["status"] == "EARLY_STOPPED", "trial_id"].nunique()
    notes = ([f"{stopped} trial{'s' if stopped > 1 else ''} stopped early by ASHA "
              "(not in the table: it compares full budgets)"] if stopped else [])
    return outcome.path, "\n".join([table, *notes, *outcome.failures])
