"""Profile one outer step of ``python -m rtp_scale.bench unroll``'s configuration (ConvNet-128-3, T=50, segmented)
with torch.profiler: self CPU time per op, then per op and input shape.

    python benchmarks/profile_unroll_step.py --precision bf16 --out profile_bf16.txt [--set KEY=VALUE ...]

Two unprofiled outer steps first (compilation, allocator warm-up), then one profiled step; the profiler's overhead
makes that step slower than the benchmark's, so read shares, not seconds."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

from rtp_scale.bench.unroll import Settings, overrides_for
from rtp_scale.builders import build_inner_lrs, build_run_memory
from rtp_scale.config import build_config
from rtp_scale.data.augment import Augmenter
from rtp_scale.data.sampler import ClassBalancedSampler
from rtp_scale.eval import build_net
from rtp_scale.methods.rtp import RtpMethod
from rtp_scale.runtime import prepare_data, resolve_device
from rtp_scale.seeding import make_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "bf16_reverse"))
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    overrides = overrides_for("segmented", args.steps, Settings(precision=args.precision)) + args.set
    cfg = build_config(None, overrides)
    device = resolve_device(cfg.run.device)
    data = prepare_data(cfg.data, device)
    info = data.info
    memory = build_run_memory(cfg, data)
    lrs, _ = build_inner_lrs(cfg, device)
    net = build_net(cfg.model, channels=info.channels, num_classes=info.num_classes,
                    image_size=(info.height, info.width)).to(device)
    method = RtpMethod(cfg, net, Augmenter("none"))
    sampler = ClassBalancedSampler(data.train_y.cpu(), info.num_classes, cfg.data.real_per_class)
    params = [p for p in memory.parameters() if p.requires_grad]

    def outer_step(step: int) -> float:
        for p in params:
            p.grad = None
        generator = make_generator(cfg.run.seed, "unroll", step, 0)
        idx = sampler.sample(generator).to(device)
        tick = time.perf_counter()
        method.meta_gradient(memory, data.train_x[idx], data.train_y[idx], lrs=lrs, generator=generator)
        return time.perf_counter() - tick

    warm = [outer_step(0), outer_step(1)]
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        seconds = outer_step(2)
    averages = prof.key_averages()
    by_shape = prof.key_averages(group_by_input_shape=True)
    args.out.write_text(
        f"{' '.join(overrides)}\nunprofiled steps {warm[0]:.2f} s, {warm[1]:.2f} s; profiled step {seconds:.2f} s\n"
        + averages.table(sort_by="self_cpu_time_total", row_limit=40, max_name_column_width=60) + "\n"
        + by_shape.table(sort_by="self_cpu_time_total", row_limit=40, max_name_column_width=40,
                         max_shapes_column_width=140) + "\n")
    print(f"profiled step {seconds:.2f} s -> {args.out}")


if __name__ == "__main__":
    main()
