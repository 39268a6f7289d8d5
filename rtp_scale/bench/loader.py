"""Real-batch sampling throughput: FFCV ``.beton`` streaming vs torchvision's ImageFolder DataLoader.

    python -m rtp_scale.bench.loader --out bench-results            # the README table (a few minutes)
    python -m rtp_scale.bench.loader --quick --out /tmp/bench       # smoke run (seconds)
    python -m rtp_scale.bench.loader --root data/imagenette2        # your own image folder instead

What one measurement is: the distill loop's real batch of every outer step, ``--per-class`` images of
each class drawn by :class:`~rtp_scale.data.sampler.ClassBalancedSampler` from the step's generator,
delivered on the CPU either as normalised float32 ``[C * per_class, 3, R, R]`` (what a CPU run trains on;
at 128 px the float conversion itself is a large part of the cost) or as uint8 (what a GPU run copies
to the device, where it is converted; :meth:`~rtp_scale.data.sources.FfcvSource.sample_uint8`). Rows,
each in a fresh process:

* ``torchvision``: ``ImageFolder(train/, Resize(R) + CenterCrop(R) + PILToTensor())`` through a
  ``DataLoader`` with ``--workers`` worker processes, fed the same class-balanced index batches by a batch
  sampler (so it may prefetch the next steps' batches, which the FFCV source cannot: it reads synchronously
  when asked); normalised (float32 rows) in the main process exactly like the FFCV rows.
* ``ffcv-raw`` / ``ffcv-jpeg``: :class:`~rtp_scale.data.sources.FfcvSource` ``.sample(generator)`` on a
  conversion at R px (raw pixels / JPEG quality 90), ``--workers`` decode threads.
* ``memory``: :class:`~rtp_scale.data.sources.MemorySource` (the whole set already decoded in RAM, as
  float32 or uint8; the ceiling, for reference).

Each row runs one untimed warm-up step (worker start-up, FFCV's JIT compile), then steps until at least
``--min-seconds`` and ``--min-steps``. CPU use is the CPU time of the process and its live child processes
(DataLoader workers) over the timed window, read from ``/proc`` (Linux only), as core-seconds per 1000
images and as average busy cores. The one-off conversion time and size are reported too, and the JPEG
rows' pixel error against the raw conversion.

Without ``--root``, the source is a synthetic image folder of smooth, textured JPEGs of ``--source-size``
(default 500x375, about the size of ImageNet / ImageNette photos) written once under ``--work``. Results
depend on the machine's load: the JSON records the load average before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from rtp_scale.errors import UserError, run_cli

KINDS = ("torchvision", "ffcv-raw", "ffcv-jpeg", "memory")
OUTPUTS = ("float32", "uint8")
JPEG_QUALITY = 90


# --------------------------------------------------------------------------- CPU accounting


def _tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its live descendants (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                text = f.read()
        except OSError:  # the process ended while we looked
            continue
        fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
        stats[int(name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)  # ppid, utime+stime
    me = os.getpid()
    total, frontier = 0.0, [me]
    while frontier:
        pid = frontier.pop()
        total += stats.get(pid, (0, 0.0))[1]
        frontier.extend(child for child, (ppid, _) in stats.items() if ppid == pid)
    return total


# --------------------------------------------------------------------------- one measurement (child process)


class _BalancedBatches(torch.utils.data.Sampler):
    """The distill loop's class-balanced index batches, one per outer step, for a DataLoader."""

    def __init__(self, labels: torch.Tensor, num_classes: int, per_class: int, seed: int) -> None:
        from rtp_scale.data.sampler import ClassBalancedSampler

        self.sampler = ClassBalancedSampler(labels, num_classes, per_class)
        self.seed = seed

    def __iter__(self):
        from rtp_scale.seeding import make_generator

        step = 0
        while True:
            yield self.sampler.sample(make_generator(self.seed, "unroll", step, 0)).tolist()
            step += 1


