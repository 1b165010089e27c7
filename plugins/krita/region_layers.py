"""Editing a Krita document's regions for the docker's Regions tab: the list (from the region layers,
regions.py), new regions from the selection or a layer group, prompt / negative / strength / on-off per
region, removal, and the "Show masks" preview layer.

Every edit goes to the layer itself (name = prompt, opacity = strength, visibility = on/off), so the
list is always what the Layers docker shows; only the per-region negative prompt and a group's old name
live in the `sdbridge-regions` annotation (regions.load_extras).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count
from typing import Any

from krita import Krita  # type: ignore[import-not-found]

from . import document, regions
from ._common import actions
from ._common import regions as common
from .controls import LAYER_TYPES, find, layer_id
from .qt import QByteArray, QImage, QtGui, bgra_image, image_bytes

# One colour per region, in list order (BGR bytes for layers, as QColor for the preview); at most 8 regions.
PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60))  # fmt: skip
OVERLAY_ALPHA = 140  # the mask preview's tint over the picture (0…255)


@dataclass(frozen=True)
class Entry:
    """One row of the Regions tab."""

    layer: str  # the layer's uniqueId
    prompt: str
    negative: str
    percent: int  # strength as layer opacity, 0…100
    on: bool
    group: bool
    color: tuple[int, int, int]  # RGB


def colors(nodes: list[Any], extras: dict[str, dict[str, str]]) -> list[tuple[int, int, int]]:
    """The colour of each region layer: the one it was made with (kept in the annotation, so a layer's
    thumbnail, its row and Show masks agree however the list is reordered), else the first one free."""
    fixed = [extras.get(layer_id(n), {}).get("color", "") for n in nodes]
    used = {int(c) for c in fixed if c.isdigit()}
    free = (i for i in count() if i not in used)
    return [PALETTE[(int(c) if c.isdigit() else next(free)) % len(PALETTE)] for c in fixed]


def free_color(doc: Any) -> int:
    """The palette index for a new region: the first one no region of `doc` shows."""
    taken = {PALETTE.index(c) for c in colors(regions.region_nodes(doc), regions.load_extras(doc))}
    return next((i for i in range(len(PALETTE)) if i not in taken), len(taken))


def percent(opacity: int) -> int:
    return round(opacity * 100 / 255)


def listing(doc: Any) -> tuple[Entry, ...]:
    """The document's regions, top first, as the tab shows them."""
    extras = regions.load_extras(doc)
    nodes = regions.region_nodes(doc)
    out = []
    for n, rgb in zip(nodes, colors(nodes, extras), strict=True):
        ident = layer_id(n)
        out.append(Entry(ident, common.layer_prompt(n.name()) or "", extras.get(ident, {}).get("negative", ""),
                         percent(n.opacity()), bool(n.visible()), n.type() == "grouplayer", rgb))  # fmt: skip
    return tuple(out)


def node_of(doc: Any, ident: str) -> Any:
    node = find(doc, ident)
    if node is None or common.layer_prompt(node.name()) is None:
        raise actions.ActionError("that region's layer is no longer in the document")
    return node


def name_for(prompt: str) -> str:
    return f"{common.MARKER} {prompt.strip()}".rstrip()


# --- new regions ---------------------------------------------------------------------------------


def from_selection(doc: Any) -> Any:
    """A new region paint layer whose alpha is the selection (soft edges kept), in the region's colour,
    blended "behind" so it does not cover the picture (its thumbnail shows its colour). The selection is
    dropped afterwards: with one, Generate would inpaint it instead of drawing the whole canvas."""
    mask = document.selection_mask(doc)
    if mask is None or not mask.strip(b"\x00"):
        raise actions.ActionError("select the area of the new region first")
    w, h = doc.width(), doc.height()
    index = free_color(doc)
    b, g, r = reversed(PALETTE[index % len(PALETTE)])
    bgra = bytearray(bytes((b, g, r, 0)) * (w * h))
    bgra[3::4] = mask  # straight alpha: the colour everywhere, the selection as coverage
    node = doc.createNode(name_for(""), "paintlayer")
    if not document.is_rgba8(doc):
        node.setColorSpace("RGBA", "U8", "sRGB-elle-V2-srgbtrc.icc")
    node.setPixelData(QByteArray(bytes(bgra)), 0, 0, w, h)
    node.setBlendingMode("behind")
    doc.rootNode().addChildNode(node, _top(doc, skip=(document.PREVIEW_NAME, regions.OVERLAY_NAME)))
    _keep(doc, node, color=str(index))
    doc.setSelection(None)  # not the Deselect action: it acts on the active view, later (a stroke)
    doc.waitForDone()
    doc.refreshProjection()
    return node


