"""The image side of a job: the canvas and selection in through GEGL buffers, result layers out.

Decisions (where a result goes, how the canvas changes, names) come from `logic.py` and the shared
client; this module only calls the GIMP API, on the plug-in's main thread.
"""

from __future__ import annotations

from typing import Any

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

from . import logic  # noqa: E402
from ._common import ActionError, regions, results  # noqa: E402
from .procs import ProcSpec  # noqa: E402

RGBA = "R'G'B'A u8"  # non-linear 8-bit RGBA: what the wire's rgba8 means
GRAY = "Y u8"


def read_canvas(image: Gimp.Image) -> logic.Canvas:
    """The visible canvas (what the user sees, region layers left out), the selection mask and the
    visible region layers, straight from GEGL buffers."""
    w, h = image.get_width(), image.get_height()
    rect = Gegl.Rectangle.new(0, 0, w, h)
    marked = region_layers(image)
    shown = [layer for layer in marked if _shown(layer)]
    layers = [(layer.get_name(), _at_canvas(image, layer), layer.get_opacity() / 100.0) for layer in shown]
    image.undo_freeze()  # hiding the region layers for a moment is no edit of the user's
    try:
        for layer in shown:
            layer.set_visible(False)
        visible = Gimp.Layer.new_from_visible(image, image, "sdbridge source")
    finally:
        for layer in shown:
            layer.set_visible(True)
        image.undo_thaw()
    try:
        rgba = bytes(visible.get_buffer().get(rect, 1.0, RGBA, Gegl.AbyssPolicy.NONE))
    finally:
        visible.delete()  # never inserted: just drop it
    found = regions.from_layers(layers)
    _ok, non_empty, *_bounds = Gimp.Selection.bounds(image)  # Canvas derives the bounds from the mask
    if not non_empty:
        return logic.Canvas(w, h, rgba, regions=found)
    mask = bytes(image.get_selection().get_buffer().get(rect, 1.0, GRAY, Gegl.AbyssPolicy.NONE))
    return logic.Canvas(w, h, rgba, mask, regions=found)


def region_layers(image: Gimp.Image) -> list[Gimp.Layer]:
    """Layers (or layer groups) named with the region marker, `region: a red barn`, top first; a
    region group's own members are its pixels, not regions of their own."""
    out: list[Gimp.Layer] = []

    def walk(layers: list[Gimp.Layer]) -> None:
        for layer in layers:
            if regions.layer_prompt(layer.get_name()) is not None:
                out.append(layer)
            elif layer.is_group():
                walk(layer.get_children())

    walk(image.get_layers())
    return out


def _spot(image: Gimp.Image) -> tuple[Gimp.Layer | None, int]:
    """(parent, position) of a new result layer: above the active layer ((None, -1)), but never inside
    a region group (its members are the region's pixels): right above that group instead."""
    for layer in image.get_selected_layers():
        item, outer = layer, None
        while item is not None:
            if regions.layer_prompt(item.get_name()) is not None:
                outer = item
            item = item.get_parent()
        if outer is not None:
            return outer.get_parent(), image.get_item_position(outer)
    return None, -1


def _shown(layer: Gimp.Layer) -> bool:
    """Visible, and so are the groups it is in (a hidden region is switched off)."""
    item: Gimp.Item | None = layer
    while item is not None:
        if not item.get_visible():
            return False
        item = item.get_parent()
    return True


def _at_canvas(image: Gimp.Image, layer: Gimp.Layer) -> bytes:
    """A layer's straight RGBA at the canvas's size and place (transparent where it does not reach)."""
    _ok, x, y = layer.get_offsets()
    # In the layer's own coordinates the canvas starts at (-x, -y); outside the layer GEGL gives zeros.
    rect = Gegl.Rectangle.new(-x, -y, image.get_width(), image.get_height())
    return bytes(layer.get_buffer().get(rect, 1.0, RGBA, Gegl.AbyssPolicy.NONE))


def _all_layers(layers: list[Gimp.Layer]) -> list[Gimp.Layer]:
    out = []
    for layer in layers:
        out.append(layer)
        if layer.is_group():
            out += _all_layers(layer.get_children())
    return out


def layer_choices(image: Gimp.Image) -> list[tuple[int, str]]:
    """(id, name) of every layer of the image, groups' members included, top first."""
    return [(layer.get_id(), layer.get_name()) for layer in _all_layers(image.get_layers()) if not layer.is_group()]


def layer_by_id(layer_id: Any) -> Gimp.Layer | None:
    """The layer a drop-down id names ("" or a vanished layer: None)."""
    if not str(layer_id or "").isdigit():
        return None
    item = Gimp.Item.get_by_id(int(layer_id))
    return item if isinstance(item, Gimp.Layer) else None


