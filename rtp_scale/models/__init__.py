"""Networks trained in the inner loop and at evaluation."""
from rtp_scale.models.convnet import ConvNet
from rtp_scale.models.registry import build_model, init_params, load_params_, model_names

__all__ = ["ConvNet", "build_model", "init_params", "load_params_", "model_names"]