def _measure(spec: dict) -> dict:
    from rtp_scale.seeding import make_generator

    kind, res, per_class, workers = spec["kind"], spec["resolution"], spec["per_class"], spec["workers"]
    as_float = spec["output"] == "float32"
    # The main process only normalises; one thread keeps that from stalling on OpenMP barriers when the
    # machine is shared (a 2-thread parallel region waits for a descheduled thread: 0.05 ms became 47 ms).
    torch.set_num_threads(spec["torch_threads"])
    mean = torch.tensor(spec["mean"], dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(spec["std"], dtype=torch.float32).view(-1, 1, 1)
    cleanup = None
    if kind == "torchvision":
        import torchvision.datasets as tvd
        import torchvision.transforms as T

        dataset = tvd.ImageFolder(str(Path(spec["root"]) / "train"),
                                  transform=T.Compose([T.Resize(res), T.CenterCrop(res), T.PILToTensor()]))
        batches = _BalancedBatches(torch.tensor(dataset.targets), len(dataset.classes), per_class, spec["seed"])
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                                             persistent_workers=workers > 0)
        iterator = iter(loader)

        def step(i: int) -> torch.Tensor:
            x, _ = next(iterator)
            return x.to(torch.float32).div_(255.0).sub_(mean).div_(std) if as_float else x

        cleanup = iterator._shutdown_workers if hasattr(iterator, "_shutdown_workers") else None
    else:
        from rtp_scale.data.sources import FfcvSource, MemorySource

        if kind == "memory":
            from rtp_scale.data.imagefolder import load_imagefolder

            data = load_imagefolder(root=spec["root"], resolution=res)
            if not as_float:  # the same images held as uint8 (a quarter of the bytes)
                m = torch.tensor(data.info.mean).view(-1, 1, 1)
                sd = torch.tensor(data.info.std).view(-1, 1, 1)
                data.train_x = (data.train_x * sd + m).mul_(255.0).round_().to(torch.uint8)
            source = MemorySource(data, per_class=per_class)
        else:
            source = FfcvSource(spec["beton_dir"], per_class=per_class, workers=workers, verify=False)
        draw = source.sample if as_float or kind == "memory" else source.sample_uint8

        def step(i: int) -> torch.Tensor:
            return draw(make_generator(spec["seed"], "unroll", i, 0))[0]

    x = step(0)  # warm-up: worker start-up / JIT compile
    batch = int(x.shape[0])
    assert x.dtype == (torch.float32 if as_float else torch.uint8) and tuple(x.shape[1:]) == (3, res, res)
    cpu0, tick = _tree_cpu_seconds(), time.perf_counter()
    steps = 0
    while steps < spec["min_steps"] or time.perf_counter() - tick < spec["min_seconds"]:
        step(steps + 1)
        steps += 1
    wall = time.perf_counter() - tick
    cpu = _tree_cpu_seconds() - cpu0
    if cleanup is not None:
        cleanup()
    images = steps * batch
    return {"kind": kind, "resolution": res, "output": spec["output"], "workers": workers, "batch": batch, "steps": steps,
            "seconds": round(wall, 4), "images_per_s": round(images / wall, 1), "cpu_seconds": round(cpu, 3),
            "cpu_s_per_1k_images": round(1000 * cpu / images, 4), "busy_cores": round(cpu / wall, 2),
            "torch_threads": torch.get_num_threads()}


# --------------------------------------------------------------------------- the benchmark (parent process)


