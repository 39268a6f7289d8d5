"""Resuming is exact or refused: divergence keeps the last good state, every result-changing key is checked,
--fresh sets the old run aside, and each way a checkpoint can fail to load or save is one line."""
from __future__ import annotations

import fnmatch
import io
import json
import os
import shutil
import struct
import zipfile

import pytest
import torch
from safetensors.torch import load_file

from rtp_scale.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from rtp_scale.config import Config, MetaConfig, build_config
from rtp_scale.distill import SANE_LIMIT, main, run
from rtp_scale.errors import UserError
from rtp_scale.methods.rtp import RtpMethod
from rtp_scale.run_identity import (MAY_CHANGE_ON_RESUME, UNUSED_BY_THE_RESULT, check_resume, config_identity,
                                    flat_config)
from tests.conftest import TINY, run_module

STEPS = ["meta.steps=3", "log.image_every=0"]
DIVERGE = ["meta.lr=1e30", "meta.grad_clip=0"]
DEFAULT_LR = MetaConfig().lr  # what a rerun without DIVERGE goes back to


def _cfg(out, *extra):
    return build_config(None, [*TINY, *STEPS, f"run.out_dir={out}", *extra])


def _memory(out):
    return load_file(str(out / "memory.safetensors"))


def _assert_same_memory(a, b):
    ma, mb = _memory(a), _memory(b)
    assert ma.keys() == mb.keys()
    for key in ma:
        assert torch.equal(ma[key], mb[key]), key


def _one_line_error(proc):
    """The run's one error line (a resume notice may precede it; nothing else may)."""
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert [line for line in lines if not line.startswith("resuming ")] == lines[-1:], proc.stderr
    assert lines[-1].startswith("error: "), proc.stderr
    return lines[-1]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted 3-step run with the sane defaults: what every recovered run must end equal to."""
    out = tmp_path_factory.mktemp("straight") / "run"
    run(_cfg(out))
    return out


@pytest.fixture(scope="module")
def at_one(tmp_path_factory):
    """A pristine run directory after 1 sane outer step (copy it before use)."""
    out = tmp_path_factory.mktemp("at_one") / "run"
    run(_cfg(out, "meta.steps=1"))
    return out


def _losses(out) -> list[tuple]:
    """(step, meta-loss or eval accuracy) of every metrics.jsonl line."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(row["step"], row.get("meta/loss", row.get("eval/acc_mean"))) for row in rows]


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------------------------ divergence
def test_divergence_from_the_start_keeps_the_initial_state_and_a_lower_lr_resumes(tmp_path, straight):
    out = tmp_path / "run"
    proc = run_module("rtp_scale.distill", "--set", *TINY, *STEPS, *DIVERGE, f"run.out_dir={out}")
    line = _one_line_error(proc)
    assert "diverged at outer step 0" in line and "keeps the last good state (outer step 0)" in line, line
    assert not (out / "results.json").exists()
    state = load_checkpoint(out / "checkpoint.pt")
    assert state.step == 0
    assert all(float(t.abs().max()) < SANE_LIMIT for t in state.memory.values())
    # "lower meta.lr and resume": the same directory, the default lr -> exactly the uninterrupted run
    results = run(_cfg(out))
    _assert_same_memory(straight, out)
    assert results["resumed_with_changes"] == [
        {"step": 0, "changes": {"meta.lr": [1e30, DEFAULT_LR], "meta.grad_clip": [0.0, 2.0]}}]


def test_divergence_mid_run_keeps_the_last_good_checkpoint_bit_for_bit(tmp_path, straight, at_one):
    out = _copy(at_one, tmp_path / "run")
    good = (out / "checkpoint.pt").read_bytes()
    proc = run_module("rtp_scale.distill", "--set", *TINY, *STEPS, *DIVERGE, f"run.out_dir={out}")
    line = _one_line_error(proc)
    assert "diverged at outer step 1" in line and "(outer step 1)" in line, line
    assert f"meta.lr {DEFAULT_LR:g} → 1e+30" in proc.stderr  # the resume with another lr was named, not silent
    assert (out / "checkpoint.pt").read_bytes() == good  # the sane state, untouched
    run(_cfg(out))
    _assert_same_memory(straight, out)


