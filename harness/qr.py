"""QR certificates: encode a payload, render it, read it back from attribution weights.

A watermark such as StealthMark hides a QR code in a model: one image patch per
QR module, and the certificate is the grid of per-patch attribution weights.
This module turns payloads into module matrices and back: regular QR codes
(``qrcode``; version 1 is 21x21) and Micro QR codes (``segno``; M1..M4 are
11x11 .. 17x17; zxing-cpp reads them, pyzbar cannot).
"""

from __future__ import annotations

import functools
import string
from typing import Iterable

import numpy as np
import qrcode
import qrcode.exceptions
from skimage.filters import threshold_otsu

from harness.errors import HarnessError

_ERROR_CORRECTION = {
    "L": qrcode.constants.ERROR_CORRECT_L,
    "M": qrcode.constants.ERROR_CORRECT_M,
    "Q": qrcode.constants.ERROR_CORRECT_Q,
    "H": qrcode.constants.ERROR_CORRECT_H,
}

DECODERS = ("pyzbar", "zxing-cpp")

# Micro QR versions and their side in modules.
MICRO_TYPES = {"M1": 11, "M2": 13, "M3": 15, "M4": 17}


def encode_payload(text: str, version: int = 1, error_correction: str = "H") -> np.ndarray:
    """Module matrix of ``text`` (True = dark), without quiet zone; version 1 is 21x21."""
    level = _ERROR_CORRECTION.get(error_correction.upper())
    if level is None:
        raise HarnessError(f"QR error correction must be one of L, M, Q, H, got {error_correction!r}")
    if not 1 <= version <= 40:
        raise HarnessError(f"QR version must be between 1 and 40, got {version}")
    code = qrcode.QRCode(version=version, error_correction=level, border=0)
    code.add_data(text)
    try:
        # fit=False: the version fixes the grid size, so a payload that does not fit is an error
        code.make(fit=False)
    except qrcode.exceptions.DataOverflowError:
        raise HarnessError(
            f"payload of {len(text.encode())} bytes does not fit a version-{version} QR code "
            f"with error correction {error_correction.upper()}; use a higher version or a lower level"
        ) from None
    return np.array(code.get_matrix(), dtype=bool)


def render_modules(modules: np.ndarray, module_px: int = 8, quiet_zone: int = 4) -> np.ndarray:
    """uint8 grayscale image of a module matrix (dark = 0, light = 255) with a quiet zone of light modules."""
    modules = np.asarray(modules, dtype=bool)
    if modules.ndim != 2:
        raise HarnessError(f"QR modules must be a 2-D matrix, got shape {modules.shape}")
    if module_px < 1 or quiet_zone < 0:
        raise HarnessError(f"module_px must be >= 1 and quiet_zone >= 0, got {module_px} and {quiet_zone}")
    padded = np.pad(modules, quiet_zone, constant_values=False)
    pixels = np.repeat(np.repeat(padded, module_px, axis=0), module_px, axis=1)
    return np.where(pixels, 0, 255).astype(np.uint8)


