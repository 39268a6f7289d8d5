"""Performance benchmarks: ``python -m rtp_scale.bench <name>`` (see benchmarks/README.md).

- ``unroll``: time per outer step, peak memory, stored states, autograd graph bytes and FLOPs of the real
  RtP meta-gradient (:meth:`rtp_scale.methods.rtp.RtpMethod.meta_gradient`) for the full and segmented
  unroll modes, and for the segmented mode against the unroll length T. Every configuration runs in a
  fresh subprocess so that its peak memory is its own (:mod:`rtp_scale.bench._worker`).
- ``python -m rtp_scale.bench.loader``: real-batch sampling throughput (see :mod:`rtp_scale.bench.loader`).

:mod:`rtp_scale.bench.machine` (machine description, measured peak rates) is shared by the benchmarks.
"""