def from_group(doc: Any) -> Any:
    """The active group becomes a region (its old name is kept to give back on Remove); an active layer
    that is no group is first wrapped in one (Krita's Layer ▸ Quick Group)."""
    node = doc.activeNode()
    if node is None or node.type() not in LAYER_TYPES or node.name() in (document.PREVIEW_NAME, regions.OVERLAY_NAME):
        raise actions.ActionError("select a group layer (or the layer to put in one) in the Layers docker")
    owner = node
    while owner is not None and owner.parentNode() is not None:  # a region group's layers are its pixels
        if common.layer_prompt(owner.name()) is not None:
            raise actions.ActionError(f"'{node.name()}' is a region already, or part of one ('{owner.name()}')")
        owner = owner.parentNode()
    if node.type() != "grouplayer":
        parent = node.parentNode()
        Krita.instance().action("create_quick_group").trigger()  # the layers selected in the Layers docker
        doc.waitForDone()
        group = node.parentNode()
        if group is None or group.type() != "grouplayer" or layer_id(group) == layer_id(parent):
            raise actions.ActionError("could not put the active layer in a group: group it, then try again")
        node = group
    was, index = node.name(), free_color(doc)
    node.setName(name_for(""))
    _keep(doc, node, was=was, color=str(index))
    return node


def _keep(doc: Any, node: Any, **values: str) -> None:
    """Remember `values` for the region layer `node` in the document."""
    extras = regions.load_extras(doc)
    extras.setdefault(layer_id(node), {}).update(values)
    regions.save_extras(doc, extras)


def _top(doc: Any, skip: tuple[str, ...] = ()) -> Any:
    """The top layer of the stack but those named in `skip` (new layers go above it)."""
    kids = [n for n in doc.rootNode().childNodes() if n.type() != "selectionmask" and n.name() not in skip]
    return kids[-1] if kids else None


# --- edits ----------------------------------------------------------------------------------------


def set_prompt(doc: Any, ident: str, prompt: str) -> None:
    node = node_of(doc, ident)
    if common.layer_prompt(node.name()) != prompt.strip():
        node.setName(name_for(prompt))


def set_negative(doc: Any, ident: str, negative: str) -> None:
    node_of(doc, ident)
    extras = regions.load_extras(doc)
    if extras.get(ident, {}).get("negative", "") == negative.strip():
        return  # leaving the field unchanged must not touch the document
    extras.setdefault(ident, {})["negative"] = negative.strip()
    regions.save_extras(doc, extras)


def set_strength(doc: Any, ident: str, value: int) -> None:
    node_of(doc, ident).setOpacity(round(max(0, min(100, value)) * 255 / 100))
    doc.refreshProjection()


def set_on(doc: Any, ident: str, on: bool) -> None:
    node_of(doc, ident).setVisible(on)
    doc.refreshProjection()


def select(doc: Any, ident: str) -> None:
    doc.setActiveNode(node_of(doc, ident))


def remove(doc: Any, ident: str) -> str:
    """A region paint layer is deleted (it is a mask, not picture); a region group gets its old name
    back and keeps its layers. Returns what was done, in words."""
    node = node_of(doc, ident)
    extras = regions.load_extras(doc)
    gone = extras.pop(ident, {})
    if node.type() == "grouplayer":
        name = gone.get("was") or common.layer_prompt(node.name()) or "Group"
        node.setName(name)
        said = f"Group '{name}' is no region any more"
    else:
        said = f"Region '{common.layer_prompt(node.name()) or '(no prompt)'}' deleted"
        node.remove()
    regions.save_extras(doc, extras)
    doc.refreshProjection()
    return said


# --- the mask preview -----------------------------------------------------------------------------


def show_masks(doc: Any) -> Any:
    """Draw (or redraw) the locked preview layer: every shown region's mask tinted in its colour, top
    region over the ones below. It is hidden while a job reads the canvas (regions.hidden_for_reading)."""
    w, h = doc.width(), doc.height()
    canvas = QImage(w, h, QImage.Format.Format_ARGB32_Premultiplied)
    canvas.fill(QtGui.QColor(0, 0, 0, 0))
    painter = QtGui.QPainter(canvas)
    try:
        nodes = regions.region_nodes(doc)
        tints = colors(nodes, regions.load_extras(doc))
        for i in reversed(range(len(nodes))):  # bottom first: the top region is drawn last
            if not regions.shown(nodes[i]):
                continue
            tint = QImage(w, h, QImage.Format.Format_ARGB32_Premultiplied)
            tint.fill(QtGui.QColor(*tints[i], OVERLAY_ALPHA))
            shape = QtGui.QPainter(tint)
            shape.setCompositionMode(QtGui.QPainter.CompositionMode.CompositionMode_DestinationIn)
            shape.drawImage(0, 0, bgra_image(regions.coverage(doc, nodes[i]), w, h))  # keeps the tint where the mask is
            shape.end()
            painter.drawImage(0, 0, tint)
    finally:
        painter.end()
    bgra = image_bytes(canvas.convertToFormat(QImage.Format.Format_ARGB32))
    node = regions.overlay(doc)
    if node is None:
        node = doc.createNode(regions.OVERLAY_NAME, "paintlayer")
        if not document.is_rgba8(doc):
            node.setColorSpace("RGBA", "U8", "sRGB-elle-V2-srgbtrc.icc")
        doc.rootNode().addChildNode(node, _top(doc))
    node.setLocked(False)
    node.setPixelData(QByteArray(bgra), 0, 0, w, h)
    node.setLocked(True)
    node.setVisible(True)
    doc.refreshProjection()
    return node


def hide_masks(doc: Any) -> bool:
    node = regions.overlay(doc)
    if node is None:
        return False
    node.setLocked(False)
    node.remove()
    doc.refreshProjection()
    return True
