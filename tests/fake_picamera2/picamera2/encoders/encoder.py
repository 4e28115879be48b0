"""Encoder base class, as upstream ``picamera2/encoders/encoder.py``.

What is kept from upstream, line for line in behaviour: ``start`` resets
``firsttimestamp`` and starts the outputs, then the audio; ``_timestamp`` turns the
request's SensorTimestamp (ns) into microseconds from the first frame; audio is opened with
``av.open(**audio_input)`` and encoded into ``add_stream(**audio_output)``; outputs learn of
the audio stream through ``_add_stream(stream, **audio_output)``; ``_handle_audio_packet``
rebases the audio pts to the first packet (``_first_audio_time``, set once per encoder
object, never reset by ``start``), shifts them by ``audio_sync`` and calls
``outputframe(None, True, timestamp_us, packet, True)``; every ``outputframe`` goes through
``_output_lock``. What differs: no libcamera (the request carries its metadata by name), and
the audio input is the board's (see :mod:`picamera2.fake`).
"""

import threading
from enum import Enum

from .. import fake
from ..outputs import Output


class Quality(Enum):
    VERY_LOW = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    VERY_HIGH = 4


class Encoder:
    """Base class for encoders; handles the optional audio encoding."""

    def __init__(self, framerate=30):
        self._width = 0
        self._height = 0
        self._stride = 0
        self._format = None
        self._output = []
        self._running = False
        self._name = None
        self._framerate = framerate
        self._lock = threading.Lock()
        self.firsttimestamp = None
        self.frame_skip_count = 1
        self._skip_count = 0
        self._output_lock = threading.Lock()
        self.audio = False
        self.audio_input = {"file": "default", "format": "pulse"}
        self.audio_output = {"codec_name": "aac"}
        self.audio_sync = -100000  # in us, so by default, delay audio by 100ms
        self._audio_start = threading.Event()
        self.frames_encoded = 0
        self.sync_enable = False
        self.sync = threading.Event()
        self._first_audio_time = None

    @property
    def running(self):
        return self._running

    @property
    def width(self):
        return self._width

    @width.setter
    def width(self, value):
        if not isinstance(value, int):
            raise RuntimeError("Width must be integer")
        self._width = value

    @property
    def height(self):
        return self._height

    @height.setter
    def height(self, value):
        if not isinstance(value, int):
            raise RuntimeError("Height must be integer")
        self._height = value

    @property
    def size(self):
        return (self._width, self._height)

    @property
    def stride(self):
        return self._stride

    @stride.setter
    def stride(self, value):
        if not isinstance(value, int):
            raise RuntimeError("Stride must be integer")
        self._stride = value

    @property
    def format(self):
        return self._format

    @format.setter
    def format(self, value):
        if value not in ("YUV420", "YVU420", "RGB888", "BGR888", "XBGR8888", "XRGB8888"):
            raise RuntimeError(f"Invalid format: {value}")
        self._format = value

    @property
    def output(self):
        if len(self._output) == 1:
            return self._output[0]
        return self._output

    @output.setter
    def output(self, value):
        if isinstance(value, list):
            for out in value:
                if not isinstance(out, Output):
                    raise RuntimeError("Must pass Output")
        elif isinstance(value, Output):
            value = [value]
        else:
            raise RuntimeError("Must pass Output")
        for output in value:
            if self._running and output not in self._output:
                self.send_streams(output)
        self._output = value

    @property
    def name(self):
        return self._name

    @name.setter
    def name(self, value):
        if not isinstance(value, str):
            raise RuntimeError("Name must be string")
        self._name = value

    def encode(self, stream, request):
        if self.audio:
            self._audio_start.set()  # Signal the audio encode thread to start.
        if self._skip_count == 0:
            with self._lock:
                if not self._running:
                    return
                self._encode(stream, request)
        self._skip_count = (self._skip_count + 1) % self.frame_skip_count
        self.frames_encoded += 1

    def _encode(self, stream, request):
        raise NotImplementedError

    def _send_audio_stream(self, output):
        output._add_stream(self._audio_output_stream, **self.audio_output)

    def send_streams(self, output):
        self._send_streams(output)
        if self.audio:
            self._send_audio_stream(output)

    def _send_streams(self, output):
        pass

    def start(self, quality=None):
        with self._lock:
            if self._running:
                raise RuntimeError("Encoder already running")
            self.frames_encoded = 0
            self._setup(quality)
            self._running = True
            self.firsttimestamp = None
            for out in self._output:
                out.start()
            self._start()

            if self.audio:
                global av
                import av

                self._audio_input_container = fake.open_audio_input(**self.audio_input)
                self._audio_input_stream = self._audio_input_container.streams.get(audio=0)[0]
                self._audio_output_container = av.open("/dev/null", "w", format="null")
                self._audio_output_stream = self._audio_output_container.add_stream(
                    **self.audio_output
                )
                for out in self._output:
                    self._send_audio_stream(out)
                self._audio_thread = threading.Thread(
                    target=self._audio_thread_func, daemon=True, name="picamera2-audio"
                )
                self._audio_start.clear()
                self._audio_thread.start()

    def _start(self):
        for out in self._output:
            self._send_streams(out)

    def stop(self):
        with self._lock:
            if not self._running:
                raise RuntimeError("Encoder already stopped")
            self._running = False
            self._stop()
            if self.audio:
                self._audio_start.set()  # just in case it wasn't!
                self._audio_thread.join()
                self._audio_input_container.close()
                self._audio_output_container.close()
            for out in self._output:
                out.stop()

    def _stop(self):
        pass

    def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
        with self._output_lock:
            fake.record_call(self, frame, keyframe, timestamp, packet, audio)
            for out in self._output:
                out.outputframe(frame, keyframe, timestamp, packet, audio)

    def _setup(self, quality):
        pass

    def _timestamp(self, request):
        ts = int(request.request.metadata["SensorTimestamp"] / 1000)  # ns to us
        if self.firsttimestamp is None:
            self.firsttimestamp = ts
            timestamp_us = 0
        else:
            timestamp_us = ts - self.firsttimestamp
        return timestamp_us

    def _handle_audio_packet(self, audio_packet):
        time_scale_factor = 1000000 * self._audio_output_stream.codec_context.time_base
        delta = int(self.audio_sync / time_scale_factor)  # convert to audio time base
        if self._first_audio_time is None:
            self._first_audio_time = audio_packet.pts
        audio_packet.pts -= self._first_audio_time
        audio_packet.dts -= self._first_audio_time
        audio_packet.pts -= delta
        audio_packet.dts -= delta
        timestamp = int(audio_packet.pts * time_scale_factor)  # want this in us
        if audio_packet.pts >= 0:
            self.outputframe(None, True, timestamp, audio_packet, True)

    def _audio_thread_func(self):
        for _ in self._audio_input_container.decode(self._audio_input_stream):
            if self._audio_start.is_set():
                break

        for audio_frame in self._audio_input_container.decode(self._audio_input_stream):
            if not self._running:
                break
            for audio_packet in self._audio_output_stream.encode(audio_frame):
                self._handle_audio_packet(audio_packet)

        for audio_packet in self._audio_output_stream.encode(None):
            self._handle_audio_packet(audio_packet)
