"""The review history, editor-independent: result rects grouped into one entry per batch image,
layer names, where an entry lands on a document of a given size, and the stored form."""

from __future__ import annotations

import pytest

from plugins.common import history, png, results
from plugins.common.actions import ActionError
from plugins.common.geometry import Rect
from plugins.common.jobs import (
    FaceRequest,
    GenerateRequest,
    InpaintRequest,
    OutpaintRequest,
    RestoreRequest,
    Sampling,
    UpscaleRequest,
)

W, H = 32, 16
RED, BLUE = b"\xff\x00\x00\xff", b"\x00\x00\xff\xff"


def rect(x: int, y: int, w: int, h: int, px: bytes = RED, **extra: object) -> dict:
    return {"format": "png", "data": png.encode(px * (w * h), w, h), "x": x, "y": y, **extra}


def rgba(entry: history.Entry) -> list[bytes]:
    data = entry.rgba()
    return [data[i : i + 4] for i in range(0, len(data), 4)]


def test_generate_batch_gives_one_entry_per_image_named_prompt_and_seed() -> None:
    req = GenerateRequest(sampling=Sampling(prompt="a   red\nfox"), batch=2)
    result = {
        "id": "j1",
        "images": [rect(0, 0, W, H, seed=7), rect(0, 0, W, H, BLUE, seed=8)],
        "params": {"prompt": "a   red\nfox", "seed": 7, "seeds": [7, 8], "secret": b"\x00"},
    }
    first, second = history.entries_from_result(req, result, (W, H))
    assert (first.id, first.index, first.seed, first.name) == ("j1.0", 0, 7, "a red fox (7)")
    assert (second.id, second.index, second.seed, second.name) == ("j1.1", 1, 8, "a red fox (8)")
    assert first.rect == Rect(0, 0, W, H) and first.canvas == first.base == (W, H) and first.change is None
    assert set(rgba(first)) == {RED} and set(rgba(second)) == {BLUE}
    assert first.params == {"prompt": "a   red\nfox", "seed": 7, "seeds": [7, 8]}  # bytes never stored
    assert first.placement(W, H) == history.Placement(Rect(0, 0, W, H), None, exact=True)


def test_inpaint_batch_rects_are_matched_to_their_seeds() -> None:
    req = InpaintRequest(sampling=Sampling(prompt="fox"), batch=2)
    result = {"id": "j", "images": [rect(4, 2, 8, 6, seed=6), rect(3, 2, 9, 6, BLUE, seed=5)],
              "params": {"prompt": "fox", "seed": 5, "seeds": [5, 6]}}  # fmt: skip
    entries = history.entries_from_result(req, result, (W, H))
    assert [(e.index, e.seed, e.rect, e.kind) for e in entries] == [
        (0, 5, Rect(3, 2, 9, 6), "inpaint"),
        (1, 6, Rect(4, 2, 8, 6), "inpaint"),
    ]


def test_face_batch_groups_faces_per_batch_image_into_one_merged_entry() -> None:
    # Two faces, batch 2: names say the batch image (face seeds overlap across batch images).
    images = [
        rect(0, 0, 2, 2, name="face 1", seed=3),
        rect(6, 4, 2, 2, BLUE, name="face 2", seed=4),
        rect(0, 0, 2, 2, name="face 1, batch 2", seed=4),
        rect(6, 4, 2, 2, name="face 2, batch 2", seed=5),
    ]
    result = {"id": "f", "images": images, "params": {"prompt": "", "seed": 3, "seeds": [3, 4]}}
    one, two = history.entries_from_result(FaceRequest(), result, (W, H))
    assert (one.seed, one.name, one.rect) == (3, "face (3)", Rect(0, 0, 8, 6))
    assert (two.seed, two.index) == (4, 1)
    px = rgba(one)
    assert px[0] == RED and px[4 * 8 + 6] == BLUE and px[3] == b"\0\0\0\0"  # merged, transparent between


