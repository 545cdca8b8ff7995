"""The rim command: one entry point for the studies, the analysis tools, the evaluators
and the benchmarks. "rim COMMAND ..." runs what "python studies/ka_sweep.py ..." (or
"python -m analysis.tables ...") runs, with the same arguments; "rim COMMAND --help"
lists them.

    rim sweep --task copying --seeds 0 1 2     # = python studies/ka_sweep.py --task copying ...
    rim table results/ka_sweep-mnist-cpu       # = python -m analysis.tables results/...
    rim bench rim-speed                        # = python benchmarks/rim_speed.py
"""

import importlib
import sys

#: ``rim bench`` name -> the benchmark's module.
BENCHMARKS = {name: f"benchmarks.{name.replace('-', '_')}" for name in (
    "rim-speed", "pack-speed", "gpu-step", "rl-throughput", "asha-vs-grid")}
#: ``rim`` subcommand -> (module whose ``main`` it runs, what it does).
COMMANDS = {
    "sweep": ("studies.ka_sweep", "a Ka sweep with the LSTM baseline on one task (the main "
                                  "job)"),
    "grid": ("studies.grid", "Kt x Ka x cell x seed on one task, with ASHA"),
    "collapse": ("studies.collapse", "the unit-collapse cures side by side"),
    "minigrid-transfer": ("studies.minigrid_transfer", "the reference's three MiniGrid "
                                                       "tables"),
    "table": ("analysis.tables", "the train-vs-transfer table and verdicts of a study"),
    "plot": ("analysis.plots", "a study's learning curves, transfer and improvement figures"),
    "report": ("analysis.report", "a results page (Markdown and figures) of a study"),
    "selection": ("analysis.selection", "what decides which units win, per trained RIM"),
    "activations": ("analysis.activations", "unit activation maps of a study"),
    "evaluate-mnist": ("rim_rllib.tune.evaluate_mnist", "an MNIST checkpoint at any image "
                                                        "sizes"),
    "evaluate-copying": ("rim_rllib.tune.evaluate_copying", "a copying-task checkpoint at "
                                                            "any dormant lengths"),
    "evaluate-rl": ("rim_rllib.rl.evaluate", "an RLlib checkpoint on MiniGrid environments"),
    "bench": (None, "a benchmark: " + ", ".join(BENCHMARKS)),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    return ("usage: rim COMMAND [ARGS ...]   (rim COMMAND --help for its arguments)\n\n"
            + __doc__.split("\n\n")[0] + "\n\ncommands:\n"
            + "\n".join(f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()))


def resolve(argv: list[str]) -> tuple[str, str, list[str]]:
    """``(prog, module, arguments)`` of a ``rim`` command line; ``SystemExit`` with the
    usage when it names no command, an unknown one, or an unknown benchmark."""
    if not argv:
        raise SystemExit(f"{usage()}\n\nrim: error: name a command")
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        raise SystemExit(f"rim: error: unknown command {command!r}; expected one of "
                         f"{list(COMMANDS)}")
    module = COMMANDS[command][0]
    if command == "bench":
        if not rest or rest[0] not in BENCHMARKS:
            got = repr(rest[0]) if rest else "none"
            raise SystemExit(f"rim bench: error: name a benchmark, one of {list(BENCHMARKS)}; "
                             f"got {got}")
        command, module, rest = f"bench {rest[0]}", BENCHMARKS[rest[0]], rest[1:]
    return f"rim {command}", module, rest


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(usage())
        return 0
    prog, module, rest = resolve(argv)
    # The tools parse sys.argv as when run alone; their usage lines then say "rim COMMAND".
    sys.argv = [prog, *rest]
    return importlib.import_module(module).main() or 0


if __name__ == "__main__":
    sys.exit(main())
