"""rtp_scale: dataset distillation into addressable memories, at scale.

Entry points: ``python -m rtp_scale.distill``, ``python -m rtp_scale.evaluate``,
``python -m rtp_scale.bench``. See README.md.
"""
__version__ = "0.1.0"
