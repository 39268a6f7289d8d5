"""ENOSPC trials: the run directory is a real tmpfs of S KiB; the run fills it; then the disk is enlarged and the
same command reruns. Reports, per size, how the run stopped, what checkpoint.pt held, and whether the rerun ended
bit-identical to an uninterrupted run."""
import json, os, subprocess, sys, tempfile
from pathlib import Path
import torch
ROOT = Path(__file__).resolve().parents[2]; sys.path.insert(0, str(ROOT))
from safetensors.torch import load_file
from rtp_scale.checkpoint import load_checkpoint
from rtp_scale.errors import UserError
from tests.conftest import TINY

MNT = Path(tempfile.gettempdir()) / "rtp-faults" / "mnt"; MNT.mkdir(parents=True, exist_ok=True)
ARGS = [*TINY, "meta.steps=6"]
env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
def distill(out):
    return subprocess.run([sys.executable, "-m", "rtp_scale.distill", "--set", *ARGS, f"run.out_dir={out}"],
                          capture_output=True, text=True, env=env, cwd=str(ROOT))
straight = Path(tempfile.gettempdir()) / "rtp-faults" / "enospc_straight"
if not (straight / "memory.safetensors").exists():
    assert distill(straight).returncode == 0
ref = load_file(str(straight / "memory.safetensors"))
rows = []
for kib in [int(k) for k in sys.argv[1:]]:
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(MNT)], check=True)
    try:
        out = MNT / "run"
        p = distill(out)
        err = p.stderr.strip().splitlines()
        tb = "Traceback" in p.stderr
        try:
            step = load_checkpoint(out / "checkpoint.pt").step if (out / "checkpoint.pt").exists() else None
        except UserError as e:
            step = f"UNREADABLE: {e}"[:80]
        subprocess.run(["mount", "-o", "remount,size=8m", str(MNT)], check=True)
        again = distill(out)
        same = again.returncode == 0 and all(torch.equal(ref[k], v) for k, v in load_file(str(out / "memory.safetensors")).items())
        rows.append(dict(kib=kib, rc=p.returncode, traceback=tb, err_lines=len(err), last=(err[-1] if err else "")[:150],
                         ckpt_step=step, rerun_rc=again.returncode, rerun_equal=same))
        print(json.dumps(rows[-1]), flush=True)
    finally:
        subprocess.run(["umount", str(MNT)], check=True)
