"""Benchmark of the unroll engine on the real RtP meta-gradient: time, peak memory and FLOPs per outer step.

    python -m rtp_scale.bench unroll                       # the issue's measurement (quiet 2-core CPU: ~20 min)
    python -m rtp_scale.bench unroll --quick --out tmp     # seconds: T in {4, 8}, width 16, 1 timed step
    python -m rtp_scale.bench unroll --device cuda --steps 50,150,500,1000,2000

Setting (the issue's): ConvNet-128-3 with instance norm on mnist5k (1x28x28, 10 classes), the default
addressable memory at 1 IPC (16 bases at 14x14, 29 recalled images per class), 10 synthetic images per
inner step (``inner.batch_per_class=1``), real batch 640 (``data.real_per_class=64``), inner SGD with
momentum 0.9, no augmentation, the fused ConvNet blocks (``model.fused``; ``--no-fused`` for the plain modules;
``--width 32 --batch-per-class 5`` for the default job's network). Rows: every ``--modes`` mode at every ``--steps``
T, except that ``full`` (whose graph grows linearly with T) runs only up to ``--full-max-steps`` (default: the
smallest T).

Every row runs in a fresh subprocess (:mod:`rtp_scale.bench._worker`): a warm-up outer step, ``--timed``
timed outer steps, then the peak memory is read (CPU: ``ru_maxrss`` of that process, which includes the
~0.8 GB of an imported torch and the loaded dataset, shown separately as ``setup``; CUDA:
``torch.cuda.max_memory_allocated`` since setup), then one instrumented step counts FLOPs
(``FlopCounterMode``: convolutions and matmuls, double backward included; elementwise and norm ops are not
counted) and the peak bytes of autograd's saved tensors (``SavedTensorMeter``, an upper bound).
The achieved rate (counted GFLOP / mean step time) is compared with this machine's measured float32
2048^3 matmul rate and its rate on the ConvNet's dominant convolution.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import rtp_scale
from rtp_scale.bench.machine import load_average, machine_info, peak_rates
from rtp_scale.config import build_config
from rtp_scale.errors import UserError
from rtp_scale.runtime import resolve_device

MODES = ("full", "segmented")
NUM_CLASSES = 10  # mnist5k
FULL_STEPS = (50, 150, 500, 1000)
QUICK_STEPS = (4, 8)
# the targets on the 2-core CPU (GB read as GiB)
TARGET_STEP_S = 11.0
TARGET_PEAK_MB = 2048.0
TARGET_T1000_MB = 2560.0
TARGET_INNER_STEP_RATIO = 1.15


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything that decides what a row measures, apart from its mode and T."""

    device: str = "cpu"
    memory: str = "addressable"
    """'addressable' (the default 1-IPC memory: 16 bases, 29 recalls per class) or 'pixel' (10 plain images);
    JSON written before this field existed measured 'addressable'."""
    width: int = 128
    depth: int = 3
    norm: str = "instance"
    real_per_class: int = 64
    batch_per_class: int = 1
    momentum: float = 0.9
    segment: int = 0
    precision: str = "fp32"
    """``unroll.precision`` of every row ('fp32', 'bf16' or 'bf16_reverse', which full mode refuses)."""
    memory_budget_mb: float = 0.0
    """``unroll.memory_budget_mb`` of the segmented rows (0 = off; full mode takes no budget)."""
    fused: bool = True
    """``model.fused`` of every row (JSON written before this field existed measured the plain modules)."""
    seed: int = 0
    timed: int = 2
    threads: int = 0
    count: bool = True
    quick: bool = False


def plan_rows(modes: list[str], steps: list[int], full_max_steps: int | None) -> list[tuple[str, int]]:
    """(mode, T) rows: first every mode at the smallest T (the comparison), then the longer unrolls."""
    steps = sorted(set(steps))
    cap = steps[0] if full_max_steps is None else full_max_steps
    rows = [(mode, t) for t in steps for mode in modes if not (mode == "full" and t > cap)]
    return sorted(rows, key=lambda r: (r[1] != steps[0], r[1], modes.index(r[0])))


