"""The editing jobs (`inpaint`, `outpaint`, `face`) apply every generation parameter they accept,
through a real server on the A1111-style tree: a VAE override and a prompt blend change the output
(and leave it bit-identical when absent / at ratio 0); `batch` N gives N results, image i seeded
`seed + i`, each the same as a batch-1 job with that seed; and no job reaches a checkpoint around
`common.Diffusion`, the one place that applies them."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import server.jobs as jobs_pkg
from tests.conftest import RunningServer
from tests.server.jobs.edit_helpers import gray8, job, photo, pixels, rgba8

W, H = 96, 80
IMAGE = photo("astronaut", W, H)
SELECTION = np.zeros((H, W), np.uint8)
SELECTION[20:56, 30:70] = 255
FACES = np.zeros((H, W), np.uint8)  # two "faces", one job pass each
FACES[8:40, 10:42] = 255
FACES[44:76, 56:88] = 255
GEN = {"model": "tiny-sd15", "prompt": "a cat", "steps": 3, "seed": 7, "cfg": 5.0}
KINDS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "inpaint": ({"strength": 0.8}, {"image": rgba8(IMAGE), "mask": gray8(SELECTION)}),
    "outpaint": ({"left": 24, "bottom": 16}, {"image": rgba8(IMAGE)}),
    "face": ({"strength": 0.7}, {"image": rgba8(IMAGE), "mask": gray8(FACES)}),
}


def edit(srv: RunningServer, kind: str, **params: Any) -> dict:
    own, images = KINDS[kind]
    return job(srv.url, kind, GEN | own | params, images)


def rects(images: list[dict]) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """Where each returned rect goes (x, y, w, h, seed) and its RGBA pixels."""
    return [((r["x"], r["y"], r["w"], r["h"], r["seed"]), pixels(r)) for r in images]


def same(a: list[dict], b: list[dict]) -> bool:
    ra, rb = rects(a), rects(b)
    if [p for p, _ in ra] != [p for p, _ in rb]:
        return False
    return all(np.array_equal(xa, xb) for (_, xa), (_, xb) in zip(ra, rb, strict=True))


def changed(a: list[dict], b: list[dict]) -> bool:
    """Same rects, other pixels (a parameter that reaches the model changes what it draws, not where)."""
    ra, rb = rects(a), rects(b)
    assert [p for p, _ in ra] == [p for p, _ in rb] and ra
    return any(not np.array_equal(xa, xb) for (_, xa), (_, xb) in zip(ra, rb, strict=True))


@pytest.mark.parametrize("kind", KINDS)
def test_vae_override_reaches_editing_jobs(a1111_server: RunningServer, kind: str) -> None:
    base = edit(a1111_server, kind)
    other = edit(a1111_server, kind, vae="vae-sd15")
    assert other["params"]["vae"] == "vae-sd15" and "vae" not in base["params"]
    assert changed(base["images"], other["images"])
    # The checkpoint's own VAE from a file encodes and decodes exactly like no override.
    assert same(base["images"], edit(a1111_server, kind, vae="same-as-base")["images"])
    assert same(base["images"], edit(a1111_server, kind)["images"])  # the override ended with its job


@pytest.mark.parametrize("kind", KINDS)
def test_blend_reaches_editing_jobs(a1111_server: RunningServer, kind: str) -> None:
    base = edit(a1111_server, kind)
    half = edit(a1111_server, kind, blend={"prompt": "a green frog", "ratio": 0.5})
    assert half["params"]["blend"] == {"prompt": "a green frog", "ratio": 0.5} and "blend" not in base["params"]
    assert changed(base["images"], half["images"])
    assert same(base["images"], edit(a1111_server, kind, blend={"prompt": "a green frog", "ratio": 0})["images"])


@pytest.mark.parametrize("kind", KINDS)
def test_batch_gives_one_result_per_seed(a1111_server: RunningServer, kind: str) -> None:
    res = edit(a1111_server, kind, seed=40, batch=2)
    assert res["params"]["seeds"] == [40, 41] and res["params"]["seed"] == 40
    n = len(res["images"]) // 2  # rects per batch image, batch images in order
    first, second = res["images"][:n], res["images"][n:]
    assert n >= 1 and len(second) == n
    if kind == "face":  # one rect per face, seeded like a batch-1 job with the batch image's seed
        assert [(r["seed"], r["name"]) for r in res["images"]] == [
            (40, "face 1, batch 1"),
            (41, "face 2, batch 1"),
            (41, "face 1, batch 2"),
            (42, "face 2, batch 2"),
        ]
    else:
        assert [r["seed"] for r in res["images"]] == [40] * n + [41] * n
    assert any(not np.array_equal(pixels(a), pixels(b)) for a, b in zip(first, second, strict=True))
    assert same(first, edit(a1111_server, kind, seed=40)["images"])
    assert same(second, edit(a1111_server, kind, seed=41)["images"])


def test_jobs_reach_checkpoints_only_through_diffusion() -> None:
    """`common.Diffusion` is the one place that loads a checkpoint (with the VAE override) and encodes
    a prompt (with every prompt option): a job that went around it could forget an option again."""
    jobs = Path(jobs_pkg.__file__).parent
    around = []
    for path in sorted(jobs.glob("*.py")):
        if path.name == "common.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            models_call = (
                isinstance(f, ast.Attribute)
                and f.attr in ("get", "get_refiner")
                and isinstance(f.value, ast.Attribute)
                and f.value.attr == "models"
            )
            if models_call or (isinstance(f, ast.Name) and f.id in ("encode_pair", "use_vae")):
                around.append(f"{path.name}:{node.lineno}")
    assert around == []
