"""Completed requests and mapped buffers, as upstream ``picamera2/request.py``.

A request holds one frame buffer per stream (real memory, recycled once every holder has
released it). ``MappedArray(request, "main")`` maps that buffer itself, reshaped as
upstream's ``Helpers._make_array_shared`` does (YUV420: ``(h * 3 // 2, stride)``), so
writing into ``m.array`` writes into the frame that will be encoded.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np


class _FrameBuffer:
    """One camera buffer (``bytearray``), owned by the pool while no request holds it."""

    def __init__(self, size: int) -> None:
        self.data = np.zeros(size, dtype=np.uint8)


class _LibcameraRequest:
    """The libcamera request inside a CompletedRequest: buffers and metadata."""

    def __init__(self, buffers: dict[str, _FrameBuffer], metadata: dict[str, Any]) -> None:
        self.buffers = buffers
        self.metadata = metadata


class _MappedBuffer:
    def __init__(self, request: CompletedRequest, stream: str, write: bool = True) -> None:
        if request.request is None:
            raise RuntimeError("request already released")
        self._fb = request.request.buffers[stream]

    def __enter__(self) -> np.ndarray:
        return self._fb.data

    def __exit__(self, *exc: object) -> None:
        pass


class MappedArray:
    def __init__(
        self, request: CompletedRequest, stream: str, reshape: bool = True, write: bool = True
    ) -> None:
        self.__request = request
        self.__stream = stream
        self.__buffer = _MappedBuffer(request, stream, write=write)
        self.__array: np.ndarray | None = None
        self.__reshape = reshape

    def __enter__(self) -> MappedArray:
        array = self.__buffer.__enter__()
        if self.__reshape:
            array = make_array_shared(array, self.__request.config[self.__stream])
        self.__array = array
        return self

    def __exit__(self, *exc: object) -> None:
        self.__array = None
        self.__buffer.__exit__(*exc)

    @property
    def array(self) -> np.ndarray | None:
        return self.__array


def make_array_shared(buffer: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    """Upstream ``Helpers._make_array_shared``: a view, never a copy."""
    fmt = config["format"]
    w, h = config["size"]
    stride = config["stride"]
    array = buffer
    if fmt in ("BGR888", "RGB888"):
        if stride != w * 3:
            array = array.reshape((h, stride))[:, : w * 3]
        return array.reshape((h, w, 3))
    if fmt in ("XBGR8888", "XRGB8888"):
        if stride != w * 4:
            array = array.reshape((h, stride))[:, : w * 4]
        return array.reshape((h, w, 4))
    if fmt in ("YUV420", "YVU420"):
        return array.reshape((h * 3 // 2, stride))
    raise RuntimeError("Format " + fmt + " not supported")


class CompletedRequest:
    def __init__(self, request: _LibcameraRequest, picam2: Any, recycle) -> None:
        self.request: _LibcameraRequest | None = request
        self.ref_count = 1
        self.lock = threading.Lock()
        self.picam2 = picam2
        self.config = picam2.camera_config.copy()
        self.stream_map = {name: name for name in request.buffers}
        self._recycle = recycle

    def acquire(self) -> None:
        with self.lock:
            if self.ref_count == 0:
                raise RuntimeError("CompletedRequest: acquiring lock with ref_count 0")
            self.ref_count += 1

    def release(self) -> None:
        with self.lock:
            self.ref_count -= 1
            if self.ref_count < 0:
                raise RuntimeError("CompletedRequest: lock now has negative ref_count")
            if self.ref_count == 0:
                request, self.request = self.request, None
                self._recycle(request)

    def get_metadata(self) -> dict[str, Any]:
        if self.request is None:
            raise RuntimeError("request already released")
        return dict(self.request.metadata)

    def make_array(self, name: str) -> np.ndarray:
        with MappedArray(self, name) as m:
            return np.copy(m.array)
