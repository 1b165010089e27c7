"""LoRA, embeddings, prompt syntax, VAE override, clip skip, refiner, hires fix, batches — through a real server.

The models tree has the A1111 layout (`a1111_tree` in tests/server/conftest.py).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from server.cli import main as cli_main
from server.client import ServerError
from tests.conftest import RunningServer, connect, run


@pytest.fixture
def srv(a1111_server: RunningServer) -> RunningServer:
    return a1111_server


def gen(srv: RunningServer, params: dict) -> tuple[dict, list[np.ndarray]]:
    async def go() -> dict:
        async with await connect(srv.url) as c:
            return await c.run("generate", params)

    res = run(go())
    return res, [np.asarray(Image.open(io.BytesIO(r["data"]))) for r in res["images"]]


SD = {"model": "tiny-sd15", "steps": 2, "seed": 5, "width": 64, "height": 64, "cfg": 5.0}
XL = {"model": "tiny-sdxl", "steps": 3, "seed": 5, "width": 64, "height": 64, "cfg": 5.0}


def img(srv: RunningServer, params: dict) -> np.ndarray:
    return gen(srv, params)[1][0]


def error_of(srv: RunningServer, params: dict) -> ServerError:
    with pytest.raises(ServerError) as err:
        gen(srv, params)
    return err.value


def test_welcome_lists_assets(srv: RunningServer) -> None:
    async def go() -> dict:
        async with await connect(srv.url) as c:
            return c.welcome

    w = run(go())
    assert w["loras"] == ["lora-sd15", "lora-sd15-diffusers", "lora-sdxl", "styles/other"]
    assert w["embeddings"] == ["embedding-sd15", "embedding-sdxl"]
    assert w["vaes"] == ["same-as-base", "vae-sd15"]
    assert w["refiners"] == ["tiny-sdxl-refiner"]
    assert [m["name"] for m in w["models"]] == ["tiny-sd15", "tiny-sdxl"]  # a refiner is not a main model


def test_lora_changes_output_and_unapplies_exactly(srv: RunningServer) -> None:
    base = img(srv, SD | {"prompt": "a cat"})
    one = img(srv, SD | {"prompt": "a cat <lora:lora-sd15:0.8>"})
    assert not np.array_equal(base, one)
    assert np.array_equal(base, img(srv, SD | {"prompt": "a cat"}))  # bit-identical after the LoRA job
    assert np.array_equal(base, img(srv, SD | {"prompt": "a cat <lora:lora-sd15:0>"}))  # weight 0 = no change
    other = img(srv, SD | {"prompt": "a cat <lora:styles/other:0.8>"})
    both = img(srv, SD | {"prompt": "a cat <lora:lora-sd15:0.8> <lora:styles/other:0.8>"})
    assert not np.array_equal(both, one) and not np.array_equal(both, other) and not np.array_equal(one, other)
    assert np.array_equal(one, img(srv, SD | {"prompt": "a cat <lora:lora-sd15:0.8>"}))  # repeatable
    # the tag is not prompt text: same image as the plain prompt once the LoRA is gone
    assert np.array_equal(base, img(srv, SD | {"prompt": "a cat <lora:lora-sd15:0:0>"}))


def test_diffusers_layout_lora(srv: RunningServer) -> None:
    base = img(srv, SD | {"prompt": "a cat"})
    assert not np.array_equal(base, img(srv, SD | {"prompt": "a cat <lora:lora-sd15-diffusers>"}))
    assert np.array_equal(base, img(srv, SD | {"prompt": "a cat"}))


def test_unknown_and_unsafe_lora_names(srv: RunningServer) -> None:
    err = error_of(srv, SD | {"prompt": "a cat <lora:no-such-lora:1>"})
    assert err.code == "unknown_model" and "no-such-lora" in str(err)
    assert error_of(srv, SD | {"prompt": "<lora:../Stable-diffusion/tiny-sd15:1>"}).code == "bad_name"
    err = error_of(srv, SD | {"prompt": "a cat <lora:lora-sdxl:1>"})  # SDXL LoRA on SD1.5
    assert err.code == "model_load" and "lora-sdxl" in str(err)
    base = img(srv, SD | {"prompt": "a cat"})
    assert np.array_equal(base, img(srv, SD | {"prompt": "a cat"}))


def test_embeddings_in_prompt_and_negative(srv: RunningServer) -> None:
    base = img(srv, SD | {"prompt": "a cat", "negative": "blurry"})
    assert not np.array_equal(base, img(srv, SD | {"prompt": "a cat embedding-sd15", "negative": "blurry"}))
    assert not np.array_equal(base, img(srv, SD | {"prompt": "a cat", "negative": "blurry embedding-sd15"}))
    explicit = img(srv, SD | {"prompt": "a cat embedding:embedding-sd15", "negative": "blurry"})
    assert np.array_equal(explicit, img(srv, SD | {"prompt": "a cat embedding-sd15", "negative": "blurry"}))
    img(srv, SD | {"prompt": "a cat unknownword"})  # an unknown bare word is just a word (A1111)
    for field in ("prompt", "negative"):
        err = error_of(srv, SD | {"prompt": "a cat", field: "x embedding:not-there"})
        assert err.code == "unknown_model" and "not-there" in str(err) and field in str(err)


def test_long_prompt_tail_and_syntax_change_output(srv: RunningServer) -> None:
    head = ", ".join(["a cat on a red mat"] * 30)  # ~200 tokens
    a = img(srv, SD | {"prompt": head + ", green dragon"})
    b = img(srv, SD | {"prompt": head + ", blue ocean"})
    assert not np.array_equal(a, b)  # the tail past token 150 reaches the image
    plain = img(srv, SD | {"prompt": "a red cat on a mat"})
    assert not np.array_equal(plain, img(srv, SD | {"prompt": "a red cat++ on a mat"}))
    assert not np.array_equal(plain, img(srv, SD | {"prompt": "a red cat-- on a mat"}))
    assert not np.array_equal(plain, img(srv, SD | {"prompt": "a red cat BREAK on a mat"}))


def test_blend(srv: RunningServer) -> None:
    rabbit = img(srv, SD | {"prompt": "rabbit"})
    frog = img(srv, SD | {"prompt": "frog"})
    res, half = gen(srv, SD | {"prompt": "rabbit", "blend": {"prompt": "frog", "ratio": 0.5}})
    assert res["params"]["blend"] == {"prompt": "frog", "ratio": 0.5}
    assert not np.array_equal(half[0], rabbit) and not np.array_equal(half[0], frog)
    assert np.array_equal(rabbit, img(srv, SD | {"prompt": "rabbit", "blend": {"prompt": "frog", "ratio": 0}}))
    assert np.array_equal(frog, img(srv, SD | {"prompt": "rabbit", "blend": {"prompt": "frog", "ratio": 1}}))
    err = error_of(srv, SD | {"prompt": "rabbit", "blend": {"prompt": "frog", "ratio": 2}})
    assert err.code == "bad_field" and "blend.ratio" in str(err)


def test_clip_skip_sd15(srv: RunningServer) -> None:
    base = img(srv, SD | {"prompt": "a cat"})
    res, skipped = gen(srv, SD | {"prompt": "a cat", "clip_skip": 2})
    assert res["params"]["clip_skip"] == 2 and not np.array_equal(base, skipped[0])


def test_vae_override(srv: RunningServer) -> None:
    base = img(srv, SD | {"prompt": "a cat"})
    res, other = gen(srv, SD | {"prompt": "a cat", "vae": "vae-sd15"})
    assert res["params"]["vae"] == "vae-sd15" and not np.array_equal(base, other[0])
    assert np.array_equal(base, img(srv, SD | {"prompt": "a cat", "vae": "same-as-base"}))
    assert np.array_equal(base, img(srv, SD | {"prompt": "a cat"}))  # override reverted after the job
    assert error_of(srv, SD | {"prompt": "a cat", "vae": "nope"}).code == "unknown_model"


def test_hires_fix_target_size(srv: RunningServer) -> None:
    res, out = gen(srv, SD | {"prompt": "a cat", "width": 64, "height": 48, "hires": {"scale": 2, "steps": 2}})
    assert out[0].shape[:2] == (96, 128)
    assert res["params"]["first_pass"] == [64, 48] and (res["params"]["width"], res["params"]["height"]) == (128, 96)
    res, tiled = gen(srv, SD | {"prompt": "a cat", "hires": {"scale": 2.5, "steps": 2, "tile": True}})
    assert tiled[0].shape[:2] == (160, 160) and res["params"]["hires"]["tiled"] is True
    _, latent = gen(srv, SD | {"prompt": "a cat", "hires": {"scale": 1.5, "steps": 2, "upscaler": "latent"}})
    assert latent[0].shape[:2] == (96, 96) and latent[0].std() > 1
    _, model_up = gen(srv, SD | {"prompt": "a cat", "hires": {"scale": 1.5, "steps": 2, "upscaler": "tiny-upscaler"}})
    assert model_up[0].shape[:2] == (96, 96)
    err = error_of(srv, SD | {"prompt": "a cat", "hires": {"upscaler": "4x-Missing"}})
    assert err.code == "unknown_model" and "4x-Missing" in str(err)


def test_batch_returns_distinct_seeds_and_images(srv: RunningServer) -> None:
    res, images = gen(srv, SD | {"prompt": "a cat <lora:lora-sd15:0.5>", "seed": 40, "batch": 3})
    assert [r["seed"] for r in res["images"]] == [40, 41, 42] == res["params"]["seeds"]
    assert len({im.tobytes() for im in images}) == 3


def test_cli_generate_with_features(srv: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "cli.png"
    rc = cli_main(
        [
            "generate",
            "a cat <lora:lora-sd15:0.8> embedding-sd15",
            "--url",
            srv.url,
            "--out",
            str(out),
            "--model",
            "tiny-sd15",
            "--steps",
            "2",
            "--seed",
            "9",
            "--size",
            "64x64",
            "--batch",
            "2",
            "--vae",
            "vae-sd15",
            "--clip-skip",
            "2",
            "--blend",
            "frog",
            "--blend-ratio",
            "0.3",
            "--hires-scale",
            "1.5",
            "--hires-steps",
            "2",
            "--hires-upscaler",
            "bicubic",
        ]
    )
    assert rc == 0
    written = sorted(tmp_path.glob("cli-*.png"))
    assert len(written) == 2 and all(Image.open(p).size == (96, 96) for p in written)


# SDXL last: switching models reloads checkpoints, so the SD1.5 tests above share one load.


def test_sdxl_lora_embedding_and_clip_skip(srv: RunningServer) -> None:
    base = img(srv, XL | {"prompt": "a cat"})
    assert not np.array_equal(base, img(srv, XL | {"prompt": "a cat <lora:lora-sdxl:1>"}))  # kohya LDM names
    assert not np.array_equal(base, img(srv, XL | {"prompt": "a cat embedding-sdxl"}))  # clip_l + clip_g
    assert not np.array_equal(base, img(srv, XL | {"prompt": "a cat", "clip_skip": 2}))
    assert np.array_equal(base, img(srv, XL | {"prompt": "a cat"}))


def test_refiner_hand_off(srv: RunningServer) -> None:
    base = img(srv, XL | {"prompt": "a cat"})
    res, refined = gen(srv, XL | {"prompt": "a cat", "refiner": "tiny-sdxl-refiner", "refiner_switch": 0.6})
    p = res["params"]
    assert p["refiner"] == "tiny-sdxl-refiner" and p["refiner_step"] == 2 and refined[0].shape[:2] == (64, 64)
    assert not np.array_equal(base, refined[0]) and refined[0].std() > 1
    assert np.array_equal(base, img(srv, XL | {"prompt": "a cat"}))  # base reloaded, same image
    err = error_of(srv, SD | {"prompt": "a cat", "refiner": "tiny-sdxl-refiner"})
    assert err.code == "bad_field" and "refiner" in str(err)
    assert error_of(srv, XL | {"prompt": "a cat", "refiner": "nope"}).code == "unknown_model"
