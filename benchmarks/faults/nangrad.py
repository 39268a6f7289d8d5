"""NaN meta-gradient injected at a random outer step: the run stops, keeps the last state validated, resumes exactly."""
import random, sys, tempfile, json
from pathlib import Path
import torch
ROOT = Path(__file__).resolve().parents[2]; sys.path.insert(0, str(ROOT))
from safetensors.torch import load_file
import rtp_scale.distill as distill
from rtp_scale.config import build_config
from rtp_scale.checkpoint import load_checkpoint
from tests.conftest import TINY
base = Path(tempfile.mkdtemp(prefix="nan-"))
def cfg(out, *x): return build_config(None, [*TINY, "meta.steps=6", "log.image_every=0", "log.tensorboard=false", f"run.out_dir={out}", *x])
rng = random.Random(0)
original = distill.reduced_meta_gradient
rows = []
for trial in range(int(sys.argv[1])):
    every = rng.choice([1, 2, 3]); k = rng.randrange(1, 6); learn = rng.random() < 0.5
    extra = [f"checkpoint.every={every}"] + (["inner.learn_lr=true"] if learn else [])
    straight = base / f"straight{trial}"; distill.run(cfg(straight, *extra))
    out = base / f"t{trial}"
    def poisoned(*a, step, **kw):
        metrics, lr_grad = original(*a, step=step, **kw)
        if step == k:
            a[4][0].grad.fill_(float("nan"))  # params[0]
        return metrics, lr_grad
    distill.reduced_meta_gradient = poisoned
    try:
        distill.run(cfg(out, *extra)); outcome = "NOT DETECTED"
    except distill.Diverged as err:
        outcome = str(err)[:60]
    distill.reduced_meta_gradient = original
    kept = load_checkpoint(out / "checkpoint.pt").step
    distill.run(cfg(out, *extra))
    a, b = load_file(str(straight / "memory.safetensors")), load_file(str(out / "memory.safetensors"))
    rows.append(dict(every=every, nan_at=k, learn_lr=learn, outcome=outcome, kept_step=kept,
                     expected_kept=((k - 0) // every) * every if k % every else k - every if k >= every else 0,
                     equal=all(torch.equal(a[x], b[x]) for x in a)))
    print(json.dumps(rows[-1]), flush=True)
