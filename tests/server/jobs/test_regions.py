"""`params.regions` through a real server with tiny checkpoints and scikit-image photos: a region that
covers nothing is no region (bit for bit, every job kind), a region over the whole canvas is the plain
job with its prompt (bit for bit), two regions on a photo each change their own area, the fused tiler
conditions each tile by the masks under it, nothing stays installed after the job, and bad regions are
refused before queueing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from server.cli import main as cli_main
from server.client import ServerError
from tests.conftest import RunningServer
from tests.server.jobs.edit_helpers import gray8, job, photo, pixels, rgba8
from tests.wire import Raw

SD = {"model": "tiny-sd15", "seed": 11, "steps": 4, "cfg": 6.0, "prompt": "a field", "negative": "blurry"}
XL = SD | {"model": "tiny-sdxl"}


def one(mask: np.ndarray, prompt: str = "a red barn", **extra: object) -> tuple[list[dict], dict]:
    return [{"prompt": prompt, "mask": "r1"} | extra], {"r1": gray8(mask.astype(np.uint8))}


def image_of(res: dict) -> np.ndarray:
    return pixels(res["images"][0]).astype(np.int16)


def left_right(w: int, h: int, frac: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the left and the right `frac` of a w x h canvas (255 inside)."""
    a, b = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
    a[:, : int(w * frac)] = 255
    b[:, w - int(w * frac) :] = 255
    return a, b


# kind, params, images (canvas size of the region masks follows from them)
CASES = {
    "txt2img-sd15": ("generate", SD | {"width": 64, "height": 48}, {}, (64, 48)),
    "txt2img-sdxl": ("generate", XL | {"width": 64, "height": 64}, {}, (64, 64)),
    "img2img": ("generate", SD | {"strength": 0.6}, {"init": rgba8(photo("astronaut", 64, 64))}, (64, 64)),
    "inpaint": ("inpaint", SD, {"image": rgba8(photo("coffee", 96, 64))}, (96, 64)),
    "outpaint": ("outpaint", SD | {"right": 32}, {"image": rgba8(photo("chelsea", 64, 64))}, (96, 64)),
    "upscale": ("upscale", SD | {"scale": 2, "strength": 0.4}, {"image": rgba8(photo("camera", 48, 40))}, (48, 40)),
    "face": ("face", SD, {"image": rgba8(photo("astronaut", 96, 96))}, (96, 96)),
}