def overrides_for(mode: str, steps: int, s: Settings) -> list[str]:
    """The ``--set`` overrides of one row: exactly the config ``python -m rtp_scale.distill`` would run."""
    return [
        "data.name=mnist5k", "data.augment=none", f"data.real_per_class={s.real_per_class}",
        "model.name=convnet", f"model.width={s.width}", f"model.depth={s.depth}", f"model.norm={s.norm}",
        f"memory.kind={s.memory}", "memory.ipc=1",
        f"inner.steps={steps}", f"inner.batch_per_class={s.batch_per_class}", f"inner.momentum={s.momentum}",
        f"unroll.mode={mode}", f"unroll.segment={0 if mode == 'full' else min(s.segment, steps)}",
        f"unroll.precision={s.precision}",
        f"unroll.memory_budget_mb={s.memory_budget_mb if mode == 'segmented' else 0.0}",
        f"model.fused={str(s.fused).lower()}",
        f"run.device={s.device}", f"run.seed={s.seed}",
    ]


def _child_env(tree: Path | None = None) -> dict[str, str]:
    """The worker's environment: this checkout's ``rtp_scale`` first on the path, or ``tree``'s."""
    root = str(tree.resolve() if tree is not None else Path(rtp_scale.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root if not path else root + os.pathsep + path}


AGAINST_DROPPED = ("unroll.precision=", "unroll.memory_budget_mb=", "model.fused=")
"""Override prefixes left out of a row run in another checkout (``--against``): it runs the default float32,
unbudgeted engine of its own version, which may predate these keys."""


def against_overrides(mode: str, steps: int, s: Settings) -> list[str]:
    """The same work in another checkout: this row's overrides without the opt-in engine settings."""
    return [o for o in overrides_for(mode, steps, s) if not o.startswith(AGAINST_DROPPED)]


def check_against_tree(tree: Path) -> None:
    """Refuse, in one line, a ``--against`` directory that is not a checkout with the benchmark worker."""
    if not (tree / "rtp_scale" / "bench" / "_worker.py").is_file():
        raise UserError(f"--against {tree}: not a checkout of rtp_scale (no rtp_scale/bench/_worker.py there); "
                        f"make one with e.g. git worktree add /tmp/base <commit>")


def run_row(mode: str, steps: int, s: Settings, workdir: Path, *, tree: Path | None = None) -> dict:
    """Run one configuration in a fresh interpreter and return its row (with ``error`` when it failed).

    ``tree``: run it with another checkout's code instead (see :func:`against_overrides`)."""
    overrides = overrides_for(mode, steps, s) if tree is None else against_overrides(mode, steps, s)
    cfg = build_config(None, overrides)  # a bad combination fails here, before a process is started
    row: dict = {"mode": mode, "steps": steps, "precision": cfg.unroll.precision,
                 "memory_budget_mb": cfg.unroll.memory_budget_mb, "overrides": overrides, "config": cfg.to_dict(),
                 "load_average_before": load_average()}
    tag = f"{mode}-{steps}" + ("-against" if tree is not None else "")
    spec_path, result_path = workdir / f"{tag}.spec.json", workdir / f"{tag}.result.json"
    spec_path.write_text(json.dumps({"overrides": overrides, "timed": s.timed, "threads": s.threads,
                                     "count": s.count}))
    tick = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "rtp_scale.bench._worker", str(spec_path), str(result_path)],
                          capture_output=True, text=True, env=_child_env(tree))
    row["process_s"] = time.perf_counter() - tick
    row["load_average_after"] = load_average()
    if proc.returncode != 0 or not result_path.exists():
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        killed = proc.returncode < 0 or proc.returncode == 137
        why = "killed (out of memory?)" if killed else (lines[-1] if lines else "no output")
        row["error"] = f"worker exited with status {proc.returncode}: {why}"
        return row
    row.update(json.loads(result_path.read_text()))
    return _with_timing(row)


def _with_timing(row: dict) -> dict:
    """The row's mean/best step time, time per inner step, peak memory and achieved rate, from its raw fields."""
    times = row["step_times_s"]
    row["step_s_mean"] = sum(times) / len(times)
    row["step_s_min"] = min(times)
    row["inner_step_ms"] = 1e3 * row["step_s_mean"] / row["steps"]
    row["peak_mb"] = row.get("peak_device_mb", row["peak_rss_mb"])
    if "flops" in row:
        row["gflop"] = row["flops"] / 1e9
        row["achieved_gflops"] = row["gflop"] / row["step_s_mean"]
        row["achieved_gflops_best"] = row["gflop"] / row["step_s_min"]
    return row


