"""What every study script does after parsing its arguments: build the study, run it on
Ray, write and return its train-vs-transfer table; bad input ends in one line."""

import argparse
from typing import Callable

from tabulate import tabulate

from analysis.tables import study_tables, summarise, write_table
from rim_rllib.tune.results import read_results
from rim_rllib.cli import Distinct, HelpFormatter, int_at_least
from rim_rllib.tune.study import (StudySpec, add_study_arguments, execute_study,
                                  exit_on_input_error, local_output_dir)
from rim_rllib.tune.tasks import (PRESETS, TASKS, config_keys, estimate_seconds,
                                  study_setting, with_overrides, with_search)

MATCHED_LSTM_HELP = ("also train an LSTM baseline as wide as each Ka's active units (hidden "
                     "Ka*H; its table row has Kt=Ka): what the RIM gains from its inactive "
                     "units over a plain LSTM of the width it updates per step")


def sweep_parser(doc: str) -> tuple[argparse.ArgumentParser, argparse._ArgumentGroup]:
    """The arguments of a Ka sweep script: task, preset, Ka values, MNIST data, and every
    study argument; and the "what it trains" group, for the script's own."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=HelpFormatter)
    what = parser.add_argument_group("what it trains")
    what.add_argument("--task", choices=TASKS, default="mnist", help="the task")
    what.add_argument("--preset", choices=PRESETS, default="cpu",
                      help="model sizes and budgets: 'cpu' for a laptop, 'paper' for the "
                           "reference's")
    what.add_argument("--ka", type=int_at_least(1), nargs="+", action=Distinct, default=None,
                      help="the Ka values (default: 1..Kt)")
    what.add_argument("--data-dir", default=None,
                      help="MNIST IDX files (default: $RIM_DATA_DIR, then the user cache, "
                           "then download)")
    add_study_arguments(parser, what=what)
    return parser, what


def _describe(domain) -> str:
    """A Tune search domain in words: its choices, or its bounds (inclusive)."""
    if hasattr(domain, "categories"):
        return f"in {list(domain.categories)}"
    upper = domain.upper - 1 if isinstance(domain.upper, int) else domain.upper
    log = ", log-uniform" if "LogUniform" in type(domain.get_sampler()).__name__ else ""
    return f"in [{domain.lower}, {upper}]{log}"


def plan(spec: StudySpec, preset: str) -> str:
    """The trials a study will run, one line each, and its estimated wall time."""
    lines = [f"study {spec.name}: {spec.num_trials} trials, {spec.iterations} iterations each"]
    if spec.search == "grid":
        variants, seed_groups = spec.trial_grid()
        lines += ["  " + " ".join(f"{key}={value}" for key, value in variant.items())
                  + f" seed={seeds}" for variant in variants for seeds in seed_groups]
    else:
        lines += [f"  {spec.search} search of " + " ".join(
            f"{key}={value}" for key, value in spec.variants[0].items())
            + f" seed={spec.seeds}, over " + ", ".join(
            f"{key} {_describe(domain)}" for key, domain in spec.search_space.items())]
    seconds = estimate_seconds(spec, preset)
    if seconds is None:
        estimate = f"none (no measured run of the {preset} preset of this task to scale from)"
    else:
        # Whole minutes would print "~0 min" for a first study, which Ray's start-up and the
        # evaluation, not in the linear scaling, make a minute or two in practice.
        rounded = f"~{seconds / 60:.0f} min" if seconds >= 90 else "under 2 min"
        estimate = (f"{rounded} on a 2-core CPU machine (the {preset} preset's measured "
                    "default study, scaled linearly in models, epochs and training samples)")
    lines.append("estimated wall time: " + estimate)
    return "\n".join(lines)


def show_config(spec: StudySpec) -> str:
    """Every trial config key of the study's task: its trainable default and what this
    study sets it to (the preset, the variants, ``--set``), as a table."""
    task = spec.task if spec.task != "minigrid" else "minigrid-empty"
    rows = [(key, repr(default), study_setting(spec, key) or "default")
            for key, default in sorted(config_keys(task).items())]
    return f"study {spec.name}: trial config keys\n" + tabulate(
        rows, headers=("key", "default", "this study"), tablefmt="plain",
        disable_numparse=True)


def run_and_tabulate(parser: argparse.ArgumentParser, args: argparse.Namespace,
                     make_spec: Callable[[], StudySpec], by=()) -> tuple[str, str]:
    """Applies ``--set``, ``--epochs``, ``--frames`` and ``--search`` to the spec, prints
    its :func:`plan` and runs it. Returns the results' location and the table's Markdown
    (rows also split by the trial config keys ``by``, and by the searched ones), followed
    by one line per distinct trial error when some trials failed. A spec that cannot be
    built (Ka > Kt, nothing to run, a bad override) exits with status 2; an unreachable
    address, unwritable storage or missing data with status 1, and so does a study in
    which no trial finished (with its error lines)."""
    overrides = dict(args.overrides)
    try:
        spec = with_overrides(make_spec(), overrides, getattr(args, "epochs", None),
                              args.frames)
        spec = with_search(spec, getattr(args, "search", "grid"),
                           getattr(args, "num_samples", None), fixed=overrides)
    except ValueError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    if args.show_config:
        print(show_config(spec))
        parser.exit(0)
    print(plan(spec, args.preset), flush=True)
    if args.dry_run:
        parser.exit(0)
    outcome = exit_on_input_error(parser.prog, execute_study, spec, address=args.address,
                                  storage=args.storage, resume=args.resume,
                                  max_concurrent=args.max_concurrent,
                                  gpus_per_trial=args.gpus_per_trial,
                                  shared_storage=args.shared_storage,
                                  mlflow_uri=args.mlflow)
    results = read_results(outcome.path)
    if not (results["final"] & results["value"].notna()).any():
        parser.exit(1, f"{parser.prog}: error: no trial of study {spec.name!r} finished\n"
                    + "".join(f"{line}\n" for line in outcome.failures))
    if spec.search != "grid":  # a row per drawn config
        by = (*by, *(key for key in spec.search_space if key != "k"))
    summary = summarise(results, by)
    tables, numbers = study_tables(results, by=by, summary=summary)
    table = write_table(tables, local_output_dir(outcome.path, spec.name), summary, numbers)
    stopped = results.loc[results["status"] == "EARLY_STOPPED", "trial_id"].nunique()
    notes = ([f"{stopped} trial{'s' if stopped > 1 else ''} stopped early by ASHA "
              "(not in the table: it compares full budgets)"] if stopped else [])
    return outcome.path, "\n".join([table, *notes, *outcome.failures])
