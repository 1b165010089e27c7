"""Krita document I/O: read the canvas/selection for a job, the preview layer, applied layers, and
the annotations the plugin keeps in the document.

Pixels go through `pixelData`/`setPixelData` (BGRA on little-endian for 8-bit RGBA), never through
temp files. Documents in other colour models/depths are read through `thumbnail()` (Krita converts
to 8-bit sRGB) and results land in 8-bit RGBA layers Krita converts on merge.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from krita import Krita  # type: ignore[import-not-found]

from . import regions
from ._common import actions, pixels, results
from .qt import QByteArray, decode_to_bgra, image_bytes

Canvas = actions.Canvas
Rect = actions.Rect
ANNOTATION = "sdbridge"  # JSON list of the parameters of every job (a log other tools can read)
HISTORY_ANNOTATION = "sdbridge-history"  # the review history with its images (plugins/common/history.py)
KEY_ANNOTATION = "sdbridge-doc"  # a random id: which in-memory history belongs to this document
PREVIEW_NAME = "[sdbridge preview]"
LIVE_NAME = "[sdbridge live]"  # live painting's result (plugins/krita/live.py)
PLUGIN_LAYERS = (PREVIEW_NAME, LIVE_NAME)  # shown results: never part of the picture a job starts from
LOG_LIMIT = 200


def is_rgba8(doc: Any) -> bool:
    return doc.colorModel() == "RGBA" and doc.colorDepth() == "U8"


def read_canvas(doc: Any, with_selection: bool = True) -> Any:
    """The picture a job starts from (the preview layer and the region layers left out), the
    selection, and the document's regions (regions.py)."""
    w, h = doc.width(), doc.height()
    doc.waitForDone()
    with regions.hidden_for_reading(doc) as found:
        bgra = _projection(doc, w, h)
    if len(bgra) != w * h * 4:
        raise actions.ActionError(f"could not read the canvas ({len(bgra)} bytes for {w}x{h})")
    mask = selection_mask(doc) if with_selection else None
    return Canvas(w, h, pixels.bgra_to_rgba(bgra), mask, regions=found)


def _projection(doc: Any, w: int, h: int) -> bytes:
    hidden = _hide_plugin_layers(doc)  # the shown results are not part of the picture a job starts from
    try:
        if is_rgba8(doc):
            return bytes(doc.pixelData(0, 0, w, h))
        # thumbnail() renders the projection converted to an 8-bit QImage at full size.
        from .qt import QImage

        img = doc.thumbnail(w, h).convertToFormat(QImage.Format.Format_ARGB32)
        return image_bytes(img)
    finally:
        for node in hidden:
            node.setVisible(True)
        if hidden:
            doc.refreshProjection()


def selection_mask(doc: Any) -> bytes | None:
    """The selection as gray8 over the whole canvas (None without one)."""
    sel = doc.selection()
    if sel is None or sel.width() <= 0 or sel.height() <= 0:
        return None
    return bytes(sel.pixelData(0, 0, doc.width(), doc.height()))


def decode_result_image(img: dict[str, Any]) -> tuple[int, int, bytes]:
    """Results are PNG (or raw): Qt decodes them natively (fast), the pure-Python decoder is the fallback."""
    if img.get("format") in ("png", "webp", "jpeg") and isinstance(img.get("data"), bytes):
        got = decode_png(img["data"])
        if got is not None:
            return got
    return results.decode_image(img)


def decode_png(data: bytes) -> tuple[int, int, bytes] | None:
    """Encoded image -> (w, h, straight RGBA) through Qt, None when Qt cannot read it."""
    got = decode_to_bgra(data)
    return None if got is None else (got[0], got[1], pixels.bgra_to_rgba(got[2]))


# --- the preview layer ----------------------------------------------------------------------------


def find_preview(doc: Any, name: str = PREVIEW_NAME) -> Any:
    return next((n for n in doc.rootNode().childNodes() if n.name() == name), None)


def _hide_plugin_layers(doc: Any) -> list[Any]:
    hidden = [n for n in doc.rootNode().childNodes() if n.name() in PLUGIN_LAYERS and n.visible()]
    for node in hidden:
        node.setVisible(False)
    if hidden:
        doc.refreshProjection()
        doc.waitForDone()
    return hidden


