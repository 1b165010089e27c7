"""Regions from Krita layers: a paint layer or group layer named `region: a red barn` is a region
(plugins/common/regions.py has the marker and the editor-agnostic rest).

The layer's alpha is the region's mask, its opacity the region's strength; a hidden region layer
(or one inside a hidden group) is off. Region layers are masks, not picture: `hidden_for_reading`
takes them out of the projection while the canvas is read. A region group's members are its
pixels, not regions of their own. Results never land inside a region group: the plugin adds its
layers at the top of the layer stack (document.add_layer, document.show_preview).

The layer's name is the one source of truth for its prompt (the docker's Regions tab renames the layer),
so the list, the Layers docker and a .kra opened without the plugin never disagree. What a layer cannot
hold (a region's own negative prompt, a group's name before it became a region) is kept per layer id in
the document annotation `sdbridge-regions` (JSON), saved with the .kra like the control layers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._common import actions, regions
from .controls import layer_id
from .qt import QByteArray

KINDS = ("paintlayer", "grouplayer")  # layers with pixels of their own; masks and filters are not regions
ANNOTATION = "sdbridge-regions"
FORMAT = 1  # version of the annotation's JSON
OVERLAY_NAME = "[sdbridge region masks]"  # the Regions tab's "Show masks" preview: never part of a job


def load_extras(doc: Any) -> dict[str, dict[str, str]]:
    """Per region layer id: what its layer cannot hold (`negative`; `was`: a group's name before;
    `color`: its palette index in the Regions tab). An unreadable or hand-edited annotation gives
    what can be read, never an error."""
    try:
        data = json.loads(bytes(doc.annotation(ANNOTATION) or b"{}").decode("utf-8"))
    except ValueError:
        return {}
    items = data.get("regions") if isinstance(data, dict) else None
    if not isinstance(items, dict):
        return {}
    return {
        str(k): {f: str(v[f]) for f in ("negative", "was", "color") if isinstance(v.get(f), str)}
        for k, v in items.items()
        if isinstance(v, dict)
    }


def save_extras(doc: Any, extras: dict[str, dict[str, str]]) -> None:
    """Keeps the entries of layers still in the document that hold something."""
    alive = {layer_id(n) for n in region_nodes(doc)}
    kept = {k: v for k, v in extras.items() if k in alive and any(v.values())}
    data = json.dumps({"format": FORMAT, "regions": kept}, sort_keys=True).encode("utf-8")
    doc.setAnnotation(ANNOTATION, "sdbridge regions", QByteArray(data))


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
    """The regions of the shown region layers among `nodes` (empty ones left out), each with its own
    negative prompt when the Regions tab gave it one."""
    extras = load_extras(doc)
    found = (
        regions.region_layer(
            n.name(), coverage(doc, n), n.opacity() / 255.0, extras.get(layer_id(n), {}).get("negative")
        )
        for n in nodes
        if shown(n)
    )
    return tuple(r for r in found if r is not None)


def overlay(doc: Any) -> Any:
    """The "Show masks" layer, None when it is off."""
    return next((n for n in doc.rootNode().childNodes() if n.name() == OVERLAY_NAME), None)


@contextmanager
def hidden_for_reading(doc: Any) -> Iterator[tuple[regions.RegionLayer, ...]]:
    """Yields the document's regions with the shown region layers (and the mask preview) hidden from
    the projection; they are shown again afterwards (visibility changes are no undo steps)."""
    nodes = region_nodes(doc)
    found = read(doc, nodes)
    hide = [n for n in [*nodes, overlay(doc)] if n is not None and n.visible() and shown(n)]
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
