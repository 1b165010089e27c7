"""Regions in the shared client: the layer-name marker, masks from layer alpha, masks fitted to the
canvas a job draws (crop, outpaint padding), and how requests carry them (params + images), also
through the GIMP plug-in's planner."""

from __future__ import annotations

import pytest

from plugins.common import jobs, regions
from plugins.common.actions import ActionError, Canvas, plan_generate, plan_outpaint
from plugins.common.geometry import Rect
from plugins.common.settings import Settings
from plugins.gimp.sdbridge_gimp import logic, procs

W, H = 8, 6


def rgba_box(box: Rect, alpha: int = 255) -> bytes:
    """Canvas-size RGBA, red at `alpha` inside `box`, transparent elsewhere."""
    out = bytearray(W * H * 4)
    for y in range(box.y, box.bottom):
        for x in range(box.x, box.right):
            out[(y * W + x) * 4 : (y * W + x) * 4 + 4] = bytes((255, 0, 0, alpha))
    return bytes(out)


def gray_rows(mask: bytes, w: int) -> list[bytes]:
    return [mask[i : i + w] for i in range(0, len(mask), w)]


@pytest.mark.parametrize(
    ("name", "prompt"),
    [("region: a red barn", "a red barn"), ("  Region:stormy sky ", "stormy sky"), ("REGION:", ""), ("barn", None),
     ("my region: x", None)],
)  # fmt: skip
def test_marker(name: str, prompt: str | None) -> None:
    assert regions.layer_prompt(name) == prompt


def test_region_layers_from_layer_alpha_and_opacity() -> None:
    left, empty = rgba_box(Rect(0, 0, 3, H), 200), rgba_box(Rect(0, 0, 0, 0))
    found = regions.from_layers(
        [("region: a barn", left, 1.0), ("background", left, 1.0), ("region: sky", empty, 1.0),
         ("region: fog", left, 0.4)]
    )  # fmt: skip
    assert [(r.prompt, r.strength) for r in found] == [("a barn", None), ("fog", 0.4)]
    assert gray_rows(found[0].mask, W)[0] == bytes([200] * 3 + [0] * 5)


def test_a_region_layer_with_its_own_negative_prompt_sends_it() -> None:
    left = rgba_box(Rect(0, 0, 3, H))
    layer = regions.region_layer("region: a barn", left, 1.0, "blurry")
    assert layer is not None and (layer.prompt, layer.negative, layer.strength) == ("a barn", "blurry", None)
    assert regions.region_layer("region: a barn", left, 1.0, "").negative is None  # "": the job's own negative
    assert regions.region_layer("barn", left, 1.0, "blurry") is None
    assert regions.region_layer("region: a barn", rgba_box(Rect(0, 0, 0, 0)), 1.0) is None  # covers nothing
    (region,) = regions.fit([layer], W, H)
    assert region.params("region-1") == {"prompt": "a barn", "mask": "region-1", "negative": "blurry"}


def test_fit_crops_pads_and_drops_what_is_outside() -> None:
    layer = regions.RegionLayer("a barn", regions.alpha(rgba_box(Rect(0, 0, 3, H))))
    (whole,) = regions.fit([layer], W, H)
    assert (whole.mask.w, whole.mask.h, whole.mask.format) == (W, H, "gray8")
    (part,) = regions.fit([layer], W, H, rect=Rect(2, 1, 4, 3))
    assert gray_rows(part.mask.data, 4) == [bytes([255, 0, 0, 0])] * 3
    assert regions.fit([layer], W, H, rect=Rect(4, 0, 4, H)) == ()  # not in that part of the canvas
    (grown,) = regions.fit([layer], W, H, pad=(2, 1, 0, 3))  # outpaint: 2 px left, 1 top, 3 bottom
    rows = gray_rows(grown.mask.data, W + 2)
    assert (grown.mask.w, grown.mask.h) == (W + 2, H + 4)
    assert rows[0] == bytes(W + 2) and rows[1] == bytes([0, 0, 255, 255, 255] + [0] * 5) and rows[-1] == bytes(W + 2)
    (scaled,) = regions.fit([layer], W, H, size=(4, 3))  # drawn at half size: the region shrinks with it
    assert gray_rows(scaled.mask.data, 4) == [bytes([255, 0, 0, 0])] * 3  # 3 of 8 columns: 1.5 of 4, nearest
    (snapped,) = regions.fit([layer], W, H, size=(8, 8))
    assert gray_rows(snapped.mask.data, 8) == [bytes([255] * 3 + [0] * 5)] * 8
    with pytest.raises(ValueError, match="does not match the 9x6 canvas"):
        regions.fit([layer], W + 1, H)


