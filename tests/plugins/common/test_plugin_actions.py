"""Editor-independent action logic: settings parsing, canvas + settings -> job request."""

from __future__ import annotations

import pytest

from plugins.common import actions
from plugins.common.actions import ActionError, Canvas
from plugins.common.geometry import Rect
from plugins.common.jobs import GenerateRequest, InpaintRequest, OutpaintRequest, UpscaleRequest
from plugins.common.settings import Settings

W, H = 32, 16
WELCOME = {
    "jobs": ["generate", "inpaint", "outpaint", "upscale", "face", "restore"],
    "samplers": ["Euler a", "DDIM"],
    "models": [{"name": "tiny"}],
    "limits": {"max_pixels": 1 << 20},
}


def canvas(sel: Rect | None = None) -> Canvas:
    mask = None
    if sel is not None:
        mask = bytes(255 if sel.contains(Rect(x, y, 1, 1)) else 0 for y in range(H) for x in range(W))
    return Canvas(W, H, b"\x10\x20\x30\x00" * (W * H), mask)


def test_settings_roundtrip_and_bad_values() -> None:
    store: dict[str, str] = {"steps": "7", "fixed_seed": "true", "cfg": "oops", "prompt": "fox"}
    s = Settings.load(lambda k, d: store.get(k, d))
    assert (s.steps, s.fixed_seed, s.cfg, s.prompt) == (7, True, 7.0, "fox")
    out: dict[str, str] = {}
    s.replace(seed=5).save(out.__setitem__)
    assert out["seed"] == "5" and out["fixed_seed"] == "true" and set(out) == set(Settings.keys())


def test_generate_txt2img_vs_img2img_vs_inpaint() -> None:
    s = Settings(prompt="fox", seed=9, fixed_seed=True, strength=1.0, sampler="DDIM", model="nope")
    req = actions.plan_generate(canvas(), s, WELCOME)
    assert isinstance(req, GenerateRequest) and req.init is None
    assert (req.width, req.height, req.sampling.seed, req.sampling.sampler, req.sampling.model) == (
        32,
        16,
        9,
        "DDIM",
        None,
    )
    req = actions.plan_generate(canvas(), s.replace(strength=0.4, fixed_seed=False), WELCOME)
    assert isinstance(req, GenerateRequest) and req.strength == 0.4 and req.sampling.seed == -1
    assert req.init is not None and req.init.data[3::4] == b"\xff" * (W * H)  # init sent opaque
    req = actions.plan_generate(canvas(Rect(4, 4, 8, 8)), s, WELCOME)
    assert isinstance(req, InpaintRequest) and req.mask is not None and req.mask.format == "gray8"
    with pytest.raises(ActionError, match="inpaint"):
        actions.plan_generate(canvas(Rect(4, 4, 8, 8)), s, {"jobs": ["generate"]})


def test_outpaint_from_settings_or_edge_selection() -> None:
    req = actions.plan_outpaint(canvas(), Settings(outpaint_side="left", outpaint_pixels=24), WELCOME)
    assert isinstance(req, OutpaintRequest) and (req.left, req.right, req.top, req.bottom) == (24, 0, 0, 0)
    req = actions.plan_outpaint(canvas(Rect(24, 0, 8, 16)), Settings(), WELCOME)
    assert (req.left, req.right) == (0, 0) and req.mask is not None  # in-canvas fill of the edge selection
    with pytest.raises(ActionError):
        actions.plan_outpaint(canvas(Rect(10, 5, 4, 4)), Settings(), WELCOME)


def test_upscale_whole_or_region() -> None:
    req = actions.plan_upscale(canvas(), Settings(upscale_scale=2.0), WELCOME)
    assert isinstance(req, UpscaleRequest) and req.region is None and req.scale == 2.0
    req = actions.plan_upscale(canvas(Rect(2, 3, 5, 6)), Settings(), WELCOME)
    assert req.region == Rect(2, 3, 5, 6)


def test_batch_goes_to_every_diffusion_kind_and_vae_to_sampling() -> None:
    s = Settings(batch=3, vae="soft", face_strength=0.0)
    welcome = WELCOME | {"vaes": ["soft"]}
    inpaint = actions.plan_generate(canvas(Rect(4, 4, 8, 8)), s, welcome)
    assert isinstance(inpaint, InpaintRequest) and inpaint.batch == 3 and inpaint.params()["batch"] == 3
    assert actions.plan_outpaint(canvas(), s, welcome).batch == 3
    assert actions.plan_outpaint(canvas(Rect(24, 0, 8, 16)), s, welcome).batch == 3
    face = actions.plan_face(canvas(), s, welcome)
    assert face.batch == 3 and face.strength == 0.01  # a 0 from a slider is "barely", never invalid
    assert inpaint.sampling.vae == "soft" and inpaint.params()["vae"] == "soft"
    # A VAE the server does not list is left out (the checkpoint's own is used), like a missing model.
    assert actions.plan_generate(canvas(), s, WELCOME).sampling.vae is None


def test_lora_tags_and_strength_labels() -> None:
    tag = actions.lora_tag("detail", 0.75)
    assert tag == "<lora:detail:0.75>" and actions.lora_tag("x") == "<lora:x:1>"
    assert actions.insert_tag("a fox ", tag) == "a fox <lora:detail:0.75>"
    assert actions.insert_tag("a fox <lora:detail:0.75>", tag) == "a fox <lora:detail:0.75>"  # once only
    assert actions.insert_tag("", tag) == tag
    assert actions.strength_label(1.0) == "Generate"
    assert actions.strength_label(0.999) == "Generate"
    assert actions.strength_label(0.6) == "Refine 60 %" and actions.strength_label(0) == "Refine 1 %"
