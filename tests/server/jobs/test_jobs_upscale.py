"""`upscale` through a real server with tiny models: plan first, partial rects tiling the changed area
before the result, selections that leave every other pixel bit-identical to the upscale, upscaler
files and Lanczos, strength 0, the fused tiler against the peers' naive tiler, and the CLI once."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from server.client import ServerError
from server.embedded import RunningServer
from server.models.upscaler import lanczos, load_upscaler, upscale_tiled, write_test_upscaler
from tests.conftest import connect, run
from tests.server.jobs.edit_helpers import gray8, photo, pixels, rgba8
from tests.servers import in_process
from tests.tiling.tiling_helpers import smooth_gradient
from tiling.plan import overlap_for_strength, plan_tiles
from tiling.seams import plan_seams, sgr_ms

W, H = 96, 80


@pytest.fixture(scope="module")
def up_server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("upscale-models")
    for name in ("tiny-sd15", "tiny-sdxl"):
        shutil.copy(models_dir / f"{name}.safetensors", root)
    write_test_upscaler(root / "ESRGAN", "tiny-esrgan", 4)
    with in_process(root) as running:
        yield running


def upscale(url: str, params: dict, images: dict) -> tuple[dict, list[dict]]:
    events: list[dict] = []

    async def go() -> dict:
        async with await connect(url) as c:
            return await c.run("upscale", {"result_format": "rgba8", **params}, images, on_event=events.append)

    return run(go()), events


def rect_mask(rects: list[dict], w: int, h: int) -> np.ndarray:
    """How many times each pixel is covered by the given rects."""
    cover = np.zeros((h, w), np.int32)
    for r in rects:
        cover[r["y"] : r["y"] + r["h"], r["x"] : r["x"] + r["w"]] += 1
    return cover


def check_stream(events: list[dict], result: dict) -> list[dict]:
    """Plan before any progress/partial, partials before the result; progress counts to the plan's evals."""
    kinds = [e["type"] for e in events]
    first_work = min(i for i, k in enumerate(kinds) if k in ("progress", "partial", "result"))
    assert kinds.index("plan") < first_work
    plan = next(e for e in events if e["type"] == "plan")
    partials = [e["image"] for e in events if e["type"] == "partial"]
    assert partials and kinds.index("result") > max(i for i, k in enumerate(kinds) if k == "partial")
    progress = [e for e in events if e["type"] == "progress"]
    assert progress[-1]["step"] == progress[-1]["total"] == plan["unet_evals"]
    assert result["params"]["unet_evals"] == plan["unet_evals"]
    return partials


@pytest.mark.parametrize(("model", "sampler"), [("tiny-sd15", "Euler a"), ("tiny-sdxl", "DPM++ 2M")])
def test_whole_image_streams_tiles_then_the_full_canvas(up_server, model: str, sampler: str) -> None:
    img = photo("astronaut", W, H)
    res, events = upscale(
        up_server.url, {"model": model, "seed": 4, "steps": 8, "sampler": sampler, "scale": 2}, {"image": rgba8(img)}
    )
    assert res["canvas"] == {"w": 2 * W, "h": 2 * H}
    (full,) = res["images"]
    assert (full["x"], full["y"], full["w"], full["h"]) == (0, 0, 2 * W, 2 * H)
    partials = check_stream(events, res)
    # The partial rects tile the whole canvas exactly once, and carry the final pixels.
    assert (rect_mask(partials, 2 * W, 2 * H) == 1).all()
    out = pixels(full)
    for p in partials:
        assert np.array_equal(pixels(p), out[p["y"] : p["y"] + p["h"], p["x"] : p["x"] + p["w"]])
    plan = next(e for e in events if e["type"] == "plan")
    assert plan["tiles"] == plan["tiles_in_plan"] > 1  # larger than one tiny-model pass: tiled
    # Refined, not just resampled: differs from the Lanczos upscale, but stays close to it.
    base = lanczos(img[..., :3], (2 * W, 2 * H)).astype(int)
    diff = np.abs(out[..., :3].astype(int) - base)
    assert diff.mean() > 1


