"""What every study script does after parsing its arguments: build the study, run it on
Ray, write and return its train-vs-transfer table; bad input ends in one line."""

import argparse
from typing import Callable

from analysis.tables import build_table, summarise, write_table
from rim_rllib.tune.results import read_results
from rim_rllib.tune.study import (StudySpec, execute_study, exit_on_input_error,
                                  local_output_dir)


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
    table = write_table(build_table(results, by=by),
                        local_output_dir(outcome.path, spec.name), summarise(results, by))
    stopped = results.loc[results["status"] == "EARLY_STOPPED", "trial_id"].nunique()
    notes = ([f"{stopped} trial{'s' if stopped > 1 else ''} stopped early by ASHA "
              "(not in the table: it compares full budgets)"] if stopped else [])
    return outcome.path, "\n".join([table, *notes, *outcome.failures])
