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


def image_bytes(img: QImage) -> bytes:
    """Raw bytes of a QImage (both bindings expose `constBits` differently)."""
    ptr = img.constBits()
    n = img.sizeInBytes() if hasattr(img, "sizeInBytes") else img.byteCount()
    if hasattr(ptr, "setsize"):
        ptr.setsize(n)
        return bytes(ptr)
    return bytes(ptr.asstring(n))  # PyQt6 sip.voidptr


def decode_to_bgra(data: bytes) -> tuple[int, int, bytes] | None:
    """Encoded image (png/webp/jpeg) -> (w, h, BGRA straight alpha) through Qt's decoders."""
    img = QImage()
    if not img.loadFromData(data):
        return None
    img = img.convertToFormat(QImage.Format.Format_ARGB32)  # BGRA in memory on little-endian
    w, h = img.width(), img.height()
    raw = image_bytes(img)
    stride = img.bytesPerLine()
    if stride != w * 4:  # drop row padding
        raw = b"".join(raw[y * stride : y * stride + w * 4] for y in range(h))
    return w, h, raw


__all__ = ["QT6", "QByteArray", "QImage", "QPixmap", "QTimer", "Qt", "QtCore", "QtGui", "QtWidgets"]
__all__ += ["decode_to_bgra", "image_bytes"]
