"""The VC4 (Pi Zero 2 W) H264Encoder: upstream's ``V4L2Encoder`` + ``H264Encoder``.

Upstream queues the frame's dmabuf to ``/dev/video11`` in ``_encode`` (keeping the request
acquired) and a poll thread (``thread_poll``) dequeues the encoded buffers, releases the
request and calls ``self.outputframe(bytes, keyframe, timestamp_us)`` - no ``packet`` - with
the timestamp the frame was queued with. Here the hardware codec is libx264 through PyAV,
run on that same kind of thread; SPS/PPS come before every keyframe when ``repeat`` is set,
and a keyframe comes every ``iperiod`` frames.
"""

import queue
import threading
from fractions import Fraction

import av
import numpy as np

from ..request import MappedArray
from .encoder import Encoder, Quality


class H264Encoder(Encoder):
    def __init__(
        self,
        bitrate=None,
        repeat=True,
        iperiod=None,
        framerate=None,
        enable_sps_framerate=False,
        qp=None,
        profile=None,
    ):
        super().__init__()
        self.bitrate = bitrate
        self.iperiod = iperiod
        self.repeat = repeat
        self.qp = qp
        self.profile = profile
        self.framerate = framerate
        self._enable_framerate = enable_sps_framerate
        self._key_frames_requested = 0
        self._key_frames_generated = 0
        self.vd = None

    def _send_streams(self, output):
        output._add_stream("video", "h264", width=self._width, height=self._height)

    def _setup(self, quality):
        if quality is not None or (self.bitrate is None and self.qp is None):
            quality = Quality.MEDIUM if quality is None else quality
            table = {
                Quality.VERY_LOW: 2,
                Quality.LOW: 4,
                Quality.MEDIUM: 6,
                Quality.HIGH: 9,
                Quality.VERY_HIGH: 15,
            }
            complexity = self.width * self.height * (self.framerate or 30)
            self.bitrate = int(table[quality] * 1000000 * complexity / (1920 * 1080 * 30))

    def _start(self):
        if self._format not in ("YUV420", "XBGR8888", "XRGB8888", "RGB888", "BGR888"):
            raise RuntimeError("Unrecognised format", self._format, "for V4L2")
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height = self._width, self._height
        codec.pix_fmt = "yuv420p"
        codec.time_base = Fraction(1, 1000000)
        codec.framerate = Fraction(round(self.framerate or 30), 1)
        codec.max_b_frames = 0
        codec.thread_count = 1
        keyint = self.iperiod or 60
        params = f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=0:annexb=1"
        if self.repeat:
            params += ":repeat-headers=1"
        kbit = max((self.bitrate or 1000000) // 1000, 1)
        params += f":vbv-maxrate={kbit}:vbv-bufsize={kbit}"
        codec.bit_rate = self.bitrate or 1000000
        codec.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "forced-idr": "1",
            "x264-params": params,
        }
        codec.open()
        self.vd = codec
        self.buf_frame = queue.Queue()
        self.thread = threading.Thread(target=self.thread_poll, daemon=True, name="v4l2-poll")
        self.thread.start()
        for out in self._output:
            self._send_streams(out)

    def _stop(self):
        self.buf_frame.put(None)
        self.thread.join()
        self.vd = None

    def force_key_frame(self):
        self._key_frames_requested += 1

    def _encode(self, stream, request):
        if self.vd is None:
            return
        request.acquire()
        timestamp_us = self._timestamp(request)
        key = self._key_frames_requested > self._key_frames_generated
        if key:
            self._key_frames_generated += 1
        self.buf_frame.put((request, stream, timestamp_us, key))

    def _frame(self, request, stream):
        """The request's buffer as a yuv420p VideoFrame (what the codec reads by DMA)."""
        w, h = self._width, self._height
        with MappedArray(request, stream) as m:
            if self._format == "YUV420":
                stride = self._stride
                flat = m.array.reshape(-1)
                frame = av.VideoFrame(w, h, "yuv420p")
                ysize, csize = h * stride, (h // 2) * (stride // 2)
                planes = (
                    flat[:ysize].reshape(h, stride)[:, :w],
                    flat[ysize : ysize + csize].reshape(h // 2, stride // 2)[:, : w // 2],
                    flat[ysize + csize : ysize + 2 * csize].reshape(h // 2, stride // 2)[
                        :, : w // 2
                    ],
                )
                for plane, data in zip(frame.planes, planes, strict=True):
                    dest = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
                    dest[:, : data.shape[1]] = data
                return frame
            fmt = {"XBGR8888": "rgba", "XRGB8888": "bgra", "RGB888": "bgr24", "BGR888": "rgb24"}
            rgb = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(m.array), format=fmt[self._format]
            )
            return rgb.reformat(format="yuv420p")

    def thread_poll(self):
        """The encoder's output thread: encoded frames go out from here, in order."""
        codec = self.vd
        while True:
            item = self.buf_frame.get()
            if item is None:
                break
            request, stream, timestamp_us, key = item
            try:
                frame = self._frame(request, stream)
            finally:
                request.release()  # the codec has read the buffer
            frame.pts = timestamp_us
            frame.pict_type = (
                av.video.frame.PictureType.I if key else av.video.frame.PictureType.NONE
            )
            for packet in codec.encode(frame):
                self.outputframe(bytes(packet), bool(packet.is_keyframe), int(packet.pts))
