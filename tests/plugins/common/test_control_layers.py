"""The editors' control-layer list (plugins/common/control_layers.py): kept with a document as JSON
(tolerant of old or hand-edited documents), checked against the server's welcome, turned into a
request's controls; "control image from canvas" and a control layer through a real `sdbridge serve`."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from plugins.common import png
from plugins.common.actions import ActionError, Canvas
from plugins.common.client import Client
from plugins.common.control_layers import ControlLayer, controls, from_canvas, from_json, kind_of, problems, to_json
from plugins.common.jobs import GenerateRequest, Sampling
from tests.server.jobs.edit_helpers import photo

SCRIBBLE = "control_v11p_sd15_scribble"
WELCOME = {"controls": [{"name": SCRIBBLE, "type": "controlnet", "family": "sd15", "kind": "scribble"},
                        {"name": "xl-canny", "type": "controlnet", "family": "sdxl", "kind": "canny"}]}  # fmt: skip


def canvas(img: np.ndarray) -> Canvas:
    return Canvas(img.shape[1], img.shape[0], np.ascontiguousarray(img).tobytes())


def test_json_round_trip_and_tolerant_reading() -> None:
    layers = [ControlLayer("node-1", SCRIBBLE, 0.8, 0.1, 0.9, "scribble", name="sketch"),
              ControlLayer("node-2", "ref", enabled=False)]  # fmt: skip
    assert from_json(to_json(layers)) == layers
    for junk in (None, "", "not json", "[1, 2]", '{"controls": 3}'):
        assert from_json(junk) == []
    text = (
        '{"format": 1, "controls": [{"layer": "a", "model": "m", "strength": 9, "start": 0.9, "end": 0.2,'
        ' "preprocess": "magic", "future_key": 1}, {"layer": 5, "model": "m"}, "x", {"model": "no layer"}]}'
    )
    (only,) = from_json(text)  # unreadable entries are left out, unknown keys ignored
    assert (only.strength, only.start, only.end, only.preprocess) == (2.0, 0.2, 0.2, "auto")


def test_problems_name_the_layer_and_the_reason() -> None:
    layers = [ControlLayer("1", SCRIBBLE, name="sketch"), ControlLayer("2", "xl-canny", name="edges"),
              ControlLayer("3", "gone", name="old"), ControlLayer("4", "gone", enabled=False)]  # fmt: skip
    out = problems(layers, WELCOME, "sd15-inpaint")
    assert out == [
        "Control layer 'edges': 'xl-canny' is made for sdxl, the model is sd15.",
        "Control layer 'old': the server has no control model 'gone'.",
    ]
    assert kind_of(SCRIBBLE, WELCOME) == "scribble" and kind_of("gone", WELCOME) is None


def test_controls_from_enabled_layers() -> None:
    img = photo("camera", 32, 24)
    layers = [ControlLayer("1", SCRIBBLE, 0.5, 0.0, 0.5, "scribble"), ControlLayer("2", SCRIBBLE, enabled=False)]
    (c,) = controls(layers, lambda layer_id: canvas(img) if layer_id == "1" else None)
    assert c.wire("control0") == {"model": SCRIBBLE, "image": "control0", "strength": 0.5, "start": 0.0,
                                  "end": 0.5, "preprocess": "scribble"}  # fmt: skip
    assert (c.image.w, c.image.h) == (32, 24)
    with pytest.raises(ActionError, match="'sketch' is no longer in the document"):
        controls([ControlLayer("9", SCRIBBLE, name="sketch")], lambda _id: None)
    with pytest.raises(ActionError, match="Choose a preprocessor"):
        from_canvas(canvas(img), "none")


@pytest.fixture
def client(sdb_serve) -> Iterator[Client]:
    c = Client(sdb_serve.url, backoff=(0.2, 1.0)).start()
    c.wait_connected(30)
    yield c
    c.stop()


def test_control_image_from_canvas_and_a_control_layer_through_the_server(client: Client) -> None:
    img = photo("astronaut", 64, 48)
    state = client.wait(client.submit(from_canvas(canvas(img), "canny")), 120)
    assert state.status == "result", state.error
    w, h, rgba = png.decode(state.result["images"][0]["data"])
    edges = np.frombuffer(rgba, np.uint8).reshape(h, w, 4)[..., 0]
    assert np.array_equal(edges, cv2.Canny(np.ascontiguousarray(img[..., :3]), 100, 200))

    # A drawn layer (white strokes on transparency) as the scribble ControlNet's control.
    sketch = np.zeros((48, 64, 4), np.uint8)
    sketch[8:40, 30:34] = 255
    layers = [ControlLayer("sketch-node", SCRIBBLE, preprocess="auto", name="sketch")]
    sampling = Sampling(prompt="a tower", seed=4, steps=3)
    plain = GenerateRequest(sampling=sampling, width=64, height=48)
    guided = GenerateRequest(
        sampling=sampling, width=64, height=48, controls=controls(layers, lambda _: canvas(sketch))
    )
    results = [client.wait(client.submit(r), 120) for r in (plain, guided)]
    assert all(s.status == "result" for s in results), [s.error for s in results]
    assert results[1].result["params"]["controls"][0]["preprocess"]["type"] == "scribble"  # auto: by the kind
    a, b = (np.frombuffer(png.decode(s.result["images"][0]["data"])[2], np.uint8) for s in results)
    assert np.abs(a.astype(int) - b).mean() > 0.5
