"""A results page (Markdown) from a finished study: what was run, where and for how long,
its tables with the verdicts, and its figures.

    python -m analysis.report results/mnist-seeds10 --out docs/results/mnist \\
        --title "Sequential MNIST, ten seeds" --commit 1a2b3c4 \\
        --command "python studies/ka_sweep.py --seeds 0 1 2 3 4 5 6 7 8 9 --name mnist-seeds10"

The page states the command, the commit, the date the study started, its wall time (from
Tune's experiment state file to the results file), the machine, then every table of
:func:`analysis.tables.study_tables`, what the verdicts say, and the three figures of
:mod:`analysis.plots`, all in the folder ``--out``: ``index.md`` and the figures beside it
(the site's page ``results/<folder>/``). Regenerating a page is running this again on the
same study directory, or ``--refresh PAGE ...`` (``make figures``), which takes what each
page states of its run from the page itself.
"""

import argparse
import os
import platform
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

from analysis.plots import plot_improvement, plot_learning_curves, plot_transfer
from analysis.tables import eval_order, study_tables, summarise
from rim_rllib.atomic import atomic_write
from rim_rllib.cli import HelpFormatter
from rim_rllib.tune.results import read_results

RESULTS_FILE = "results.parquet"


def study_times(study: Path) -> tuple[list[datetime], float]:
    """When ``study`` was started and each time it was resumed (Tune writes an
    ``experiment_state-<time>.json`` per start; UTC, in order) and its wall seconds from
    the first start until its results file was last written (a resumed study counts the
    pause)."""
    stamps = [re.search(r"experiment_state-(.+)\.json$", p.name).group(1)
              for p in study.glob("experiment_state-*.json")]
    if not stamps:
        raise FileNotFoundError(f"{study} holds no Tune experiment_state-*.json: not a "
                                f"study directory")
    starts = sorted(datetime.strptime(s, "%Y-%m-%d_%H-%M-%S").astimezone(timezone.utc)
                    for s in stamps)
    end = datetime.fromtimestamp((study / RESULTS_FILE).stat().st_mtime, timezone.utc)
    return starts, (end - starts[0]).total_seconds()


def wall_time(starts: list[datetime], seconds: float) -> str:
    """The page's wall-time row: minutes from the start to the results, and for a resumed
    study when it was resumed (the time between sessions is in the minutes)."""
    text = f"{seconds / 60:.0f} min"
    if len(starts) > 1:
        text += (f" from the start to the results, in {len(starts)} sessions (resumed at "
                 + ", ".join(f"{s:%Y-%m-%d %H:%M}" for s in starts[1:])
                 + " UTC; the pause between them counted)")
    return text


def machine() -> str:
    """This machine in words: processor, logical CPUs, OS."""
    processor = platform.processor() or platform.machine()
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), processor) if Path(
        "/proc/cpuinfo").exists() else processor
    return f"{model}, {os.cpu_count()} logical CPUs, {platform.system()}, no GPU used"


def render(study: Path, title: str, command: str, commit: str, figures: Path,
           hardware: str | None = None) -> str:
    """The page's Markdown; draws the figures into ``figures``, the page's folder."""
    results = read_results(str(study / RESULTS_FILE))
    starts, seconds = study_times(study)
    summary = summarise(results)
    tables, numbers = study_tables(results, summary=summary)
    figures.mkdir(parents=True, exist_ok=True)
    plot_transfer(results, figures / "transfer.png")
    plot_learning_curves(results, figures / "learning_curves.png")
    drawn = ["transfer", "learning_curves"]
    try:
        plot_improvement(results, figures / "improvement.png", numbers["verdicts"])
        drawn.insert(0, "improvement")
    except ValueError:  # fewer than 2 seeds a side: no verdicts to draw
        pass
    lines = [f"# {title}", "",
             "| | |", "|---|---|",
             f"| command | `{command}` |",
             f"| commit | `{commit}` |",
             f"| started | {starts[0]:%Y-%m-%d %H:%M} UTC |",
             f"| wall time | {wall_time(starts, seconds)} |",
             f"| machine | {hardware or machine()} |",
             f"| study | `{results['study'].iloc[0]}`, {results['trial_id'].nunique()} "
             f"trials, {results.groupby(['trial_id', 'member']).ngroups} models |", ""]
    for name, table in tables.items():
        lines += [f"**{name}**", "", table.to_markdown(index=False, disable_numparse=True),
                  ""]
    lines += verdicts_in_words(numbers["verdicts"])
    lines += [f"![{name}]({name}.png)" for name in drawn]
    return "\n".join(lines) + "\n"


