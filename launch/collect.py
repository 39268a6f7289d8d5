"""Gather a sweep's results into one table: ``python -m launch.collect <sweep dir>``.

Reads the sweep's manifest (``sweep.json``, written by ``launch.sweep``) and every member's run
directory, asks the scheduler which members are still queued or running (``squeue``/``sacct`` on Slurm, the
job's process for ``--cluster local``), and writes next to the manifest:

- ``summary.md``: test accuracy mean ± std over seeds per (dataset, method, budget[, other grid keys]),
  storage actually used (IPC-equivalent), wall time, then one row per member with its status, then the
  failed members with their error;
- ``summary.csv`` (one row per group) and ``members.csv`` (one row per member);
- with ``--plot``: ``accuracy_vs_budget.png``, and for members that logged CPU time (every run does) their
  evaluations against distillation CPU seconds: ``curves.csv`` and ``accuracy_vs_cpu_seconds.png`` (with
  ``eval.every`` a member draws a curve, otherwise one point: its final accuracy).

Only members with a ``results.json`` count as results; a failed, running or missing member is listed with
its status (and error) but never averaged in. Member states: ``completed``, ``failed`` (the run raised;
error from ``error.json`` or submitit's result pickle), ``pending`` / ``running`` (per the scheduler),
``missing`` (never ran, or its job ended without results: cancelled, killed, out of time). ``python -m
launch.sweep --resubmit <sweep dir>`` resubmits exactly the failed and missing ones.

    python -m launch.collect runs/sweeps/budget            # prints the markdown, writes the files
    python -m launch.collect runs/sweeps/budget --plot --check   # exit 1 unless every member completed
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launch.task import ERROR_FILE, RESULTS_FILE, STATUS_FILE, read_json
from rtp_scale.cli import OneLineParser
from rtp_scale.errors import UserError, run_cli

MANIFEST = "sweep.json"
ACTIVE_SLURM_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING",
                       "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"}
# grid keys already shown as their own columns (or that vary within a group: seeds)
_GROUP_KEYS = {"recipe", "data.name", "method.name", "memory.ipc", "run.seed"}


# ---------------------------------------------------------------------------------------------- manifest
def load_manifest(sweep_dir: str | Path) -> dict[str, Any]:
    path = Path(sweep_dir) / MANIFEST
    if not path.is_file():
        raise UserError(f"no sweep manifest {path}: is {sweep_dir} a directory made by `python -m launch.sweep`?")
    manifest = read_json(path)
    if not isinstance(manifest, dict) or "members" not in manifest:
        raise UserError(f"{path} is not a sweep manifest (unreadable or without 'members')")
    return manifest


def submitit_folder(sweep_dir: str | Path) -> Path:
    """Where submitit keeps pickles and logs: one ``<job id>`` folder per member job (``%j``; ``A_a`` in arrays)."""
    return Path(sweep_dir) / "submitit" / "%j"


# ---------------------------------------------------------------------------------------------- scheduler
def _run(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _expand_array_ids(job_id: str) -> list[str]:
    """``123_4`` -> [123_4]; ``123_[0-2,5%2]`` (a pending array's tasks in sacct) -> [123_0, 123_1, 123_2, 123_5]."""
    if "_[" not in job_id:
        return [job_id]
    main, _, rest = job_id.partition("_[")
    ids = []
    for part in rest.rstrip("]").split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit():
            ids += [f"{main}_{k}" for k in range(int(lo), int(hi or lo) + 1)]
    return ids


def slurm_states(job_ids: list[str]) -> dict[str, str] | None:
    """Scheduler state per job id (``123_4``), from sacct then squeue (fresher); None if neither answers."""
    arrays = sorted({j.split("_")[0] for j in job_ids if j})
    if not arrays:
        return {}
    states: dict[str, str] = {}
    answered = False
    out = _run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(arrays)])
    if out is not None:
        answered = True
        for line in out.splitlines():
            jid, _, state = line.partition("|")
            for one in _expand_array_ids(jid.strip()):
                states[one] = state.split()[0] if state.split() else "UNKNOWN"
    for arr in arrays:  # one call per array: squeue rejects the whole list if one id is already purged
        out = _run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T", "-j", arr])
        if out is None:
            continue
        answered = True
        for line in out.splitlines():
            jid, _, state = line.partition("|")
            for one in _expand_array_ids(jid.strip()):
                states[one] = state.strip()
    return states if answered else None