def modules_from_weights(weights: np.ndarray) -> np.ndarray:
    """Module matrix from a (G, G) attribution grid: dark where |weight| is above Otsu's threshold."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2:
        raise HarnessError(f"attribution weights must be a 2-D grid, got shape {weights.shape}")
    if not np.all(np.isfinite(weights)):
        raise HarnessError("attribution weights contain NaN or infinity")
    magnitude = np.abs(weights)
    # A constant grid carries no certificate; Otsu has nothing to split, so every module is light.
    if np.ptp(magnitude) == 0:
        return np.zeros(weights.shape, dtype=bool)
    return magnitude > threshold_otsu(magnitude)


@functools.cache
def _pyzbar_decode():
    try:
        from pyzbar import pyzbar
    except (ImportError, OSError):  # OSError: the package is there but libzbar cannot be loaded
        return None

    def decode(image: np.ndarray) -> list[str]:
        found = pyzbar.decode(image, symbols=[pyzbar.ZBarSymbol.QRCODE])
        return [r.data.decode("utf-8", errors="replace") for r in found]

    return decode


@functools.cache
def _zxing_decode():
    try:
        import zxingcpp
    except (ImportError, OSError):
        return None

    def decode(image: np.ndarray) -> list[str]:
        return [r.text for r in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]

    return decode


_LOADERS = {"pyzbar": _pyzbar_decode, "zxing-cpp": _zxing_decode}


def available_decoders() -> list[str]:
    """Names of the QR decoders that can be loaded here, in the order ``decode`` tries them."""
    return [name for name in DECODERS if _LOADERS[name]() is not None]


def decode(image: np.ndarray, decoders: Iterable[str] = DECODERS) -> str | None:
    """Text of the first QR code found in a uint8 grayscale image, trying ``decoders`` in order; None if none."""
    decoders = tuple(decoders)
    unknown = [d for d in decoders if d not in _LOADERS]
    if unknown:
        raise HarnessError(f"unknown QR decoder {unknown[0]!r}; valid decoders: {', '.join(DECODERS)}")
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype != np.uint8:
        raise HarnessError(
            f"decode expects a 2-D uint8 grayscale image (see render_modules), got {image.dtype} {image.shape}"
        )
    loaded = [fn for fn in (_LOADERS[d]() for d in decoders) if fn is not None]
    if not loaded:
        raise HarnessError(f"no QR decoder can be loaded among {', '.join(decoders)}; install pyzbar or zxing-cpp")
    image = np.ascontiguousarray(image)
    for fn in loaded:
        texts = fn(image)
        if texts:
            return texts[0]
    return None


def grid_feature_mask(height: int, width: int, grid: int) -> np.ndarray:
    """int64 (height, width) map of patch ids 0..grid*grid-1, row-major, patches as equal as possible."""
    if grid < 1:
        raise HarnessError(f"patch grid must be at least 1x1, got {grid}")
    if grid > height or grid > width:
        raise HarnessError(f"a {grid}x{grid} patch grid needs an image of at least {grid}x{grid} pixels, "
                           f"got {height}x{width}")
    # Integer floor of linspace(0, n, grid + 1): exact, so no float rounding can make a patch empty.
    rows = np.searchsorted((np.arange(1, grid) * height) // grid, np.arange(height), side="right")
    cols = np.searchsorted((np.arange(1, grid) * width) // grid, np.arange(width), side="right")
    return (rows[:, None] * grid + cols[None, :]).astype(np.int64)


# -- symbol types: a Micro QR ("M1".."M4") or a regular QR of a version ("1".."40") -----------------
def encode_symbol(payload: str, qr_type: str = "M2", error: str = "L") -> np.ndarray:
    """Module matrix (True = dark), no quiet zone, of ``payload`` as a Micro QR ("M1".."M4") or a
    regular QR of version ``qr_type`` ("1".."40")."""
    qr_type = str(qr_type).upper()
    if qr_type in MICRO_TYPES:
        import segno
        from segno import DataOverflowError

        try:
            code = segno.make_micro(payload, version=qr_type, error=error, boost_error=False)
        except (DataOverflowError, ValueError) as exc:
            raise HarnessError(f"payload {payload!r} does not fit a Micro QR {qr_type}-{error}: {exc}") from None
        return np.array([list(row) for row in code.matrix], dtype=bool)
    if qr_type.isdigit():
        return encode_payload(payload, int(qr_type), error)
    raise HarnessError(f"qr_type must be one of {', '.join(MICRO_TYPES)} or a QR version 1..40, got {qr_type!r}")


def render_symbol(modules: np.ndarray, qr_type: str) -> np.ndarray:
    """uint8 picture of ``modules`` with the quiet zone the symbol needs (2 for Micro QR, 4 otherwise)."""
    return render_modules(modules, module_px=8, quiet_zone=2 if str(qr_type).upper() in MICRO_TYPES else 4)


def decode_symbol(modules: np.ndarray, qr_type: str) -> str | None:
    """Text read from a module matrix, or None. Micro QR needs zxing-cpp (pyzbar cannot read it)."""
    image = np.ascontiguousarray(render_symbol(modules, qr_type))
    if str(qr_type).upper() in MICRO_TYPES:
        import zxingcpp

        found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.MicroQRCode)
        return found[0].text if found else None
    return decode(image)


def shared_modules(payload: str, qr_type: str, error: str, draws: int = 64, seed: int = 0) -> np.ndarray:
    """Bool matrix: modules identical in the codes of ``draws`` random payloads of the same type and
    length (finder, separator, timing patterns). They carry nothing about the payload."""
    rng = np.random.default_rng(seed)
    alphabet = np.array(list(string.ascii_uppercase + string.digits))
    first = encode_symbol(payload, qr_type, error)
    same = np.ones_like(first)
    for _ in range(draws):
        other = encode_symbol("".join(rng.choice(alphabet, size=len(payload))), qr_type, error)
        same &= other == first
    return same