def verdicts_in_words(verdict) -> list[str]:
    """For each RIM row, where its 95% interval of P(RIM > LSTM) lies above 0.5 (the RIM
    is better), below it (the LSTM is), or holds it (inconclusive): Markdown lines."""
    rows = verdict[verdict["baseline"] == "lstm"] if len(verdict) else verdict
    rows = rows.dropna(subset=["p_improvement"]) if len(rows) else rows
    if not len(rows):
        return []
    lines = ["**What the verdicts say** (P(RIM > LSTM), 95% interval against 0.5)", ""]
    for (kt, ka), group in sorted(rows.groupby(["Kt", "Ka"]), key=lambda kv: -kv[0][1]):
        group = group.sort_values("eval_on", key=lambda c: c.map(eval_order))
        said = {"RIM better": group[group["low"] > 0.5], "LSTM better": group[
            group["high"] < 0.5], "inconclusive": group[(group["low"] <= 0.5)
                                                         & (group["high"] >= 0.5)]}
        parts = [f"{verdict} at " + ", ".join(f"{e} ({p:.2f} [{lo:.2f}, {hi:.2f}])"
                                               for e, p, lo, hi in zip(
                                                   g["eval_on"], g["p_improvement"],
                                                   g["low"], g["high"]))
                 for verdict, g in said.items() if len(g)]
        lines.append(f"- Kt={kt}, Ka={ka}: " + "; ".join(parts))
    fewest = int(min(rows["n"].min(), rows["n_baseline"].min()))
    if fewest < 10:
        lines += ["", f"With {fewest} seeds a side the bootstrap intervals are coarse: when "
                  "every pair of seeds agrees an interval collapses to a point, so they "
                  "understate how uncertain such a verdict is."]
    return lines + [""]


def page_stamp(page: Path) -> dict:
    """What a page made by this module says of its run: ``title``, ``command``,
    ``commit``, ``machine`` and ``study`` (its name)."""
    index = page / "index.md"
    text = index.read_text() if index.is_file() else ""
    rows = dict(re.findall(r"^\| (command|commit|machine|study) \| (.+?) \|$", text, re.M))
    title = re.match(r"# (.+)\n", text)
    if title is None or set(rows) != {"command", "commit", "machine", "study"}:
        raise ValueError(f"{index} is not a results page made by analysis.report (no "
                         "title, command, commit, machine and study rows)")
    return dict(title=title[1], command=rows["command"].strip("`"),
                commit=rows["commit"].strip("`"), machine=rows["machine"],
                study=re.match(r"`([^`]+)`", rows["study"])[1])


def refresh(pages: list[Path], storage: Path) -> int:
    """Render each page again from its study under ``storage``, with the command, commit
    and machine it states (``make figures``). Returns 0, or 1 when a page could not be
    (its study is not under ``storage``), after trying all."""
    status = 0
    for page in pages:
        try:
            stamp = page_stamp(page)
            text = render(storage / stamp["study"], stamp["title"], stamp["command"],
                          stamp["commit"], page, stamp["machine"])
        except (FileNotFoundError, ValueError) as err:
            print(f"analysis.report: {page}: not refreshed: {err}", file=sys.stderr)
            status = 1
            continue
        atomic_write(page / "index.md", lambda tmp: Path(tmp).write_text(text))
        print(f"refreshed {page / 'index.md'} from {storage / stamp['study']}")
    return status


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("study", type=Path, nargs="?", help="a finished study's directory")
    parser.add_argument("--out", type=Path,
                        help="the page's folder: index.md and its figures go there")
    parser.add_argument("--title", help="the page's heading")
    parser.add_argument("--command", help="the command that ran the study")
    parser.add_argument("--commit", help="the commit it ran at")
    parser.add_argument("--hardware", default=None,
                        help="the machine it ran on (default: this one)")
    parser.add_argument("--refresh", type=Path, nargs="+", metavar="PAGE",
                        help="instead: render these pages' folders again from their studies "
                             "under --storage, keeping what each page states of its run")
    parser.add_argument("--storage", type=Path, default=Path("results"),
                        help="where --refresh finds the studies (default: ./results)")
    args = parser.parse_args(argv)
    if args.refresh:
        return refresh(args.refresh, args.storage)
    missing = [f"--{name}" for name in ("out", "title", "command", "commit")
               if getattr(args, name) is None]
    if args.study is None or missing:
        parser.error(f"a study directory and {', '.join(missing) or 'its page options'} are "
                     "needed (or --refresh PAGE ...)")
    try:
        page = render(args.study, args.title, args.command, args.commit, args.out,
                      args.hardware)
    except (FileNotFoundError, ValueError) as err:
        print(f"analysis.report: {err}", file=sys.stderr)
        return 2
    atomic_write(args.out / "index.md", lambda tmp: Path(tmp).write_text(page))
    print(f"wrote {args.out / 'index.md'} and its figures there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
