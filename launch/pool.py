"""Pool the ``curves.csv`` of a sweep and its seeds sweeps into one result over seeds: ``python -m launch.pool``.

A sweep run at seed 0 and repeated later at other seeds (``<name>_seeds.py``) has its members in two sweep
directories, often collected at different times. ``launch.collect --plot`` writes each one's ``curves.csv``: every
evaluation of every member with the distillation CPU seconds spent before it. This pools them by **cell**, a
member's name without its ``_s<seed>`` suffix (``T50_momentum0.9_s1`` is cell ``T50_momentum0.9`` at seed 1), and
writes into ``--out``:

- ``pooled.csv`` and ``pooled.md``: per cell, the final evaluation of each seed (the member's last step), its mean
  and (population) std over seeds, the mean distillation CPU seconds, and the mean gain over the seed's start;
- ``final_accuracy_vs_cpu_seconds.png``: one point per cell at (mean CPU seconds, mean accuracy ± std over seeds),
  with the start as a band.

The **start** of a seed is its evaluation at outer step 0: a member with ``eval.every`` logs one, and a member
with ``meta.steps=0`` has only that. Evaluations of one seed's start by several members must agree (the same
memory, the same networks); they are pooled as one cell named ``start``.

    python -m launch.pool benchmarks/results/ablation_unroll_mnist5k/curves.csv \\
        benchmarks/results/ablation_unroll_mnist5k_seeds/curves.csv benchmarks/results/ablation_unroll_mnist5k_seed2/curves.csv \\
        --out benchmarks/results/ablation_unroll_mnist5k_seed2
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from launch.collect import _csv_text, _md_table, _natural, _pyplot, mean_pstd
from rtp_scale.cli import OneLineParser
from rtp_scale.errors import UserError, run_cli

START = "start"
_SEED_SUFFIX = re.compile(r"_s(\d+)$")


@dataclass
class Point:
    """One member's evaluation, as a row of ``curves.csv``."""
    member: str
    seed: int
    split: str
    step: int
    cpu_seconds: float
    acc_mean: float


def read_curves(path: str | Path) -> list[Point]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such curves.csv (write one with `python -m launch.collect <sweep dir> --plot`)")
    try:
        with path.open(newline="") as handle:
            return [Point(r["member"], int(r["seed"]), r["split"], int(r["step"]), float(r["cpu_seconds"]),
                          float(r["acc_mean"])) for r in csv.DictReader(handle)]
    except (KeyError, ValueError) as err:
        raise UserError(f"{path}: not a curves.csv written by launch.collect ({type(err).__name__}: {err})") from None


def cell_of(member: str) -> str:
    return _SEED_SUFFIX.sub("", member)


@dataclass
class Cell:
    name: str
    final: dict[int, Point]
    """seed -> the cell's final evaluation at that seed"""

    def accuracies(self) -> list[float]:
        return [self.final[s].acc_mean for s in sorted(self.final)]

    def mean_std(self) -> tuple[float, float]:
        return mean_pstd(self.accuracies())

    def cpu_seconds(self) -> float:
        return sum(p.cpu_seconds for p in self.final.values()) / len(self.final)


def pool(points: list[Point], *, tolerance: float = 1e-6) -> tuple[list[Cell], Cell | None]:
    """The distilled cells (final evaluation per seed) and the start cell (step 0 per seed)."""
    splits = {p.split for p in points}
    if len(splits) > 1:
        raise UserError(f"the curves mix evaluation splits {sorted(splits)}: pool one split at a time")
    starts: dict[int, Point] = {}
    finals: dict[str, dict[int, Point]] = {}
    for p in points:
        if p.step == 0:
            if p.seed in starts and abs(starts[p.seed].acc_mean - p.acc_mean) > tolerance:
                raise UserError(f"seed {p.seed}'s start was evaluated twice with different results "
                                f"({starts[p.seed].member}: {starts[p.seed].acc_mean}, {p.member}: {p.acc_mean}): "
                                "not the same memory and networks")
            starts.setdefault(p.seed, p)
            continue
        by_seed = finals.setdefault(cell_of(p.member), {})
        if p.seed not in by_seed or p.step > by_seed[p.seed].step:
            by_seed[p.seed] = p
    cells = [Cell(name, by_seed) for name, by_seed in sorted(finals.items(), key=lambda item: _natural(item[0]))]
    return cells, (Cell(START, starts) if starts else None)


def rows(cells: list[Cell], start: Cell | None) -> list[dict[str, str]]:
    out = []
    for cell in ([start] if start else []) + cells:
        mean, std = cell.mean_std()
        gains = [cell.final[s].acc_mean - start.final[s].acc_mean for s in cell.final
                 if start and s in start.final] if cell is not start else []
        out.append({"cell": cell.name, "seeds": " ".join(str(s) for s in sorted(cell.final)),
                    "acc_per_seed": " ".join(f"{a:.2f}" for a in cell.accuracies()),
                    "acc_mean": f"{mean:.2f}", "acc_std_over_seeds": f"{std:.2f}",
                    "gain_over_start": f"{sum(gains) / len(gains):+.2f}" if gains else "",
                    "gain_seeds": " ".join(str(s) for s in sorted(cell.final) if start and s in start.final)
                    if cell is not start else "",
                    "cpu_seconds_mean": f"{cell.cpu_seconds():.0f}" if cell is not start else "0"})
    return out


def plot(cells: list[Cell], start: Cell | None, path: Path, *, split: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    if start:
        mean, std = start.mean_std()
        ax.axhspan(mean - std, mean + std, color="grey", alpha=0.2)
        ax.axhline(mean, color="grey", linestyle="--", label=f"start ({len(start.final)} seeds)")
    for cell in cells:
        mean, std = cell.mean_std()
        ax.errorbar([cell.cpu_seconds()], [mean], yerr=[std], marker="o", capsize=3,
                    label=f"{cell.name} ({len(cell.final)} seeds)")
    ax.set_xlabel("distillation CPU seconds, mean over seeds (evaluations not counted)")
    ax.set_ylabel(f"final {split} accuracy (%), mean ± std over seeds")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))  # outside: points fill the axes
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m launch.pool", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("curves", nargs="+", help="curves.csv files written by `launch.collect --plot`")
    parser.add_argument("--out", metavar="DIR", required=True, help="write pooled.csv, pooled.md and the plot here")
    args = parser.parse_args(argv)
    points = [p for path in args.curves for p in read_curves(path)]
    if not points:
        raise UserError("the curves hold no evaluation")
    cells, start = pool(points)
    if not cells:
        raise UserError("the curves hold only starts (step 0): nothing distilled to pool")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = rows(cells, start)
    (out / "pooled.csv").write_text(_csv_text(table))
    markdown = _md_table(list(table[0]), [list(r.values()) for r in table]) + "\n"
    (out / "pooled.md").write_text(markdown)
    figure = plot(cells, start, out / "final_accuracy_vs_cpu_seconds.png", split=points[0].split)
    print(markdown, end="")
    print(f"wrote {out / 'pooled.csv'}, {out / 'pooled.md'}, {figure}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_cli(main)
