"""The burned-in text of every frame (time, device, officer), drawn the same on the camera
and in the simulator.

GA/T 947.2 expects the date and time, the device and the officer burned into the picture,
so a still or a clip cut out of a recording still says when and by whom it was taken. Both
the device (``firmware.pi``: a picamera2 ``pre_callback`` drawing into the frame buffer) and
the simulator's camera draw with :class:`Overlay`, so what the simulator shows is what the
camera records.

Why a font of our own: burning must stay cheap per frame. Each character of a 5x7 bitmap
font is rendered once into a luma tile (light glyph on a dark box); burning a line is then
one numpy slice assignment per character into the Y plane of a YUV 4:2:0 frame. Text that
repeats from frame to frame (the date and time up to the second, the id line) is rendered
once into a strip and blitted; only the milliseconds are burned per frame.

API: ``TextBurner(scale)``: ``burn(y_plane, x, y, text)``, ``strip(text)``, ``blit(...)``,
``read(y_plane, x, y, length)`` (the inverse: nearest glyph per cell, to check what a decoded
frame shows). ``Overlay(width, height)``: ``draw(y_plane, lines)`` and ``read(y_plane)``;
``osd_lines(utc_ns, device_id, officer_id)`` formats the two lines.
Unknown characters render as ``?``; lower case renders as upper case.
"""

from __future__ import annotations

import time

import numpy as np

# Each glyph: 7 rows of 5 bits, most significant bit = leftmost pixel.
_GLYPHS: dict[str, tuple[int, ...]] = {
    " ": (0, 0, 0, 0, 0, 0, 0),
    "0": (0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E),
    "1": (0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E),
    "2": (0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F),
    "3": (0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E),
    "4": (0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02),
    "5": (0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E),
    "6": (0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E),
    "7": (0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08),
    "8": (0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E),
    "9": (0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C),
    "A": (0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11),
    "B": (0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E),
    "C": (0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E),
    "D": (0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C),
    "E": (0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F),
    "F": (0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10),
    "G": (0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F),
    "H": (0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11),
    "I": (0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E),
    "J": (0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C),
    "K": (0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11),
    "L": (0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F),
    "M": (0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11),
    "N": (0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11),
    "O": (0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E),
    "P": (0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10),
    "Q": (0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D),
    "R": (0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11),
    "S": (0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E),
    "T": (0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04),
    "U": (0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E),
    "V": (0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04),
    "W": (0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A),
    "X": (0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11),
    "Y": (0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04),
    "Z": (0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F),
    "-": (0, 0, 0, 0x1F, 0, 0, 0),
    "_": (0, 0, 0, 0, 0, 0, 0x1F),
    ":": (0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0),
    ".": (0, 0, 0, 0, 0, 0x0C, 0x0C),
    "/": (0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10),
    "+": (0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0),
    "#": (0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A),
    "%": (0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03),
    "?": (0x0E, 0x11, 0x01, 0x02, 0x04, 0, 0x04),
}

FOREGROUND = 235  # video-range white
BACKGROUND = 16  # video-range black