def _synthetic_folder(work: Path, classes: int, per_class: int, size: tuple[int, int], test_per_class: int) -> Path:
    """Smooth, textured JPEGs (q 90) in train/<class>/ and val/<class>/; written once, reused."""
    from PIL import Image

    root = work / f"synthetic-{classes}x{per_class}-{size[0]}x{size[1]}"
    if (root / "complete").is_file():
        return root
    rng = np.random.default_rng(0)
    w, h = size
    for c in range(classes):
        for split, count in (("train", per_class), ("val", test_per_class)):
            folder = root / split / f"class{c:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                coarse = rng.uniform(0, 255, size=(6, 8, 3)).astype(np.uint8)
                img = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
                img = np.clip(img + rng.normal(0, 12, size=img.shape), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{i:05d}.jpg", quality=90)
    (root / "complete").write_text("ok\n")
    return root


def _jpeg_error(raw_dir: Path, jpeg_dir: Path) -> dict:
    """Mean |error| (0..255 levels), max |error| and PSNR of the JPEG conversion against the raw one."""
    from rtp_scale.data.ffcv_io import BetonFile, read_manifest

    raw_m, jpeg_m = read_manifest(raw_dir), read_manifest(jpeg_dir)
    shape = (raw_m.channels, raw_m.height, raw_m.width)
    raw = BetonFile(raw_dir / "train.beton", encoding="raw", image_shape=shape, num_classes=len(raw_m.classes))
    jpeg = BetonFile(jpeg_dir / "train.beton", encoding="jpeg", image_shape=shape, num_classes=len(jpeg_m.classes))
    abs_sum, sq_sum, peak, count = 0.0, 0.0, 0.0, 0
    for (a, _), (b, _) in zip(raw.batches(1024), jpeg.batches(1024)):
        diff = a.to(torch.float64) - b.to(torch.float64)
        abs_sum += float(diff.abs().sum())
        sq_sum += float(diff.square().sum())
        peak = max(peak, float(diff.abs().max()))
        count += diff.numel()
    mse = sq_sum / count
    return {"mean_abs_levels": round(abs_sum / count, 3), "max_abs_levels": peak,
            "psnr_db": round(10 * np.log10(255.0**2 / mse), 2) if mse > 0 else float("inf")}


def _run_child(spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "rtp_scale.bench.loader", "--measure", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"kind": spec["kind"], "resolution": spec["resolution"], "error": " | ".join(tail) or f"exit {proc.returncode}"}
    return json.loads(lines[-1])


def _table(rows: list[dict]) -> str:
    out = ["| px | batch as | loader | images/s | CPU core-s / 1k images | busy cores | vs torchvision |",
           "|---:|---|---|---:|---:|---:|---:|"]
    base = {(r["resolution"], r["output"]): r.get("images_per_s") for r in rows if r["kind"] == "torchvision"}
    for r in rows:
        head = f"| {r['resolution']} | {r['output']} | {r['kind']} "
        if "error" in r:
            out.append(head + f"| failed: {r['error']} | | | |")
            continue
        ref = base.get((r["resolution"], r["output"]))
        ratio = f"{r['images_per_s'] / ref:.1f}x" if ref else "-"
        out.append(head + f"| {r['images_per_s']:,.0f} | {r['cpu_s_per_1k_images']:.3f} | {r['busy_cores']:.2f} "
                   f"| {ratio} |")
    return "\n".join(out)


def run_benchmark(args: argparse.Namespace) -> dict:
    from rtp_scale.bench.machine import load_average, machine_info
    from rtp_scale.data.convert import convert
    from rtp_scale.data.ffcv_io import read_manifest, require_ffcv

    require_ffcv()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    load_before = load_average()
    if args.root:
        root = Path(args.root).expanduser()
        source_desc = str(root)
    else:
        root = _synthetic_folder(work, args.classes, args.images_per_class, args.source_size, args.test_per_class)
        source_desc = (f"synthetic: {args.classes} classes x {args.images_per_class} train JPEGs (q90) of "
                       f"{args.source_size[0]}x{args.source_size[1]}")
    conversions, rows = [], []
    for res in args.resolutions:
        dirs = {}
        for encoding in ("raw", "jpeg"):
            if f"ffcv-{encoding}" not in args.kinds and not (encoding == "raw" and "torchvision" in args.kinds):
                continue
            out = work / f"beton-{root.name}-{res}-{encoding}"
            tick = time.perf_counter()
            manifest = convert(root=str(root), out=out, resolution=res, encoding=encoding, quality=JPEG_QUALITY,
                               workers=args.workers, progress=False, overwrite=True)
            seconds = time.perf_counter() - tick
            images = sum(e.count for e in manifest.splits.values())
            conversions.append({"resolution": res, "encoding": encoding, "seconds": round(seconds, 2),
                                "images": images, "images_per_s": round(images / seconds, 1),
                                "train_mib": round(manifest.splits["train"].bytes / 2**20, 2)})
            dirs[encoding] = out
        if "raw" in dirs and "jpeg" in dirs:
            conversions[-1]["error_vs_raw"] = _jpeg_error(dirs["raw"], dirs["jpeg"])
        stats = read_manifest(dirs.get("raw") or dirs["jpeg"])
        for output in args.outputs:
            for kind in args.kinds:
                spec = {"kind": kind, "resolution": res, "output": output, "per_class": args.per_class,
                        "workers": args.workers, "min_seconds": args.min_seconds, "min_steps": args.min_steps,
                        "seed": 0, "root": str(root), "torch_threads": args.torch_threads,
                        "beton_dir": str(dirs.get(kind.removeprefix("ffcv-"), "")), "mean": stats.mean,
                        "std": stats.std}
                row = _run_child(spec, timeout=args.timeout)
                row.setdefault("output", output)
                print(json.dumps(row), flush=True)
                rows.append(row)
    speedups = {}
    for res in args.resolutions:
        for output in args.outputs:
            by_kind = {r["kind"]: r for r in rows
                       if r["resolution"] == res and r["output"] == output and "error" not in r}
            if "torchvision" in by_kind and "ffcv-raw" in by_kind:
                tv, ff = by_kind["torchvision"], by_kind["ffcv-raw"]
                speedups[f"{res}px-{output}"] = {
                    "images_per_s": round(ff["images_per_s"] / tv["images_per_s"], 2),
                    "cpu_per_image": round(tv["cpu_s_per_1k_images"] / max(ff["cpu_s_per_1k_images"], 1e-9), 2)}
    from importlib.metadata import version

    result = {
        "benchmark": "loader", "command": "python -m rtp_scale.bench.loader " + " ".join(args.argv),
        "machine": machine_info(torch.device("cpu")), "load_average_after": load_average(),
        "load_average_before": load_before, "ffcv_version": version("ffcv"),
        "torchvision_version": version("torchvision"), "source": source_desc,
        "settings": {"per_class": args.per_class, "classes": len(stats.classes), "workers": args.workers,
                     "resolutions": args.resolutions, "min_seconds": args.min_seconds, "jpeg_quality": JPEG_QUALITY,
                     "torch_threads": args.torch_threads, "outputs": args.outputs},
        "conversions": conversions, "rows": rows, "speedup_ffcv_raw_vs_torchvision": speedups,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_loader.json").write_text(json.dumps(result, indent=2) + "\n")
    print(_table(rows))
    print("speed-up of ffcv-raw over torchvision (images/s; CPU per image):",
          ", ".join(f"{k} {s['images_per_s']}x; {s['cpu_per_image']}x" for k, s in speedups.items()))
    print(f"wrote {out / 'bench_loader.json'}")
    return result


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT") from None
    return w, h


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: values must be >= 1")
    return values


def _outputs(text: str) -> list[str]:
    outputs = [k.strip() for k in text.split(",") if k.strip()]
    if not outputs or any(k not in OUTPUTS for k in outputs):
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {','.join(OUTPUTS)}")
    return outputs


def _kinds(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    if not kinds or any(k not in KINDS for k in kinds):
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {','.join(KINDS)}")
    return kinds


def main(argv: Sequence[str] | None = None) -> int:
    from rtp_scale.cli import OneLineParser

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = OneLineParser(prog="python -m rtp_scale.bench.loader", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-results", help="writes OUT/bench_loader.json (default bench-results)")
    parser.add_argument("--work", default="bench-results/loader-data", help="synthetic images and .beton files")
    parser.add_argument("--root", default="", help="an image folder (train/<class>/, val/<class>/) instead of synthetic")
    parser.add_argument("--resolutions", type=_ints, default=[64, 128], help="comma-separated (default 64,128)")
    parser.add_argument("--outputs", type=_outputs, default=list(OUTPUTS),
                        help="batch delivered as normalised float32 (a CPU run) and/or uint8 (copied to a GPU and "
                             "converted there); default both")
    parser.add_argument("--kinds", type=_kinds, default=list(KINDS), help=f"rows (default {','.join(KINDS)})")
    parser.add_argument("--classes", type=int, default=10, help="synthetic classes (default 10)")
    parser.add_argument("--images-per-class", type=int, default=100, help="synthetic train images per class")
    parser.add_argument("--test-per-class", type=int, default=10, help="synthetic val images per class")
    parser.add_argument("--source-size", type=_size, default=(500, 375), help="synthetic JPEG size (500x375)")
    parser.add_argument("--per-class", type=int, default=64, help="real images per class per step (RtP: 64)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader processes = FFCV threads (default 2)")
    parser.add_argument("--min-seconds", type=float, default=6.0, help="timed seconds per row, at least")
    parser.add_argument("--min-steps", type=int, default=3, help="timed steps per row, at least")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch threads of the measuring process, which only normalises (default 1)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before a row is abandoned")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 3 classes x 24 images of 96x72, 32 px, per-class 8, 1 s per row")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one row, in a fresh process
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(_measure(json.loads(args.measure))), flush=True)
        return 0
    if args.quick:
        args.classes, args.images_per_class, args.test_per_class = 3, 24, 4
        args.source_size, args.resolutions, args.per_class = (96, 72), [32], 8
        args.min_seconds, args.min_steps = 1.0, 2
    if args.per_class > args.images_per_class and not args.root:
        raise UserError(f"--per-class {args.per_class} exceeds --images-per-class {args.images_per_class}")
    args.argv = argv
    result = run_benchmark(args)
    return 1 if any("error" in r for r in result["rows"]) else 0


if __name__ == "__main__":
    run_cli(main)
