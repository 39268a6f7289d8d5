"""The README's method comparison in one command: distill every cell, evaluate the random-real baseline
under the same protocol, write the table.

    python configs/compare/run_table.py                       # all of it on this machine (2-core CPU: ~30-45 min)
    python configs/compare/run_table.py --out runs/compare    # (the default output directory)
    python configs/compare/run_table.py --skip-sweep --datasets digits --ipc 1   # table of what exists so far

1. the distillations: ``python -m launch.sweep configs/sweeps/compare_mnist5k.py --cluster local`` into
   ``<out>/sweep`` (``--resubmit`` when that sweep exists already: only failed or missing members run);
   member ``<dataset>_<method>_ipc<N>_s0`` runs recipe ``configs/compare/<dataset>_<method>_ipc<N>.toml``;
2. the random-real baseline per (dataset, IPC): ``python -m rtp_scale.evaluate --baseline random`` with the
   dataset's shared model and evaluation settings (a new random subset for every evaluation network);
3. ``<out>/comparison.md``: test accuracy mean ± std over the evaluation networks, storage used (IPC
   equivalent, learned labels included), distillation wall time (``results.json: distill_seconds``, without
   the evaluation), evaluation wall time.

Cells of one dataset must share data, model and evaluation settings (the same protocol); this script checks
that before it runs anything. Exit status is non-zero if any step failed or a cell has no results.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SWEEP = ROOT / "configs" / "sweeps" / "compare_mnist5k.py"
RECIPES = ROOT / "configs" / "compare"
DATASETS = ["mnist5k", "digits"]
BUDGETS = [1, 10]
METHODS = [("random_real", "random real"), ("dd", "DD"), ("frepo", "FRePo"), ("rtp_pixels", "RtP (pixels)"),
           ("rtp_memories", "RtP (memories)"), ("frepo_memories", "FRePo on memories")]
SHARED = ("data", "model", "eval")


def recipe(ds: str, method: str, ipc: int) -> Path:
    return RECIPES / f"{ds}_{method}_ipc{ipc}.toml"


def check_shared_protocol(ds: str) -> None:
    tables = {p.name: tomllib.loads(p.read_text()) for m, _ in METHODS[1:] for ipc in BUDGETS
              if (p := recipe(ds, m, ipc)).exists()}
    reference_name, reference = next(iter(tables.items()))
    for name, table in tables.items():
        for section in SHARED:
            if table.get(section) != reference.get(section):
                sys.exit(f"configs/compare/{name} [{section}] differs from {reference_name}: every cell of {ds} "
                         f"must share data, model and evaluation settings")


def run(cmd: list[str]) -> int:
    print("$", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=ROOT).returncode


def run_sweep(out: Path, cluster: str) -> int:
    sweep_dir = out / "sweep"
    if (sweep_dir / "sweep.json").exists():
        return run([sys.executable, "-m", "launch.sweep", "--resubmit", sweep_dir, "--cluster", cluster])
    return run([sys.executable, "-m", "launch.sweep", SWEEP, "--cluster", cluster, "--out", sweep_dir])


def run_baseline(out: Path, ds: str, ipc: int) -> int:
    target = out / "baselines" / f"{ds}_random_real_ipc{ipc}"
    if (target / "eval.json").exists():
        return 0
    return run([sys.executable, "-m", "rtp_scale.evaluate", "--config", recipe(ds, "rtp_pixels", ipc), "--baseline",
                "random", "--ipc", str(ipc), "--set", "log.progress=false", "--out", target])


def row(out: Path, ds: str, method: str, ipc: int) -> list[str] | None:
    if method == "random_real":
        path = out / "baselines" / f"{ds}_random_real_ipc{ipc}" / "eval.json"
        if not path.exists():
            return None
        rec = json.loads(path.read_text())
        acc, storage, distill = rec["accuracy"], rec["storage"]["ipc_equivalent"], None
    else:
        path = out / "sweep" / f"{ds}_{method}_ipc{ipc}_s0" / "results.json"
        if not path.exists():
            return None
        rec = json.loads(path.read_text())
        acc, storage, distill = rec["accuracy"], rec["storage"]["ipc_equivalent"], rec["distill_seconds"]
    nets = len(acc["accuracies"])
    return [f"{acc['mean']:.2f} ± {acc['std']:.2f} ({nets} nets)", f"{storage:.3f}",
            "—" if distill is None else f"{distill:.0f}", f"{acc['seconds']:.0f}"]


def table(out: Path, datasets: list[str], budgets: list[int]) -> tuple[str, int]:
    lines = ["| dataset | IPC | method | test acc. (%) | storage used (IPC) | distill (s) | eval (s) |",
             "|---|---|---|---|---|---|---|"]
    missing = 0
    for ds in datasets:
        for ipc in budgets:
            for method, label in METHODS:
                cells = row(out, ds, method, ipc)
                if cells is None:
                    missing += 1
                    cells = ["missing", "", "", ""]
                lines.append(f"| {ds} | {ipc} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n", missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "compare", help="output directory")
    parser.add_argument("--cluster", choices=("local", "debug"), default="local",
                        help="launch.sweep executor for the distillations (default: local processes, one at a time)")
    parser.add_argument("--skip-sweep", action="store_true", help="do not run distillations; tabulate what exists")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=DATASETS)
    parser.add_argument("--ipc", nargs="+", type=int, choices=BUDGETS, default=BUDGETS)
    args = parser.parse_args(argv)
    out = args.out.resolve()
    for ds in args.datasets:
        check_shared_protocol(ds)
    failures = 0
    if not args.skip_sweep:
        failures += run_sweep(out, args.cluster) != 0
    for ds in args.datasets:
        for ipc in args.ipc:
            failures += run_baseline(out, ds, ipc) != 0
    text, missing = table(out, args.datasets, args.ipc)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.md").write_text(text)
    print(text)
    print(f"written {out / 'comparison.md'}; {missing} cell(s) without results, {failures} step(s) failed")
    return 1 if failures or missing else 0


if __name__ == "__main__":
    sys.exit(main())