def merged_runs(runs: list[dict]) -> dict:
    """One row from several runs of the same configuration: their timed steps together (and per run), the largest
    peak memory; the first failed run instead, if one failed."""
    failed = [r for r in runs if "error" in r]
    if failed:
        return failed[0]
    row = {**runs[0], "step_times_s": [t for r in runs for t in r["step_times_s"]],
           "runs_step_times_s": [r["step_times_s"] for r in runs]}
    for key in ("peak_rss_mb", "peak_device_mb"):
        if key in row:
            row[key] = max(r[key] for r in runs)
    return _with_timing(row)


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares ``y = a + b x``."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def linear_fits(rows: list[dict]) -> dict:
    """Per mode with >= 2 lengths: time and FLOPs as fixed (outer loss, recall) + per-inner-step costs."""
    fits = {}
    for mode in MODES:
        ok = [r for r in rows if r["mode"] == mode and "error" not in r]
        if len({r["steps"] for r in ok}) < 2:
            continue
        xs = [float(r["steps"]) for r in ok]
        a, b = _fit(xs, [r["step_s_mean"] for r in ok])
        fit = {"fixed_s": a, "per_inner_step_s": b}
        if all("gflop" in r for r in ok):
            fa, fb = _fit(xs, [r["gflop"] for r in ok])
            fit.update(fixed_gflop=fa, per_inner_step_gflop=fb)
            if b > 0:
                fit["per_inner_step_gflops"] = fb / b
            if a > 0:
                fit["fixed_gflops"] = fa / a
        fit["peak_mb_per_inner_step"] = _fit(xs, [r["peak_mb"] for r in ok])[1]
        fits[mode] = fit
    return fits


def check_targets(rows: list[dict], s: Settings) -> dict:
    """The issue's targets, judged on this run (meaningful only for the issue's setting on a quiet CPU)."""
    if s.quick or s.device != "cpu" or (s.width, s.depth, s.real_per_class, s.batch_per_class) != (128, 3, 64, 1):
        return {"applicable": False, "why": "targets are for the issue's setting (width 128, real batch 640, "
                                            "10 images per inner step) on the CPU, not --quick"}
    ok = [r for r in rows if "error" not in r]
    checks: dict = {"applicable": True}
    base_t = min((r["steps"] for r in rows), default=None)
    base = [r for r in ok if r["steps"] == base_t]
    if base:
        fastest = min(base, key=lambda r: r["step_s_mean"])
        checks["fastest_at_base"] = {
            "mode": fastest["mode"], "steps": base_t, "step_s": fastest["step_s_mean"],
            "peak_mb": fastest["peak_mb"],
            "pass": fastest["step_s_mean"] <= TARGET_STEP_S and fastest["peak_mb"] <= TARGET_PEAK_MB,
            "target": f"<= {TARGET_STEP_S} s per outer step and <= {TARGET_PEAK_MB:.0f} MiB peak RSS"}
        # the same target for every mode, to see whether some slower mode would meet both bounds
        checks["fastest_at_base"]["by_mode"] = {
            r["mode"]: {"step_s": r["step_s_mean"], "peak_mb": r["peak_mb"],
                        "pass": r["step_s_mean"] <= TARGET_STEP_S and r["peak_mb"] <= TARGET_PEAK_MB} for r in base}
    seg = sorted((r for r in ok if r["mode"] == "segmented"), key=lambda r: r["steps"])
    if len(seg) >= 2:
        first, last = seg[0], seg[-1]
        grow = (last["peak_mb"] - last["rss_setup_mb"]) / max(first["peak_mb"] - first["rss_setup_mb"], 1e-9)
        checks["segmented_memory_sublinear"] = {
            "steps": [first["steps"], last["steps"]], "growth_over_setup": grow,
            "length_ratio": last["steps"] / first["steps"], "pass": grow < last["steps"] / first["steps"],
            "target": "peak minus setup RSS grows by less than the unroll length does"}
        ratios = {str(r["steps"]): r["inner_step_ms"] / first["inner_step_ms"] for r in seg}
        # s/step / T also spreads the fixed real-batch loss over T, which favours long unrolls; the marginal
        # cost between consecutive lengths shows whether an inner step itself gets slower as T grows
        marginal = {f"{a['steps']}-{b['steps']}":
                    1e3 * (b["step_s_mean"] - a["step_s_mean"]) / (b["steps"] - a["steps"])
                    for a, b in zip(seg, seg[1:])}
        checks["segmented_inner_step_time"] = {
            "ratio_to_shortest": ratios, "pass": all(v <= TARGET_INNER_STEP_RATIO for v in ratios.values()),
            "marginal_inner_step_ms": marginal,
            "target": f"time per inner step within {TARGET_INNER_STEP_RATIO}x of T={first['steps']}'s"}
    long = [r for r in seg if r["steps"] == 1000]
    if long:
        checks["segmented_T1000_fits"] = {"peak_mb": long[0]["peak_mb"], "pass": long[0]["peak_mb"] <= TARGET_T1000_MB,
                                          "target": f"<= {TARGET_T1000_MB:.0f} MiB peak RSS"}
    return checks


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _against_cells(cmp: dict | None) -> list[str]:
    if not cmp or "error" in cmp:
        return ["FAILED" if cmp else "-", "-", "-", "-"]
    speedup = f"{cmp['speedup']:.2f}x"
    if "speedup_per_repeat" in cmp:
        speedup += f" ({min(cmp['speedup_per_repeat']):.2f}-{max(cmp['speedup_per_repeat']):.2f})"
    return [f"{cmp['step_s_mean']:.2f}", speedup, f"{cmp['speedup_best']:.2f}x", f"{cmp['peak_ratio']:.2f}"]


