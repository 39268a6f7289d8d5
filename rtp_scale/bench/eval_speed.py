"""Evaluation training speed against ``eval.micro_batch``: ``python -m rtp_scale.bench eval``.

The field's evaluation trains fresh networks for hundreds of epochs on a few hundred synthetic images; in the
default job that is about half the run. A minibatch's forward/backward can be computed in pieces whose
activations stay in the CPU's caches (the step is the same up to float rounding, tests/test_evaluate.py), and
this measures what that buys: epochs per second of one evaluation network (the default job's: its config,
mnist5k's 1x28x28 shape, 290 training images as the default 1-IPC memory recalls) at each ``micro_batch``,
side by side in one process, repetitions interleaved so that a change in the machine's load hits every row
alike. Prints a table and writes OUT/bench_eval.json.

    python -m rtp_scale.bench eval --out bench-results            # about 2 minutes on a 2-core CPU
    python -m rtp_scale.bench eval --quick --out /tmp/bench       # seconds (tests)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

from rtp_scale.bench.__main__ import _int_list_at_least, write_result
from rtp_scale.bench.__main__ import _positive_int as _positive
from rtp_scale.errors import run_cli


def measure(*, micro_batches: list[int], images: int, epochs: int, repeats: int, overrides: list[str]) -> dict:
    """Seconds per epoch of the configured evaluation network at each micro-batch (median over ``repeats``)."""
    import dataclasses

    import torch

    from rtp_scale.bench.machine import load_average, machine_info
    from rtp_scale.config import build_config
    from rtp_scale.data.augment import Augmenter
    from rtp_scale.eval import build_net, train_fresh_net

    cfg = build_config(None, overrides)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(images, 1, 28, 28, generator=gen)
    y = torch.arange(images) % 10
    augmenter = Augmenter(cfg.data.augment if cfg.eval.augment == "same" else cfg.eval.augment)
    seconds: dict[int, list[float]] = {mb: [] for mb in micro_batches}
    load_before = load_average()
    for repeat in range(repeats + 1):  # the first round warms the allocator and oneDNN up and is not kept
        for mb in micro_batches:
            eval_cfg = dataclasses.replace(cfg.eval, micro_batch=mb)
            net = build_net(cfg.model, channels=1, num_classes=10, image_size=(28, 28))
            tick = time.perf_counter()
            train_fresh_net(net, x, y, eval_cfg=eval_cfg, epochs=epochs, augmenter=augmenter, seed=0, index=0)
            if repeat:
                seconds[mb].append((time.perf_counter() - tick) / epochs)
    whole = statistics.median(seconds[micro_batches[0]])
    rows = [{"micro_batch": mb, "seconds_per_epoch": statistics.median(s), "all_seconds_per_epoch": s,
             "speedup_vs_first_row": whole / statistics.median(s)} for mb, s in seconds.items()]
    return {"benchmark": "eval", "images": images, "batch_size": cfg.eval.batch_size, "epochs_per_repeat": epochs,
            "repeats": repeats, "overrides": overrides, "model": dataclasses.asdict(cfg.model),
            "machine": machine_info(torch.device("cpu")), "load_average_before": load_before,
            "load_average_after": load_average(), "rows": rows}


def table(result: dict) -> str:
    lines = [f"evaluation training: {result['images']} images, minibatch {result['batch_size']}, "
             f"{result['epochs_per_repeat']} epochs x {result['repeats']} repeats per row "
             f"(load before {result['load_average_before']}, after {result['load_average_after']})",
             f"{'micro_batch':>12} {'s/epoch':>9} {'speedup':>8}"]
    for row in result["rows"]:
        label = "whole" if row["micro_batch"] == 0 else str(row["micro_batch"])
        lines.append(f"{label:>12} {row['seconds_per_epoch']:>9.4f} {row['speedup_vs_first_row']:>7.2f}x")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from rtp_scale.cli import OneLineParser

    parser = OneLineParser(prog="python -m rtp_scale.bench eval", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-results", help="writes OUT/bench_eval.json (default bench-results)")
    parser.add_argument("--micro-batches", type=_int_list_at_least(0, "micro-batches"), default=[0, 64, 32, 16],
                        metavar="M[,M...]",
                        help="eval.micro_batch of each row, the first the reference of the speedup column "
                             "(default 0,64,32,16; 0 = the whole minibatch)")
    parser.add_argument("--images", type=_positive, default=290, help="training images (default 290)")
    parser.add_argument("--epochs", type=_positive, default=20, help="epochs per timed repeat (default 20)")
    parser.add_argument("--repeats", type=_positive, default=3, help="timed repeats per row (default 3)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides, as distill's --set (default: the default job's network)")
    parser.add_argument("--quick", action="store_true", help="smoke run: width 8, 40 images, 2 epochs, 1 repeat")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    overrides = list(args.set)
    if args.quick:
        overrides = ["model.width=8", *overrides]
        args.images, args.epochs, args.repeats = 40, 2, 1
    result = measure(micro_batches=args.micro_batches, images=args.images, epochs=args.epochs,
                     repeats=args.repeats, overrides=overrides)
    write_result(Path(args.out), "bench_eval.json", result, table(result))
    return 0


if __name__ == "__main__":
    run_cli(main)
