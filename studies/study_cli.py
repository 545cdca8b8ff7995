"""What every study script does after parsing its arguments: build the study, run it on
Ray, write and return its train-vs-transfer table; bad input ends in one line."""

import argparse
from typing import Callable

from analysis.tables import build_table, summarise, write_table
from rim_rllib.tune.results import read_results
from rim_rllib.tune.study import StudySpec, exit_on_input_error, local_output_dir, run_study


def run_and_tabulate(parser: argparse.ArgumentParser, args: argparse.Namespace,
                     make_spec: Callable[[], StudySpec]) -> tuple[str, str]:
    """Returns the results' location and the table's Markdown. A spec that cannot be
    built (Ka > Kt, nothing to run) exits with status 2; an unreachable address,
    unwritable storage or missing data with status 1."""
    try:
        spec = make_spec()
    except ValueError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    path = exit_on_input_error(parser.prog, run_study, spec, address=args.address,
                               storage=args.storage, resume=args.resume,
                               max_concurrent=args.max_concurrent)
    results = read_results(path)
    return path, write_table(build_table(results), local_output_dir(path, spec.name),
                             summarise(results))
