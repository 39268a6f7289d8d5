"""Profile one outer step of ``python -m rtp_scale.bench unroll``'s configuration (ConvNet-128-3, T=50, segmented)
with torch.profiler: self CPU time per op, then per op and input shape.

    python benchmarks/profile_unroll_step.py --precision bf16 --out profile_bf16.txt [--set KEY=VALUE ...]

Two unprofiled outer steps first (compilation, allocator warm-up), then one profiled step; the profiler's overhead
makes that step slower than the benchmark's, so read shares, not seconds."""
from __future__ import annotations

import argparse
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

from rtp_scale.bench._worker import OuterStep
from rtp_scale.bench.unroll import Settings, overrides_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "bf16_reverse"))
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    outer_step = OuterStep(overrides_for("segmented", args.steps, Settings(precision=args.precision)) + args.set)
    warm = [outer_step(0)[0], outer_step(1)[0]]
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        seconds, _ = outer_step(2)
    averages = prof.key_averages()
    by_shape = prof.key_averages(group_by_input_shape=True)
    args.out.write_text(
        " ".join(outer_step.overrides)
        + f"\nunprofiled steps {warm[0]:.2f} s, {warm[1]:.2f} s; profiled step {seconds:.2f} s\n"
        + averages.table(sort_by="self_cpu_time_total", row_limit=40, max_name_column_width=60) + "\n"
        + by_shape.table(sort_by="self_cpu_time_total", row_limit=40, max_name_column_width=40,
                         max_shapes_column_width=140) + "\n")
    print(f"profiled step {seconds:.2f} s -> {args.out}")


if __name__ == "__main__":
    main()
