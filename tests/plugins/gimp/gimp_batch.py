# Executed inside real GIMP 3 by the python-fu-eval batch interpreter (see harness.py):
#   gimp-console-3.0 -i --batch-interpreter=python-fu-eval -b 'exec(open(".../batch.py").read())' --quit
# Env: SDB_SCENARIOS (JSON list), SDB_OUT (folder for results.json and raw pixel dumps).
# For each scenario: make an image with a known pattern, optionally select a rectangle, call our
# procedure NON-INTERACTIVELY through the PDB, and record layers, canvas and before/after pixels.
# Runs in GIMP's own Python (3.13 in the chroot): no project imports, stdlib + gi only.
import base64
import json
import os
import time
import traceback

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

_out = os.environ["SDB_OUT"]
with open(os.environ["SDB_SCENARIOS"]) as _fh:
    _scenarios = json.load(_fh)
_results = {}


def _visible(image):
    w, h = image.get_width(), image.get_height()
    layer = Gimp.Layer.new_from_visible(image, image, "probe")
    data = bytes(layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.NONE))
    layer.delete()
    return w, h, data


def _pattern(w, h):
    # Smooth two-axis gradient, opaque: any change a job makes is visible against it.
    return bytes(
        v
        for y in range(h)
        for x in range(w)
        for v in ((x * 255) // max(1, w - 1), (y * 255) // max(1, h - 1), 128, 255)
    )


def _make_image(sc):
    w, h = sc["w"], sc["h"]
    image = Gimp.Image.new(w, h, Gimp.ImageBaseType.RGB)
    bg = Gimp.Layer.new(image, "background", w, h, Gimp.ImageType.RGB_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    image.insert_layer(bg, None, 0)
    buf = bg.get_buffer()
    # the scenario's own background (base64 RGBA, e.g. a photo) or the gradient
    pixels = base64.b64decode(sc["rgba"]) if sc.get("rgba") else _pattern(w, h)
    buf.set(Gegl.Rectangle.new(0, 0, w, h), "R'G'B'A u8", pixels)
    buf.flush()
    if sc.get("control_layer"):
        image.insert_layer(_sketch(image, w, h), None, 0)
    for spec in reversed(sc.get("layers") or []):  # region layers, listed top first: a colour over a rectangle
        _add_region_layer(image, spec)
    if sc.get("selection"):
        x, y, sw, sh = sc["selection"]
        image.select_rectangle(Gimp.ChannelOps.REPLACE, x, y, sw, sh)
    return image


def _sketch(image, w, h):
    # A hidden control layer: white strokes (a cross and a frame) on transparency, like a drawn sketch.
    layer = Gimp.Layer.new(image, "sketch", w, h, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    px = bytearray(w * h * 4)
    for y in range(h):
        for x in range(w):
            if (
                abs(x * h - y * w) < 2 * w
                or abs((w - 1 - x) * h - y * w) < 2 * w
                or min(x, y, w - 1 - x, h - 1 - y) < 3
            ):
                px[(y * w + x) * 4 : (y * w + x) * 4 + 4] = b"\xff\xff\xff\xff"
    buf = layer.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, w, h), "R'G'B'A u8", bytes(px))
    buf.flush()
    layer.set_visible(False)
    return layer


def _add_region_layer(image, spec):
    w, h = image.get_width(), image.get_height()
    x, y, rw, rh = spec["rect"]
    layer = Gimp.Layer.new(image, spec["name"], w, h, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    parent = None
    if spec.get("group"):  # a region layer group: its members are the region's pixels
        parent = Gimp.GroupLayer.new(image, spec["group"])
        image.insert_layer(parent, None, 0)
    image.insert_layer(layer, parent, 0)
    px = bytes(spec.get("rgba") or (255, 0, 0, 255))
    data = bytearray(w * h * 4)
    for row in range(y, y + rh):
        data[(row * w + x) * 4 : (row * w + x + rw) * 4] = px * rw
    buf = layer.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, w, h), "R'G'B'A u8", bytes(data))
    buf.flush()
    (parent or layer).set_visible(spec.get("visible", True))