def format_table(result: dict) -> str:
    """The human-readable report: machine, peak rates, one line per row, fits and targets."""
    m, rates, rows = result["machine"], result["rates"], result["rows"]
    mm = rates["matmul_2048_gflops"]
    mem_kind = "device" if result["settings"]["device"] == "cuda" else "RSS"
    lines = [
        f"memory: {result['settings'].get('memory', 'addressable')} at 1 IPC",
        f"machine: {m['device_name']} | {m['cpus_usable']} usable CPUs, torch {m['torch_version']} with "
        f"{m['torch_threads']} threads | load average {m['load_average']}",
        f"peak rates (GFLOP/s): matmul 2048^3 {mm:.1f} | conv {rates['conv_shape']}: "
        f"{rates['conv_real_batch_gflops']:.1f} / {rates['conv_inner_batch_gflops']:.1f}",
        "",
    ]
    settings = result["settings"]
    lines.insert(-1, f"engine: precision {settings.get('precision', 'fp32')}, memory budget "
                     f"{settings.get('memory_budget_mb', 0.0):g} MiB (0 = off), fused ConvNet blocks "
                     f"{'on' if settings.get('fused', False) else 'off'}")
    if "conv_real_batch_bf16_gflops" in rates:
        matmul = (f"{rates['matmul_2048_bf16_gflops']:.1f}" if "matmul_2048_bf16_gflops" in rates
                  else f"not measured ({rates.get('bf16_why', 'no fast bfloat16')})")
        lines.insert(-1, f"bf16 peak rates (GFLOP/s): matmul {matmul} | conv, channels_last: "
                         f"{rates['conv_real_batch_bf16_gflops']:.1f} / {rates['conv_inner_batch_bf16_gflops']:.1f}; "
                         f"% columns of bf16 rows use the higher of each float32 and bf16 peak")
    against = result.get("against")
    if against:
        lines.insert(-1, f"against: {against} (each row run {result.get('repeats', 1)} time(s) with that checkout's "
                         f"default engine, this one, this one, and that one again; each side's timed steps pooled)")
    header = ["mode", "T", "k", "states", "s/step", "min s", "ms/inner", "x T0", f"peak {mem_kind} MiB",
              "setup MiB", "graph MiB", "GFLOP", "GFLOP/s", "% matmul", "% conv"] + (
        ["against s/step", "speedup", "best/best", "peak ratio"] if against else [])
    table, failed = [], []
    base_inner: dict[str, float] = {}
    for r in rows:
        if "error" in r:
            failed.append(f"{r['mode']} T={r['steps']}: FAILED: {r['error']}")
            continue
        base = base_inner.setdefault(r["mode"], r["inner_step_ms"])
        table.append([
            r["mode"], str(r["steps"]), "-" if r["mode"] == "full" else str(r["segment"]), str(r["stored_states"]),
            f"{r['step_s_mean']:.2f}", f"{r['step_s_min']:.2f}", f"{r['inner_step_ms']:.1f}",
            f"{r['inner_step_ms'] / base:.2f}", f"{r['peak_mb']:.0f}",
            _fmt(r["rss_setup_mb"] if mem_kind == "RSS" else None, ".0f"),
            _fmt(r.get("saved_tensors_peak_mb"), ".0f"), _fmt(r.get("gflop"), ".1f"),
            _fmt(r.get("achieved_gflops"), ".1f"),
            _fmt(100 * r["fraction_of_matmul_2048"] if "fraction_of_matmul_2048" in r else None, ".0f"),
            _fmt(100 * r["fraction_of_conv_inner_batch"] if "fraction_of_conv_inner_batch" in r else None, ".0f"),
        ] + (_against_cells(r.get("against")) if against else []))
    widths = [max([len(h)] + [len(row[i]) for row in table]) for i, h in enumerate(header)]
    for row in [header, *table]:
        lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    lines += failed
    lines += [f"{r['mode']} T={r['steps']}: {r['precision']} meta-gradient's cosine to the float32 one of the same "
              f"step: {r['cosine_to_fp32']:.5f}" for r in rows if "cosine_to_fp32" in r]
    for mode, fit in result["fits"].items():
        text = f"{mode}: time = {fit['fixed_s']:.2f} s + T x {1e3 * fit['per_inner_step_s']:.1f} ms"
        if "per_inner_step_gflop" in fit:
            text += (f"; FLOPs = {fit['fixed_gflop']:.1f} + T x {fit['per_inner_step_gflop']:.2f} GFLOP"
                     f" -> inner steps run at {_fmt(fit.get('per_inner_step_gflops'), '.1f')} GFLOP/s, the fixed"
                     f" part (real-batch loss) at {_fmt(fit.get('fixed_gflops'), '.1f')} GFLOP/s")
        lines.append(text)
    checks = result["checks"]
    if checks.get("applicable"):
        for name, c in checks.items():
            if isinstance(c, dict):
                lines.append(f"target {name}: {'PASS' if c['pass'] else 'FAIL'} ({c['target']})")
                for mode, m in c.get("by_mode", {}).items():
                    verdict = "PASS" if m["pass"] else "FAIL"
                    lines.append(f"    {mode}: {m['step_s']:.2f} s, {m['peak_mb']:.0f} MiB: {verdict}")
    return "\n".join(lines)


