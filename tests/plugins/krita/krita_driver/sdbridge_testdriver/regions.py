"""The `regions` scenario: pictures made with region layers (`region: <prompt>`) through the Generate
action, one document per variant; the result on the preview layer is dumped for the test to measure."""

import os

from . import kit
from .kit import SIZE

PROMPT = "a red fox in the snow"
SETTINGS = {"prompt": PROMPT, "seed": 1234, "steps": 4, "strength": 0.6}  # img2img of the photo
LEFT, RIGHT, WHOLE = (0, 0, SIZE // 4, SIZE), (SIZE - SIZE // 4, 0, SIZE // 4, SIZE), (0, 0, SIZE, SIZE)
RED, BLUE = bytes((0, 0, 255, 255)), bytes((255, 0, 0, 255))  # BGRA


def photo_doc(name):
    """A new document whose drawing is the photo the test left in the output dir (BGRA)."""
    doc = kit.new_doc(name)
    path = os.path.join(kit.OUT, "regions.photo.bgra")
    with open(path, "rb") as fh:
        data = fh.read()
    kit.node(doc, "drawing").setPixelData(kit.qt().QByteArray(data), 0, 0, SIZE, SIZE)
    doc.refreshProjection()
    doc.waitForDone()
    return doc


def paint(doc, parent, name, rect, color, visible=True, opacity=255):
    x0, y0, w, h = rect
    data = bytearray(SIZE * SIZE * 4)
    for y in range(y0, y0 + h):
        data[(y * SIZE + x0) * 4 : (y * SIZE + x0 + w) * 4] = color * w
    node = doc.createNode(name, "paintlayer")
    node.setPixelData(kit.qt().QByteArray(bytes(data)), 0, 0, SIZE, SIZE)
    node.setOpacity(opacity)
    node.setVisible(visible)
    parent.addChildNode(node, None)
    return node


def pair(a, b, **kw):
    return [("region: " + a, LEFT, RED, kw), ("region: " + b, RIGHT, BLUE, kw)]


VARIANTS = {
    "plain": [],
    "whole": [("region: " + PROMPT, WHOLE, RED, {})],
    "hidden": pair("a cat", "a dog", visible=False),
    "ref": pair("a cat", "a dog"),
    "a": pair("a red barn in snow", "a dog"),
    "b": pair("a cat", "a stormy night sky"),
    "group": [("group", "region: a red barn in snow", LEFT, RED), ("region: a dog", RIGHT, BLUE, {})],
    "half": [("region: a cat", LEFT, RED, {"opacity": 128})],
}


def sc_regions(res):
    kit.settings(**SETTINGS)
    res["variants"] = {}
    for name, layers in VARIANTS.items():
        doc = photo_doc("regions-" + name)
        for spec in layers:
            if spec[0] == "group":  # a group layer named as a region, its member an ordinary layer
                group = doc.createNode(spec[1], "grouplayer")
                doc.rootNode().addChildNode(group, None)
                paint(doc, group, "barn pixels", spec[2], spec[3])
            else:
                paint(doc, doc.rootNode(), *spec[:3], **spec[3])
        doc.refreshProjection()
        doc.waitForDone()
        res["variants"][name] = yield from generate(doc, "regions." + name)
    yield from kit.settle()  # see kit.SETTLE_S: let the Layers docker catch up before documents close


def generate(doc, dump_as):
    """The Generate action on `doc`, recording the regions of the request the plugin sent (prompt,
    strength, mask size, negative); the result on the preview layer is dumped as `<dump_as>.bgra`."""
    c = kit.controller()
    sent, wrapped = [], c.client
    if wrapped is not None:  # what the plugin sends (the client exists after the first job)
        submit = c.client.submit
        c.client.submit = lambda req, *a, _s=submit, _l=sent: (_l.append(req), _s(req, *a))[1]
    out = {}
    try:
        yield from kit.run_action(out, "sdbridge_generate", doc)
    finally:
        if wrapped is not None:
            del wrapped.submit  # the instance attribute goes, the method is back
    import sdbridge.document as document

    preview = kit.node(doc, document.PREVIEW_NAME)
    kit.dump(dump_as + ".bgra", kit.pixels(doc, preview) if preview is not None else b"")
    return {
        "finished": out["finished"], "messages": out["messages"], "layers": out["layers"],
        "sent": [[(r.prompt, r.strength, r.mask.w, r.mask.h, r.negative) for r in req.regions] for req in sent],
    }  # fmt: skip