def test_scale_keeps_soft_values_and_proportions() -> None:
    mask = bytes(range(0, 160, 10))  # 4x4, a ramp
    assert regions.scale(mask, 4, 4, 4, 4) == mask
    up = regions.scale(mask, 4, 4, 8, 8)
    assert gray_rows(up, 8)[0] == bytes([0, 0, 10, 10, 20, 20, 30, 30]) and gray_rows(up, 8)[7][-1] == 150
    assert regions.scale(up, 8, 8, 4, 4) == mask


def test_requests_carry_regions_as_params_and_images() -> None:
    mask = jobs.WireImage.gray(bytes(W * H), W, H)
    req = jobs.GenerateRequest(
        sampling=jobs.Sampling(prompt="a field"),
        width=W,
        height=H,
        regions=(jobs.Region("a barn", mask), jobs.Region("sky", mask, negative="fog", strength=0.5)),
    )
    assert req.params()["regions"] == [
        {"prompt": "a barn", "mask": "region-1"},
        {"prompt": "sky", "mask": "region-2", "negative": "fog", "strength": 0.5},
    ]
    assert set(req.images()) == {"region-1", "region-2"}
    assert "regions" not in jobs.GenerateRequest(sampling=jobs.Sampling(prompt="x")).params()


def _canvas(*layers: tuple[str, Rect], selection: Rect | None = None) -> Canvas:
    found = regions.from_layers((name, rgba_box(box), 1.0) for name, box in layers)
    sel = None
    if selection is not None:
        sel = bytes(255 if selection.x <= i % W < selection.right and selection.y <= i // W < selection.bottom else 0
                    for i in range(W * H))  # fmt: skip
    return Canvas(W, H, rgba_box(Rect(0, 0, W, H)), sel, regions=found)


def test_shared_planners_attach_regions() -> None:
    canvas = _canvas(("region: a barn", Rect(0, 0, 3, H)), ("region: sky", Rect(0, 0, W, 2)))
    req = plan_generate(canvas, Settings(prompt="a field"))
    assert [r.prompt for r in req.regions] == ["a barn", "sky"]  # type: ignore[attr-defined]
    out = plan_outpaint(canvas, Settings(prompt="x", outpaint_side="left", outpaint_pixels=4))
    assert [(r.mask.w, r.mask.h) for r in out.regions] == [(W + 4, H)] * 2
    # an 8x6 canvas is drawn at 8x8 (multiples of 8), 16x12 asked is 16x8: the masks stretch with it
    (barn, sky) = plan_generate(canvas, Settings(prompt="a field")).regions  # type: ignore[attr-defined]
    assert (barn.mask.w, barn.mask.h) == (8, 8) and gray_rows(barn.mask.data, 8)[0] == bytes([255] * 3 + [0] * 5)
    (barn, sky) = plan_generate(canvas, Settings(prompt="a field", width=16, height=12)).regions  # type: ignore[attr-defined]
    assert (sky.mask.w, sky.mask.h) == (16, 8) and sum(sky.mask.data) == 255 * 16 * 3
    with pytest.raises(ActionError, match="has no prompt"):
        plan_generate(_canvas(("region:", Rect(0, 0, 3, H))), Settings(prompt="x"))


def test_gimp_generate_in_a_selection_crops_the_regions() -> None:
    canvas = _canvas(("region: a barn", Rect(0, 0, 3, H)), ("region: far", Rect(6, 0, 2, H)),
                     selection=Rect(1, 1, 4, 4))  # fmt: skip
    spec = procs.PROCS_BY_NAME["sdbridge-generate"]
    plan = logic.plan_job(spec, {a.name: a.default for a in spec.args} | {"prompt": "a field"}, canvas)
    (barn,) = plan.request.regions  # type: ignore[attr-defined]
    assert (barn.mask.w, barn.mask.h) == (4, 4) and gray_rows(barn.mask.data, 4)[0] == bytes([255, 255, 0, 0])
    assert logic.regions_note(plan) == " with 1 region (a barn)"
    small = logic.plan_job(spec, {a.name: a.default for a in spec.args} | {"prompt": "a field"}, canvas, max_pixels=8)
    (barn,) = small.request.regions  # type: ignore[attr-defined]  # over the pixel limit: drawn smaller, regions too
    assert (small.request.width, small.request.height) == (barn.mask.w, barn.mask.h) == (8, 8)  # type: ignore[attr-defined]