def _local_job_active(job_id: str) -> bool:
    """A local job's id is its controller's pid; it is active while that process runs submitit."""
    if not job_id.isdigit():
        return False
    try:
        cmdline = Path(f"/proc/{job_id}/cmdline").read_bytes()
    except OSError:
        return False
    return b"submitit" in cmdline


def scheduler_states(manifest: dict[str, Any]) -> dict[str, str] | None:
    """Job id -> scheduler state for the sweep's latest jobs; None when the scheduler cannot be asked."""
    latest = [m["jobs"][-1] for m in manifest["members"] if m.get("jobs")]
    cluster = manifest.get("cluster", "slurm")
    if cluster == "slurm":
        return slurm_states(latest)
    if cluster == "local":
        return {j: ("RUNNING" if _local_job_active(j) else "GONE") for j in latest}
    return {}  # debug jobs ran inside the submitting process, which is over


# ---------------------------------------------------------------------------------------------- members
@dataclass
class MemberStatus:
    name: str
    state: str
    """completed | failed | pending | running | missing"""
    member: dict[str, Any]
    job_id: str | None = None
    error: str = ""
    results: dict[str, Any] | None = None
    attempts: int = 0
    wall_seconds: float | None = None
    scheduler_state: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dataset(self) -> str:
        return self.member["config"]["data"]["name"]

    @property
    def method(self) -> str:
        return self.member["config"]["method"]["name"]

    @property
    def budget(self) -> float:
        return float(self.member["config"]["memory"]["ipc"])

    @property
    def seed(self) -> int:
        return int(self.member["config"]["run"]["seed"])

    @property
    def variant(self) -> str:
        return ",".join(str(v) if k == "variant" else f"{k}={v}"
                        for k, v in self.member.get("grid", {}).items() if k not in _GROUP_KEYS)

    @property
    def accuracy(self) -> float | None:
        return None if self.results is None else self.results["accuracy"]["mean"]

    @property
    def eval_split(self) -> str:
        """The split the member's accuracy was measured on (runs before ``data.eval_split`` existed: test)."""
        return self.member["config"].get("data", {}).get("eval_split", "test")

    @property
    def storage_ipc(self) -> float | None:
        return None if self.results is None else self.results.get("storage", {}).get("ipc_equivalent")


def _submitit_error(sweep_dir: Path, job_id: str) -> str | None:
    """The last line of the traceback submitit pickled for a failed job (e.g. when the task could not even start)."""
    from submitit.core.utils import JobPaths, pickle_load

    path = JobPaths(submitit_folder(sweep_dir), job_id=job_id).result_pickle
    if not path.exists():
        return None
    try:
        outcome, payload = pickle_load(path)
    except Exception as err:  # an unreadable pickle is reported, not fatal: collect must still print the table
        return f"unreadable submitit result {path.name}: {type(err).__name__}"
    if outcome != "error":
        return None
    lines = [line for line in str(payload).strip().splitlines() if line.strip()]
    return lines[-1] if lines else "job failed (empty traceback)"


