"""Performance benchmarks of rtp_scale (see benchmarks/README.md for the columns and measured numbers).

The issue's measurement (a quiet 2-core CPU: about 20 minutes):

    python -m rtp_scale.bench unroll --out bench-results

Quick smoke run (seconds; what the tests and CI run):

    python -m rtp_scale.bench unroll --quick --out /tmp/bench

On a GPU:

    python -m rtp_scale.bench unroll --device cuda --steps 50,150,500,1000

The other benchmarks: ``python -m rtp_scale.bench loader`` (FFCV vs torchvision ImageFolder real-batch
sampling), ``python -m rtp_scale.bench scaling`` (processes and inner shards) and ``python -m rtp_scale.bench plan``
(a recipe's memory per rank and communication, predicted), ``python -m rtp_scale.bench eval`` (evaluation
training speed against ``eval.micro_batch``), ``python -m rtp_scale.bench batched`` (several unrolls per
process, one by one vs stacked), ``python -m rtp_scale.bench agreement`` (how much independent unrolls agree on
the meta-gradient: a diagnostic, not a timing) and ``python -m rtp_scale.bench profile`` (a torch.profiler
profile of one outer step); each has its own ``--help``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rtp_scale.cli import OneLineParser
from rtp_scale.errors import run_cli

MODES = ("full", "segmented")  # as rtp_scale.bench.unroll.MODES; not imported so that flag errors skip torch
UNROLL_HELP = """\
Time per outer step, peak memory, stored states, autograd saved bytes and FLOPs of the real RtP
meta-gradient (ConvNet-128-3, instance norm, mnist5k 1x28x28, 10 synthetic images per inner step,
real batch 640, inner SGD momentum 0.9), each configuration in a fresh subprocess. Rows: every mode at
every T, except full mode above --full-max-steps. Prints a table and writes OUT/bench_unroll.json;
benchmarks/README.md explains every column. Exit status 1 when a configuration failed."""


def _modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise argparse.ArgumentTypeError(f"unknown mode(s) {', '.join(bad) or repr(text)}; "
                                         f"choose from {','.join(MODES)}")
    return list(dict.fromkeys(modes))


def _steps(text: str) -> list[int]:
    try:
        steps = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not steps or min(steps) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: unroll lengths must be integers >= 1")
    return sorted(set(steps))


def _int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be >= {minimum}")
        return value
    return parse


_positive_int, _non_negative_int = _int_at_least(1), _int_at_least(0)


def _int_list_at_least(minimum: int, what: str):
    """An argparse type: a comma-separated list of integers >= ``minimum`` (``what`` names them in the error),
    duplicates dropped, order kept."""
    def parse(text: str) -> list[int]:
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
        if not values or min(values) < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: {what} are integers >= {minimum}")
        return list(dict.fromkeys(values))
    return parse


def write_result(out: Path, name: str, result: dict, table: str) -> None:
    """Print a benchmark's table and write its JSON to ``out/name``."""
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps(result, indent=1))
    print(f"wrote {out / name}")


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m rtp_scale.bench", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True, parser_class=OneLineParser)
    sub.add_parser("loader", help="real-batch sampling throughput: FFCV vs torchvision ImageFolder (own flags)",
                   add_help=False)
    sub.add_parser("scaling", help="multi-process throughput and inner-shard memory (own flags)", add_help=False)
    sub.add_parser("plan", help="predicted memory per rank and bytes sent per outer step of a recipe (own flags)",
                   add_help=False)
    sub.add_parser("eval", help="evaluation training speed against eval.micro_batch (own flags)", add_help=False)
    sub.add_parser("batched", help="unrolls per second with dist.meta_batch > 1 on one process, one by one vs "
                   "stacked (own flags)", add_help=False)
    sub.add_parser("agreement", help="how much independent unrolls agree on the meta-gradient: pairwise cosine "
                   "and what their mean keeps (own flags)", add_help=False)
    sub.add_parser("profile", help="where one outer step's time goes, by op and input shape: a torch.profiler "
                   "profile (own flags)", add_help=False)
    unroll = sub.add_parser("unroll", help="time and peak memory of one RtP outer step, full vs segmented, vs T",
                            description=UNROLL_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    unroll.add_argument("--out", metavar="DIR", default="bench-results",
                        help="write DIR/bench_unroll.json (default: bench-results)")
    unroll.add_argument("--quick", action="store_true",
                        help="smoke run: T in {4,8}, ConvNet width 16, 1 timed step (for tests and CI)")
    unroll.add_argument("--modes", type=_modes, default=list(MODES), metavar="M[,M]",
                        help="unroll modes to measure: full, segmented (default: both)")
    unroll.add_argument("--steps", type=_steps, default=None, metavar="T[,T...]",
                        help="unroll lengths (default 50,150,500,1000; --quick: 4,8)")
    unroll.add_argument("--full-max-steps", type=_positive_int, default=None, metavar="T",
                        help="run full mode only for T up to this (default: the smallest --steps; full mode's "
                             "memory grows linearly with T)")
    unroll.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default: cpu")
    unroll.add_argument("--memory", choices=("addressable", "pixel"), default="addressable",
                        help="what is distilled at 1 IPC: the addressable memory (default; 16 bases, 29 recalls per "
                             "class) or 10 plain pixel images")
    unroll.add_argument("--timed", type=_positive_int, default=None, metavar="N",
                        help="timed outer steps per configuration after one warm-up step (default 2; --quick: 1)")
    unroll.add_argument("--segment", type=_non_negative_int, default=0, metavar="K",
                        help="segment length of segmented mode (default 0 = ceil(sqrt(T)); cut to T for shorter "
                             "unrolls)")
    unroll.add_argument("--threads", type=_non_negative_int, default=None, metavar="N",
                        help="torch intra-op threads in every configuration (default 0 = torch's default, one "
                             "per core; --quick: 1, which stays fast on a busy shared machine)")
    unroll.add_argument("--precision", choices=("fp32", "bf16", "bf16_reverse"), default="fp32",
                        help="unroll.precision of every row: bf16 runs the losses under bfloat16 autocast, state and "
                             "gradients in float32 (default: fp32)")
    unroll.add_argument("--memory-budget-mb", type=_non_negative_float, default=0.0, metavar="MB",
                        help="unroll.memory_budget_mb of the segmented rows: MiB of autograd saved tensors within which "
                             "the last steps keep their forward graph instead of being recomputed (default 0 = off)")
    unroll.add_argument("--width", type=_positive_int, default=None, metavar="W",
                        help="ConvNet width (default 128, the issue's setting; 32 is the default job's network)")
    unroll.add_argument("--batch-per-class", type=_positive_int, default=1, metavar="B",
                        help="synthetic images per class in each inner step (default 1; the default job takes 5)")
    unroll.add_argument("--fused", action=argparse.BooleanOptionalAction, default=True,
                        help="model.fused of every row: the ConvNet's norm/ReLU/pool blocks as one compiled function "
                             "with hand-written derivatives (default), or --no-fused for the plain modules")
    unroll.add_argument("--against", metavar="DIR", type=Path, default=None,
                        help="another checkout (e.g. `git worktree add /tmp/base 11eb99f`): run every row with its "
                             "code first, then with this one, and report the speedup and peak-memory ratio")
    unroll.add_argument("--repeats", type=_positive_int, default=1, metavar="N",
                        help="with --against: run each row N times in the order other, this, this, other (default 1; "
                             "a shared VM's speed changes between processes, so take 3 or more for small ratios)")
    unroll.add_argument("--no-count", action="store_true",
                        help="skip the extra instrumented step that counts FLOPs and autograd saved bytes")
    return parser


# Benchmarks with their own parsers (``python -m rtp_scale.bench loader --help``): the rest of argv goes to them.
DELEGATED = {"loader": "rtp_scale.bench.loader", "scaling": "rtp_scale.bench.scaling", "plan": "rtp_scale.bench.plan",
             "eval": "rtp_scale.bench.eval_speed", "batched": "rtp_scale.bench.batched",
             "agreement": "rtp_scale.bench.agreement", "profile": "rtp_scale.bench.profile_step"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in DELEGATED:
        import importlib

        return importlib.import_module(DELEGATED[argv[0]]).main(argv[1:])
    args = build_parser().parse_args(argv)
    from rtp_scale.bench.unroll import FULL_STEPS, QUICK_STEPS, Settings, run_benchmark

    steps = args.steps or list(QUICK_STEPS if args.quick else FULL_STEPS)
    width = args.width or (16 if args.quick else 128)
    settings = Settings(device=args.device, memory=args.memory, width=width, batch_per_class=args.batch_per_class,
                        segment=args.segment, precision=args.precision, memory_budget_mb=args.memory_budget_mb,
                        fused=args.fused,
                        timed=args.timed or (1 if args.quick else 2),
                        threads=(1 if args.quick else 0) if args.threads is None else args.threads,
                        count=not args.no_count, quick=args.quick)
    result = run_benchmark(out=Path(args.out), modes=args.modes, steps=steps, settings=settings,
                           full_max_steps=args.full_max_steps, against=args.against, repeats=args.repeats)
    failed = [f"{r['mode']} T={r['steps']}" for r in result["rows"] if "error" in r]
    if failed:
        print(f"error: {len(failed)} configuration(s) failed: {', '.join(failed)} (see the table above)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_cli(main)
