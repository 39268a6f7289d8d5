"""CUDA checks (marker ``gpu``), skipped on machines without CUDA; ``benchmarks/gpu_check.sh`` runs them on a GPU.

- the float64 meta-gradient equals plain autograd on CUDA, in full, segmented and offloaded modes;
- offloaded boundary states make the round trip to pinned host memory and back bit-exactly;
- a killed and resumed distillation on CUDA ends bit-identical to an uninterrupted one, with deterministic
  algorithms on;
- FFCV batches land on CUDA with exactly the in-memory backend's values;
- a step's unrolls stacked into one (``dist.batch_unrolls``) equal them one by one in float64 on CUDA;
- the fused ConvNet block (``model.fused``, Triton kernels on CUDA) equals the plain modules in value, gradient and
  double backward, in float64 on CUDA.
"""
from __future__ import annotations

import os

import pytest
import torch

from rtp_scale.unroll import UnrollPolicy
from tests.conftest import TINY
from tests.test_unroll import Problem, max_rel_err

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _on_cuda(problem: Problem) -> Problem:
    """The same problem with every tensor on the GPU (leaves stay leaves)."""
    cuda = torch.device("cuda")
    problem.model = problem.model.to(cuda)
    problem.params0 = {n: p.to(cuda) for n, p in problem.params0.items()}
    for name in ("x_syn", "y_logits", "lrs"):
        setattr(problem, name, getattr(problem, name).detach().to(cuda).requires_grad_())
    problem.x_real, problem.y_real = problem.x_real.to(cuda), problem.y_real.to(cuda)
    problem.idx = [i.to(cuda) for i in problem.idx]
    return problem


@pytest.mark.parametrize("policy", [UnrollPolicy(mode="full"), UnrollPolicy(mode="segmented", segment=5),
                                    UnrollPolicy(mode="segmented", segment=4, offload=True)])
def test_cuda_float64_meta_grad_equals_plain_autograd(policy):
    problem = _on_cuda(Problem(torch.float64))
    ref_loss, ref_grads = problem.reference()
    res = problem.run(policy)
    assert all(g.is_cuda for g in res.meta_grads)
    assert max_rel_err(res, ref_grads) < 1e-10
    assert res.outer_loss == pytest.approx(ref_loss, rel=1e-12)


def test_cuda_offload_round_trip_is_exact():
    problem = _on_cuda(Problem(torch.float64))
    kept = problem.run(UnrollPolicy(mode="segmented", segment=4))
    offloaded = problem.run(UnrollPolicy(mode="segmented", segment=4, offload=True))
    for a, b in zip([*kept.meta_grads, kept.lr_grad], [*offloaded.meta_grads, offloaded.lr_grad]):
        assert torch.equal(a, b)


def test_cuda_resumed_run_is_bit_identical(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from rtp_scale.config import build_config
    from rtp_scale.distill import run

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", os.environ.get("CUBLAS_WORKSPACE_CONFIG", ":4096:8"))
    torch.use_deterministic_algorithms(True)
    try:
        cuda = [o for o in TINY if not o.startswith("run.device")] + ["run.device=cuda", "meta.steps=6"]
        run(build_config(None, [*cuda, f"run.out_dir={tmp_path / 'straight'}"]))
        # a run that stopped after 3 steps, then resumed to 6, from the same directory
        run(build_config(None, [*cuda[:-1], "meta.steps=3", f"run.out_dir={tmp_path / 'resumed'}"]))
        run(build_config(None, [*cuda, f"run.out_dir={tmp_path / 'resumed'}"]))
    finally:
        torch.use_deterministic_algorithms(False)
    straight = load_file(str(tmp_path / "straight" / "memory.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "memory.safetensors"))
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_ffcv_batches_onto_cuda_equal_the_memory_backend(tmp_path):
    pytest.importorskip("ffcv")
    from rtp_scale.data.convert import convert
    from rtp_scale.data.imagefolder import load_imagefolder
    from rtp_scale.data.sources import FfcvSource, MemorySource
    from rtp_scale.seeding import make_generator
    from tests.test_ffcv import PER_CLASS, RES, write_image_folder

    folder = write_image_folder(tmp_path / "folder")
    convert(root=str(folder), out=tmp_path / "raw", resolution=RES, encoding="raw", workers=2, progress=False)
    memory = MemorySource(load_imagefolder(root=str(folder), resolution=RES).to("cuda"), per_class=PER_CLASS)
    stream = FfcvSource(str(tmp_path / "raw"), per_class=PER_CLASS, device="cuda", expect_name="imagefolder",
                        workers=2)
    for step in range(3):
        x_mem, y_mem = memory.sample(make_generator(0, "gpu-check", step))
        x_ffcv, y_ffcv = stream.sample(make_generator(0, "gpu-check", step))
        assert x_ffcv.is_cuda and torch.equal(x_ffcv, x_mem) and torch.equal(y_ffcv, y_mem)


def test_cuda_stacked_unrolls_equal_the_unrolls_one_by_one_in_float64():
    from rtp_scale.config import build_config
    from rtp_scale.distributed import RankContext
    from tests.dist_worker import step_gradients
    from tests.test_batched_unrolls import assert_same

    alone = RankContext(rank=0, world_size=1, device=torch.device("cuda"), inner_shards=1)
    results = [step_gradients(build_config(None, [*TINY, "run.device=cuda", "run.out_dir=/nonexistent",
                                                  "dist.meta_batch=3", f"dist.batch_unrolls={flag}"]),
                              alone, float64=True) for flag in ("false", "true")]
    assert all(g.is_cuda for g in results[1]["grads"].values())
    assert_same(*results, rtol=1e-12)


def test_cuda_fused_block_equals_the_modules_in_float64():
    from tests.test_fused_block import assert_same_derivatives, block_inputs

    for size, pool in ((8, True), (7, True), (5, False)):
        z, g, b = (t.detach().cuda().requires_grad_() for t in block_inputs(size))
        assert_same_derivatives(z, g, b, pool)