def member_status(sweep_dir: str | Path, member: dict[str, Any], states: dict[str, str] | None) -> MemberStatus:
    """Decide one member's state from its run directory and the scheduler's view of its latest job."""
    sweep_dir = Path(sweep_dir)
    run_dir = sweep_dir / member["name"]
    job_id = member["jobs"][-1] if member.get("jobs") else None
    status = read_json(run_dir / STATUS_FILE) or {}
    attempts = status.get("attempts", [])
    durations = [a["ended"] - a["started"] for a in attempts if "ended" in a and "started" in a]
    out = MemberStatus(name=member["name"], state="missing", member=member, job_id=job_id, attempts=len(attempts),
                       wall_seconds=sum(durations) if durations else None)
    sched = (states or {}).get(job_id, "") if job_id else ""
    out.scheduler_state = sched
    results = read_json(run_dir / RESULTS_FILE)
    if results is not None:
        out.state, out.results = "completed", results
        if out.wall_seconds is None:
            out.wall_seconds = results.get("total_seconds")
        return out
    if sched in ACTIVE_SLURM_STATES:  # queued again after a requeue counts as pending too
        out.state = "pending" if sched in ("PENDING", "REQUEUED", "REQUEUE_HOLD") else "running"
        return out
    errors = [read_json(run_dir / ERROR_FILE)] + [read_json(p) for p in sorted(run_dir.glob("error.rank*.json"))]
    errors = [e for e in errors if e]
    if errors:
        out.state, out.error = "failed", errors[0].get("error", "failed")
        return out
    if job_id:
        pickled = _submitit_error(sweep_dir, job_id)
        if pickled:
            out.state, out.error = "failed", pickled
            return out
    if states is None and status.get("state") in ("running", "requeued"):
        out.state = "running"  # the scheduler cannot be asked from here; trust the member's own status
        out.error = "(unverified: scheduler not reachable)"
        return out
    if job_id is None:
        out.error = "never submitted"
    elif status:
        out.error = f"job {job_id} ended ({sched or 'state unknown'}) without results; last state {status.get('state')}"
    else:
        out.error = f"job {job_id} never started the run ({sched or 'state unknown'})"
    return out


def sweep_status(sweep_dir: str | Path, manifest: dict[str, Any] | None = None, *,
                 states: dict[str, str] | None | bool = False) -> list[MemberStatus]:
    """Every member's status; ``states`` (job id -> scheduler state) is asked from the scheduler if not given."""
    manifest = manifest or load_manifest(sweep_dir)
    if states is False:
        states = scheduler_states(manifest)
    return [member_status(sweep_dir, m, states) for m in manifest["members"]]


# ---------------------------------------------------------------------------------------------- tables
@dataclass
class Group:
    dataset: str
    method: str
    budget: float
    variant: str
    members: list[MemberStatus]

    @property
    def done(self) -> list[MemberStatus]:
        return [m for m in self.members if m.state == "completed"]

    def _stat(self, values: list[float]) -> tuple[float, float] | tuple[None, None]:
        return mean_pstd(values) if values else (None, None)

    @property
    def accuracy(self) -> tuple[float, float] | tuple[None, None]:
        """Mean and (population) std over the completed members' mean test accuracies."""
        return self._stat([m.accuracy for m in self.done])

    @property
    def storage_ipc(self) -> float | None:
        values = [m.storage_ipc for m in self.done if m.storage_ipc is not None]
        return sum(values) / len(values) if values else None

    @property
    def wall_seconds(self) -> float | None:
        values = [m.wall_seconds for m in self.done if m.wall_seconds is not None]
        return sum(values) / len(values) if values else None


def group_members(statuses: list[MemberStatus]) -> list[Group]:
    groups: dict[tuple, Group] = {}
    for s in statuses:
        key = (s.dataset, s.method, s.budget, s.variant)
        groups.setdefault(key, Group(*key, members=[])).members.append(s)
    return sorted(groups.values(), key=lambda g: (g.dataset, g.method, _natural(g.variant), g.budget))


