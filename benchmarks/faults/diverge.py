"""Divergence trials: for each seed and way of diverging, run, diverge, check the kept checkpoint, resume sane."""
import shutil, sys, json, tempfile
from pathlib import Path
import torch
ROOT = Path(__file__).resolve().parents[2]; sys.path.insert(0, str(ROOT))
from safetensors.torch import load_file
from rtp_scale.config import build_config
from rtp_scale.distill import run, Diverged, SANE_LIMIT
from rtp_scale.checkpoint import load_checkpoint
from tests.conftest import TINY

base = Path(tempfile.mkdtemp(prefix="div-"))
STEPS = ["meta.steps=3", "log.image_every=0", "log.tensorboard=false"]
def cfg(out, *x): return build_config(None, [*TINY, *STEPS, f"run.out_dir={out}", *x])
def same(a, b):
    ma, mb = load_file(str(a / "memory.safetensors")), load_file(str(b / "memory.safetensors"))
    return ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)
rows = []
ways = {"adam lr=1e30 clip=0": ["meta.lr=1e30", "meta.grad_clip=0"],
        "sgd lr=1e30 clip=0": ["meta.optimizer=sgd", "meta.lr=1e30", "meta.grad_clip=0"],
        "adam lr=1e5 clip=0": ["meta.lr=1e5", "meta.grad_clip=0"]}
for seed in range(int(sys.argv[1])):
    for way, bad in ways.items():
        opt = [b for b in bad if b.startswith("meta.optimizer")]
        s = [f"run.seed={seed}", *opt]
        straight = base / f"straight{seed}{len(opt)}"
        if not straight.exists():
            run(cfg(straight, *s))
        for start in ("scratch", "mid"):
            out = base / f"{seed}-{way}-{start}".replace(" ", "_")
            before = None
            if start == "mid":
                run(cfg(out, *s, "meta.steps=1"))
                before = (out / "checkpoint.pt").read_bytes()
            try:
                run(cfg(out, *s, *bad)); outcome = "NOT DETECTED"
            except Diverged as err:
                outcome = "stopped"
                msg = str(err)
            st = load_checkpoint(out / "checkpoint.pt") if (out / "checkpoint.pt").exists() else None
            sane = st is not None and all(float(t.abs().max()) < SANE_LIMIT for t in st.memory.values())
            kept_same = (before is None and st is not None and st.step == 0) or (before is not None and (out / "checkpoint.pt").read_bytes() == before)
            run(cfg(out, *s))
            rows.append(dict(seed=seed, way=way, start=start, outcome=outcome, ckpt_step=st.step if st else None,
                             sane=sane, kept_good=kept_same, resumed_equal=same(straight, out), msg=msg[:90]))
            print(json.dumps(rows[-1]), flush=True)
ok = sum(r["outcome"] == "stopped" and r["sane"] and r["kept_good"] and r["resumed_equal"] for r in rows)
print(f"TRIALS {len(rows)} all-good {ok}")
shutil.rmtree(base)