def _layer_info(layer):
    _ok, x, y = layer.get_offsets()
    info = {
        "name": layer.get_name(),
        "x": x,
        "y": y,
        "w": layer.get_width(),
        "h": layer.get_height(),
        "has_mask": layer.get_mask() is not None,
    }
    p = layer.get_parasite("sdbridge-params")
    if p is not None:
        info["parasite"] = json.loads(bytes(p.get_data()).decode())
    info["visible"] = layer.get_visible()
    if layer.is_group():
        info["children"] = [_layer_info(child) for child in layer.get_children()]
    return info


def _prefs():
    # the plug-in's shared settings file, as it is after the scenario (None: not written yet)
    path = os.path.join(Gimp.directory(), "sdbridge-settings.json")
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        return json.load(fh)


def _run(sc):
    res = {"id": sc["id"]}
    image = _make_image(sc)
    w0, h0, before = _visible(image)
    with open(os.path.join(_out, sc["id"] + ".before.rgba"), "wb") as fh:
        fh.write(before)
    proc = Gimp.get_pdb().lookup_procedure(sc["proc"])
    res["registered"] = proc is not None
    if proc is None:
        return res
    cfg = proc.create_config()
    # "dialog" scenarios drive the real procedure dialog through the plug-in's test probe (GUI GIMP only)
    hook = os.environ.get("SDBRIDGE_GIMP_DIALOG_TEST")
    if hook:
        for stale in (hook, hook + ".out.json"):
            if os.path.exists(stale):
                os.remove(stale)
        if sc.get("dialog") is not None:
            with open(hook, "w") as fh:
                json.dump({"id": sc["id"], **sc["dialog"]}, fh)
    interactive = sc.get("dialog") is not None
    cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE if interactive else Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", image)
    cfg.set_core_object_array("drawables", [image.get_layers()[-1]])  # the background, below any region layers
    for k, v in sc["args"].items():
        cfg.set_property(k, v)
    if sc.get("control_layer"):
        cfg.set_property("control-layer", next(la for la in image.get_layers() if la.get_name() == "sketch"))
    t = time.time()
    r = proc.run(cfg)
    res["t_s"] = round(time.time() - t, 3)
    res["status"] = r.index(0).value_nick
    if res["status"] != "success":
        res["error"] = r.index(1) if r.length() > 1 else None
    else:
        returned = r.index(1)
        res["returned_layer"] = returned.get_name() if returned is not None else None
        if returned is not None and not returned.is_group():  # the result's own pixels
            rw, rh = returned.get_width(), returned.get_height()
            rect = Gegl.Rectangle.new(0, 0, rw, rh)
            with open(os.path.join(_out, sc["id"] + ".result.rgba"), "wb") as fh:
                fh.write(bytes(returned.get_buffer().get(rect, 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.NONE)))
            res["result_size"] = [rw, rh]
    if hook and os.path.exists(hook + ".out.json"):
        with open(hook + ".out.json") as fh:
            res["dialog"] = json.load(fh)
    res["prefs"] = _prefs()
    res["canvas"] = [image.get_width(), image.get_height()]
    res["layers"] = [_layer_info(lay) for lay in image.get_layers()]
    w1, h1, after = _visible(image)
    with open(os.path.join(_out, sc["id"] + ".after.rgba"), "wb") as fh:
        fh.write(after)
    res["before_size"], res["after_size"] = [w0, h0], [w1, h1]
    # "base": the same image with the new layers hidden, so after-vs-base shows exactly what the
    # result layers change, also when the canvas was resized or scaled underneath them
    new_layers = [lay for lay in image.get_layers() if lay.get_name() != "background"]
    for lay in new_layers:
        lay.set_visible(False)
    _wb, _hb, base = _visible(image)
    with open(os.path.join(_out, sc["id"] + ".base.rgba"), "wb") as fh:
        fh.write(base)
    res["base_size"] = [_wb, _hb]
    image.delete()
    return res


for _sc in _scenarios:
    try:
        _results[_sc["id"]] = _run(_sc)
    except Exception:  # noqa: BLE001 - recorded per scenario, the others still run
        _results[_sc["id"]] = {"id": _sc["id"], "exception": traceback.format_exc()}
    with open(os.path.join(_out, "results.json"), "w") as _fh:
        json.dump(_results, _fh, indent=1)
print("SDB_BATCH_DONE")