def compare_rows(row: dict, base: dict) -> dict:
    """``row`` measured against ``base`` (the same work in the ``--against`` checkout, run around it)."""
    if "error" in base or "error" in row:
        return {"error": base.get("error") or row.get("error")}
    out = {"overrides": base["overrides"], "step_times_s": base["step_times_s"],
           "step_s_mean": base["step_s_mean"], "peak_mb": base["peak_mb"], "gflop": base.get("gflop"),
           "step_s_min": base["step_s_min"], "speedup": base["step_s_mean"] / row["step_s_mean"],
           # the fastest steps are the least disturbed by other jobs on a shared machine
           "speedup_best": base["step_s_min"] / row["step_s_min"], "peak_ratio": row["peak_mb"] / base["peak_mb"]}
    pairs = list(zip(_pairs(base.get("runs_step_times_s", [])), _pairs(row.get("runs_step_times_s", []))))
    if len(pairs) > 1:  # one ratio per repeat (its two runs a side), to show how much they agree
        out["speedup_per_repeat"] = [statistics.fmean(b) / statistics.fmean(r) for b, r in pairs]
    return out


def _pairs(runs: list[list[float]]) -> list[list[float]]:
    """Each repeat's timed steps: runs 2i and 2i+1 together."""
    return [runs[i] + runs[i + 1] for i in range(0, len(runs) - 1, 2)]


