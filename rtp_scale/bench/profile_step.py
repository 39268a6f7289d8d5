"""Where one outer step's time goes: ``python -m rtp_scale.bench profile``.

A torch.profiler profile of one outer step of ``python -m rtp_scale.bench unroll``'s configuration (ConvNet-128-3,
segmented mode, T=50 by default): self CPU time per op, then per op and input shape. Two unprofiled outer steps
come first (compilation, allocator warm-up); the profiler's overhead makes the profiled step slower than the
benchmark's, so read shares, not seconds. Writes OUT/profile_<precision>.txt.

    python -m rtp_scale.bench profile --precision bf16 --out bench-results [--set KEY=VALUE ...]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from rtp_scale.bench.__main__ import _positive_int
from rtp_scale.errors import run_cli


def profile_step(overrides: list[str]) -> str:
    """The profile's text: the overrides, the step times, and the two tables."""
    from torch.profiler import ProfilerActivity, profile

    from rtp_scale.bench._worker import OuterStep

    outer_step = OuterStep(overrides)
    warm = [outer_step(0)[0], outer_step(1)[0]]
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        seconds, _ = outer_step(2)
    by_op = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40, max_name_column_width=60)
    by_shape = prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=40, max_name_column_width=40, max_shapes_column_width=140)
    return (" ".join(overrides)
            + f"\nunprofiled steps {warm[0]:.2f} s, {warm[1]:.2f} s; profiled step {seconds:.2f} s\n"
            + by_op + "\n" + by_shape + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    from rtp_scale.cli import OneLineParser

    parser = OneLineParser(prog="python -m rtp_scale.bench profile", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-results",
                        help="writes OUT/profile_<precision>.txt (default bench-results)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "bf16_reverse"),
                        help="unroll.precision of the step (default fp32)")
    parser.add_argument("--steps", type=_positive_int, default=50, metavar="T", help="unroll length (default 50)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides on top of the benchmark's configuration, as distill's --set")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))

    from rtp_scale.bench.unroll import Settings, overrides_for
    from rtp_scale.config import build_config

    overrides = overrides_for("segmented", args.steps, Settings(precision=args.precision)) + list(args.set)
    build_config(None, overrides)  # a bad override fails here, in one line, before the data is loaded
    text = profile_step(overrides)
    out = Path(args.out) / f"profile_{args.precision}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text.splitlines()[1])
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