class TextBurner:
    """Burns text into a luma plane from pre-rendered character tiles."""

    def __init__(self, scale: int = 1) -> None:
        if scale < 1:
            raise ValueError("scale must be at least 1")
        self.scale = scale
        # One pixel of dark border all round each 5x7 glyph, then scaled.
        self.cell_width = 6 * scale
        self.line_height = 9 * scale
        self._tiles: dict[str, np.ndarray] = {}
        for char, rows in _GLYPHS.items():
            tile = np.full((9, 6), BACKGROUND, dtype=np.uint8)
            for r, bits in enumerate(rows):
                for c in range(5):
                    if bits & (0x10 >> c):
                        tile[1 + r, 1 + c] = FOREGROUND
            self._tiles[char] = np.kron(tile, np.ones((scale, scale), dtype=np.uint8))

    def tile(self, char: str) -> np.ndarray:
        return self._tiles.get(char.upper(), self._tiles["?"])

    def width_of(self, text: str) -> int:
        return len(text) * self.cell_width

    def burn(self, plane: np.ndarray, x: int, y: int, text: str) -> None:
        """Write ``text`` with its top-left corner at (x, y), clipped to the plane."""
        height, width = plane.shape[:2]
        cw, lh = self.cell_width, self.line_height
        if y >= height or y + lh <= 0:
            return
        top, bottom = max(y, 0), min(y + lh, height)
        t0, t1 = top - y, bottom - y
        tiles = self._tiles
        unknown = tiles["?"]
        for i, char in enumerate(text):
            left = x + i * cw
            if left >= width:
                break
            right = left + cw
            if right <= 0:
                continue
            tile = tiles.get(char)
            if tile is None:
                tile = tiles.get(char.upper(), unknown)
            if left >= 0 and right <= width:
                plane[top:bottom, left:right] = tile[t0:t1]
            else:
                l0, r0 = max(left, 0), min(right, width)
                plane[top:bottom, l0:r0] = tile[t0:t1, l0 - left : r0 - left]

    def strip(self, text: str) -> np.ndarray:
        """``text`` rendered into one array (line_height x len(text) * cell_width)."""
        if not text:
            return np.zeros((self.line_height, 0), dtype=np.uint8)
        return np.hstack([self.tile(c) for c in text])

    def blit(self, plane: np.ndarray, x: int, y: int, strip: np.ndarray) -> None:
        """Copy a rendered strip with its top-left corner at (x, y), clipped to the plane."""
        height, width = plane.shape[:2]
        sh, sw = strip.shape
        top, bottom = max(y, 0), min(y + sh, height)
        left, right = max(x, 0), min(x + sw, width)
        if top < bottom and left < right:
            plane[top:bottom, left:right] = strip[top - y : bottom - y, left - x : right - x]

    def read(self, plane: np.ndarray, x: int, y: int, length: int) -> str:
        """The text of ``length`` cells at (x, y): for each cell the glyph nearest to it
        (sum of absolute differences), as a decoded, lossy frame shows it."""
        cw, lh = self.cell_width, self.line_height
        chars = list(self._tiles)
        stack = np.stack([self._tiles[c] for c in chars]).astype(np.int16)
        out = []
        for i in range(length):
            cell = plane[y : y + lh, x + i * cw : x + (i + 1) * cw].astype(np.int16)
            if cell.shape != (lh, cw):
                break
            out.append(chars[int(np.abs(stack - cell).sum(axis=(1, 2)).argmin())])
        return "".join(out)


def osd_lines(utc_ns: int, device_id: str, officer_id: str) -> tuple[str, str]:
    """``("YYYY-MM-DD HH:MM:SS.mmm", "<device> <officer>")`` for a frame taken at ``utc_ns``."""
    seconds, rest = divmod(utc_ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{rest // 1_000_000:03d}", f"{device_id} {officer_id}".strip()


class Overlay:
    """Where and how large the two lines go in a ``width`` x ``height`` frame: bottom-left,
    the font scaled with the frame (1x at 160x120, 3x at 640x360, 10x at 1920x1080)."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        scale = max(1, min(width // 170, height // 100))
        self.burner = TextBurner(scale)
        margin = scale
        lh = self.burner.line_height
        self.x = margin
        self.y = (height - 2 * lh - margin, height - lh - margin)
        self._strips: dict[str, np.ndarray] = {}

    def draw(self, plane: np.ndarray, lines: tuple[str, str]) -> None:
        """Burn ``lines`` (from :func:`osd_lines`) into the luma plane ``plane``
        (``height`` x at least ``width``), in place."""
        stamp, ids = lines
        burner, x = self.burner, self.x
        head, tail = stamp[:-4], stamp[-4:]
        for key, top in ((head, self.y[0]), (ids, self.y[1])):
            strip = self._strips.get(key)
            if strip is None:
                if len(self._strips) > 8:
                    self._strips.clear()
                strip = self._strips[key] = burner.strip(key)
            burner.blit(plane, x, top, strip)
        burner.burn(plane, x + burner.width_of(head), self.y[0], tail)

    def read(self, plane: np.ndarray, id_length: int) -> tuple[str, str]:
        """The two lines a (decoded) luma plane shows: the 23-character time line and an
        id line of ``id_length`` characters."""
        return (
            self.burner.read(plane, self.x, self.y[0], 23),
            self.burner.read(plane, self.x, self.y[1], id_length),
        )
