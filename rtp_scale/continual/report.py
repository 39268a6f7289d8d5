"""The benchmark's outputs: ``results.json`` (written last), ``results.md`` (tables) and ``accuracy.png``.

The plot uses matplotlib when it is installed and falls back to a plain PIL drawing otherwise (the package
does not depend on matplotlib).
"""
from __future__ import annotations

import json
from pathlib import Path

LABELS = {"compress": "compress-then-recall (RtP memories)", "reservoir": "reservoir replay (real images)",
          "pixel": "per-task pixel distillation"}
COLOURS = {"compress": (31, 119, 180), "reservoir": (214, 39, 40), "pixel": (44, 160, 44)}


def _pm(stat: dict) -> str:
    return f"{stat['mean']:.1f} ± {stat['std']:.1f}" if len(stat["values"]) > 1 else f"{stat['mean']:.1f}"


def markdown_table(results: dict) -> str:
    """Accuracy after each task (all seen classes), average and final accuracy, forgetting, storage."""
    summary, tasks = results["summary"], results["tasks"]
    seeds = len(next(iter(summary.values()))["final_acc"]["values"]) if summary else 0
    head = ["learner"] + [f"after task {t['index'] + 1}" for t in tasks] + ["average", "final", "forgetting",
                                                                           "storage (IPC) after each task"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in summary.items():
        storage = " / ".join(f"{v:.2f}" for v in s["storage_ipc"])
        row = [LABELS.get(name, name)] + [_pm(a) for a in s["acc"]] + [_pm(s["average_acc"]), _pm(s["final_acc"]),
                                                                        _pm(s["forgetting"]), storage]
        lines.append("| " + " | ".join(row) + " |")
    budget = results["budget"]
    lines.append("")
    lines.append(f"Test accuracy (%) on all classes seen so far, mean ± std over {seeds} seed(s) "
                 f"({results.get('config', {}).get('eval', {}).get('num_nets', '?')} fresh networks each); budget "
                 f"{budget['ipc']:g} images per class of all {budget['num_classes']} classes "
                 f"({budget['floats']} floats). Tasks: " + ", ".join(t["name"] for t in tasks) + ".")
    return "\n".join(lines) + "\n"


def write_results(out: Path, results: dict) -> None:
    """``results.md`` and ``accuracy.png`` first, ``results.json`` last (its presence means success)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(markdown_table(results))
    plot(results, out / "accuracy.png")
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(out / "results.json")


def plot(results: dict, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        _plot_pil(results, path)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, s in results["summary"].items():
        xs = list(range(1, len(s["acc"]) + 1))
        ax.errorbar(xs, [a["mean"] for a in s["acc"]], yerr=[a["std"] for a in s["acc"]], marker="o", capsize=3,
                    label=LABELS.get(name, name), color=[c / 255 for c in COLOURS.get(name, (0, 0, 0))])
    ax.set_xlabel("tasks seen")
    ax.set_ylabel("test accuracy on seen classes (%)")
    ax.set_xticks(list(range(1, len(results["tasks"]) + 1)))
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title(f"{results.get('dataset', '')}: {len(results['tasks'])} tasks, "
                 f"{results['budget']['ipc']:g} IPC budget")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_pil(results: dict, path: Path) -> None:
    """Axes, gridlines every 20 %, one polyline per learner (no text beyond PIL's default font)."""
    from PIL import Image, ImageDraw

    width, height, margin = 640, 420, 50
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    n = max(len(results["tasks"]), 2)

    def xy(task: int, acc: float) -> tuple[float, float]:
        return (margin + (width - 2 * margin) * task / (n - 1), height - margin - (height - 2 * margin) * acc / 100)

    for level in range(0, 101, 20):
        draw.line([xy(0, level), xy(n - 1, level)], fill=(225, 225, 225))
        draw.text((8, xy(0, level)[1] - 6), f"{level}%", fill="black")
    for t in range(n):
        draw.text((xy(t, 0)[0] - 3, height - margin + 8), str(t + 1), fill="black")
    for row, (name, s) in enumerate(results["summary"].items()):
        colour = COLOURS.get(name, (0, 0, 0))
        points = [xy(t, a["mean"]) for t, a in enumerate(s["acc"])]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for px, py in points:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
        draw.text((margin + 10, 10 + 14 * row), LABELS.get(name, name), fill=colour)
    img.save(path)