def mean_pstd(values: list[float]) -> tuple[float, float]:
    """Mean and population std: the spread of the seeds (or networks) measured, not an estimate beyond them."""
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def _natural(text: str) -> list:
    """Sort key that orders numbers inside labels by value: T10 < T20 < T100."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "" if value is None else format(value, spec)


def _budget(value: float) -> str:
    return f"{value:g}"


def _counts(statuses: list[MemberStatus]) -> dict[str, int]:
    counts = {k: 0 for k in ("completed", "failed", "pending", "running", "missing")}
    for s in statuses:
        counts[s.state] = counts.get(s.state, 0) + 1
    return counts


def group_rows(groups: list[Group]) -> list[dict[str, Any]]:
    rows = []
    for g in groups:
        mean, std = g.accuracy
        rows.append({"dataset": g.dataset, "method": g.method, "budget_ipc": _budget(g.budget), "variant": g.variant,
                     "completed": len(g.done), "members": len(g.members), "acc_mean": _fmt(mean, ".4f"),
                     "acc_std": _fmt(std, ".4f"), "storage_ipc": _fmt(g.storage_ipc, ".4f"),
                     "wall_s_mean": _fmt(g.wall_seconds, ".1f"),
                     "not_completed": " ".join(f"{m.name}:{m.state}" for m in g.members if m.state != "completed")})
    return rows


def member_rows(statuses: list[MemberStatus]) -> list[dict[str, Any]]:
    return [{"member": s.name, "status": s.state, "dataset": s.dataset, "method": s.method,
             "budget_ipc": _budget(s.budget), "seed": s.seed, "variant": s.variant, "split": s.eval_split, "acc_mean": _fmt(s.accuracy, ".4f"),
             "acc_std": _fmt(None if s.results is None else s.results["accuracy"]["std"], ".4f"),
             "storage_ipc": _fmt(s.storage_ipc, ".4f"), "wall_s": _fmt(s.wall_seconds, ".1f"), "attempts": s.attempts,
             "job_id": s.job_id or "", "scheduler_state": s.scheduler_state, "error": s.error}
            for s in statuses]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def esc(cell: Any) -> str:
        return str(cell).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def accuracy_label(statuses: list[MemberStatus]) -> str:
    """'test', 'validation', or 'test/validation' when members measured different splits (then each row says which)."""
    splits = sorted({s.eval_split for s in statuses})
    return "/".join("validation" if split == "val" else split for split in splits) or "test"


def render_markdown(manifest: dict[str, Any], statuses: list[MemberStatus]) -> str:
    groups = group_members(statuses)
    label = accuracy_label(statuses)
    counts = _counts(statuses)
    summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    parts = [f"# Sweep `{manifest.get('name', '?')}`: {len(statuses)} members ({summary})", "",
             f"Cluster `{manifest.get('cluster', '?')}`, recipe `{manifest.get('recipe', '?')}`. {label.capitalize()} accuracy in %: "
             "mean ± std over the completed members (seeds) of each row, each member itself the mean over its "
             "evaluation networks; failed or unfinished members are not counted.", "",
             "## Accuracy per (dataset, method, budget)", ""]
    has_variant = any(g.variant for g in groups)
    header = ["dataset", "method", "budget (IPC)"] + (["variant"] if has_variant else []) + [
        "completed", f"{label} acc. (%)", "storage used (IPC)", "wall time / member (s)"]
    rows = []
    for g in groups:
        mean, std = g.accuracy
        acc = "" if mean is None else f"{mean:.2f} ± {std:.2f}"
        rows.append([g.dataset, g.method, _budget(g.budget)] + ([g.variant] if has_variant else []) + [
            f"{len(g.done)}/{len(g.members)}", acc, _fmt(g.storage_ipc, ".3f"), _fmt(g.wall_seconds, ".0f")])
    parts += [_md_table(header, rows), "", "## Members", ""]
    header = ["member", "status", "dataset", "method", "IPC", "seed", "split", "acc. (%)", "storage (IPC)", "wall (s)",
              "attempts", "job"]
    rows = [[s.name, s.state, s.dataset, s.method, _budget(s.budget), str(s.seed), s.eval_split, _fmt(s.accuracy),
             _fmt(s.storage_ipc, ".3f"), _fmt(s.wall_seconds, ".0f"), str(s.attempts), s.job_id or ""]
            for s in statuses]
    parts += [_md_table(header, rows)]
    failed = [s for s in statuses if s.state == "failed"]
    if failed:
        parts += ["", "## Failed members", ""]
        parts += [f"- `{s.name}` (job {s.job_id}): {s.error}" for s in failed]
    other = [s for s in statuses if s.state in ("missing", "running", "pending")]
    if other:
        parts += ["", "## Not finished", ""]
        parts += [f"- `{s.name}`: {s.state}" + (f" ({s.error})" if s.error else "") for s in other]
    return "\n".join(parts) + "\n"


def _csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError("--plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_accuracy_vs_budget(groups: list[Group], path: Path, *, split_label: str = "test") -> Path:
    """Accuracy (mean ± std over seeds) against the storage budget, one line per (dataset, method, variant)."""
    lines: dict[str, list[tuple[float, float, float]]] = {}
    for g in groups:
        mean, std = g.accuracy
        if mean is not None:
            label = f"{g.dataset} {g.method}" + (f" {g.variant}" if g.variant else "")
            lines.setdefault(label, []).append((g.budget, mean, std))
    budgets = sorted({g.budget for g in groups})
    return _draw_lines(lines, path, xlabel="storage budget (images per class)", ylabel=f"{split_label} accuracy (%)",
                       log_x=bool(budgets) and budgets[-1] / max(budgets[0], 1e-9) >= 10)


def _draw_lines(lines: dict[str, list[tuple[float, float, float]]], path: Path, *, xlabel: str, ylabel: str,
                log_x: bool = False, references: dict[str, float] | None = None,
                xticks: list[float] | None = None) -> Path:
    """One error-bar line per label ((x, mean, std) points, drawn in x order; labels in natural order), a
    dashed horizontal line per reference (label: y), and the x ticks labelled as plain numbers if given."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for label, points in sorted(lines.items(), key=lambda item: _natural(item[0])):
        points = sorted(points)
        ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points], marker="o",
                    capsize=3, label=label)
    for label, y in (references or {}).items():
        ax.axhline(y, linestyle="--", color="gray", linewidth=1)
        ax.annotate(f"{label} ({y:.2f})", (0.01, y), xycoords=("axes fraction", "data"), textcoords="offset points",
                    xytext=(0, 3), fontsize=7, color="gray")
    if log_x:
        ax.set_xscale("log")
    if xticks:
        ax.set_xticks(xticks, [f"{tick:g}" for tick in xticks])
        ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if lines:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- curves
