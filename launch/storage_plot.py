"""Accuracy against storage from evaluation files: ``python -m launch.storage_plot``.

A comparison across budgets (memories against pixels at IPC 1, 2, 3, 5 and 10, say) is scattered over many
evaluations: ``eval.json`` written by ``python -m rtp_scale.evaluate`` and ``results.json`` written by a run, one
per distillation seed. Each ``--series LABEL FILE...`` names the files of one line of the figure (shell globs are
expanded here too, so they may be quoted). Files of one series are grouped by their storage budget
(``storage.budget_ipc``) and pooled over the files of a budget, the seeds: mean and population std of each file's
mean accuracy, drawn at the storage those files actually use (``storage.ipc_equivalent``: a memory of 0.963 IPC
sits left of the 1-IPC pixel set, learned labels to its right). ``--reference LABEL FILE...`` draws a dashed
horizontal line at the pooled mean of its files (the full training set, say). Every file must score the same
dataset on the same split. Writes into ``--out``:

- ``accuracy_vs_storage.csv`` and ``.md``: per series and budget, the storage used, the number of files, the mean ±
  std and each file's accuracy;
- ``accuracy_vs_storage.png``: one error-bar line per series, storage on a log axis.

    python -m launch.storage_plot --out benchmarks/results/digits_depth2_crossover_plot \\
        --series "random real images" 'benchmarks/results/digits_depth2_*test/digits_ipc*_start_pixels_s*.json' \\
        --reference "full training set" benchmarks/results/digits_depth2_baselines/full_200epochs_test.json
"""
from __future__ import annotations

import argparse
import glob
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from launch.collect import _csv_text, _draw_lines, _md_table, mean_pstd
from rtp_scale.cli import OneLineParser
from rtp_scale.errors import UserError, run_cli

@dataclass(frozen=True)
class Evaluation:
    """What one evaluation file says: which set it scored, at what storage, how well."""
    dataset: str
    split: str
    budget_ipc: float
    storage_ipc: float
    accuracy: float  # the mean over the file's evaluation networks


@dataclass
class Point:
    """One series at one budget: the pooled files (usually one per distillation seed)."""
    series: str
    budget_ipc: float
    evaluations: list[Evaluation]

    @property
    def storage_ipc(self) -> float:
        return statistics.fmean(e.storage_ipc for e in self.evaluations)

    @property
    def mean_std(self) -> tuple[float, float]:
        return mean_pstd([e.accuracy for e in self.evaluations])


def read_evaluation(path: Path) -> Evaluation:
    try:
        record = json.loads(path.read_text())
        storage = record["storage"]
        used = float(storage["ipc_equivalent"])
        # a baseline's file (random real images, the full training set) stores what its budget says
        return Evaluation(record["dataset"], record["eval_split"], float(storage.get("budget_ipc", used)), used,
                          float(record["accuracy"]["mean"]))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path}: not an evaluation written by rtp_scale.evaluate or a run's results.json "
                        f"({type(err).__name__}: {err})") from None


def expand(label: str, patterns: list[str]) -> list[Evaluation]:
    """The evaluations of one series: every file its patterns name, each read once, in path order."""
    paths: set[Path] = set()
    for pattern in patterns:
        matched = glob.glob(pattern)
        if not matched:
            raise UserError(f"series {label!r}: no file matches {pattern}")
        paths.update(Path(p) for p in matched)
    return [read_evaluation(p) for p in sorted(paths)]


def check_comparable(evaluations: list[Evaluation]) -> None:
    kinds = {(e.dataset, e.split) for e in evaluations}
    if len(kinds) > 1:
        raise UserError("the files score different datasets or splits, which one figure cannot compare: "
                        + ", ".join(f"{d} on {s}" for d, s in sorted(kinds)))


def pool(series: dict[str, list[Evaluation]]) -> list[Point]:
    """Group each series' evaluations by budget."""
    points = []
    for label, evaluations in series.items():
        budgets: dict[float, list[Evaluation]] = {}
        for e in evaluations:
            budgets.setdefault(e.budget_ipc, []).append(e)
        points += [Point(label, budget, budgets[budget]) for budget in sorted(budgets)]
    return points


def rows(points: list[Point]) -> list[dict[str, str]]:
    table = []
    for p in points:
        mean, std = p.mean_std
        table.append({"series": p.series, "budget_ipc": f"{p.budget_ipc:g}", "storage_ipc": f"{p.storage_ipc:.3f}",
                      "files": str(len(p.evaluations)), "acc_mean": f"{mean:.2f}", "acc_std": f"{std:.2f}",
                      "accuracies": " ".join(f"{e.accuracy:.2f}" for e in p.evaluations)})
    return table


def plot(points: list[Point], references: dict[str, float], path: Path, *, split: str) -> Path:
    lines: dict[str, list[tuple[float, float, float]]] = {}
    for p in points:
        lines.setdefault(p.series, []).append((p.storage_ipc, *p.mean_std))
    return _draw_lines(lines, path, xlabel="storage used (images per class)", ylabel=f"{split} accuracy (%)",
                       log_x=True, references=references, xticks=sorted({p.budget_ipc for p in points}))


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m launch.storage_plot", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", nargs="+", action="append", required=True, metavar=("LABEL", "FILE"),
                        help="a line of the figure: its label, then its eval.json / results.json files or globs")
    parser.add_argument("--reference", nargs="+", action="append", default=[], metavar=("LABEL", "FILE"),
                        help="a dashed horizontal line at the mean of these files (e.g. the full training set)")
    parser.add_argument("--out", metavar="DIR", required=True, help="write the table and the figure here")
    args = parser.parse_args(argv)
    for kind, given in (("--series", args.series), ("--reference", args.reference)):
        for entry in given:
            if len(entry) < 2:
                raise UserError(f"{kind} {entry[0]!r}: give a label, then at least one file")
    labels = [entry[0] for entry in args.series]
    if len(set(labels)) < len(labels):
        raise UserError(f"--series labels must differ: {', '.join(labels)}")
    series = {entry[0]: expand(entry[0], entry[1:]) for entry in args.series}
    references = {entry[0]: expand(entry[0], entry[1:]) for entry in args.reference}
    check_comparable([e for evaluations in [*series.values(), *references.values()] for e in evaluations])
    points = pool(series)
    reference_means = {label: statistics.fmean(e.accuracy for e in evaluations)
                       for label, evaluations in references.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = rows(points)
    (out / "accuracy_vs_storage.csv").write_text(_csv_text(table))
    markdown = _md_table(list(table[0]), [list(r.values()) for r in table]) + "\n"
    (out / "accuracy_vs_storage.md").write_text(markdown)
    split = next(iter(series.values()))[0].split
    figure = plot(points, reference_means, out / "accuracy_vs_storage.png", split=split)
    print(markdown, end="")
    print(f"wrote {out / 'accuracy_vs_storage.csv'}, {out / 'accuracy_vs_storage.md'}, {figure}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_cli(main)