def test_learned_lr_gradient_is_checked(tmp_path, monkeypatch):
    """A non-finite gradient of the learned inner lrs alone (memory gradient finite) stops the run."""
    original = RtpMethod.meta_gradient

    def poisoned(self, *args, **kwargs):
        metrics, lr_grad = original(self, *args, **kwargs)
        return metrics, torch.full_like(lr_grad, float("nan"))

    monkeypatch.setattr(RtpMethod, "meta_gradient", poisoned)
    with pytest.raises(UserError, match="diverged at outer step 0: learned-lr gradient norm nan"):
        run(_cfg(tmp_path / "run", "inner.learn_lr=true"))
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_checkpoint_that_itself_diverges_is_not_called_good(tmp_path, at_one, monkeypatch):
    """A saved state whose own meta-gradient is not finite (a preemption stop saves before that is known)."""
    out = _copy(at_one, tmp_path / "run")
    original = RtpMethod.meta_gradient

    def poisoned(self, memory, *args, **kwargs):
        metrics, lr_grad = original(self, memory, *args, **kwargs)
        next(p for p in memory.parameters() if p.requires_grad).grad.fill_(float("nan"))
        return metrics, lr_grad

    monkeypatch.setattr(RtpMethod, "meta_gradient", poisoned)
    with pytest.raises(UserError, match=r"holds this very state \(outer step 1\).*start over with --fresh"):
        run(_cfg(out))


# ------------------------------------------------------------------------------------------------ identity
@pytest.mark.parametrize("override, named", [
    ("run.seed=5", "run.seed 0 → 5"),
    ("data.augment=flip", "data.augment 'none' → 'flip'"),
    ("model.width=4", "model.width 8 → 4"),
    ("memory.coeff_l2=0.5", "memory.coeff_l2 0.0001 → 0.5"),
    ("inner.lr=0.02", "inner.lr 0.01 → 0.02"),
    ("unroll.mode=full", "unroll.mode 'segmented' → 'full'"),
    ("meta.optimizer=sgd", "meta.optimizer 'adam' → 'sgd'"),
    ("method.name=dd", "method.name 'rtp' → 'dd'"),
    ("dist.meta_batch=2", "dist.meta_batch 1 → 2"),
])
def test_resume_with_a_result_changing_key_is_refused_naming_it(tmp_path, at_one, override, named):
    out = _copy(at_one, tmp_path / "run")
    before = (out / "checkpoint.pt").read_bytes()
    with pytest.raises(UserError, match="differently configured run") as err:
        run(_cfg(out, override))
    assert named in str(err.value) and "\n" not in str(err.value), str(err.value)
    assert (out / "checkpoint.pt").read_bytes() == before


def test_method_sections_are_part_of_the_identity(tmp_path):
    dd = ["method.name=dd", "meta.steps=1", "inner.steps=4"]
    run(_cfg(tmp_path / "dd", *dd))
    with pytest.raises(UserError, match="dd.epochs 3 → 2"):
        run(_cfg(tmp_path / "dd", *dd, "dd.epochs=2"))
    # frepo.* is unused by a dd run: changing it there makes no difference and is not refused
    state = load_checkpoint(tmp_path / "dd" / "checkpoint.pt")
    same_dd = build_config(None, [*TINY, *STEPS, *dd, "frepo.pool_size=3"])
    assert check_resume(state.identity, same_dd, step=state.step, where="checkpoint") == {}


def test_frepo_resume_with_another_width_is_one_line(tmp_path):
    frepo = ["method.name=frepo", "memory.kind=pixel", "memory.learn_labels=true", "meta.optimizer=lamb",
             "meta.grad_clip=0", "frepo.pool_size=2", "meta.steps=1", "model.width=16"]
    out = tmp_path / "run"
    run(_cfg(out, *frepo))
    proc = run_module("rtp_scale.distill", "--set", *TINY, *STEPS, *frepo, "model.width=8", "frepo.reg=1e-3",
                      f"run.out_dir={out}")
    line = _one_line_error(proc)
    assert "model.width 16 → 8" in line and "frepo.reg 1e-06 → 0.001" in line, line