def test_upscaler_file_and_strength_zero(up_server, tmp_path: Path) -> None:
    img = photo("coffee", W, H)
    res, events = upscale(
        up_server.url,
        {"model": "tiny-sd15", "scale": 2, "strength": 0, "upscaler": "tiny-esrgan"},
        {"image": rgba8(img)},
    )
    assert next(e for e in events if e["type"] == "plan")["unet_evals"] == 0
    assert not [e for e in events if e["type"] == "progress"]
    # Upscaler only: the 4x model's output, Lanczos-resized to x2, exactly.
    path = write_test_upscaler(tmp_path, "tiny-esrgan", 4)
    x4 = upscale_tiled(load_upscaler(path), np.ascontiguousarray(img[..., :3]))
    want = np.asarray(Image.fromarray(x4).resize((2 * W, 2 * H), Image.Resampling.LANCZOS))
    assert np.array_equal(pixels(res["images"][0])[..., :3], want)
    assert res["params"]["upscaler"] == "tiny-esrgan"
    # Lanczos, strength 0: PIL's Lanczos.
    res, _ = upscale(up_server.url, {"model": "tiny-sd15", "scale": 1.5, "strength": 0}, {"image": rgba8(img)})
    assert np.array_equal(pixels(res["images"][0])[..., :3], lanczos(img[..., :3], (round(1.5 * W), round(1.5 * H))))
    assert res["params"]["upscaler"] == "lanczos"


@pytest.mark.parametrize(("model", "tile"), [("tiny-sd15", None), ("tiny-sdxl", 64)])
def test_mask_regenerates_only_the_selection(up_server, model: str, tile: int | None) -> None:
    w, h = 128, 96
    img = photo("chelsea", w, h)
    sel = np.zeros((h, w), np.uint8)
    sel[20:44, 30:62] = 255
    sel = cv2.GaussianBlur(sel, (0, 0), 2)
    base = {"model": model, "seed": 2, "steps": 8, "scale": 2, "upscaler": "tiny-esrgan", "tile": tile}
    ref, _ = upscale(up_server.url, base | {"strength": 0}, {"image": rgba8(img)})
    upscaled = pixels(ref["images"][0])
    full, events = upscale(up_server.url, base | {"output": "full"}, {"image": rgba8(img), "mask": gray8(sel)})
    changed, _ = upscale(up_server.url, base, {"image": rgba8(img), "mask": gray8(sel)})
    partials = check_stream(events, full)
    plan = next(e for e in events if e["type"] == "plan")
    assert tile is None or plan["tile"] == [tile, tile]
    assert plan["tiles"] < plan["tiles_in_plan"]  # culled: cost follows the selection
    out = pixels(full["images"][0])
    # Changed mode: one rect with the blend alpha, around the (x2) selection only.
    (r,) = changed["images"]
    assert changed["canvas"] == {"w": 2 * w, "h": 2 * h} and changed["params"]["output"] == "changed"
    alpha = np.zeros((2 * h, 2 * w), np.uint8)
    alpha[r["y"] : r["y"] + r["h"], r["x"] : r["x"] + r["w"]] = pixels(r)[..., 3]
    assert (alpha[44:84, 64:120] == 255).all()  # the selection itself is fully replaced
    # Every pixel outside the blend alpha is the upscale, bit for bit (full mode).
    assert np.array_equal(out[alpha == 0], upscaled[alpha == 0])
    assert not np.array_equal(out[alpha == 255], upscaled[alpha == 255])
    # Partials tile exactly the changed rect.
    cover = rect_mask(partials, 2 * w, 2 * h)
    inside = np.zeros_like(cover, bool)
    inside[r["y"] : r["y"] + r["h"], r["x"] : r["x"] + r["w"]] = True
    assert (cover[inside] == 1).all() and (cover[~inside] == 0).all()
    # Changed rect composited over the upscale == the full output.
    comp = upscaled.copy()
    patch = pixels(r)
    a = patch[..., 3:4].astype(np.uint16)
    region = comp[r["y"] : r["y"] + r["h"], r["x"] : r["x"] + r["w"]]
    region[..., :3] = ((patch[..., :3] * a + region[..., :3].astype(np.uint16) * (255 - a) + 127) // 255).astype(
        np.uint8
    )
    assert np.array_equal(comp, out)


def test_region_rectangle(up_server) -> None:
    img = photo("astronaut", W, H)
    res, events = upscale(
        up_server.url,
        {"model": "tiny-sd15", "seed": 1, "steps": 8, "scale": 2, "region": {"x": 8, "y": 8, "w": 24, "h": 20}},
        {"image": rgba8(img)},
    )
    (r,) = res["images"]
    grow = 16 + 1
    assert r["x"] >= 16 - grow and r["y"] >= 16 - grow
    assert r["x"] + r["w"] <= 64 + grow and r["y"] + r["h"] <= 56 + grow
    assert res["params"]["region"] == {"x": 8, "y": 8, "w": 24, "h": 20}