@dataclass
class CurvePoint:
    step: int
    cpu_seconds: float  # the distillation's process CPU seconds up to this step (evaluations not counted)
    wall_seconds: float
    acc_mean: float
    acc_std: float


def distillation_curve(run_dir: str | Path) -> list[CurvePoint]:
    """Accuracy against distillation cost, read from a run's ``metrics.jsonl``: one point per evaluation
    (``eval.every`` and the final one), at the summed ``sys/cpu_time`` / ``sys/step_time`` of the steps before it.

    A resumed run logs some steps twice; the last row of a step wins. Runs older than ``sys/cpu_time`` have no
    CPU seconds: they give no curve."""
    from rtp_scale.logging.writer import read_metrics  # lazy: only --plot reads the runs' metrics (imports torch)

    steps: dict[int, dict[str, float]] = {}
    evals: dict[int, dict[str, float]] = {}
    for row in read_metrics(run_dir):
        if "sys/cpu_time" in row:
            steps[int(row["step"])] = row
        elif "eval/acc_mean" in row:
            evals[int(row["step"])] = row
    points = []
    for step in sorted(evals):
        if any(s not in steps for s in range(1, step + 1)):
            continue  # the steps before this evaluation were not all logged: its cost is unknown
        cpu = sum(steps[s]["sys/cpu_time"] for s in range(1, step + 1))
        wall = sum(steps[s]["sys/step_time"] for s in range(1, step + 1))
        points.append(CurvePoint(step, cpu, wall, evals[step]["eval/acc_mean"], evals[step].get("eval/acc_std", 0.0)))
    return points


