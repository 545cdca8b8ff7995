"""The command line shared by the analysis tools: a results parquet (or the study directory
holding it) and where to write."""

import argparse
from pathlib import Path

from rim_rllib.tune.results import is_uri


def results_arguments(doc: str, outputs: str, argv=None) -> tuple[str, Path]:
    """Parse ``RESULTS [--out DIR]``; returns where the results are (a local path or a
    cloud URI) and the output directory (default: the local study directory, or
    ``./results/STUDY`` for cloud results)."""
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="a results parquet or the study directory holding it")
    parser.add_argument("--out", default=None,
                        help=f"directory for {outputs} (default: next to the results)")
    args = parser.parse_args(argv)
    if args.out:
        return args.results, Path(args.out)
    if is_uri(args.results):
        study = args.results.rstrip("/").split("/")[-2 if args.results.endswith(".parquet")
                                                        else -1]
        return args.results, Path("results") / study
    path = Path(args.results)
    return args.results, path if path.is_dir() else path.parent
