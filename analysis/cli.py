"""The command line shared by the analysis tools: a results parquet (or the study directory
holding it) and where to write."""

import argparse
from pathlib import Path

from rim_rllib.cli import Distinct, HelpFormatter
from rim_rllib.tune.results import is_uri


def results_arguments(doc: str, outputs: str, argv=None,
                      metric_help: str | None = None) -> tuple:
    """Parse ``RESULTS [--out DIR]`` (and ``[--metric NAME] [--by KEY ...]`` when
    ``metric_help`` is given); returns where the results are (a local path or a cloud URI)
    and the output directory (default: the local study directory, or ``./results/STUDY``
    for cloud results), then the metric and the extra row keys when asked for."""
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=HelpFormatter)
    parser.add_argument("results", help="a results parquet or the study directory holding it")
    parser.add_argument("--out", default=None,
                        help=f"directory for {outputs} (default: next to the results)")
    if metric_help:
        parser.add_argument("--metric", default=None, help=metric_help)
        parser.add_argument("--by", nargs="+", action=Distinct, default=[], metavar="KEY",
                            help="also split rows by these trial config keys (e.g. the "
                                 "collapse cures: score_noise balance_loss)")
    args = parser.parse_args(argv)
    if args.out:
        out = Path(args.out)
    elif is_uri(args.results):
        path = args.results.partition("?")[0].rstrip("/")  # without a query string
        study = path.split("/")[-2 if path.endswith(".parquet") else -1]
        out = Path("results") / study
    else:
        path = Path(args.results)
        out = path if path.is_dir() else path.parent
    return (args.results, out, args.metric, args.by) if metric_help else (args.results, out)