def test_allowed_changes_resume_and_are_named(tmp_path, at_one, straight, capfd):
    out = _copy(at_one, tmp_path / "run")
    run(_cfg(out, "eval.epochs=3", "log.every=2", "checkpoint.every=2", "recipe.description=x"))
    # keys that cannot change the memory are silent; extending meta.steps is named
    assert "with changed settings: meta.steps 1 → 3\n" in capfd.readouterr().err
    assert load_checkpoint(out / "checkpoint.pt").resumes == [{"step": 1, "changes": {"meta.steps": [1, 3]}}]
    _assert_same_memory(straight, out)
    # how the same gradient is computed may change too (rounding only), and is named
    state = load_checkpoint(at_one / "checkpoint.pt")
    layout = _cfg(at_one, "meta.steps=1", "unroll.outer_chunk=4", "unroll.segment=2", "dist.inner_shards=2")
    assert check_resume(state.identity, layout, step=state.step, where="checkpoint") == {
        "unroll.segment": [0, 2], "unroll.outer_chunk": [128, 4], "dist.inner_shards": [1, 2]}


def test_meta_steps_may_not_change_a_cosine_schedule_nor_go_below_the_checkpoint(tmp_path, at_one, straight):
    run(_cfg(tmp_path / "cos", "meta.steps=2", "meta.schedule=cosine"))
    with pytest.raises(UserError, match=r"meta.steps 2 → 3 \(meta.schedule=cosine depends on it\)"):
        run(_cfg(tmp_path / "cos", "meta.steps=3", "meta.schedule=cosine"))
    state = load_checkpoint(at_one / "checkpoint.pt")
    with pytest.raises(UserError, match="meta.schedule 'constant' → 'cosine'"):
        check_resume(state.identity, _cfg(at_one, "meta.steps=1", "meta.schedule=cosine"), step=state.step,
                     where="checkpoint")
    state = load_checkpoint(straight / "checkpoint.pt")
    with pytest.raises(UserError, match=r"meta.steps 3 → 2 \(the checkpoint is already at outer step 3\)"):
        check_resume(state.identity, _cfg(straight, "meta.steps=2"), step=state.step, where="checkpoint")


def test_identity_covers_every_config_key_but_the_allowlist():
    cfg = Config()  # rtp, adam, constant schedule, no ZCA
    keys = flat_config(cfg)
    allowlist = [*UNUSED_BY_THE_RESULT, *MAY_CHANGE_ON_RESUME]
    for pattern in allowlist:  # the allowlists name real keys
        assert any(fnmatch.fnmatchcase(k, pattern) for k in keys), pattern
    unused_here = ["frepo.*", "dd.*", "data.zca_reg", "meta.momentum", "meta.lr_floor", "memory.pixel_downsample"]
    for key in keys:
        saved = {"config": {**config_identity(cfg)["config"], key: "another value"}}
        if any(fnmatch.fnmatchcase(key, p) for p in [*allowlist, *unused_here]):
            check_resume(saved, cfg, step=0, where="checkpoint")
        else:
            with pytest.raises(UserError, match=f"{key} 'another value' → "):
                check_resume(saved, cfg, step=0, where="checkpoint")


def test_old_and_new_format_checkpoints_are_one_line_without_delete_advice(tmp_path, at_one):
    out = _copy(at_one, tmp_path / "run")
    payload = torch.load(out / "checkpoint.pt", weights_only=True)
    for version, needle in ((1, "older rtp_scale (checkpoint format 1"), (FORMAT_VERSION + 1, "newer rtp_scale")):
        torch.save({**payload, "format_version": version}, out / "checkpoint.pt")
        message = _resume_error(out)
        assert needle in message and "delete" not in message and "\n" not in message, message


# ------------------------------------------------------------------------------------------------ load errors
def _resume_error(out) -> str:
    with pytest.raises(UserError) as err:
        run(_cfg(out))
    return str(err.value)


