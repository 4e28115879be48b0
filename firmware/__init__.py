"""The recorder that runs on the camera (Pi Zero 2 W + camera module)."""

__version__ = "0.1.0"
