"""The study runner every study script uses: a study spec in, a Tune run and a results
parquet out.

A study is a grid of *variants* (model / Kt / Ka / cell, the LSTM baseline being one
more variant) crossed with seeds, on a base config, for a budget of iterations. Trainables
that train packs (:func:`rim_rllib.pack`) get several of these models per trial: every seed
of a variant (``pack="seeds"``), or every Ka and seed of a model / Kt / cell
(``pack="sweep"``). It runs on
a local Ray instance sized to the machine by default, or on a cluster with ``--address``;
``--resume`` continues an interrupted study from its directory under ``--storage``.
"""

import argparse
import os
import re
import socket
import sys
import tempfile
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from rim_rllib.cli import Distinct, config_override, float_at_least, int_at_least
from rim_rllib.mnist_data import MnistError
from rim_rllib.tune.results import export_results, is_uri, join_location


PACKINGS = ("none", "seeds", "sweep")
SEARCHES = ("grid", "random", "optuna")


def _chunks(values: list, size: int) -> list[list]:
    return [list(values[i:i + size]) for i in range(0, len(values), size)]


@dataclass
class StudySpec:
    """What to run. ``variants`` are config overrides, each crossed with every seed."""

    name: str
    task: str
    trainable: type | Callable  # a tune.Trainable class or a function trainable
    base_config: dict
    variants: list[dict]
    seeds: list[int]
    iterations: int
    metric: str
    mode: str = "max"
    asha: bool = False
    cpus_per_trial: float = 1
    gpus_per_trial: float = 0.0  # GPUs a trial asks for (fractions share one)
    # Actors a trial starts, one CPU each, reserved with it (RLlib env runners).
    helper_cpus: int = 0
    max_failures: int = 2
    preflight: Callable[[], object] | None = None  # checks inputs in the driver first
    pack: str = "none"  # models per trial: "none" (one), "seeds", "sweep" (see above)
    max_pack: int | None = None  # at most this many models per trial when packing
    # "grid" runs the variants x seeds. "random" (Tune's random search) and "optuna" (Tune's
    # OptunaSearch) instead draw num_samples configs from search_space, Tune domains over
    # config keys ("k" goes into the variant): each trial trains variants[0] with the drawn
    # values, every seed in one pack, so that the search decides on the seed mean.
    search: str = "grid"
    num_samples: int = 1
    search_space: dict | None = None

    def __post_init__(self):
        if self.pack not in PACKINGS:
            raise ValueError(f"study {self.name!r}: pack must be one of {list(PACKINGS)}, "
                             f"got {self.pack!r}")
        if self.gpus_per_trial < 0:
            raise ValueError(f"study {self.name!r}: gpus_per_trial must be >= 0, "
                             f"got {self.gpus_per_trial!r}")
        if self.max_pack is not None and self.max_pack < 1:
            raise ValueError(f"study {self.name!r}: max_pack must be >= 1 or None, "
                             f"got {self.max_pack!r}")
        if not self.variants:
            raise ValueError(f"study {self.name!r}: variants is empty; nothing to run")
        if not self.seeds:
            raise ValueError(f"study {self.name!r}: seeds is empty; nothing to run")
        repeated = sorted({seed for seed in self.seeds if self.seeds.count(seed) > 1})
        if repeated:
            raise ValueError(f"study {self.name!r}: seeds {repeated} are given more than "
                             "once; a repeated seed trains the same models again and counts "
                             "them as more samples")
        if self.iterations < 1:
            raise ValueError(f"study {self.name!r}: iterations must be >= 1, "
                             f"got {self.iterations}")
        if self.search not in SEARCHES:
            raise ValueError(f"study {self.name!r}: search must be one of {list(SEARCHES)}, "
                             f"got {self.search!r}")
        if self.search != "grid" and not self.search_space:
            raise ValueError(f"study {self.name!r}: search={self.search!r} needs a "
                             "search_space")

    def trial_grid(self) -> tuple[list[dict], list]:
        """The variants and seed values Tune crosses into trials. With packing a seed
        value is a list of seeds, and with ``"sweep"`` a RIM variant's ``k`` a list of
        the Ka values of its model / Kt / cell; ``max_pack`` splits both lists so that
        no trial trains more than ``max_pack`` models."""
        if self.pack == "none":
            return self.variants, self.seeds
        limit = self.max_pack or len(self.seeds)
        seed_groups = _chunks(self.seeds, limit)
        if self.pack == "seeds":
            return self.variants, seed_groups
        merged: dict[tuple, dict] = {}
        for variant in self.variants:
            if "k" not in variant:
                merged[tuple(sorted(variant.items()))] = variant
                continue
            rest = tuple(sorted((key, v) for key, v in variant.items() if key != "k"))
            merged.setdefault(rest, dict(variant, k=[]))["k"].append(variant["k"])
        if self.max_pack is None:
            return list(merged.values()), seed_groups
        ks_per_trial = max(1, self.max_pack // len(seed_groups[0]))
        variants = [dict(v, k=ks) if "k" in v else v for v in merged.values()
                    for ks in (_chunks(v["k"], ks_per_trial) if "k" in v else [None])]
        return variants, seed_groups

    @property
    def num_trials(self) -> int:
        if self.search != "grid":
            return self.num_samples
        variants, seeds = self.trial_grid()
        return len(variants) * len(seeds)

    @property
    def num_models(self) -> int:
        variants = len(self.variants) if self.search == "grid" else self.num_samples
        return variants * len(self.seeds)

    def param_space(self, cpus: float) -> dict:
        """Tune's ``param_space``: the base config, the budget, the CPU threads of a trial
        and the grid (variants x seed groups) or the search domains."""
        space = dict(self.base_config, threads=max(1, int(cpus)), epochs=self.iterations)
        if self.search == "grid":
            variants, seeds = self.trial_grid()
            return space | dict(variant=tune.grid_search(variants),
                                seed=tune.grid_search(seeds))
        domains = dict(self.search_space)
        variant = self.variants[0] | ({"k": domains.pop("k")} if "k" in domains else {})
        return space | domains | dict(variant=variant, seed=list(self.seeds))


def study_name(text: str) -> str:
    """An argparse ``type``: a study name is a plain folder name under ``--storage``."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", text):
        raise argparse.ArgumentTypeError(
            f"must be a plain name (letters, digits, '-', '_', '.'; not a path), got {text!r}")
    return text


def add_study_arguments(parser: argparse.ArgumentParser, sequence_tasks: bool = True,
                        asha: bool = True, what=None) -> None:
    """The arguments every study script shares, in two groups ("what it trains", into
    the script's own group ``what`` when it has one, and "where and how it runs").
    ``sequence_tasks=False`` (a script of MiniGrid studies only) leaves out what only the
    sequence tasks take (packing, epochs, searches); ``asha=False`` leaves out ``--asha``
    (a script with its own ASHA switch): no script takes a flag only to refuse or ignore
    it."""
    what = what or parser.add_argument_group("what it trains")
    where = parser.add_argument_group("where and how it runs")
    where.add_argument("--address", default=None,
                       help="Ray cluster address ('auto' for the cluster this runs on); "
                            "default: start a local Ray instance")
    where.add_argument("--storage", default=str(Path("results").resolve()),
                       help="where studies are stored: a local path or a cloud URI "
                            "(s3://, gs://, file://); on a multi-node cluster a URI or a "
                            "path mounted on every node (default: ./results)")
    where.add_argument("--shared-storage", action="store_true",
                       help="--storage is a local path mounted on every node (NFS): allow "
                            "it on a multi-node cluster")
    where.add_argument("--name", type=study_name, default=None,
                       help="study name, a folder under --storage (default: from the "
                            "preset)")
    where.add_argument("--resume", action="store_true",
                       help="continue the interrupted study of the same name")
    where.add_argument("--max-concurrent", type=int_at_least(1), default=None,
                       help="trials at once (default: as many as the resources allow)")
    where.add_argument("--gpus-per-trial", type=float_at_least(0), default=None,
                       help="GPUs each trial asks for (fractions share one; a trial given "
                            "none runs on CPU); default: the preset's (the sequence "
                            "tasks' paper presets 1, otherwise 0)")
    where.add_argument("--mlflow", default=None, metavar="URI",
                       help="also log every trial to MLflow at this tracking URI (a "
                            "server, or sqlite:///path/mlflow.db for a local store; needs "
                            "the 'tracking' extra)")
    where.add_argument("--dry-run", action="store_true",
                       help="print the trials and the estimated wall time, then exit")
    where.add_argument("--show-config", action="store_true",
                       help="print every trial config key, its default and this study's "
                            "value (with --set), then exit")
    what.add_argument("--seeds", type=int_at_least(0), nargs="+", action=Distinct,
                      default=None, help="seeds (default: the preset's)")
    what.add_argument("--set", dest="overrides", type=config_override, nargs="+",
                      default=[], metavar="KEY=VALUE",
                      help="trial config values over the preset's, e.g. --set lr=1e-3 "
                           "hidden_size=64 (values are Python literals, else text; "
                           "--show-config lists the keys)")
    what.add_argument("--frames", type=int_at_least(1), default=None,
                      help="training frames of the MiniGrid tasks (default: the preset's)")
    if asha:
        what.add_argument("--asha", action="store_true", help="early-stop with ASHA")
    if not sequence_tasks:
        return
    what.add_argument("--epochs", type=int_at_least(1), default=None,
                      help="training epochs of the sequence tasks (default: the preset's)")
    what.add_argument("--pack", choices=PACKINGS, default=None,
                      help="models per trial (sequence tasks): every seed of a variant "
                           "('seeds'), every Ka and seed of a model/Kt/cell ('sweep'), or "
                           "one ('none'); default: the preset's")
    what.add_argument("--max-pack", type=int_at_least(1), default=None,
                      help="at most this many models per packed trial (default: the "
                           "preset's)")
    what.add_argument("--search", choices=SEARCHES, default="grid",
                      help="the grid of the script's arguments, or --num-samples configs "
                           "drawn from the task's declared ranges (lr log-uniform, Ka, "
                           "dropouts, hidden size) at random or by Optuna (sequence tasks)")
    what.add_argument("--num-samples", type=int_at_least(1), default=None,
                      help="configs a --search random/optuna draws (default: 10)")


def _trial_resources(spec: StudySpec, address: str | None = None):
    """What each trial asks Ray for. On a local instance a trial asks for no more CPUs than
    the machine has and, without GPUs, for none (it would wait forever); on a cluster
    (``address``) for the spec's, so that an autoscaler starts the nodes that have them.
    With ``helper_cpus`` a placement group: the trial's bundle, then one CPU per helper
    actor (Tune schedules a trial's child actors into its group)."""
    resources = ray.cluster_resources()
    cpus = spec.cpus_per_trial
    gpus = spec.gpus_per_trial
    if address is None:
        cpus = min(cpus, resources.get("CPU", cpus))
        if gpus and not resources.get("GPU", 0):
            print(f"study {spec.name}: this machine has no GPU; trials run on CPU "
                  f"(asked for {gpus} GPU each)", flush=True)
            gpus = 0
    if spec.helper_cpus:
        head = {"CPU": cpus, "GPU": gpus} if gpus else {"CPU": cpus}
        return tune.PlacementGroupFactory([head] + [{"CPU": 1}] * spec.helper_cpus)
    return {"cpu": cpus, "gpu": gpus} if gpus else {"cpu": cpus}


def _checkpoint_config(trainable) -> tune.CheckpointConfig:
    # A class trainable is checkpointed by Tune each iteration; a function trainable
    # hands its checkpoints to tune.report itself.
    if isinstance(trainable, type) and issubclass(trainable, tune.Trainable):
        return tune.CheckpointConfig(checkpoint_frequency=1, checkpoint_at_end=True,
                                     num_to_keep=2)
    return tune.CheckpointConfig(num_to_keep=2)


#: Short progress-table names of swept trial settings (other swept keys keep their own).
COLUMN_NAMES = {"num_units": "Kt", "k": "Ka"}


class _ProgressReporter(tune.CLIReporter):
    """Tune's CLI reporter without its "Current best trial" line, which repeats the whole
    config and, in Tune 2.60, raises ``KeyError`` when the best trial lacks a parameter
    column (the LSTM baseline has no Ka): that line needs the study's metric, which this
    reporter therefore does not take from Tune."""

    def set_search_properties(self, metric, mode) -> bool:
        return True


def progress_reporter(spec: StudySpec) -> tune.CLIReporter:
    """Tune's progress table with a short column per swept setting (model, cell, Kt, Ka,
    seed, ...) and the study's metric; Tune's default output shows the whole variant dict
    cut to 20 characters, which hides what a trial is."""
    # A nested setting (MiniGrid's rim={"balance_loss": 0.1}) gets a column per inner key
    # instead of its dict cut to 20 characters.
    nested = {key for variant in spec.variants for key, value in variant.items()
              if isinstance(value, dict)}
    columns = {}
    for variant in spec.variants:
        for key, value in variant.items():
            if key in nested:
                columns |= {f"variant/{key}/{inner}": inner for inner in value or {}}
            else:
                columns[f"variant/{key}"] = COLUMN_NAMES.get(key, key)
    columns["seed"] = "seed"
    metrics = {spec.metric: spec.metric}
    if spec.metric.endswith("_val"):  # ASHA reads validation; the test metric is shown too
        metrics[spec.metric.removesuffix("_val")] = spec.metric.removesuffix("_val")
    metrics |= {"training_iteration": "iter", "time_total_s": "time (s)"}
    return _ProgressReporter(parameter_columns=columns, metric_columns=metrics,
                             max_report_frequency=30)


@contextmanager
def _progress_output():
    """Tune's classic output engine, the one that takes :func:`progress_reporter` (the
    default engine ignores reporters), without the experiment-snapshot warning a study of
    short iterations triggers every few seconds (Tune's documented switch for it)."""
    saved = {key: os.environ.get(key) for key in (
        "RAY_AIR_NEW_OUTPUT", "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S")}
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def build_tuner(spec: StudySpec, storage: str, resume: bool = False,
                max_concurrent: int | None = None, resources=None,
                mlflow_uri: str | None = None) -> tune.Tuner:
    """The Tuner of a study (a restored one with ``resume``), its trials asking for
    ``resources`` (default: :func:`_trial_resources` locally) and, with ``mlflow_uri``,
    logged to MLflow there (Tune's MLflow callback; an experiment named as the study).
    Ray must be initialised."""
    resources = resources or _trial_resources(spec)
    trainable = tune.with_resources(spec.trainable, resources)
    experiment = join_location(storage, spec.name)
    if resume:
        if not tune.Tuner.can_restore(experiment):
            raise StudyInputError(f"--resume: no study to resume at {experiment}")
        return tune.Tuner.restore(experiment, trainable, resume_errored=True)
    cpus = (resources.head_cpus if isinstance(resources, tune.PlacementGroupFactory)
            else resources["cpu"])
    scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=spec.iterations,
                               grace_period=1, reduction_factor=2) if spec.asha else None)
    search_alg = None
    if spec.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch
        search_alg = OptunaSearch(seed=spec.seeds[0])  # metric and mode: TuneConfig's
    callbacks = []
    if mlflow_uri:
        from ray.air.integrations.mlflow import MLflowLoggerCallback
        callbacks.append(MLflowLoggerCallback(tracking_uri=mlflow_uri,
                                              experiment_name=spec.name))
    return tune.Tuner(
        trainable,
        param_space=spec.param_space(cpus),
        tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode, scheduler=scheduler,
                                    search_alg=search_alg, num_samples=spec.num_samples,
                                    max_concurrent_trials=max_concurrent),
        run_config=tune.RunConfig(
            name=spec.name, storage_path=storage,
            stop={"training_iteration": spec.iterations},
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=_checkpoint_config(spec.trainable),
            # Trials write files (activation counts) into their working directories.
            sync_config=tune.SyncConfig(sync_artifacts=True),
            progress_reporter=progress_reporter(spec), callbacks=callbacks, verbose=1),
    )


