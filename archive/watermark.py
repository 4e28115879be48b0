"""The party copy's watermark: the requester's name (in Chinese or any script the font has),
the date and the request, drawn with a real CJK font and burned into every frame's luma.

Why a TrueType font and not the OSD's 5x7 bitmap font (:mod:`evidence.osd`): almost every
requester's name in a Chinese town office is written in Chinese, and the watermark exists
to say, on the picture itself, whom the copy was given to. Why rasterised once: the text
is the same on every frame, so Pillow's FreeType renders it once into two coverage masks
(the glyphs, and the glyphs with their outline); burning a frame is then two integer
multiply-adds over the masks' rectangle of the Y plane (white glyphs, black outline, so
the text reads on any picture), and the chroma under it is made neutral.

The font is found, in this order:

1. the ``font`` argument (a library caller, a test);
2. ``$BODYCAM_WATERMARK_FONT`` (a path to a .ttf, .otf or .ttc file);
3. the Debian packages' files in :data:`DEFAULT_FONTS`: ``fonts-wqy-zenhei`` (what the
   install scripts put there), then ``fonts-noto-cjk``, then ``fonts-wqy-microhei``.

A font that was named and is missing is an error, never a silent fallback; no font at all
is one line naming the package to install (:class:`FontMissing`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from evidence.exc import EvidenceError
from evidence.media import hash_file

__all__ = [
    "DEFAULT_FONTS",
    "FONT_ENV",
    "FONT_PACKAGE",
    "FontMissing",
    "Watermark",
    "WatermarkError",
    "find_font",
    "render_watermark",
]

FONT_ENV = "BODYCAM_WATERMARK_FONT"
FONT_PACKAGE = "fonts-wqy-zenhei"
DEFAULT_FONTS: tuple[tuple[str, str], ...] = (
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", "fonts-wqy-zenhei"),
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", "fonts-noto-cjk"),
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "fonts-wqy-microhei"),
)
"""(file, Debian package) in the order they are tried when no font is named."""

WHITE, BLACK, NEUTRAL = 235, 16, 128  # video-range luma, and chroma without colour
MIN_PX = 10  # smaller CJK glyphs stop being legible
MAX_SHARE = 0.5  # the watermark may cover at most this share of the frame's height
_MISSING = "\U0010fffd"  # a private-use code point no font draws: its .notdef box


class WatermarkError(EvidenceError):
    """The watermark cannot be drawn as asked (a glyph the font lacks, a frame too small)."""


class FontMissing(WatermarkError):
    """No CJK font where one was looked for: one line naming the package to install."""


def find_font(font: str | os.PathLike | None = None) -> Path:
    """The font file to draw with (see the module's search order)."""
    named = str(font) if font else os.environ.get(FONT_ENV, "")
    if named:
        where = "" if font else f" (${FONT_ENV})"
        path = Path(named)
        if not path.is_file():
            raise FontMissing(
                f"watermark font {path}{where} does not exist: name an installed CJK font "
                f"file, or install {FONT_PACKAGE} (apt-get install {FONT_PACKAGE})"
            )
        return path
    for file, _package in DEFAULT_FONTS:
        if Path(file).is_file():
            return Path(file)
    raise FontMissing(
        f"no CJK font for the watermark: install {FONT_PACKAGE} (apt-get install "
        f"{FONT_PACKAGE}), or set ${FONT_ENV} to a .ttf/.otf/.ttc file"
    )


def _load(path: Path, px: int) -> ImageFont.FreeTypeFont:
    try:
        return ImageFont.truetype(str(path), px, index=0)
    except OSError as exc:
        raise FontMissing(f"watermark font {path}: cannot be read as a font ({exc})") from None


def _missing_glyphs(font: ImageFont.FreeTypeFont, text: str) -> list[str]:
    """The characters ``font`` draws as its .notdef box (all missing glyphs look alike)."""
    tofu = font.getmask(_MISSING)
    tofu_bytes, tofu_size = bytes(tofu), tofu.size
    out = []
    for ch in sorted(set(text) - {" "}):
        mask = font.getmask(ch)
        if mask.size == tofu_size and bytes(mask) == tofu_bytes and any(tofu_bytes):
            out.append(ch)
    return out


def _wrap(font: ImageFont.FreeTypeFont, line: str, width: float) -> list[str]:
    """Break at spaces; a word wider than ``width`` (a long name in Chinese, which has no
    spaces) is broken between characters."""
    out: list[str] = []
    current = ""
    for word in line.split(" "):
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= width:
            current = candidate
            continue
        if current:
            out.append(current)
        current = ""
        for ch in word:
            if current and font.getlength(current + ch) > width:
                out.append(current)
                current = ""
            current += ch
    return out + ([current] if current else [])


@dataclass(frozen=True, eq=False)
class Watermark:
    """The rendered text: ``fill`` (glyphs) and ``edge`` (glyphs and outline) are coverage
    masks 0..255 whose top-left corner is at (``x``, ``y``) of the frame."""

    text: tuple[str, ...]  # as asked
    lines: tuple[str, ...]  # as drawn, wrapped to the frame's width
    font: Path
    px: int
    x: int
    y: int
    fill: np.ndarray
    edge: np.ndarray

    def __post_init__(self) -> None:
        # Per frame: y' = (y * keep + add) >> 8, with keep and add from the two masks:
        # black outline over the picture, then white glyphs over that.
        f = self.fill.astype(np.uint32)
        e = np.maximum(self.edge, self.fill).astype(np.uint32)
        keep = (255 - e) * (255 - f)  # /255^2: the share of the picture left
        add = e * (255 - f) * BLACK + f * 255 * WHITE
        scale = 255 * 255
        object.__setattr__(self, "_keep", ((keep * 256 + scale // 2) // scale).astype(np.uint16))
        object.__setattr__(self, "_add", ((add * 256 + scale // 2) // scale).astype(np.uint16))
        # Chroma 2x2-subsampled: neutral wherever any of its four pixels is covered.
        h, w = self.edge.shape
        ch = np.zeros(((h + 1) // 2, (w + 1) // 2), bool)
        for dy in (0, 1):
            for dx in (0, 1):
                part = e[dy::2, dx::2] > 0
                ch[: part.shape[0], : part.shape[1]] |= part
        object.__setattr__(self, "_chroma", ch)

    @property
    def height(self) -> int:
        return self.edge.shape[0]

    @property
    def width(self) -> int:
        return self.edge.shape[1]

    def pattern(self) -> np.ndarray:
        """The luma the watermark pushes towards, as a signed pattern: +1 on the glyphs,
        -1 on their outline, 0 elsewhere (what a decoded frame is compared with)."""
        f = self.fill.astype(np.float64) / 255
        e = np.maximum(self.edge, self.fill).astype(np.float64) / 255
        return f - (e - f)

    def burn(self, planes: np.ndarray, height: int) -> None:
        """Burn into ``planes``, a frame as ``VideoFrame.to_ndarray(format="yuv420p")``
        gives it (the Y plane's ``height`` rows, then U and V one after the other)."""
        y0, x0, h, w = self.y, self.x, self.height, self.width
        luma = planes[y0 : y0 + h, x0 : x0 + w]
        luma[...] = ((luma * self._keep + self._add) >> 8).astype(np.uint8)
        width = planes.shape[1]
        cw, chh = width // 2, height // 2
        u = planes[height : height + chh // 2].reshape(chh, cw)
        v = planes[height + chh // 2 : height + chh].reshape(chh, cw)
        cy, cx = y0 // 2, x0 // 2
        mask = self._chroma[: chh - cy, : cw - cx]
        mh, mw = mask.shape
        u[cy : cy + mh, cx : cx + mw][mask] = NEUTRAL
        v[cy : cy + mh, cx : cx + mw][mask] = NEUTRAL

    def record(self) -> dict[str, Any]:
        """What the derivation record says of it: enough to draw it again and compare."""
        size, digest = hash_file(self.font)
        face = _load(self.font, self.px)
        family, style = face.getname()
        package = next((p for f, p in DEFAULT_FONTS if Path(f) == self.font), "")
        return {
            "text": list(self.text),
            "lines": list(self.lines),
            "font": {
                "file": str(self.font),
                "family": family or "",
                "style": style or "",
                "package": package,
                "size": size,
                "sha256": digest,
            },
            "px": self.px,
            "position": [self.x, self.y],
        }


def render_watermark(
    width: int, height: int, lines: Sequence[str], font: str | os.PathLike | None = None
) -> Watermark:
    """Render ``lines`` for a ``width`` x ``height`` frame, at the top left (the camera's
    own OSD is at the bottom left): a 24th of the frame's height per line, wrapped to the
    width, made smaller (to :data:`MIN_PX`) until it covers at most half the height."""
    path = find_font(font)
    px = max(MIN_PX, height // 24)
    probe = _load(path, px)
    missing = _missing_glyphs(probe, "".join(lines))
    if missing:
        raise WatermarkError(
            f"the watermark font {path.name} has no glyph for {''.join(missing)!r}: set "
            f"${FONT_ENV} to a font that has it (e.g. fonts-noto-cjk's NotoSansCJK-Regular.ttc)"
        )
    while True:
        face = _load(path, px)
        stroke = max(1, px // 12)
        margin = max(2, px // 3)
        drawn = [
            part for line in lines for part in _wrap(face, line, width - 2 * (margin + stroke))
        ]
        ascent, descent = face.getmetrics()
        step = ascent + descent + 2 * stroke
        total = step * len(drawn)
        too_wide = any(face.getlength(line) > width - 2 * (margin + stroke) for line in drawn)
        if (total <= height * MAX_SHARE and not too_wide) or px <= MIN_PX:
            break
        px -= 1
    if too_wide or total > height - margin:
        raise WatermarkError(
            f"the watermark ({len(drawn)} lines at {px} px) does not fit a {width}x{height} frame"
        )
    w = min(width - margin, int(max(face.getlength(line) for line in drawn)) + 2 * stroke + 2)
    size = (w, total)
    fill, edge = Image.new("L", size, 0), Image.new("L", size, 0)
    for n, line in enumerate(drawn):
        at = (stroke, n * step + stroke)
        ImageDraw.Draw(edge).text(at, line, font=face, fill=255, stroke_width=stroke)
        ImageDraw.Draw(fill).text(at, line, font=face, fill=255)
    return Watermark(
        tuple(lines),
        tuple(drawn),
        path,
        px,
        margin,
        margin,
        np.asarray(fill).copy(),
        np.asarray(edge).copy(),
    )