def read_control(image: Gimp.Image, values: dict[str, Any]) -> bytes | None:
    """The `control-layer` argument's pixels at the canvas's size (straight RGBA, transparent where the
    layer does not reach), or None without a control layer."""
    layer = values.get("control-layer")
    if not isinstance(layer, Gimp.Layer):
        return None
    _ok, x, y = layer.get_offsets()
    w, h = image.get_width(), image.get_height()
    # In the layer's own coordinates, the canvas starts at (-x, -y); outside the layer GEGL gives zeros.
    rect = Gegl.Rectangle.new(-x, -y, w, h)
    return bytes(layer.get_buffer().get(rect, 1.0, RGBA, Gegl.AbyssPolicy.NONE))


def add_layer(
    image: Gimp.Image,
    parent: Gimp.Layer | None,
    name: str,
    rgba: bytes,
    place: logic.Placement,
    parasite: bytes,
    mask_selection: bool,
) -> Gimp.Layer:
    layer = Gimp.Layer.new(
        image, name, place.src_w, place.src_h, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL
    )
    # At the top level: above the active layer; in a batch group: below the layers before it
    if parent is None:
        image.insert_layer(layer, *_spot(image))
    else:
        image.insert_layer(layer, parent, len(parent.get_children()))
    buf = layer.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, place.src_w, place.src_h), RGBA, rgba)
    buf.flush()
    if place.needs_scale:
        layer.scale(place.w, place.h, False)
    layer.set_offsets(place.x, place.y)
    if mask_selection:
        # Non-destructive: the result is hidden outside the selection but stays editable.
        layer.add_mask(layer.create_mask(Gimp.AddMaskType.SELECTION))
    layer.attach_parasite(Gimp.Parasite.new(logic.PARASITE_NAME, Gimp.PARASITE_PERSISTENT, list(parasite)))
    layer.update(0, 0, place.w, place.h)
    return layer


def apply_change(image: Gimp.Image, change: results.CanvasChange, old_w: int, old_h: int) -> None:
    if change.scale:
        image.scale(change.w, change.h)
        return
    dx, dy = change.origin
    image.resize(change.w, change.h, dx, dy)
    # Like Canvas Size's "image-sized layers": layers that filled the old canvas fill the new one.
    for layer in image.get_layers():
        _ok, x, y = layer.get_offsets()
        if (layer.get_width(), layer.get_height(), x, y) == (old_w, old_h, dx, dy):
            layer.resize_to_image_size()


def apply_result(
    image: Gimp.Image, spec: ProcSpec, plan: logic.Plan, result: dict[str, Any], canvas: logic.Canvas
) -> Gimp.Layer:
    """Add the result as one layer per batch image (a layer group holds a batch); one undo step.
    Returns the new layer, or the group for a batch."""
    used = dict(result.get("params") or {})
    images = list(result.get("images") or [])
    if not images:
        why = "; ".join(str(m) for m in used.get("messages") or []) or "nothing changed"
        raise ActionError(f"{spec.title}: the server returned no result ({why}).")
    decoded = [results.decode_image(img) for img in images]  # fail before touching the image
    groups = results.batch_images(images, used)
    seeds = [int(s) for s in used.get("seeds") or []]
    prompt = str(used.get("prompt") or "")
    image.undo_group_start()  # one undo step per job, canvas change and batch group included
    try:
        change = results.canvas_change(plan.request, result, canvas.w, canvas.h)
        if change is not None:
            apply_change(image, change, canvas.w, canvas.h)
        group = None
        if len(groups) > 1:
            group = Gimp.GroupLayer.new(image, results.batch_group_name(prompt, spec.kind, seeds, logic.LAYER_NAME_MAX))
            image.insert_layer(group, *_spot(image))
        layers = []
        for n, members in enumerate(groups):
            first = images[members[0]]
            seed = seeds[n] if group is not None else first.get("seed", used.get("seed"))
            part = str(first.get("name") or "") if len(members) == 1 else ""
            if len(members) == 1:
                (w, h, rgba), x, y = decoded[members[0]], int(first.get("x") or 0), int(first.get("y") or 0)
            else:  # an editing job's pieces (strips, faces) of one batch image: one layer
                pieces = [(int(images[i].get("x") or 0), int(images[i].get("y") or 0), *decoded[i]) for i in members]
                x, y, w, h, rgba = results.merge_pieces(pieces)
            name = results.layer_name(prompt, spec.kind, seed, part, limit=logic.LAYER_NAME_MAX)
            parasite = logic.params_parasite(spec.kind, {**used, "seed": seed})
            place = logic.placement(plan, {"x": x, "y": y}, w, h)
            layer = add_layer(image, group, name, rgba, place, parasite, plan.mask_result)
            # Batch images cover each other: show the first, the others are one eye-click away.
            layer.set_visible(n == 0)
            layers.append(layer)
    finally:
        image.undo_group_end()
    Gimp.displays_flush()
    return group if group is not None else layers[0]