def test_restore_has_no_seed_and_no_face_gives_no_entry() -> None:
    result = {"id": "r", "images": [rect(1, 1, 4, 4, name="face 1")], "params": {"faces": [[1, 1, 4, 4]]}}
    (entry,) = history.entries_from_result(RestoreRequest(), result, (W, H))
    assert entry.seed is None and entry.name == "restore"
    assert history.entries_from_result(FaceRequest(), {"id": "n", "images": [], "params": {}}, (W, H)) == []


def test_outpaint_entry_places_on_the_old_canvas_and_after_the_resize() -> None:
    req = OutpaintRequest(sampling=Sampling(prompt="sea"), left=8)
    result = {"id": "o", "images": [rect(0, 0, 12, H, seed=2)], "params": {"seed": 2, "seeds": [2]},
              "canvas": {"w": W + 8, "h": H}}  # fmt: skip
    (entry,) = history.entries_from_result(req, result, (W, H))
    assert entry.change == results.CanvasChange(W + 8, H, origin=(8, 0)) and entry.canvas == (W + 8, H)
    # On the document as it was: the strip lies left of the canvas (the old image starts at x = 8).
    assert entry.placement(W, H) == history.Placement(Rect(-8, 0, 12, H), entry.change, exact=True)
    assert entry.placement(W + 8, H) == history.Placement(Rect(0, 0, 12, H), None, exact=True)
    with pytest.raises(ActionError, match=r"made for a 40×16 canvas; the document is 20×20"):
        entry.placement(20, 20)


def test_upscale_entry_shows_scaled_to_the_document_until_applied() -> None:
    req = UpscaleRequest(scale=2)
    result = {"id": "u", "images": [rect(0, 0, 2 * W, 2 * H, seed=1)], "params": {"seed": 1},
              "canvas": {"w": 2 * W, "h": 2 * H}}  # fmt: skip
    (entry,) = history.entries_from_result(req, result, (W, H))
    assert entry.placement(W, H) == history.Placement(Rect(0, 0, W, H), entry.change, exact=False)
    assert entry.placement(2 * W, 2 * H).exact and entry.placement(2 * W, 2 * H).change is None


def test_history_is_bounded_stores_and_reloads() -> None:
    req = GenerateRequest(sampling=Sampling(prompt="fox"))
    made = [history.entries_from_result(req, {"id": f"j{i}", "images": [rect(0, 0, 2, 2, seed=i)],
                                              "params": {"seed": i}}, (W, H))[0] for i in range(5)]  # fmt: skip
    hist = history.History(limit=3)
    hist.add(made[:2])
    hist.add(made[2:])
    assert [e.id for e in hist] == ["j2.0", "j3.0", "j4.0"]
    hist.update("j3.0", applied=True)
    assert hist.discard("j4.0") == made[4] and hist.discard("nope") is None
    back = history.History.from_bytes(hist.to_bytes(), limit=3)
    assert list(back) == list(hist) and back.require("j3.0").applied
    with pytest.raises(ActionError, match="no longer in the history"):
        back.require("j4.0")


@pytest.mark.parametrize("junk", [b"", b"\xc1garbage", b"\x93\x01\x02\x03", b"\x81\xa6format\x02"])
def test_a_damaged_stored_history_reads_as_empty(junk: bytes) -> None:
    assert len(history.History.from_bytes(junk)) == 0


def test_settings_from_an_entry() -> None:
    req = GenerateRequest(sampling=Sampling(prompt="fox"))
    result = {
        "id": "s",
        "images": [rect(0, 0, 2, 2, seed=9)],
        "params": {"prompt": "fox", "negative": "blur", "seed": 9},
    }
    (entry,) = history.entries_from_result(req, result, (W, H))
    assert history.settings_from(entry) == {"prompt": "fox", "negative": "blur", "seed": 9, "fixed_seed": True}
