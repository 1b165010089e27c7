"""The content key of a live frame (`server.live.live_key`): the same inputs in any order and form give
the same key, any change to params or pixels gives another, and a random seed gives none."""

from __future__ import annotations

import pytest

from server.live import check_live, live_key
from server.protocol import ImageRef, ProtocolError

PARAMS = {"prompt": "a cat", "seed": 7, "steps": 8, "strength": 0.5, "blend": {"prompt": "x", "ratio": 0.3}}
IMG = ImageRef("rgba8", bytes(range(256)) * 4, 16, 16)


def test_same_inputs_same_key_in_any_order() -> None:
    reordered = dict(reversed(list(PARAMS.items()))) | {"blend": {"ratio": 0.3, "prompt": "x"}}
    a = live_key("generate", PARAMS, {"init": IMG})
    assert a is not None and a == live_key("generate", reordered, {"init": IMG})


@pytest.mark.parametrize(
    "change",
    [
        {"params": PARAMS | {"strength": 0.51}},
        {"params": PARAMS | {"blend": {"prompt": "x", "ratio": 0.4}}},
        {"kind": "inpaint"},
        {"refs": {"init": ImageRef("rgba8", bytes(range(256)) * 3 + bytes(256), 16, 16)}},
        {"refs": {"image": IMG}},
        {"refs": {"init": ImageRef("rgba8", b"", hash="a" * 64)}},
    ],
)
def test_any_change_gives_another_key(change: dict) -> None:
    base = live_key("generate", PARAMS, {"init": IMG})
    args = {"kind": "generate", "params": PARAMS, "refs": {"init": IMG}} | change
    assert live_key(args["kind"], args["params"], args["refs"]) != base


def test_a_hash_reference_keys_by_its_hash_whatever_its_form() -> None:
    by_hash = ImageRef("", b"", hash="b" * 64)
    patch = ImageRef("rgba8", bytes(16), 2, 2, hash="b" * 64, base="c" * 64, x=3, y=4)
    assert live_key("generate", PARAMS, {"init": by_hash}) == live_key("generate", PARAMS, {"init": patch})


@pytest.mark.parametrize("seed", [-1, None])
def test_a_random_seed_is_never_reused(seed: int | None) -> None:
    params = {k: v for k, v in PARAMS.items() if k != "seed"} | ({} if seed is None else {"seed": seed})
    assert live_key("generate", params, {"init": IMG}) is None


@pytest.mark.parametrize(("kind", "refs"), [("generate", {}), ("upscale", {"image": IMG}), ("echo", {"image": IMG})])
def test_only_img2img_and_inpaint_can_be_live(kind: str, refs: dict) -> None:
    with pytest.raises(ProtocolError, match="live: only img2img"):
        check_live(kind, refs, "j")
    check_live("generate", {"init": IMG}, "j")
    check_live("inpaint", {"image": IMG, "mask": IMG}, "j")