def curve_rows(sweep_dir: str | Path, statuses: list[MemberStatus]) -> list[dict[str, Any]]:
    return [{"member": s.name, "variant": s.variant, "seed": s.seed, "split": s.eval_split, "step": p.step,
             "cpu_seconds": f"{p.cpu_seconds:.1f}", "wall_seconds": f"{p.wall_seconds:.1f}",
             "acc_mean": f"{p.acc_mean:.4f}", "acc_std": f"{p.acc_std:.4f}"}
            for s in statuses if s.state == "completed" for p in distillation_curve(Path(sweep_dir) / s.name)]


def plot_accuracy_vs_cpu_seconds(rows: list[dict[str, Any]], path: Path, *, split_label: str = "test") -> Path:
    """One line per member: its evaluations during and after distillation against the CPU seconds spent."""
    lines: dict[str, list[tuple[float, float, float]]] = {}
    for r in rows:
        label = (r["variant"] or r["member"]) + (f" s{r['seed']}" if len({x["seed"] for x in rows}) > 1 else "")
        lines.setdefault(label, []).append((float(r["cpu_seconds"]), float(r["acc_mean"]), float(r["acc_std"])))
    return _draw_lines(lines, path, xlabel="distillation CPU seconds (all threads of the process; evaluations not "
                       "counted)", ylabel=f"{split_label} accuracy (%)")


def collect(sweep_dir: str | Path, *, out_dir: str | Path | None = None, plot: bool = False) -> dict[str, Any]:
    """Write summary.md / summary.csv / members.csv (and the plot); return the statuses and paths."""
    sweep_dir = Path(sweep_dir)
    manifest = load_manifest(sweep_dir)
    statuses = sweep_status(sweep_dir, manifest)
    out = Path(out_dir) if out_dir else sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(manifest, statuses)
    groups = group_members(statuses)
    paths = {"markdown": out / "summary.md", "csv": out / "summary.csv", "members_csv": out / "members.csv"}
    paths["markdown"].write_text(markdown)
    paths["csv"].write_text(_csv_text(group_rows(groups)))
    paths["members_csv"].write_text(_csv_text(member_rows(statuses)))
    if plot:
        paths["plot"] = plot_accuracy_vs_budget(groups, out / "accuracy_vs_budget.png",
                                                 split_label=accuracy_label(statuses))
        if curves := curve_rows(sweep_dir, statuses):
            paths["curves_csv"] = out / "curves.csv"
            paths["curves_csv"].write_text(_csv_text(curves))
            paths["curves_plot"] = plot_accuracy_vs_cpu_seconds(curves, out / "accuracy_vs_cpu_seconds.png",
                                                                split_label=accuracy_label(statuses))
    return {"statuses": statuses, "groups": groups, "markdown": markdown, "paths": paths,
            "counts": _counts(statuses)}


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m launch.collect", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", help="the sweep directory (holds sweep.json)")
    parser.add_argument("--out", metavar="DIR", help="write the tables here instead of into the sweep directory")
    parser.add_argument("--plot", action="store_true", help="also write accuracy_vs_budget.png and the "
                        "accuracy-vs-CPU-seconds curves (curves.csv, accuracy_vs_cpu_seconds.png; needs matplotlib)")
    parser.add_argument("--check", action="store_true", help="exit 1 unless every member completed")
    args = parser.parse_args(argv)
    report = collect(args.sweep_dir, out_dir=args.out, plot=args.plot)
    print(report["markdown"], end="")
    print(f"wrote {', '.join(str(p) for p in report['paths'].values())}", file=sys.stderr)
    counts = report["counts"]
    return 1 if args.check and counts["completed"] != sum(counts.values()) else 0


if __name__ == "__main__":
    run_cli(main)
