"""Instances as pictures (WADO-RS rendered and thumbnail resources): pydicom decodes the
frame, the modality and VOI LUTs (or the frame's own range) map it to 8 bits, Pillow
writes JPEG or PNG."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

__all__ = ["render"]


def _eight_bit(ds: Dataset, frame: np.ndarray) -> np.ndarray:
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if frame.ndim == 3:  # colour: already 8 bits a sample for what viewers show
        out: np.ndarray = np.clip(frame, 0, 255).astype(np.uint8)
        return out
    values = apply_modality_lut(frame, ds)
    if "WindowCenter" in ds:
        values = apply_voi_lut(values, ds)
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
    if photometric == "MONOCHROME1":
        scaled = 255.0 - scaled
    return scaled.astype(np.uint8)


def render(path: str, frame: int = 1, size: int | None = None, media: str = "image/jpeg") -> bytes:
    """Frame ``frame`` (from 1) of the instance at ``path`` as JPEG or PNG, scaled down to
    at most ``size`` pixels a side. Raises ValueError for an instance with no image."""
    ds = dcmread(path)
    if "PixelData" not in ds:
        raise ValueError("the instance holds no image")
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if not 1 <= frame <= frames:
        raise IndexError(f"frame {frame} is not in 1-{frames}")
    pixels = ds.pixel_array
    picture = pixels[frame - 1] if frames > 1 else pixels
    image = Image.fromarray(_eight_bit(ds, picture))
    if size is not None:
        image.thumbnail((size, size))
    out = io.BytesIO()
    if media == "image/png":
        image.save(out, format="PNG")
    else:
        image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode).save(
            out, format="JPEG", quality=90
        )
    return out.getvalue()