def show_preview(doc: Any, rect: Any, bgra: bytes, name: str = PREVIEW_NAME) -> Any:
    """Put `bgra` (rect-sized) on the locked preview layer `name` at the top of the stack, replacing what it
    showed. The layer is made once (one "add layer" undo step); later previews only swap pixels.

    No layer property (lock, visibility) changes on the attached layer unless it must: each change
    queues a delayed update in Krita's Layers docker that still points at the layer, and Krita 5.1
    and 6.0 crash when that update runs after the document was closed (README, Known Krita issues).
    `setPixelData` writes into a locked layer: the lock only stops the user's tools."""
    node = find_preview(doc, name)
    if node is None:
        node = doc.createNode(name, "paintlayer")
        if not is_rgba8(doc):
            node.setColorSpace("RGBA", "U8", "sRGB-elle-V2-srgbtrc.icc")
        node.setLocked(True)  # still detached: no signal reaches the Layers docker
        node.setPixelData(QByteArray(bgra), rect.x, rect.y, rect.w, rect.h)
        doc.rootNode().addChildNode(node, _top_child(doc.rootNode()))
    else:
        old = node.bounds()
        x, y, w, h = old.x(), old.y(), old.width(), old.height()
        if w > 0 and h > 0:
            node.setPixelData(QByteArray(bytes(w * h * 4)), x, y, w, h)  # clear what it showed
        node.setPixelData(QByteArray(bgra), rect.x, rect.y, rect.w, rect.h)
        if not node.visible():  # the user hid it: a new result is shown again
            node.setVisible(True)
    doc.refreshProjection()
    return node


def remove_preview(doc: Any, name: str = PREVIEW_NAME) -> bool:
    node = find_preview(doc, name)
    if node is None:
        return False
    node.remove()
    doc.refreshProjection()
    return True


# --- applying --------------------------------------------------------------------------------------


def change_canvas(doc: Any, change: Any) -> None:
    """Resize (outpaint: the old image at `origin`) or scale (upscale) the document."""
    if change.scale:
        doc.scaleImage(change.w, change.h, int(doc.xRes()), int(doc.yRes()), "Bicubic")
    else:
        ox, oy = change.origin
        doc.resizeImage(-ox, -oy, change.w, change.h)
    doc.waitForDone()


def add_layer(doc: Any, name: str, rect: Any, rgba: bytes) -> Any:
    """A new paint layer at the top (under the preview layers, which stay on top) with `rgba` at `rect`.
    Built while detached, attached in one step: one Edit ▸ Undo removes it."""
    node = doc.createNode(name, "paintlayer")
    if not is_rgba8(doc):
        node.setColorSpace("RGBA", "U8", "sRGB-elle-V2-srgbtrc.icc")
    node.setPixelData(QByteArray(pixels.rgba_to_bgra(rgba)), rect.x, rect.y, rect.w, rect.h)
    doc.rootNode().addChildNode(node, _top_child(doc.rootNode(), below=PLUGIN_LAYERS))
    doc.refreshProjection()
    return node


def _top_child(parent: Any, below: tuple[str, ...] = ()) -> Any:
    """The topmost child (no selection mask), or the topmost under the layers named in `below`."""
    kids = [n for n in parent.childNodes() if n.type() != "selectionmask"]
    while kids and kids[-1].name() in below:
        kids.pop()
    return kids[-1] if kids else None


# --- annotations -----------------------------------------------------------------------------------


def _annotation(doc: Any, name: str) -> bytes:
    return bytes(doc.annotation(name) or b"")


def doc_key(doc: Any, create: bool = False) -> str | None:
    """The document's id for the in-memory history (stored with it, so a reloaded .kra keeps it)."""
    key = _annotation(doc, KEY_ANNOTATION).decode("ascii", "replace")
    if not key and create:
        key = uuid.uuid4().hex
        doc.setAnnotation(KEY_ANNOTATION, "sdbridge document id", QByteArray(key.encode("ascii")))
    return key or None


def read_history(doc: Any) -> bytes:
    return _annotation(doc, HISTORY_ANNOTATION)


def write_history(doc: Any, data: bytes) -> None:
    doc.setAnnotation(HISTORY_ANNOTATION, "sdbridge review history", QByteArray(data))


def params_log(doc: Any) -> list[dict[str, Any]]:
    raw = _annotation(doc, ANNOTATION)
    if not raw:
        return []
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError:
        return []
    return data if isinstance(data, list) else []


def log_params(doc: Any, record: dict[str, Any]) -> None:
    """Generation parameters, as JSON, in a document annotation: they are saved in the .kra."""
    items = params_log(doc)[-(LOG_LIMIT - 1) :] + [record]
    doc.setAnnotation(ANNOTATION, "sdbridge generation parameters", QByteArray(json.dumps(items).encode("utf-8")))


def active_document() -> Any:
    return Krita.instance().activeDocument()


def by_key(key: str | None) -> Any:
    """The open document with this id (a fresh wrapper); None once it is closed. Safer than keeping a
    wrapper: libkis's annotation() dereferences the document of a wrapper whose document was closed."""
    if not key:
        return None
    return next((d for d in Krita.instance().documents() if doc_key(d) == key), None)
