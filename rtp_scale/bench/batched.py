"""Several unrolls per process, one by one or stacked: ``python -m rtp_scale.bench batched``.

``dist.meta_batch=M`` on one process runs M unrolls per outer step; ``dist.batch_unrolls=true`` runs them as one
unroll of M stacked networks (``torch.func.vmap``: M convolutions become one grouped convolution). This
measures unrolls per second of the very step distill runs (``reduced_meta_gradient`` on one process) both ways
at each M, side by side in one process with repetitions interleaved, and the largest difference between the two
meta-gradients relative to their largest entry (float rounding only). Prints a table and writes
OUT/bench_batched.json.

    python -m rtp_scale.bench batched --out bench-results                 # the default job's network, T=10
    python -m rtp_scale.bench batched --set model.width=128 inner.batch_per_class=1 --out bench-results
    python -m rtp_scale.bench batched --quick --out /tmp/bench            # seconds (tests)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

from rtp_scale.bench.__main__ import _int_list_at_least, _positive_int, write_result
from rtp_scale.errors import run_cli

DEFAULT_OVERRIDES = ["inner.steps=10", "log.tensorboard=false"]
"""The default job's network, memory and inner batch, with a 10-step unroll (an outer step's work per inner step
does not depend on T)."""


def measure(*, meta_batches: list[int], repeats: int, overrides: list[str], device: str = "cpu") -> dict:
    """Unrolls per second at each (M, one by one | stacked), median over ``repeats`` after one warm-up round."""
    import torch

    from rtp_scale.bench.machine import load_average, machine_info
    from rtp_scale.bench.scaling import _build_on
    from rtp_scale.config import build_config
    from rtp_scale.distributed import RankContext
    from rtp_scale.meta_step import reduced_meta_gradient
    from rtp_scale.runtime import prepare_data

    where = torch.device(device)
    base = build_config(None, [f"run.device={device}", *overrides])
    data = prepare_data(base.data, where)
    alone = RankContext(rank=0, world_size=1, device=where, inner_shards=1)
    # what distill builds before its first step; the cells differ only in cfg.dist, which the step reads
    source, memory, params, _, lrs, method = _build_on(base, alone, data)

    def sync() -> None:
        if where.type == "cuda":
            torch.cuda.synchronize(where)

    def step(m: int, batched: bool) -> tuple[float, torch.Tensor]:
        cfg = build_config(None, [f"run.device={device}", *overrides, f"dist.meta_batch={m}",
                                  f"dist.batch_unrolls={str(batched).lower()}"])
        for p in params:
            p.grad = torch.zeros_like(p)
        sync()
        tick = time.perf_counter()
        reduced_meta_gradient(cfg, alone, method, memory, params, source.sample, step=0, lrs=lrs,
                              learn_lrs=bool(lrs.requires_grad))
        sync()
        seconds = time.perf_counter() - tick
        return seconds, torch.cat([p.grad.flatten() for p in params])

    cells = [(m, batched) for m in meta_batches for batched in (False, True)]
    seconds: dict[tuple[int, bool], list[float]] = {cell: [] for cell in cells}
    grads: dict[tuple[int, bool], torch.Tensor] = {}
    load_before = load_average()
    for repeat in range(repeats + 1):  # round 0 warms the allocator and oneDNN up and is not kept
        for cell in cells:
            dt, grads[cell] = step(*cell)
            if repeat:
                seconds[cell].append(dt)
    rows = []
    for m in meta_batches:
        loop_s, stacked_s = statistics.median(seconds[(m, False)]), statistics.median(seconds[(m, True)])
        loop_g, stacked_g = grads[(m, False)], grads[(m, True)]
        rows.append({"meta_batch": m, "one_by_one_s": loop_s, "stacked_s": stacked_s,
                     "one_by_one_unrolls_per_s": m / loop_s, "stacked_unrolls_per_s": m / stacked_s,
                     "speedup": loop_s / stacked_s, "all_one_by_one_s": seconds[(m, False)],
                     "all_stacked_s": seconds[(m, True)],
                     "max_rel_grad_difference": float((stacked_g - loop_g).abs().max() / loop_g.abs().max())})
    return {"benchmark": "batched", "overrides": overrides, "repeats": repeats, "inner_steps": base.inner.steps,
            "model": {"name": base.model.name, "width": base.model.width, "depth": base.model.depth},
            "inner_batch": data.info.num_classes * min(base.inner.batch_per_class, memory.meta["images_per_class"]),
            "unroll_mode": base.unroll.mode,
            "device": device, "machine": machine_info(where), "load_average_before": load_before,
            "load_average_after": load_average(), "rows": rows}


def table(result: dict) -> str:
    model = result["model"]
    lines = [f"unrolls per process on {result['device']}: {model['name']}-{model['width']}-{model['depth']}, "
             f"T={result['inner_steps']}, inner batch {result['inner_batch']}, {result['unroll_mode']} mode, median of {result['repeats']} "
             f"(load before {result['load_average_before']}, after {result['load_average_after']})",
             f"{'M':>3} {'one by one s':>13} {'stacked s':>10} {'unrolls/s':>10} {'stacked':>8} {'speedup':>8} "
             f"{'grad diff':>10}"]
    for r in result["rows"]:
        lines.append(f"{r['meta_batch']:>3} {r['one_by_one_s']:>13.3f} {r['stacked_s']:>10.3f} "
                     f"{r['one_by_one_unrolls_per_s']:>10.3f} {r['stacked_unrolls_per_s']:>8.3f} "
                     f"{r['speedup']:>7.2f}x {r['max_rel_grad_difference']:>10.1e}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from rtp_scale.cli import OneLineParser

    parser = OneLineParser(prog="python -m rtp_scale.bench batched", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-results", help="writes OUT/bench_batched.json (default bench-results)")
    parser.add_argument("--meta-batches", type=_int_list_at_least(2, "meta-batches"), default=[2, 4],
                        metavar="M[,M...]", help="unrolls per outer step of each row, at least 2 (default 2,4)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default: cpu")
    parser.add_argument("--repeats", type=_positive_int, default=3, help="timed repeats per cell (default 3)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help=f"config overrides after the defaults {' '.join(DEFAULT_OVERRIDES)}, as distill's --set")
    parser.add_argument("--quick", action="store_true", help="smoke run: digits, width 8, T=3, M=2, 1 repeat")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    overrides = [*DEFAULT_OVERRIDES, *args.set]
    if args.quick:
        overrides = [*overrides, "data.name=digits", "data.real_per_class=8", "model.width=8", "model.depth=2",
                     "memory.num_bases=6", "memory.downsample=2", "inner.steps=3"]
        args.meta_batches, args.repeats = [2], 1
    result = measure(meta_batches=args.meta_batches, repeats=args.repeats, overrides=overrides, device=args.device)
    write_result(Path(args.out), "bench_batched.json", result, table(result))
    return 0


if __name__ == "__main__":
    run_cli(main)
