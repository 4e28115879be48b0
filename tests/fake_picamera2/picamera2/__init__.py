"""A fake of picamera2 that keeps its calling conventions (see tests/fake_picamera2/README.md)."""

from .picamera2 import Picamera2
from .request import CompletedRequest, MappedArray

__all__ = ["CompletedRequest", "MappedArray", "Picamera2"]
