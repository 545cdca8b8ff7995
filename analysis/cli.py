"""The command line shared by the analysis tools: a results parquet (or the study directory
holding it) and where to write."""

import argparse
from pathlib import Path


def results_arguments(doc: str, outputs: str, argv=None) -> tuple[Path, Path]:
    """Parse ``RESULTS [--out DIR]``; returns the results path and the output directory
    (default: the study directory), created."""
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="a results parquet or the study directory holding it")
    parser.add_argument("--out", default=None,
                        help=f"directory for {outputs} (default: next to the results)")
    args = parser.parse_args(argv)
    path = Path(args.results)
    out = Path(args.out) if args.out else (path if path.is_dir() else path.parent)
    return path, out