def _selection(w: int, h: int) -> dict:
    sel = np.zeros((h, w), np.uint8)
    sel[h // 4 : h // 2, w // 4 : w // 2] = 255
    return {"mask": gray8(sel)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_region_that_covers_nothing_is_no_region(server: RunningServer, case: str) -> None:
    kind, params, images, (w, h) = CASES[case]
    if kind in ("inpaint", "face"):
        images = images | _selection(w, h)
    plain = job(server.url, kind, params, images)
    regions, masks = one(np.zeros((h, w)))
    regions.append({"prompt": "a boat", "mask": "r2", "strength": 0.0})  # a full mask at strength 0: nothing
    masks["r2"] = gray8(np.full((h, w), 255, np.uint8))
    res = job(server.url, kind, params | {"regions": regions}, images | masks)
    assert len(res["images"]) == len(plain["images"]) > 0
    for a, b in zip(res["images"], plain["images"], strict=True):
        assert (a["x"], a["y"]) == (b["x"], b["y"]) and np.array_equal(pixels(a), pixels(b))
    assert "regions" not in res["params"]


@pytest.mark.parametrize("case", ["txt2img-sd15", "txt2img-sdxl", "img2img", "inpaint", "upscale"])
def test_a_region_over_the_whole_canvas_is_the_plain_job_with_its_prompt(server: RunningServer, case: str) -> None:
    kind, params, images, (w, h) = CASES[case]
    if kind == "inpaint":
        images = images | _selection(w, h)
    plain = job(server.url, kind, params | {"prompt": "a red barn"}, images)
    regions, masks = one(np.full((h, w), 255))
    res = job(server.url, kind, params | {"regions": regions}, images | masks)
    assert np.array_equal(image_of(res), image_of(plain))
    assert res["params"]["regions"] == [{"prompt": "a red barn", "mask": "r1", "strength": 1.0}]
    # With its own negative: the plain job with that prompt and that negative.
    plain = job(server.url, kind, params | {"prompt": "a red barn", "negative": "fog"}, images)
    regions, masks = one(np.full((h, w), 255), negative="fog")
    res = job(server.url, kind, params | {"regions": regions}, images | masks)
    assert np.array_equal(image_of(res), image_of(plain))


def _change(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a[..., :3] - b[..., :3]).mean(-1)


@pytest.mark.parametrize(("base", "size"), [(SD, 128), (XL, 256)], ids=["sd15", "sdxl"])
def test_two_regions_on_a_photo_change_their_own_areas(server: RunningServer, base: dict, size: int) -> None:
    """img2img of a photo with a region on its left quarter and one on its right quarter: changing one
    region's prompt changes its own area far more than the other region's."""
    a, b = left_right(size, size)
    images = {"init": rgba8(photo("chelsea", size, size)), "a": gray8(a), "b": gray8(b)}
    params = base | {"steps": 8, "strength": 0.6, "prompt": "a photo"}

    def run_with(pa: str, pb: str) -> np.ndarray:
        regions = [{"prompt": pa, "mask": "a"}, {"prompt": pb, "mask": "b"}]
        return image_of(job(server.url, "generate", params | {"regions": regions}, images))

    ref = run_with("a cat", "a dog")
    change_a = _change(run_with("a red barn in snow", "a dog"), ref)
    change_b = _change(run_with("a cat", "a stormy night sky"), ref)
    in_a, in_b = a > 0, b > 0
    # Measured (tiny random-weight models, where convolutions spread any change far): own area 2.5-3.9x
    # the other's. The masked attention itself is exact: tests/server/pipelines/test_region_attention.py.
    assert change_a[in_a].mean() > 2 * change_a[in_b].mean() > 0
    assert change_b[in_b].mean() > 2 * change_b[in_a].mean() > 0


def test_tiled_upscale_with_regions(server: RunningServer) -> None:
    """A 4x upscale (64-px tiles of a 384x192 canvas) with a region on each side quarter: each region's
    prompt changes its own side ~12x more than the other side (what remains there came across the
    fused tiler's overlaps over the steps and the tiled VAE's shared normalisation statistics; the exact
    per-tile rule is tested on the sampler itself in tests/server/pipelines/test_region_attention.py)."""
    a, b = left_right(96, 48)
    params = SD | {"scale": 4, "strength": 0.5, "steps": 6}
    images = {"image": rgba8(photo("astronaut", 96, 48)), "a": gray8(a), "b": gray8(b)}
    plain = job(server.url, "upscale", params, images)

    def run_with(pa: str, pb: str) -> dict:
        regions = [{"prompt": pa, "mask": "a"}, {"prompt": pb, "mask": "b"}]
        return job(server.url, "upscale", params | {"regions": regions}, images)

    ref = run_with("a cat", "a dog")
    assert ref["params"]["unet_evals"] == plain["params"]["unet_evals"]  # regions add no UNet evaluation
    change_a = _change(image_of(run_with("a red barn in snow", "a dog")), image_of(ref))
    change_b = _change(image_of(run_with("a cat", "a stormy night sky")), image_of(ref))
    in_a, in_b = np.kron(a > 0, np.ones((4, 4), bool)), np.kron(b > 0, np.ones((4, 4), bool))
    assert change_a[in_a].mean() > 5 * change_a[in_b].mean() > 0
    assert change_b[in_b].mean() > 5 * change_b[in_a].mean() > 0


def test_nothing_stays_installed_after_a_region_job(server: RunningServer) -> None:
    params = SD | {"width": 64, "height": 64}
    before = image_of(job(server.url, "generate", params, {}))
    a, _ = left_right(64, 64, 0.5)
    regions, masks = one(a)
    assert "regions" in job(server.url, "generate", params | {"regions": regions}, masks)["params"]
    assert np.array_equal(image_of(job(server.url, "generate", params, {})), before)


def test_hires_and_batch_carry_the_regions(server: RunningServer) -> None:
    a, _ = left_right(64, 64, 0.5)
    regions, masks = one(a)
    params = SD | {"width": 64, "height": 64, "batch": 2, "hires": {"scale": 1.5, "steps": 2}}
    res = job(server.url, "generate", params | {"regions": regions}, masks)
    plain = job(server.url, "generate", params, {})
    assert [pixels(r).shape[:2] for r in res["images"]] == [(96, 96), (96, 96)]
    for r, p in zip(res["images"], plain["images"], strict=True):
        assert not np.array_equal(pixels(r), pixels(p))
    single = job(server.url, "generate", params | {"batch": 1, "seed": 12, "regions": regions}, masks)
    assert np.array_equal(pixels(single["images"][0]), pixels(res["images"][1]))  # batch image = its own job


def _refused(url: str, params: dict, images: dict) -> ServerError:
    with pytest.raises(ServerError) as err:
        job(url, "generate", SD | {"width": 64, "height": 64} | params, images)
    return err.value


BAD = [
    ({"regions": "a barn"}, {}, "bad_field", "params.regions: expected a list"),
    ({"regions": [{"mask": "r1"}]}, "ok", "bad_field", "params.regions[0].prompt: missing"),
    ({"regions": [{"prompt": "  ", "mask": "r1"}]}, "ok", "bad_field", "params.regions[0].prompt: empty"),
    ({"regions": [{"prompt": "<lora:x:1>", "mask": "r1"}]}, "ok", "bad_field", "params.regions[0].prompt: empty"),
    ({"regions": [{"prompt": "a", "mask": "nope"}]}, "ok", "bad_field", "no image named 'nope'"),
    ({"regions": [{"prompt": "a"}]}, "ok", "bad_field", "params.regions[0].mask: missing"),
    ({"regions": [{"prompt": "a", "mask": "r1", "strength": 2}]}, "ok", "bad_field", "strength: 2.0 is above"),
    ({"regions": [{"prompt": "a", "mask": "r1"}]}, "small", "bad_image", "is 32x32; the canvas is 64x64"),
    ({"regions": [{"prompt": "a <lora:no-such:1>", "mask": "r1"}]}, "ok", "unknown_model", "params.regions[0]"),
    ({"regions": [{"prompt": "a", "mask": "r1", "loras": [{"name": "no-such"}]}]}, "ok", "unknown_model", "no-such"),
    ({"regions": [{"prompt": "a", "mask": "r1", "loras": "x"}]}, "ok", "bad_field", "loras: expected a list"),
    ({"regions": [{"prompt": "a", "mask": "r1"}] * 9}, "ok", "bad_field", "9 regions; the limit is 8"),
]


@pytest.mark.parametrize(("params", "images", "code", "message"), BAD)
def test_bad_regions_are_refused_before_queueing(
    server: RunningServer, params: dict, images: object, code: str, message: str
) -> None:
    size = 32 if images == "small" else 64
    imgs = {"r1": gray8(np.full((size, size), 255, np.uint8))} if images else {}
    err = _refused(server.url, params, imgs)
    assert err.code == code and message in str(err), str(err)


def test_refusal_comes_without_queueing_and_limit_is_advertised(server: RunningServer) -> None:
    raw = Raw(server.url)
    try:
        assert raw.welcome is not None and raw.welcome["limits"]["max_regions"] == 8
        images = {"image": rgba8(photo("coffee", 64, 64)), "m": gray8(np.zeros((8, 8), np.uint8))}
        params = {"regions": [{"prompt": "a", "mask": "m"}]}
        frame = {"type": "job", "id": "r-1", "kind": "inpaint", "params": params, "images": images}
        replies = raw.replies(frame)
        assert [r["type"] for r in replies] == ["error"] and replies[0]["id"] == "r-1"
        assert replies[0]["code"] == "bad_image" and "the canvas is 64x64" in replies[0]["message"]
    finally:
        raw.close()


def test_cli_region_option(server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, _ = left_right(64, 64, 0.5)
    Image.fromarray(a).save(tmp_path / "left.png")
    base = ["--seed", "11", "--steps", "4", "--cfg", "6", "--negative", "blurry", "--url", server.url]
    args = ["generate", "a field", "--model", "tiny-sd15", "--size", "64x64", *base]
    assert cli_main([*args, "--region", f"a red barn:{tmp_path / 'left.png'}", "--out", str(tmp_path / "g.png")]) == 0
    regions, masks = one(a)
    want = job(server.url, "generate", SD | {"width": 64, "height": 64, "regions": regions}, masks)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g.png").convert("RGBA")), pixels(want["images"][0]))
    # upscale: a prompt region and the source rectangle, both spelled --region
    Image.fromarray(photo("camera", 64, 64)).save(tmp_path / "src.png")
    up = ["upscale", str(tmp_path / "src.png"), "--prompt", "a field", "--model", "tiny-sd15", "--scale", "1.5", *base]
    region_args = ["--strength", "0.4", "--region", f"(red:1.2) barn:{tmp_path / 'left.png'}", "--region", "0,0,40,64"]
    assert cli_main([*up, *region_args, "--out", str(tmp_path / "u.png")]) == 0
    params = SD | {"scale": 1.5, "strength": 0.4, "output": "full", "region": {"x": 0, "y": 0, "w": 40, "h": 64}}
    params["regions"] = [{"prompt": "(red:1.2) barn", "mask": "r1"}]
    want = job(server.url, "upscale", params, {"image": rgba8(photo("camera", 64, 64)), "r1": gray8(a)})
    assert np.array_equal(np.asarray(Image.open(tmp_path / "u.png").convert("RGBA")), pixels(want["images"][0]))
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli_main([*args, "--region", "no-colon-here", "--out", str(tmp_path / "x.png")])
    assert "expected PROMPT:MASK.png" in capsys.readouterr().err


def test_region_loras_text_encoder_part_is_the_regions_own(a1111_server: RunningServer) -> None:
    """A region's LoRA at UNet weight 0: only that region's text is encoded with it. Over the whole
    canvas that is the plain prompt with the tag `<lora:name:0:1>`; a LoRA of a region that covers
    nothing changes nothing, its UNet part included."""
    url = a1111_server.url
    params = SD | {"width": 64, "height": 64}
    lora = {"name": "lora-sd15", "weight": 0.0, "te": 1.0}
    regions, masks = one(np.full((64, 64), 255), loras=[lora])
    res = job(url, "generate", params | {"regions": regions}, masks)
    tagged = job(url, "generate", params | {"prompt": "a red barn <lora:lora-sd15:0:1>"}, {})
    untagged = job(url, "generate", params | {"prompt": "a red barn"}, {})
    assert np.array_equal(image_of(res), image_of(tagged)) and not np.array_equal(image_of(res), image_of(untagged))
    assert res["params"]["regions"][0]["loras"] == [{"name": "lora-sd15", "weight": 0.0, "te": 1.0}]
    # the same LoRA written as a tag in the region's prompt
    regions, masks = one(np.full((64, 64), 255), prompt="a red barn <lora:lora-sd15:0:1>")
    assert np.array_equal(image_of(job(url, "generate", params | {"regions": regions}, masks)), image_of(tagged))
    # UNet part (weight 0.8) of a region's LoRA: applied to the whole canvas; a region covering nothing: none
    regions, masks = one(np.zeros((64, 64)), loras=[{"name": "lora-sd15", "weight": 0.8}])
    plain = job(url, "generate", params, {})
    assert np.array_equal(image_of(job(url, "generate", params | {"regions": regions}, masks)), image_of(plain))
    a, _ = left_right(64, 64, 0.5)
    regions, masks = one(a, loras=[{"name": "lora-sd15", "weight": 0.8, "te": 0.0}])
    half = job(url, "generate", params | {"regions": regions}, masks)
    regions, masks = one(a)
    without = job(url, "generate", params | {"regions": regions}, masks)
    assert not np.array_equal(image_of(half), image_of(without))