def _rate_fractions(row: dict, rates: dict) -> dict:
    """Achieved GFLOP/s as fractions of the machine's measured peaks; a reduced-precision row (bf16_reverse too)
    against the higher of each float32 and bf16 peak, so that emulated bf16 never flatters it."""
    reduced = row.get("precision", "fp32") != "fp32"

    def peak(name: str) -> float:
        return max(rates[f"{name}_gflops"], rates.get(f"{name}_bf16_gflops", 0.0) if reduced else 0.0)
    return {f"fraction_of_{name}": row["achieved_gflops"] / peak(name)
            for name in ("matmul_2048", "conv_real_batch", "conv_inner_batch")}


def run_benchmark(*, out: Path, modes: list[str], steps: list[int], settings: Settings,
                  full_max_steps: int | None = None, against: Path | None = None, repeats: int = 1) -> dict:
    """Run every row, print the table, write ``<out>/bench_unroll.json`` (also after each row).

    ``against``: another checkout (e.g. ``git worktree add /tmp/base <commit>``); every row runs ``repeats`` times
    with its code (default engine settings), this one, this one and its code again, so that each speed ratio comes
    from runs side by side in a balanced order (each side's timed steps pooled)."""
    if against is not None:
        check_against_tree(against)
    device = resolve_device(settings.device)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    rows_plan = plan_rows(modes, steps, full_max_steps)
    for mode, t in rows_plan:  # fail on an impossible configuration before measuring anything
        build_config(None, overrides_for(mode, t, settings))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench_unroll.json"
    result: dict = {
        "benchmark": "unroll", "command": " ".join(["python -m rtp_scale.bench", *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": asdict(settings),
        "memory": "addressable, ipc=1 (default: 16 bases, 29 recalled images per class)",
        "machine": machine_info(device),
        "rates": peak_rates(device, width=settings.width, real_batch=NUM_CLASSES * settings.real_per_class,
                            inner_batch=NUM_CLASSES * settings.batch_per_class, quick=settings.quick,
                            bf16=settings.precision != "fp32"),
        "against": None if against is None else str(against.resolve()), "repeats": repeats,
        "rows": [], "fits": {}, "checks": {}, "complete": False,
    }

    def save() -> None:
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(path)

    save()
    with tempfile.TemporaryDirectory(prefix="rtp-bench-") as tmp:
        for i, (mode, t) in enumerate(rows_plan):
            print(f"[{i + 1}/{len(rows_plan)}] {mode} T={t} ...", file=sys.stderr, flush=True)
            if against is None:
                base, row = None, run_row(mode, t, settings, Path(tmp))
            else:
                # `repeats` times in the order other, this, this, other, so that a machine whose speed drifts
                # steadily during the row weighs on both sides alike. Shared VMs also change speed between
                # processes: the same code against itself read 0.92-0.95x, and one configuration 3.5 s per step in
                # one window and 5.0 s a few minutes later, hence several repeats for a ratio under ~1.2x
                base_runs, runs = [], []
                for _ in range(repeats):
                    base_runs.append(run_row(mode, t, settings, Path(tmp), tree=against))
                    runs += [run_row(mode, t, settings, Path(tmp)), run_row(mode, t, settings, Path(tmp))]
                    base_runs.append(run_row(mode, t, settings, Path(tmp), tree=against))
                row, base = merged_runs(runs), merged_runs(base_runs)
            if "achieved_gflops" in row:
                row.update(_rate_fractions(row, result["rates"]))
                row["fraction_of_matmul"] = row["fraction_of_matmul_2048"]  # the name JSON of earlier versions used
            if base is not None:
                row["against"] = compare_rows(row, base)
            result["rows"].append(row)
            save()
    result["fits"] = linear_fits(result["rows"])
    result["checks"] = check_targets(result["rows"], settings)
    result["machine"]["load_average_end"] = load_average()
    result["complete"] = True
    save()
    print(format_table(result))
    print(f"wrote {path}")
    return result
