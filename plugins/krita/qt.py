"""Tiny Qt shim: Krita 5 ships PyQt5, Krita 6 PyQt6. Import Qt names from here only.

The binding Krita itself loaded wins (importing the other one would drag a second Qt into the
process). Code uses fully scoped enums (`Qt.AlignmentFlag.AlignLeft`), which both bindings accept.
"""

from __future__ import annotations

import sys

if "PyQt6.QtCore" in sys.modules or "PyQt5.QtCore" not in sys.modules and "PyQt6" in sys.modules:
    from PyQt6 import QtCore, QtGui, QtWidgets  # type: ignore[import-not-found]

    QT6 = True
else:
    try:
        from PyQt5 import QtCore, QtGui, QtWidgets  # type: ignore[import-not-found]

        QT6 = False
    except ImportError:
        from PyQt6 import QtCore, QtGui, QtWidgets  # type: ignore[import-not-found]

        QT6 = True

Qt = QtCore.Qt
QTimer = QtCore.QTimer
QByteArray = QtCore.QByteArray
QImage = QtGui.QImage
QPixmap = QtGui.QPixmap
QIcon = QtGui.QIcon

# Step-preview formats the plugin can read, best first; rgba8 needs no image plugin at all.
PREVIEW_PREFERENCE = ("webp", "jpeg", "png")


def image_bytes(img: QImage) -> bytes:
    """Raw bytes of a QImage (both bindings expose `constBits` differently)."""
    ptr = img.constBits()
    n = img.sizeInBytes() if hasattr(img, "sizeInBytes") else img.byteCount()
    if hasattr(ptr, "setsize"):
        ptr.setsize(n)
        return bytes(ptr)
    return bytes(ptr.asstring(n))  # PyQt6 sip.voidptr


def decodable_formats() -> list[str]:
    """`hello.preview_formats`: what this Qt decodes (Debian's Krita has no WebP plugin), then raw."""
    have = {bytes(f).decode("ascii", "replace").lower() for f in QtGui.QImageReader.supportedImageFormats()}
    have |= {"jpeg"} if "jpg" in have else set()
    return [f for f in PREVIEW_PREFERENCE if f in have] + ["rgba8"]


def bgra_image(bgra: bytes, w: int, h: int) -> QImage:
    """A QImage that owns a copy of BGRA (straight alpha) bytes."""
    return QImage(bgra, w, h, w * 4, QImage.Format.Format_ARGB32).copy()


def scaled_bgra(bgra: bytes, w: int, h: int, new_w: int, new_h: int) -> bytes:
    """BGRA resampled smoothly to new_w × new_h (previews of results made for a resized canvas)."""
    img = bgra_image(bgra, w, h).scaled(
        new_w, new_h, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation
    )
    return _packed(img.convertToFormat(QImage.Format.Format_ARGB32))


def _packed(img: QImage) -> bytes:
    """The image's bytes without row padding."""
    w, h, stride = img.width(), img.height(), img.bytesPerLine()
    raw = image_bytes(img)
    return raw if stride == w * 4 else b"".join(raw[y * stride : y * stride + w * 4] for y in range(h))


def decode_to_bgra(data: bytes) -> tuple[int, int, bytes] | None:
    """Encoded image (png/webp/jpeg) -> (w, h, BGRA straight alpha) through Qt's decoders."""
    img = QImage()
    if not img.loadFromData(data):
        return None
    img = img.convertToFormat(QImage.Format.Format_ARGB32)  # BGRA in memory on little-endian
    return img.width(), img.height(), _packed(img)


__all__ = ["QT6", "QByteArray", "QIcon", "QImage", "QPixmap", "QTimer", "Qt", "QtCore", "QtGui", "QtWidgets"]
__all__ += ["bgra_image", "decodable_formats", "decode_to_bgra", "image_bytes", "scaled_bgra"]
