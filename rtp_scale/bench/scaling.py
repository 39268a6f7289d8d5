"""Scale-out benchmark: ``python -m rtp_scale.bench.scaling`` (see benchmarks/README.md, "scaling").

Three parts, each printed as a table and written to ``OUT/bench_scaling.json``:

- ``throughput``: meta-gradient samples (unrolls) per second of whole outer steps (meta-gradients, the
  coalesced all-reduce, clip, outer SGD step) with 1 and 2 processes, one thread each (``torchrun
  --standalone``, gloo); every process runs the same 2 unrolls per step, so ideal scaling is 2x.
- ``memory``: per-process peak graph memory (bytes of tensors autograd saves, measured with
  :class:`rtp_scale.unroll.SavedTensorMeter` on every rank) of one unroll that trains on the whole
  synthetic set at every inner step, against the set's size, with 1 and 2 inner shards; and the largest
  set that fits the per-process budget set by 1 shard at ``--budget-ipc`` images per class.
- ``recipe``: time per outer step, peak device memory, FLOPs and achieved TFLOP/s of the unroll of the
  CIFAR-10 IPC-10 recipe (configs/rtp/cifar10_ipc10.toml; random CIFAR-shaped data, so no dataset is
  needed), and that as a fraction of the device's measured fp32 matmul peak. Meant for a GPU
  (``--device cuda``); on a CPU use ``--quick``.

Commands (2-core CPU, a quiet machine; about 10 minutes)::

    python -m rtp_scale.bench.scaling --out bench-results
    python -m rtp_scale.bench.scaling --parts recipe --device cuda --out bench-results   # on a GPU
    python -m rtp_scale.bench.scaling --quick --out /tmp/bench                           # smoke run (~1 min)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

PARTS = ("throughput", "memory", "recipe")

# ConvNet-32-3 on mnist5k (28 px, padded to 32), 10 inner steps, 10 synthetic images per inner step
THROUGHPUT = ["data.name=mnist5k", "model.width=32", "model.depth=3", "inner.steps=10", "inner.batch_per_class=1",
              "data.real_per_class=16", "memory.ipc=1"]
THROUGHPUT_QUICK = ["data.name=digits", "model.width=8", "model.depth=2", "inner.steps=4", "inner.batch_per_class=2",
                    "data.real_per_class=8", "memory.ipc=1", "memory.num_bases=6"]
# plain pixel memories trained full-batch: every inner step sees the whole synthetic set
MEMORY = ["data.name=mnist5k", "model.width=16", "model.depth=3", "inner.steps=6", "memory.kind=pixel",
          "data.real_per_class=8", "unroll.mode=segmented", "unroll.segment=3"]
MEMORY_QUICK = ["data.name=digits", "model.width=8", "model.depth=2", "inner.steps=4", "memory.kind=pixel",
                "data.real_per_class=4", "unroll.mode=segmented", "unroll.segment=2"]
MEMORY_IPCS = (5, 10, 15, 20, 25, 30, 35, 40, 45, 50)
MEMORY_IPCS_QUICK = (2, 4, 6, 8)


def _loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


# ============================================================================================ workers (one per rank)
def _setup(overrides: list[str], device: str):
    import torch

    from rtp_scale.config import build_config
    from rtp_scale.distributed import setup_ranks

    if device == "cpu":
        torch.set_num_threads(1)
    cfg = build_config(None, [*overrides, "run.out_dir=/nonexistent", f"run.device={device}"])
    return cfg, setup_ranks(cfg, torch.device(device))


def _build(cfg, ctx):
    from rtp_scale.runtime import prepare_data

    return _build_on(cfg, ctx, prepare_data(cfg.data, ctx.device))


def _build_on(cfg, ctx, data):
    """What distill.run builds before its first step, on ``data`` (a SplitDataset on ``ctx.device``)."""
    from rtp_scale.builders import build_inner_lrs, build_outer_optimizer, build_run_memory
    from rtp_scale.data.augment import Augmenter
    from rtp_scale.data.sources import MemorySource
    from rtp_scale.eval import build_net
    from rtp_scale.methods import build_method

    info = data.info
    memory = build_run_memory(cfg, data)
    params = [p for p in memory.parameters() if p.requires_grad]
    optimizer = build_outer_optimizer(cfg, params)
    lrs, _ = build_inner_lrs(cfg, ctx.device)
    net = build_net(cfg.model, channels=info.channels, num_classes=info.num_classes,
                    image_size=(info.height, info.width)).to(ctx.device)
    method = build_method(cfg, net, Augmenter(cfg.data.augment))
    return MemorySource(data, per_class=cfg.data.real_per_class), memory, params, optimizer, lrs, method


def _outer_step(cfg, ctx, step, source, memory, params, optimizer, lrs, method):
    """One outer step exactly as rtp_scale.distill.run does it (without logging and checkpoints)."""
    import torch

    from rtp_scale.meta_step import reduced_meta_gradient

    optimizer.zero_grad(set_to_none=False)
    metrics, _ = reduced_meta_gradient(cfg, ctx, method, memory, params, source.sample, step=step, lrs=lrs,
                                       learn_lrs=False)
    torch.nn.utils.clip_grad_norm_(params, cfg.meta.grad_clip)
    optimizer.step()
    return metrics


def worker_throughput(spec: dict) -> dict:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cfg, ctx = _setup([*spec["overrides"], f"dist.meta_batch={spec['unrolls_per_rank'] * world}"], "cpu")
    parts = _build(cfg, ctx)
    _outer_step(cfg, ctx, 0, *parts)  # warm-up
    ctx.barrier()
    started = time.perf_counter()
    step_s = []
    for step in range(1, spec["steps"] + 1):
        tick = time.perf_counter()
        _outer_step(cfg, ctx, step, *parts)  # ends in the all-reduce: rank 0's time is the slowest rank's
        step_s.append(time.perf_counter() - tick)
    ctx.barrier()
    seconds = time.perf_counter() - started
    n = cfg.dist.meta_batch
    return {"processes": world, "unrolls_per_step": n, "steps": spec["steps"], "seconds": seconds,
            "step_s": step_s, "samples_per_s": n * spec["steps"] / seconds, "samples_per_s_best": n / min(step_s)}


def worker_memory(spec: dict) -> dict:
    import torch
    import torch.distributed as dist

    from rtp_scale.unroll import SavedTensorMeter

    rows = []
    for ipc in spec["ipcs"]:
        cfg, ctx = _setup([*spec["overrides"], f"memory.ipc={ipc}", f"inner.batch_per_class={ipc}",
                           f"dist.inner_shards={spec['shards']}", "dist.meta_batch=1"], "cpu")
        source, memory, params, optimizer, lrs, method = _build(cfg, ctx)
        from rtp_scale.seeding import make_generator

        generator = make_generator(cfg.run.seed, "unroll", 0, 0)
        real_x, real_y = source.sample(generator)
        started = time.perf_counter()
        with SavedTensorMeter() as meter:
            method.meta_gradient(memory, real_x, real_y, lrs=lrs.detach(), generator=generator,
                                 scale=ctx.grad_scale(1), shard=ctx.shard, num_shards=ctx.inner_shards,
                                 reduce_grad=ctx.reduce_grad)
        seconds = time.perf_counter() - started
        # ru_maxrss is a high-water mark over the process's life: sizes ascend, so it is this size's peak
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peak = torch.tensor([float(meter.peak_bytes), seconds, rss_mb], dtype=torch.float64)
        if ctx.world_size > 1:
            dist.all_reduce(peak, op=dist.ReduceOp.MAX)
        rows.append({"shards": spec["shards"], "ipc": ipc, "images": ipc * source.info.num_classes,
                     "images_per_shard_step": -(-ipc * source.info.num_classes // spec["shards"]),
                     "peak_graph_mb": float(peak[0]) / 2**20, "seconds": float(peak[1]),
                     "peak_rss_mb": float(peak[2])})
    return {"rows": rows}


def _fake_cifar10(n_per_class: int):
    import torch

    from rtp_scale.data.registry import build_split

    g = torch.Generator().manual_seed(0)
    classes = tuple(f"class{c}" for c in range(10))
    train_y = torch.arange(10).repeat_interleave(n_per_class)
    train_x = torch.randint(0, 256, (len(train_y), 3, 32, 32), generator=g, dtype=torch.uint8)
    test_y = torch.arange(10).repeat(10)
    test_x = torch.randint(0, 256, (len(test_y), 3, 32, 32), generator=g, dtype=torch.uint8)
    return build_split(name="cifar10-shaped-random", class_names=classes, train_x_NCHW=train_x, train_y=train_y,
                       test_x_NCHW=test_x, test_y=test_y)


def _matmul_peak_tflops(device, n: int, repeats: int) -> float:
    import torch

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 2 * n**3 * repeats / (time.perf_counter() - started) / 1e12


def worker_recipe(spec: dict) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from rtp_scale.config import load_config
    from rtp_scale.distributed import setup_ranks

    device = torch.device(spec["device"])
    if device.type == "cpu":
        torch.set_num_threads(spec.get("threads") or torch.get_num_threads())
    cfg = load_config(spec["recipe"], [*spec["overrides"], "run.out_dir=/nonexistent", f"run.device={device.type}",
                                       "data.zca=false"])
    ctx = setup_ranks(cfg, device)
    data = _fake_cifar10(spec["real_per_class_pool"]).to(ctx.device)
    parts = _build_on(cfg, ctx, data)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    _outer_step(cfg, ctx, 0, *parts)  # warm-up (cuDNN autotuning, allocator)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for step in range(1, spec["steps"] + 1):
        sync()
        started = time.perf_counter()
        _outer_step(cfg, ctx, step, *parts)
        sync()
        times.append(time.perf_counter() - started)
    peak_mb = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    counter = FlopCounterMode(display=False)
    with counter:
        _outer_step(cfg, ctx, spec["steps"] + 1, *parts)
    flops = int(counter.get_total_flops())
    step_s = sum(times) / len(times)
    matmul = _matmul_peak_tflops(device, spec["matmul_n"], spec["matmul_repeats"])
    tf32 = None
    if device.type == "cuda":
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        tf32 = _matmul_peak_tflops(device, spec["matmul_n"], spec["matmul_repeats"])
        torch.backends.cuda.matmul.allow_tf32 = old
    achieved = flops / step_s / 1e12
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "recipe": spec["recipe"], "overrides": spec["overrides"], "inner_steps": cfg.inner.steps,
            "synthetic_images": int(parts[1].class_images()[0].shape[0]),
            "step_s_mean": step_s, "step_s_min": min(times), "peak_memory_mb": peak_mb,
            "flops_per_step": flops, "achieved_tflops": achieved, "matmul_peak_fp32_tflops": matmul,
            "matmul_peak_tf32_tflops": tf32, "fraction_of_fp32_matmul_peak": achieved / matmul,
            "fraction_of_tf32_matmul_peak": achieved / tf32 if tf32 else None,
            "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32) if device.type == "cuda" else None}


WORKERS = {"throughput": worker_throughput, "memory": worker_memory, "recipe": worker_recipe}


def worker_main(kind: str, spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    result = WORKERS[kind](spec)
    if int(os.environ.get("RANK", "0")) == 0:
        Path(out_path).write_text(json.dumps(result, indent=2) + "\n")


# ============================================================================================ the driver
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(kind: str, nproc: int, spec: dict, tmp: Path, timeout: float) -> dict:
    spec_path, out_path = tmp / f"{kind}-{nproc}-spec.json", tmp / f"{kind}-{nproc}-out.json"
    spec_path.write_text(json.dumps(spec))
    out_path.unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc_per_node={nproc}",
           "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{_free_port()}", "-m", "rtp_scale.bench.scaling",
           "--worker", kind, str(spec_path), str(out_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not out_path.exists():
        raise RuntimeError(f"{kind} with {nproc} process(es) failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(out_path.read_text())


def run_throughput(quick: bool, steps: int, tmp: Path) -> dict:
    spec = {"overrides": THROUGHPUT_QUICK if quick else THROUGHPUT, "steps": steps, "unrolls_per_rank": 2}
    rows = []
    for nproc in (1, 2):
        load = _loadavg()
        row = _launch("throughput", nproc, spec, tmp, timeout=1800)
        rows.append({**row, "loadavg_before": load, "loadavg_after": _loadavg()})
    speedup = rows[1]["samples_per_s"] / rows[0]["samples_per_s"]
    best = rows[1]["samples_per_s_best"] / rows[0]["samples_per_s_best"]
    return {"settings": spec, "rows": rows, "speedup": speedup, "speedup_best_step": best, "target": 1.8}


def run_memory(quick: bool, budget_ipc: int, tmp: Path) -> dict:
    ipcs = MEMORY_IPCS_QUICK if quick else MEMORY_IPCS
    spec = {"overrides": MEMORY_QUICK if quick else MEMORY, "ipcs": list(ipcs)}
    rows = []
    for shards in (1, 2):
        rows += _launch("memory", shards, {**spec, "shards": shards}, tmp, timeout=3600)["rows"]
    budget_rows = [r for r in rows if r["shards"] == 1 and r["ipc"] == budget_ipc]
    if not budget_rows:
        raise ValueError(f"--budget-ipc {budget_ipc} is not one of the measured sizes {list(ipcs)}")
    budget = budget_rows[0]["peak_graph_mb"] * 1.001
    fits = {s: max((r["images"] for r in rows if r["shards"] == s and r["peak_graph_mb"] <= budget), default=0)
            for s in (1, 2)}
    return {"settings": spec, "rows": rows, "budget_mb": budget, "budget_ipc": budget_ipc,
            "largest_set_images": {str(s): n for s, n in fits.items()},
            "ratio": fits[2] / fits[1] if fits[1] else math.nan, "target": 2.0,
            "note": "largest synthetic set (full-batch inner steps) whose per-process peak graph memory fits the "
                    "budget set by 1 shard at budget_ipc; limited by the measured sizes"}


def run_recipe(quick: bool, device: str, steps: int, tmp: Path) -> dict:
    root = Path(__file__).resolve().parents[2]
    quick_overrides = ["model.width=16", "inner.steps=4", "inner.batch_per_class=2", "memory.num_bases=8",
                       "data.real_per_class=4", "data.augment=none", "memory.ipc=1"]
    spec = {"recipe": str(root / "configs/rtp/cifar10_ipc10.toml"), "overrides": quick_overrides if quick else [],
            "device": device, "steps": steps, "real_per_class_pool": 64 if quick else 500,
            "matmul_n": 1024 if quick or device == "cpu" else 8192, "matmul_repeats": 3 if device == "cpu" else 50,
            "threads": 0}
    return _launch("recipe", 1, spec, tmp, timeout=3600)


def _table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])


def render(result: dict) -> str:
    out = []
    if "throughput" in result:
        t = result["throughput"]
        out.append("throughput: meta-gradient samples (unrolls) per second, 1 thread per process")
        out.append(_table(["processes", "unrolls/step", "steps", "seconds", "samples/s", "samples/s (best step)",
                           "load before", "load after"],
                          [[r["processes"], r["unrolls_per_step"], r["steps"], f"{r['seconds']:.1f}",
                            f"{r['samples_per_s']:.3f}", f"{r['samples_per_s_best']:.3f}", r["loadavg_before"],
                            r["loadavg_after"]] for r in t["rows"]]))
        out.append(f"speedup 2 vs 1 process: {t['speedup']:.2f}x over all timed steps, {t['speedup_best_step']:.2f}x "
                   f"best step vs best step (target >= {t['target']}x)\n")
    if "memory" in result:
        m = result["memory"]
        out.append("memory: per-process peak graph memory of one unroll (whole synthetic set every inner step)")
        by = {(r["shards"], r["ipc"]): r for r in m["rows"]}
        ipcs = sorted({r["ipc"] for r in m["rows"]})
        out.append(_table(["images", "graph MB, 1 shard", "graph MB/process, 2 shards", "ratio",
                           "peak RSS MB, 1 shard", "peak RSS MB/process, 2 shards"],
                          [[by[(1, i)]["images"], f"{by[(1, i)]['peak_graph_mb']:.1f}",
                            f"{by[(2, i)]['peak_graph_mb']:.1f}",
                            f"{by[(1, i)]['peak_graph_mb'] / by[(2, i)]['peak_graph_mb']:.2f}",
                            f"{by[(1, i)]['peak_rss_mb']:.0f}", f"{by[(2, i)]['peak_rss_mb']:.0f}"] for i in ipcs]))
        fits = m["largest_set_images"]
        out.append(f"budget {m['budget_mb']:.1f} MB per process (1 shard at {m['budget_ipc']} IPC): largest set "
                   f"{fits['1']} images with 1 shard, {fits['2']} with 2 shards -> {m['ratio']:.2f}x (target ~2x)\n")
    if "recipe" in result:
        r = result["recipe"]
        out.append(f"recipe {Path(r['recipe']).name} on {r['device']}: {r['step_s_mean']:.3f} s/outer step "
                   f"(min {r['step_s_min']:.3f}), peak memory {r['peak_memory_mb'] or float('nan'):.0f} MB, "
                   f"{r['flops_per_step'] / 1e12:.2f} TFLOP/step, {r['achieved_tflops']:.2f} TFLOP/s = "
                   f"{100 * r['fraction_of_fp32_matmul_peak']:.0f}% of the measured fp32 matmul peak "
                   f"({r['matmul_peak_fp32_tflops']:.1f} TFLOP/s)"
                   + (f", {100 * r['fraction_of_tf32_matmul_peak']:.0f}% of TF32 ({r['matmul_peak_tf32_tflops']:.1f})"
                      if r.get("matmul_peak_tf32_tflops") else ""))
    return "\n".join(out)


def build_parser() -> argparse.ArgumentParser:  # a OneLineParser: bad flags exit 2 with one line
    from rtp_scale.cli import OneLineParser

    parser = OneLineParser(prog="python -m rtp_scale.bench.scaling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", metavar="DIR", default="bench-results", help="write DIR/bench_scaling.json")
    parser.add_argument("--parts", default="throughput,memory", metavar="P[,P]",
                        help=f"parts to run: {','.join(PARTS)} (default throughput,memory; recipe needs a GPU to mean much)")
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke test, about a minute)")
    parser.add_argument("--steps", type=int, default=None, help="timed outer steps (default 5; --quick 2)")
    parser.add_argument("--budget-ipc", type=int, default=None,
                        help="images per class whose 1-shard peak sets the memory budget (default 20; --quick 4)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device of the recipe part")
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "SPEC", "OUT"), help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        worker_main(*args.worker)
        return 0
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS]
    if bad or not parts:
        print(f"error: unknown part(s) {bad or args.parts!r}; choose from {','.join(PARTS)}", file=sys.stderr)
        return 2
    out = Path(args.out)
    tmp = out / "scaling-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    steps = args.steps or (2 if args.quick else 5)
    result: dict = {"command": " ".join(["python -m rtp_scale.bench.scaling", *(argv if argv is not None
                                                                              else sys.argv[1:])]),
                    "cpu_count": os.cpu_count(), "loadavg_start": _loadavg()}
    if "throughput" in parts:
        result["throughput"] = run_throughput(args.quick, steps, tmp)
    if "memory" in parts:
        result["memory"] = run_memory(args.quick, args.budget_ipc or (4 if args.quick else 20), tmp)
    if "recipe" in parts:
        result["recipe"] = run_recipe(args.quick, args.device, steps, tmp)
    result["loadavg_end"] = _loadavg()
    (out / "bench_scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    print(f"wrote {out / 'bench_scaling.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
