"""One image: verified with Pillow, resized and re-encoded, or refused with the cause (BadImage.status).

Images are re-encoded as baseline JPEG (--jpeg-quality, EXIF orientation applied, transparency flattened on
white, metadata dropped) with the long side at most --max-side: one small format for every source, the same
bytes for the same input and Pillow. What fails is one of: invalid_image (HTML, text, an unknown format),
truncated_image, decompression_bomb (over --max-pixels).
"""

from __future__ import annotations

import io
import struct

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # what Amazon serves, and nothing exotic to decode


class BadImage(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def process_image(data: bytes, *, max_pixels: int, max_side: int, quality: int) -> bytes:
    """Verify an image with Pillow and re-encode it as RGB JPEG, long side at most max_side; raise BadImage."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as probe:
            width, height = probe.size
            if width * height > max_pixels:
                raise BadImage("decompression_bomb", f"{width}x{height} pixels, over max_pixels {max_pixels}")
            probe.verify()  # structure and checksums; the image must be opened again to decode it
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            if img.getexif().get(ExifTags.Base.Orientation) in (5, 6, 7, 8):  # stored turned by 90 degrees
                width, height = height, width
            # JPEG: decode at a reduced scale, far faster for big photos. The reduced size is rounded up, so the
            # final size is computed from the full one: otherwise the aspect ratio drifts by a pixel or more.
            img.draft("RGB", (max_side, max_side))
            img.load()  # a truncated file fails here
            img = ImageOps.exif_transpose(img)
            img = _flatten_rgb(img)
            if max(width, height) > max_side:
                scale = max_side / max(width, height)
                size = (max(1, round(width * scale)), max(1, round(height * scale)))
                img = img.resize(size, Image.Resampling.LANCZOS)
            out = io.BytesIO()
            img.save(out, format="JPEG", quality=quality, optimize=False, progressive=False)
            return out.getvalue()
    except BadImage:
        raise
    except Image.DecompressionBombError as err:
        raise BadImage("decompression_bomb", str(err)) from err
    except UnidentifiedImageError as err:
        raise BadImage("invalid_image", "not a recognised image format") from err
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as err:  # what damaged files raise
        status = "truncated_image" if "truncat" in str(err).lower() else "invalid_image"
        raise BadImage(status, f"{type(err).__name__}: {err}") from err


def _flatten_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")
