"""``Picamera2`` as upstream ``picamera2/picamera2.py`` drives it, over a simulated sensor.

The camera's event loop (upstream: the preview thread running ``process_requests``) is one
thread here: each frame period the sensor fills a free buffer (a frame is dropped when
none is free, as libcamera does), then, as upstream, ``pre_callback(request)`` runs, then
pending jobs (``capture_array``, ``capture_file``), then ``post_callback``, then every
encoder's ``encode(name, request)``.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
import time
from concurrent.futures import Future
from fractions import Fraction
from typing import Any

import numpy as np

from . import fake
from .request import CompletedRequest, _FrameBuffer, _LibcameraRequest

_log = logging.getLogger(__name__)


class Job:
    """Upstream ``picamera2.job.Job``: functions tried on each frame until done."""

    def __init__(self, functions, signal_function=None) -> None:
        self._functions = list(functions)
        self._future: Future = Future()
        self._future.set_running_or_notify_cancel()
        self._signal_function = signal_function
        self._result = None

    def execute(self, request: CompletedRequest) -> bool:
        try:
            while self._functions:
                done, result = self._functions[0](request)
                if not done:
                    break
                self._functions.pop(0)
            if not self._functions:
                self._result = result
        except Exception as e:
            self._future.set_exception(e)
            self._functions = []
        return not self._functions

    def signal(self) -> None:
        if not self._future.done():
            self._future.set_result(self._result)
        if self._signal_function:
            self._signal_function(self)

    def get_result(self, timeout=None):
        return self._future.result(timeout=timeout)


def _stride(fmt: str, width: int) -> int:
    bpp = {"YUV420": 1, "YVU420": 1, "RGB888": 3, "BGR888": 3, "XBGR8888": 4, "XRGB8888": 4}
    return -(-width * bpp[fmt] // 64) * 64


def _frame_bytes(fmt: str, width: int, height: int, stride: int) -> int:
    return stride * height * 3 // 2 if fmt in ("YUV420", "YVU420") else stride * height


class Picamera2:
    def __init__(self, camera_num=0, verbose_console=None, tuning=None, allocator=None) -> None:
        self.camera_num = camera_num
        self.camera_config: dict[str, Any] | None = None
        self.pre_callback = None
        self.post_callback = None
        self.encode_stream_name = "main"
        self.camera_ctrl_info = {"FrameDurationLimits": (None, Fraction(33333))}
        self.started = False
        self.lock = threading.RLock()
        self.frames = 0
        self.dropped = 0
        self._encoders: set = set()
        self._job_list: list[Job] = []
        self._loop: threading.Thread | None = None
        self._stop = threading.Event()
        self._pool: queue.SimpleQueue | None = None
        self.options: dict[str, Any] = {}

    # -- configuration ---------------------------------------------------------------

    def create_video_configuration(
        self,
        main={},  # noqa: B006 - upstream's signature
        lores=None,
        raw={},  # noqa: B006 - upstream's signature
        transform=None,
        colour_space=None,
        buffer_count=6,
        controls={},  # noqa: B006 - upstream's signature
        display="main",
        encode="main",
        queue=True,
        sensor={},  # noqa: B006 - upstream's signature
        use_case="video",
    ) -> dict[str, Any]:
        main = {"format": "XBGR8888", "size": (1280, 720), "preserve_ar": True} | dict(main)
        controls = {"NoiseReductionMode": 1, "FrameDurationLimits": (33333, 33333)} | dict(controls)
        return {
            "use_case": use_case,
            "buffer_count": buffer_count,
            "queue": queue,
            "main": main,
            "lores": lores,
            "raw": raw,
            "controls": controls,
            "display": display,
            "encode": encode,
        }

    def configure(self, camera_config=None) -> None:
        if camera_config is None or isinstance(camera_config, str):
            camera_config = self.create_video_configuration()
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        config = dict(camera_config)
        main = dict(config["main"])
        w, h = main["size"]
        if w % 2 or h % 2:
            raise RuntimeError(f"size {w}x{h}: width and height must be even")
        main["stride"] = _stride(main["format"], w)
        main["framesize"] = _frame_bytes(main["format"], w, h, main["stride"])
        config["main"] = main
        controls = config.get("controls", {})
        if "FrameRate" in controls:
            period_us = 1_000_000 / controls["FrameRate"]
        else:
            period_us = controls.get("FrameDurationLimits", (33333, 33333))[0]
        self.frame_period_ns = int(period_us * 1000)
        self.camera_config = config
        self.encode_stream_name = config.get("encode") or "main"

    def camera_configuration(self) -> dict[str, Any] | None:
        return self.camera_config

    def stream_configuration(self, name="main") -> dict[str, Any]:
        return self.camera_config[name]

    # -- starting and stopping ---------------------------------------------------------

    def start(self, config=None, show_preview=False) -> None:
        if not self.camera_config and config is None:
            config = "video"
        if config is not None:
            self.configure(config)
        if self.started:
            return
        main = self.camera_config["main"]
        self._pool = queue.SimpleQueue()
        for _ in range(self.camera_config.get("buffer_count", 6)):
            self._pool.put(_FrameBuffer(main["framesize"]))
        self._stop = threading.Event()
        self._loop = threading.Thread(target=self._event_loop, name="picamera2-loop", daemon=True)
        self.started = True
        self._loop.start()

    def stop(self) -> None:
        if not self.started:
            return
        self._stop.set()
        if self._loop is not threading.current_thread():
            self._loop.join()
        self.started = False

    def start_encoder(self, encoder=None, output=None, pts=None, quality=None, name=None) -> None:
        if encoder is None:
            raise RuntimeError("No encoder specified")
        if output is not None:
            encoder.output = output
        streams = self.camera_configuration()
        if not streams:
            raise RuntimeError("Camera has not been configured")
        name = name or self.encode_stream_name
        encoder.name = name
        encoder.width, encoder.height = streams[name]["size"]
        encoder.format = streams[name]["format"]
        encoder.stride = streams[name]["stride"]
        if getattr(encoder, "framerate", None) is None:  # upstream does the same probing
            encoder.framerate = 1e9 / self.frame_period_ns
        encoder.start(quality=quality)
        with self.lock:
            self._encoders.add(encoder)

    def stop_encoder(self, encoders=None) -> None:
        remove = list(self._encoders) if encoders is None else [encoders]
        for encoder in remove:
            encoder.stop()
        with self.lock:
            for encoder in remove:
                self._encoders.discard(encoder)

    @property
    def encoders(self) -> set:
        return self._encoders

    def start_recording(self, encoder, output, pts=None, config=None, quality=None, name=None):
        if not self.camera_config and config is None:
            config = "video"
        if config is not None:
            self.configure(config)
        self.start_encoder(encoder, output, pts=pts, quality=quality, name=name)
        self.start()

    def stop_recording(self) -> None:
        self.stop()
        self.stop_encoder()

    def close(self) -> None:
        self.stop()
        if self._encoders:
            self.stop_encoder()

    # -- jobs --------------------------------------------------------------------------

    def dispatch_functions(self, functions, wait, signal_function=None):
        if wait is None:
            wait = signal_function is None
        timeout = None if wait is True else wait
        job = Job(functions, signal_function)
        with self.lock:
            self._job_list.append(job)
        return job.get_result(timeout=timeout) if wait else job

    def wait(self, job: Job, timeout=None):
        return job.get_result(timeout=timeout)

    def capture_array(self, name="main", wait=None, signal_function=None):
        def capture_array_(request: CompletedRequest):
            return True, request.make_array(name)

        return self.dispatch_functions([capture_array_], wait, signal_function)

    def capture_file(
        self, file_output, name="main", format=None, wait=None, signal_function=None, exif_data=None
    ):
        """Upstream saves through PIL, which has no YUV420 mode: the same error here."""

        def capture_file_(request: CompletedRequest):
            fmt = request.config[name]["format"]
            if fmt not in ("RGB888", "BGR888", "XBGR8888", "XRGB8888"):
                raise RuntimeError(f"Stream format {fmt} not supported for PIL images")
            data = _jpeg(request.make_array(name), fmt)
            if isinstance(file_output, io.IOBase):
                file_output.write(data)
            else:
                with open(file_output, "wb") as f:
                    f.write(data)
            return True, request.get_metadata()

        return self.dispatch_functions([capture_file_], wait, signal_function)

    # -- the event loop (the sensor, then process_requests) -------------------------------

    def _event_loop(self) -> None:
        pool, stop = self._pool, self._stop

        def recycle(request: _LibcameraRequest) -> None:  # back to this run's buffers
            pool.put(request.buffers["main"])

        main = self.camera_config["main"]
        scene = _Scene(main["format"], *main["size"], main["stride"])
        period = self.frame_period_ns
        t0 = time.monotonic_ns()
        # The sensor stamps each frame when its exposure starts, on its own schedule (a
        # loaded machine only delivers it late), in CLOCK_BOOTTIME.
        boot = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()
        i = 0
        hung = False
        while True:
            target = t0 + i * period
            delay = (target - time.monotonic_ns()) / 1e9
            if delay > 0 and stop.wait(delay):
                break
            if stop.is_set():
                break
            late = (time.monotonic_ns() - target) // period
            if late > 0:  # the loop was slow: the sensor went on, those frames are lost
                self.dropped += late
                i += late
                target = t0 + i * period
            i += 1
            if not hung and fake.take_hang():
                _log.warning("fake camera: hung (no more frames until restarted)")
                hung = True
            if hung:
                continue
            try:
                buffer = pool.get_nowait()
            except queue.Empty:
                self.dropped += 1
                continue
            scene.render(buffer.data, self.frames)
            metadata = {
                "SensorTimestamp": target + boot,
                "FrameDuration": period // 1000,
            }
            request = CompletedRequest(_LibcameraRequest({"main": buffer}, metadata), self, recycle)
            self.frames += 1
            self._process(request)

    def _process(self, request: CompletedRequest) -> None:
        with self.lock:
            if self.pre_callback:
                self.pre_callback(request)
            finished = []
            while self._job_list:
                if self._job_list[0].execute(request):
                    finished.append(self._job_list.pop(0))
                else:
                    break
            if self.post_callback:
                self.post_callback(request)
            for encoder in self._encoders:
                if encoder.name in request.stream_map:
                    encoder.encode(encoder.name, request)
            request.release()
        for job in finished:
            job.signal()


class _Scene:
    """A moving synthetic scene written straight into the camera's buffers."""

    def __init__(self, fmt: str, width: int, height: int, stride: int) -> None:
        self.fmt, self.width, self.height, self.stride = fmt, width, height, stride
        yy, xx = np.mgrid[0:height, 0 : 2 * width]
        self._luma = (60 + 60 * ((xx + yy) // max(width // 8, 2) % 2) + 100 * yy // height).astype(
            np.uint8
        )
        self._step = max(width // 80, 1)

    def render(self, buffer: np.ndarray, index: int) -> None:
        w, h, s = self.width, self.height, self.stride
        shift = (index * self._step) % w
        luma = self._luma[:, shift : shift + w]
        if self.fmt in ("YUV420", "YVU420"):
            buffer[: h * s].reshape(h, s)[:, :w] = luma
            buffer[h * s :] = 128
        else:
            bpp = 3 if self.fmt in ("RGB888", "BGR888") else 4
            pixels = buffer.reshape(h, s)[:, : w * bpp].reshape(h, w, bpp)
            pixels[:, :, :3] = luma[:, :, None]
            if bpp == 4:
                pixels[:, :, 3] = 255


def _jpeg(array: np.ndarray, fmt: str) -> bytes:
    """What PIL's JPEG save gives upstream, through PyAV's MJPEG encoder."""
    import av

    pix = {"XBGR8888": "rgba", "XRGB8888": "bgra", "RGB888": "bgr24", "BGR888": "rgb24"}[fmt]
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format=pix)
    enc = av.CodecContext.create("mjpeg", "w")
    enc.width, enc.height = frame.width, frame.height
    enc.pix_fmt = "yuvj420p"
    enc.time_base = Fraction(1, 25)
    enc.open()
    still = frame.reformat(format="yuvj420p")
    still.pts = 0
    return b"".join(bytes(p) for p in [*enc.encode(still), *enc.encode(None)])
