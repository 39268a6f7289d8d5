"""Corrupt / truncated checkpoint trials on a real 2-step checkpoint: how each damaged file is received."""
import io, random, sys, tempfile, collections
from pathlib import Path
import torch
ROOT = Path(__file__).resolve().parents[2]; sys.path.insert(0, str(ROOT))
from rtp_scale.config import build_config
from rtp_scale.distill import run
from rtp_scale.checkpoint import load_checkpoint, _digest
from rtp_scale.errors import UserError
from tests.conftest import TINY

base = Path(tempfile.mkdtemp(prefix="corrupt-"))
run(build_config(None, [*TINY, "meta.steps=2", "log.image_every=0", "log.tensorboard=false", f"run.out_dir={base / 'run'}"]))
good = (base / "run" / "checkpoint.pt").read_bytes()
ref = load_checkpoint(base / "run" / "checkpoint.pt")
ref_digest = _digest(dict(ref.__dict__))
path = base / "damaged.pt"
def classify(data):
    path.write_bytes(data)
    try:
        st = load_checkpoint(path)
    except UserError as err:
        m = str(err)
        for key in ("is empty", "truncated or not a checkpoint", "is corrupt (", "does not match the digest",
                    "not an rtp_scale", "older rtp_scale", "newer rtp_scale"):
            if key in m:
                return "refused: " + key
        return "refused: other " + m[:60]
    return "loaded identical" if _digest(dict(st.__dict__)) == ref_digest else "LOADED DIFFERENT"
def old_classify(data):  # the loader before: torch.load, any exception -> "corrupt"
    try:
        p = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:
        return "refused"
    if not isinstance(p, dict): return "refused"
    p.pop("digest", None); p.pop("format_version", None)
    try:
        return "loaded identical" if _digest(p) == ref_digest else "LOADED DIFFERENT"
    except Exception:
        return "LOADED DIFFERENT"
rng = random.Random(0)
N = int(sys.argv[1])
for kind in ("bit flip", "64 random bytes", "truncation"):
    new, old = collections.Counter(), collections.Counter()
    for _ in range(N):
        b = bytearray(good)
        if kind == "bit flip":
            i = rng.randrange(len(b)); b[i] ^= 1 << rng.randrange(8)
        elif kind == "64 random bytes":
            i = rng.randrange(len(b) - 64); b[i:i + 64] = bytes(rng.randrange(256) for _ in range(64))
        else:
            b = b[: rng.randrange(len(b))]
        new[classify(bytes(b))] += 1
        old[old_classify(bytes(b))] += 1
    print(f"{kind}: {N} trials, file {len(good)} bytes; now: {dict(new)}; torch.load before: {dict(old)}")