def _tile_repetition(img: np.ndarray, plan: Any) -> float:
    """Mean correlation of the high-pass content of different tiles (1 = every tile the same)."""
    lum = img[..., :3].astype(np.float64).mean(-1)
    hp = lum - cv2.GaussianBlur(lum, (0, 0), 4)
    c = np.corrcoef(np.stack([hp[t.slices].ravel() for t in plan.tiles]))
    return float(c[~np.eye(len(plan.tiles), dtype=bool)].mean())


def test_fused_tiler_vs_naive_tiler_on_a_smooth_gradient(up_server) -> None:
    """Through the real job: the naive tiler (independent tiles, one seed, hard paste) against ours.

    The tiny models' random VAE turns any input into texture, so SGR-ms's decoy z-score cannot
    catch the naive tiler here (its seams sit in texture as strong as the decoys'); the library
    test does that with a stand-in model. What the real path shows: ours passes the metric with
    a lower seam/control ratio than naive, and naive repeats the same content in every tile.
    """
    g = (smooth_gradient(96, 96) * 255).round().astype(np.uint8)
    img = np.dstack([g, np.full((96, 96), 255, np.uint8)])
    params = {"model": "tiny-sd15", "seed": 3, "steps": 10, "scale": 2, "sampler": "Euler"}
    ours, _ = upscale(up_server.url, params, {"image": rgba8(img)})
    naive, _ = upscale(up_server.url, params | {"tiler": "naive"}, {"image": rgba8(img)})
    plan = plan_tiles(24, 24, 8, overlap_for_strength(8, 0.35))
    assert ours["params"]["tiles"] == naive["params"]["tiles"] == len(plan)
    sx, sy = plan_seams(plan, 8)
    a, b = pixels(ours["images"][0]), pixels(naive["images"][0])
    s_ours, s_naive = sgr_ms(a[..., :3] / 255.0, sx, sy), sgr_ms(b[..., :3] / 255.0, sx, sy)
    assert s_ours.passes() and s_ours.sgr < s_naive.sgr, (s_ours, s_naive)
    px_plan = plan.scaled(8)
    assert _tile_repetition(a, px_plan) < 0.1 < 0.3 < _tile_repetition(b, px_plan)


def test_bad_requests(up_server) -> None:
    img = photo("coffee", 40, 30)
    with pytest.raises(ServerError, match="images.image"):
        upscale(up_server.url, {"model": "tiny-sd15"}, {})
    with pytest.raises(ServerError, match="upscaler"):
        upscale(up_server.url, {"model": "tiny-sd15", "upscaler": "nope"}, {"image": rgba8(img)})
    with pytest.raises(ServerError, match="params.scale"):
        upscale(up_server.url, {"model": "tiny-sd15", "scale": 9}, {"image": rgba8(img)})
    with pytest.raises(ServerError, match="params.region"):
        upscale(
            up_server.url, {"model": "tiny-sd15", "region": {"x": 100, "y": 0, "w": 5, "h": 5}}, {"image": rgba8(img)}
        )
    with pytest.raises(ServerError, match="params.tiler"):
        upscale(
            up_server.url,
            {"model": "tiny-sd15", "tiler": "naive", "region": {"x": 0, "y": 0, "w": 5, "h": 5}},
            {"image": rgba8(img)},
        )
    with pytest.raises(ServerError, match="images.mask"):
        empty = gray8(np.zeros((30, 40), np.uint8))
        upscale(up_server.url, {"model": "tiny-sd15"}, {"image": rgba8(img), "mask": empty})


def test_welcome_lists_upscalers_and_the_kind(up_server) -> None:
    async def go() -> dict:
        c = await connect(up_server.url)
        await c.close()
        return c.welcome

    welcome = run(go())
    assert "upscale" in welcome["jobs"] and "tiny-esrgan" in welcome["upscalers"]


def test_cli_upscale_with_mask(up_server, tmp_path: Path) -> None:
    img = photo("astronaut", 64, 48)
    Image.fromarray(img).save(tmp_path / "in.png")
    sel = np.zeros((48, 64), np.uint8)
    sel[10:30, 10:40] = 255
    Image.fromarray(sel).save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    cmd = [
        sys.executable,
        "-m",
        "server.cli",
        "upscale",
        str(tmp_path / "in.png"),
        "--scale",
        "2",
        "--out",
        str(out),
        "--mask",
        str(tmp_path / "mask.png"),
        "--steps",
        "6",
        "--seed",
        "1",
        "--model",
        "tiny-sd15",
        "--upscaler",
        "tiny-esrgan",
        "--url",
        up_server.url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[3])
    assert done.returncode == 0, done.stderr
    written = np.asarray(Image.open(out))
    assert written.shape[:2] == (96, 128)
    assert "Steps: 6" in Image.open(out).info.get("parameters", "")