def test_truncated_empty_and_corrupt_checkpoints_say_which(tmp_path, at_one):
    out = _copy(at_one, tmp_path / "run")
    good = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(good[: len(good) // 2])
    assert "is truncated or not a checkpoint" in _resume_error(out)
    (out / "checkpoint.pt").write_bytes(b"")
    assert "is empty" in _resume_error(out)
    # one flipped bit inside a tensor: torch.load does not check the zip's CRCs, the content digest does
    flipped = bytearray(good)
    flipped[_tensor_byte(good)] ^= 0x04
    (out / "checkpoint.pt").write_bytes(bytes(flipped))
    assert "content does not match the digest" in _resume_error(out)


def _tensor_byte(checkpoint: bytes) -> int:
    """The offset of a byte inside the first tensor stored in a checkpoint file."""
    with zipfile.ZipFile(io.BytesIO(checkpoint)) as archive:
        info = next(i for i in archive.infolist() if "/data/" in i.filename and i.file_size >= 16)
    start = info.header_offset
    name_len, extra_len = struct.unpack("<HH", checkpoint[start + 26: start + 30])  # the local header's own
    return start + 30 + name_len + extra_len + 5


def test_unreadable_checkpoint_says_permission_denied_not_corrupt(tmp_path, at_one):
    out = _copy(at_one, tmp_path / "run")
    path = out / "checkpoint.pt"
    path.chmod(0)
    dropped = os.geteuid() == 0
    if dropped:  # root reads any file: drop to 'nobody' to meet the permission check for real
        os.seteuid(65534)
    try:
        with pytest.raises(UserError) as err:
            load_checkpoint(path)
    finally:
        if dropped:
            os.seteuid(0)
        path.chmod(0o644)
    message = str(err.value)
    assert "permission denied" in message and "corrupt" not in message and "delete" not in message, message


def test_shape_mismatch_on_resume_is_one_line(tmp_path, at_one):
    out = _copy(at_one, tmp_path / "run")
    state = load_checkpoint(out / "checkpoint.pt")
    name = next(iter(state.memory))
    state.memory[name] = torch.cat([state.memory[name], state.memory[name]])
    save_checkpoint(out / "checkpoint.pt", state)  # a valid, verified file whose memory has other shapes
    message = _resume_error(out)
    assert "does not fit this run's memory" in message and "size mismatch" in message and "\n" not in message


# ------------------------------------------------------------------------------------------------ --fresh
def test_fresh_moves_the_old_run_aside_before_any_work(tmp_path, at_one, monkeypatch):
    out = _copy(at_one, tmp_path / "run")
    old_metrics = (out / "metrics.jsonl").read_text()
    other = [*TINY, *STEPS, f"run.out_dir={out}", "run.seed=1"]
    calls, original = [], RtpMethod.meta_gradient

    def crash_first(self, *args, **kwargs):  # the fresh run dies before its first checkpoint
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated crash")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(RtpMethod, "meta_gradient", crash_first)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["--set", *other, "--fresh"])
    assert not (out / "checkpoint.pt").exists() and (out / "metrics.jsonl").read_text() == ""
    previous = out / "previous" / "1"
    assert load_checkpoint(previous / "checkpoint.pt").step == 1
    assert (previous / "metrics.jsonl").read_text() == old_metrics and (previous / "results.json").exists()
    # the crashed fresh run resumes as itself, never as the old run, and its metrics hold its own lines only
    assert main(["--set", *other]) == 0
    reference = tmp_path / "reference"
    run(build_config(None, [*TINY, *STEPS, f"run.out_dir={reference}", "run.seed=1"]))
    _assert_same_memory(reference, out)
    assert _losses(out) == _losses(reference)
    assert main(["--set", *other, "--fresh"]) == 0
    assert (out / "previous" / "2" / "results.json").exists()


# ------------------------------------------------------------------------------------------------ ENOSPC
def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, at_one, straight):
    out = _copy(at_one, tmp_path / "run")
    good = (out / "checkpoint.pt").read_bytes()
    # the kernel's ENOSPC, for real: the temporary checkpoint file is /dev/full
    (out / "checkpoint.pt.tmp").symlink_to("/dev/full")
    proc = run_module("rtp_scale.distill", "--set", *TINY, *STEPS, f"run.out_dir={out}")
    line = _one_line_error(proc)
    assert "No space left on device (ENOSPC)" in line and "left as it was" in line, line
    assert (out / "checkpoint.pt").read_bytes() == good
    assert not (out / "checkpoint.pt.tmp").exists() and not (out / "results.json").exists()
    run(_cfg(out))  # space is back: the same command resumes and ends as the uninterrupted run
    _assert_same_memory(straight, out)
