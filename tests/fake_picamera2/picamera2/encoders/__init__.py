"""Encoders: the Pi Zero 2 W is a VC4 board, so ``H264Encoder`` is the V4L2 one."""

from .encoder import Encoder, Quality
from .h264_encoder import H264Encoder

__all__ = ["Encoder", "H264Encoder", "Quality"]
