"""Regions from Krita layers: a paint layer or group layer named `region: a red barn` is a region
(plugins/common/regions.py has the marker and the editor-agnostic rest).

The layer's alpha is the region's mask, its opacity the region's strength; a hidden region layer
(or one inside a hidden group) is off. Region layers are masks, not picture: `hidden_for_reading`
takes them out of the projection while the canvas is read. A region group's members are its
pixels, not regions of their own. Results never land inside a region group: the plugin adds its
layers at the top of the layer stack (document.add_layer, document.show_preview).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._common import actions, regions

KINDS = ("paintlayer", "grouplayer")  # layers with pixels of their own; masks and filters are not regions


def region_nodes(doc: Any) -> list[Any]:
    """The document's region layers, top first (Krita lists children bottom first)."""
    out: list[Any] = []

    def walk(parent: Any) -> None:
        for node in reversed(parent.childNodes()):
            if node.type() not in KINDS:
                continue
            if regions.layer_prompt(node.name()) is not None:
                out.append(node)
            elif node.type() == "grouplayer":
                walk(node)

    walk(doc.rootNode())
    return out


def shown(node: Any) -> bool:
    """Visible, and so are the groups it is in."""
    while node is not None and node.parentNode() is not None:  # the root node has no parent
        if not node.visible():
            return False
        node = node.parentNode()
    return True


def coverage(doc: Any, node: Any) -> bytes:
    """A region layer's pixels at the canvas's size as straight RGBA (only its alpha is used: Krita's
    BGRA order does not matter). A group's pixels are its members composited."""
    if node.colorModel() != "RGBA" or node.colorDepth() != "U8":
        raise actions.ActionError(f"region layer {node.name()!r} is not 8-bit RGBA: convert it (Layer ▸ Convert)")
    w, h = doc.width(), doc.height()
    read = node.projectionPixelData if node.type() == "grouplayer" else node.pixelData
    data = bytes(read(0, 0, w, h))
    if len(data) != w * h * 4:
        raise actions.ActionError(f"could not read region layer {node.name()!r} ({len(data)} bytes for {w}x{h})")
    return data


def read(doc: Any, nodes: list[Any]) -> tuple[regions.RegionLayer, ...]:
    """The regions of the shown region layers among `nodes` (empty ones left out)."""
    layers = [(n.name(), coverage(doc, n), n.opacity() / 255.0) for n in nodes if shown(n)]
    return regions.from_layers(layers)


@contextmanager
def hidden_for_reading(doc: Any) -> Iterator[tuple[regions.RegionLayer, ...]]:
    """Yields the document's regions with the shown region layers hidden from the projection; they
    are shown again afterwards (visibility changes are no undo steps)."""
    nodes = region_nodes(doc)
    found = read(doc, nodes)
    hide = [n for n in nodes if n.visible() and shown(n)]
    for n in hide:
        n.setVisible(False)
    if hide:
        doc.refreshProjection()
        doc.waitForDone()
    try:
        yield found
    finally:
        for n in hide:
            n.setVisible(True)
        if hide:
            doc.refreshProjection()