class StudyInputError(ValueError):
    """A study cannot start because of what it was given (address, storage, ...)."""


def check_address(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail fast, naming the address, when an explicit ``host:port`` cannot be reached
    (``ray.init`` itself would wait for minutes)."""
    if address in (None, "auto", "local"):
        return
    host_port = address.split("://", 1)[-1]
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise StudyInputError(f"--address must be 'auto', 'local', HOST:PORT or "
                              f"ray://HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise StudyInputError(f"--address {address}: no Ray cluster reachable there "
                              f"({err})") from err


def check_storage(storage: str) -> None:
    """Fail fast when a local ``--storage`` cannot be written."""
    if is_uri(storage):
        return
    try:
        Path(storage).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=storage, prefix=".write-test"):
            pass
    except OSError as err:
        raise StudyInputError(f"--storage {storage}: not writable ({err})") from err


def check_shared_storage(storage: str, shared: bool) -> None:
    """Refuse a local ``storage`` path on a cluster whose trials run on other nodes (more
    than one node, or a head with no CPUs for trials): Tune checkpoints from every node
    into storage, and a path on this node is not there."""
    if is_uri(storage) or shared:
        return
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    here = ray.get_runtime_context().get_node_id()
    this_node_runs_trials = any(node["NodeID"] == here and node["Resources"].get("CPU", 0)
                                for node in nodes)
    if len(nodes) > 1 or not this_node_runs_trials:
        raise StudyInputError(
            f"--storage {storage}: a local path, but trials run on other nodes of this "
            f"cluster ({len(nodes)} node(s)); pass shared or cloud storage (s3://..., "
            f"gs://..., file:// on a shared mount), or --shared-storage if {storage} is "
            f"mounted on every node")


def start_ray(address: str | None, storage: str, shared_storage: bool = False) -> None:
    """Check ``address`` and ``storage``, then connect to (or start) Ray."""
    check_storage(storage)
    check_address(address)
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except ConnectionError as err:
            raise StudyInputError(f"--address {address}: {err}") from err
    if address is not None:
        check_shared_storage(storage, shared_storage)


@dataclass
class StudyOutcome:
    """Where a study's results are, and one line per distinct trial error:
    ``"N trial(s) failed: <the exception's last line>"``."""
    path: str
    failures: list[str]


def execute_study(spec: StudySpec, address: str | None = None, storage: str = "results",
                  resume: bool = False, max_concurrent: int | None = None,
                  gpus_per_trial: float | None = None, shared_storage: bool = False,
                  mlflow_uri: str | None = None) -> StudyOutcome:
    """Run (or resume) a study and export its results; ``gpus_per_trial`` overrides the
    spec's, ``shared_storage`` says that a local ``storage`` path is on every node,
    ``mlflow_uri`` logs every trial to MLflow.

    Trials that fail after their retries are exported with their status; they never lose
    the other trials' results. Their errors are summarised in the outcome's ``failures``
    (Tune's full tracebacks stay in each trial's ``error.txt``).
    """
    if gpus_per_trial is not None:
        spec = replace(spec, gpus_per_trial=gpus_per_trial)
    if spec.preflight is not None:
        spec.preflight()
    start_ray(address, storage, shared_storage)
    resources = _trial_resources(spec, address)
    print(f"study {spec.name}: {spec.num_models} models ({len(spec.variants)} variants x "
          f"{len(spec.seeds)} seeds) in {spec.num_trials} trials (packing: {spec.pack}), "
          f"{spec.iterations} iterations each, resources per trial {resources}, "
          f"cluster {ray.cluster_resources()}", flush=True)
    tuner = build_tuner(spec, storage, resume, max_concurrent, resources, mlflow_uri)
    with _progress_output():
        results = tuner.fit()
    errors = Counter(_last_line(r.error) for r in results if r.error is not None)
    failures = [f"{n} trial{'s' if n > 1 else ''} failed: {line}"
                for line, n in errors.most_common()]
    path = export_results(join_location(storage, spec.name), spec.name, spec.task)
    return StudyOutcome(path, failures)


def run_study(spec: StudySpec, address: str | None = None, storage: str = "results",
              resume: bool = False, max_concurrent: int | None = None) -> str:
    """:func:`execute_study`, returning the results parquet's location; trial errors are
    printed to stderr, one line per distinct error."""
    outcome = execute_study(spec, address, storage, resume, max_concurrent)
    for line in outcome.failures:
        print(line, file=sys.stderr)
    return outcome.path


def _last_line(error: BaseException) -> str:
    """The last non-empty line of an error's text: with a trial's error wrapped by Ray
    and Tune, the original exception's type and message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def exit_on_input_error(prog: str, function: Callable, *args, **kwargs):
    """``function(*args, **kwargs)``, or exit with one line when the study's inputs are
    wrong (unreachable address, unwritable storage, missing data, nothing to resume)."""
    try:
        return function(*args, **kwargs)
    except (StudyInputError, MnistError) as err:
        raise SystemExit(f"{prog}: error: {err}") from None


def local_output_dir(results_location: str, name: str) -> Path:
    """Where a study's tables and plots go: beside a local results file, or under
    ./results/NAME when the results live in cloud storage."""
    directory = (Path("results") / name if is_uri(results_location)
                 else Path(results_location).parent)
    directory.mkdir(parents=True, exist_ok=True)
    return directory
