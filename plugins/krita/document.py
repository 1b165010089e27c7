"""Krita document I/O: read the canvas/selection for a job, write results as layers.

Pixels go through `pixelData`/`setPixelData` (BGRA on little-endian for 8-bit RGBA), never through
temp files. Documents in other colour models/depths are read through `thumbnail()` (Krita converts
to 8-bit sRGB) and results land in 8-bit RGBA layers Krita converts on merge.
"""

from __future__ import annotations

import json
from typing import Any

from krita import Krita  # type: ignore[import-not-found]

from ._common import actions, pixels, results
from .qt import QByteArray, decode_to_bgra, image_bytes

Canvas = actions.Canvas
ANNOTATION = "sdbridge"


def is_rgba8(doc: Any) -> bool:
    return doc.colorModel() == "RGBA" and doc.colorDepth() == "U8"


def read_canvas(doc: Any, with_selection: bool = True) -> Any:
    w, h = doc.width(), doc.height()
    doc.waitForDone()
    if is_rgba8(doc):
        bgra = bytes(doc.pixelData(0, 0, w, h))
    else:
        # thumbnail() renders the projection converted to an 8-bit QImage at full size.
        from .qt import QImage

        img = doc.thumbnail(w, h).convertToFormat(QImage.Format.Format_ARGB32)
        bgra = image_bytes(img)
    if len(bgra) != w * h * 4:
        raise actions.ActionError(f"could not read the canvas ({len(bgra)} bytes for {w}x{h})")
    mask = None
    sel = doc.selection() if with_selection else None
    if sel is not None and sel.width() > 0 and sel.height() > 0:
        mask = bytes(sel.pixelData(0, 0, w, h))
    return Canvas(w, h, pixels.bgra_to_rgba(bgra), mask)


def decode_result_image(img: dict[str, Any]) -> tuple[int, int, bytes]:
    """Results are PNG (or raw): Qt decodes them natively (fast), the pure-Python decoder is the fallback."""
    if img.get("format") in ("png", "webp", "jpeg") and isinstance(img.get("data"), bytes):
        got = decode_to_bgra(img["data"])
        if got is not None:
            w, h, bgra = got
            return w, h, pixels.bgra_to_rgba(bgra)
    return results.decode_image(img)


def _top_child(parent: Any) -> Any:
    kids = [n for n in parent.childNodes() if n.type() != "selectionmask"]
    return kids[-1] if kids else None


def apply_result(doc: Any, plan: Any) -> list[Any]:
    """Apply a ResultPlan: resize/scale the canvas if needed, add a group with one layer per image."""
    change = plan.canvas
    if change is not None:
        if change.scale:
            doc.scaleImage(change.w, change.h, int(doc.xRes()), int(doc.yRes()), "Bicubic")
        else:
            ox, oy = change.origin
            doc.resizeImage(-ox, -oy, change.w, change.h)
        doc.waitForDone()
    if not plan.layers:  # e.g. face re-render found no face: record it, add no empty group
        add_history(doc, plan.record)
        return []
    root = doc.rootNode()
    group = doc.createGroupLayer(plan.group)
    nodes = []
    # Fill the group while it is detached, then attach it in one step: a single undo command
    # (Edit ▸ Undo) then removes the whole batch.
    for patch in plan.layers:
        node = doc.createNode(patch.name, "paintlayer")
        if not is_rgba8(doc):
            node.setColorSpace("RGBA", "U8", "sRGB-elle-V2-srgbtrc.icc")
        r = patch.rect
        node.setPixelData(QByteArray(pixels.rgba_to_bgra(patch.rgba)), r.x, r.y, r.w, r.h)
        group.addChildNode(node, nodes[-1] if nodes else None)
        nodes.append(node)
    # Later layers of a batch would hide earlier ones; show only the first so the user sees one result.
    for node in nodes[1:]:
        node.setVisible(False)
    root.addChildNode(group, _top_child(root))
    add_history(doc, plan.record)
    doc.refreshProjection()
    return nodes


def history(doc: Any) -> list[dict[str, Any]]:
    raw = bytes(doc.annotation(ANNOTATION) or b"")
    if not raw:
        return []
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError:
        return []
    return data if isinstance(data, list) else []


def add_history(doc: Any, record: dict[str, Any]) -> None:
    """Generation parameters live in a document annotation, so they are saved in the .kra."""
    items = history(doc)[-199:] + [record]
    doc.setAnnotation(ANNOTATION, "sdbridge generation parameters", QByteArray(json.dumps(items).encode("utf-8")))


def active_document() -> Any:
    return Krita.instance().activeDocument()
