"""A Krita document's control layers: the list of `plugins/common/control_layers.py` kept in a document
annotation (saved in the .kra), its layers found by their uniqueId wherever they are in the layer tree,
and their pixels read at the canvas's size for every job the docker runs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ._common import actions, control_layers, pixels
from .qt import QByteArray, image_bytes

ANNOTATION = "sdbridge-controls"
ControlLayer = control_layers.ControlLayer
LAYER_TYPES = ("paintlayer", "grouplayer", "vectorlayer", "filllayer", "clonelayer", "filelayer")


def load(doc: Any) -> list[ControlLayer]:
    return control_layers.from_json(bytes(doc.annotation(ANNOTATION) or b""))


def save(doc: Any, layers: list[ControlLayer]) -> None:
    data = control_layers.to_json(layers).encode("utf-8")
    doc.setAnnotation(ANNOTATION, "sdbridge control layers", QByteArray(data))


def layer_id(node: Any) -> str:
    return str(node.uniqueId().toString())


def find(doc: Any, ident: str) -> Any:
    """The layer with that id anywhere in the tree (None when it was deleted)."""
    todo = list(doc.rootNode().childNodes())
    while todo:
        node = todo.pop()
        if layer_id(node) == ident:
            return node
        todo.extend(node.childNodes())
    return None


def read_layer(doc: Any, ident: str) -> Any:
    """The layer's own pixels (hidden or not: control layers are usually hidden) at the canvas's size."""
    node = find(doc, ident)
    if node is None:
        return None
    w, h = doc.width(), doc.height()
    doc.waitForDone()
    if node.type() == "paintlayer" and node.colorModel() == "RGBA" and node.colorDepth() == "U8":
        bgra = bytes(node.pixelData(0, 0, w, h))
    else:  # groups, vector/fill layers, other colour spaces: Krita renders them to 8-bit
        from .qt import QImage

        bgra = image_bytes(node.thumbnail(w, h).convertToFormat(QImage.Format.Format_ARGB32))
    if len(bgra) != w * h * 4:
        raise actions.ActionError(f"could not read the control layer '{node.name()}'")
    return actions.Canvas(w, h, pixels.bgra_to_rgba(bgra))


def add_active(doc: Any, model: str) -> ControlLayer:
    """The active layer as a new control (`model`: the first offered; "" until the user picks one)."""
    node = doc.activeNode()
    if node is None or node.type() not in LAYER_TYPES:
        raise actions.ActionError("select the layer to use as a control first")
    layers = load(doc)
    ident = layer_id(node)
    if any(c.layer == ident for c in layers):
        raise actions.ActionError(f"'{node.name()}' is already a control layer")
    if len(layers) >= control_layers.MAX_LAYERS:
        raise actions.ActionError(f"at most {control_layers.MAX_LAYERS} control layers")
    entry = ControlLayer(layer=ident, model=model, name=node.name())
    save(doc, [*layers, entry])
    return entry


def update(doc: Any, index: int, **changes: Any) -> None:
    layers = load(doc)
    if 0 <= index < len(layers):
        layers[index] = replace(layers[index], **changes).checked()
        save(doc, layers)


def remove(doc: Any, index: int) -> None:
    layers = load(doc)
    if 0 <= index < len(layers):
        del layers[index]
        save(doc, layers)


def for_request(doc: Any, welcome: dict[str, Any] | None) -> tuple[Any, ...]:
    """The `controls` of a job on `doc`: every enabled entry, checked against the server's models."""
    layers = [replace(c, name=n.name()) if (n := find(doc, c.layer)) is not None else c for c in load(doc)]
    missing = [c for c in layers if c.enabled and not c.model]
    if missing:
        raise actions.ActionError(f"Control layer '{missing[0].label()}': choose its control model.")
    if welcome is not None:
        found = control_layers.problems(layers, welcome, None)
        if found:
            raise actions.ActionError(found[0])
    return control_layers.controls(layers, lambda ident: read_layer(doc, ident))
