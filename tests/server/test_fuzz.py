"""Hypothesis-driven frame fuzzing: thousands of hostile frames, then the server still generates."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.limits import Limits
from tests.servers import in_process
from tests.wire import Raw

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.binary(max_size=64),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
KEYS = [
    "prompt",
    "negative",
    "model",
    "seed",
    "steps",
    "cfg",
    "sampler",
    "schedule",
    "width",
    "height",
    "batch",
    "strength",
    "result_format",
    "clip_skip",
]
params = st.dictionaries(
    st.sampled_from(KEYS),
    values | st.integers(-5, 70) | st.sampled_from(["tiny-sd15", "Euler", "LCM", "Karras"]),
    max_size=8,
)
image = st.fixed_dictionaries(
    {"format": st.sampled_from(["png", "webp", "rgba8", "gray8", "jpeg", "gif", 3])},
    optional={
        "data": st.binary(max_size=300),
        "w": st.integers(-2, 70),
        "h": st.integers(-2, 70),
        "blob": st.text(max_size=5),
    },
)
job = st.fixed_dictionaries(
    {"type": st.just("job")},
    optional={
        "id": st.text(max_size=70) | st.integers(-(2**63), 2**63 - 1),
        "kind": st.sampled_from(["generate", "nope", 1]),
        "params": params | values,
        "images": st.dictionaries(st.sampled_from(["init", "mask", "x"]), image | values, max_size=2),
    },
)
control = st.fixed_dictionaries(
    {"type": st.sampled_from(["cancel", "fetch", "blob", "hello", "ping", "zzz"])},
    optional={
        "id": st.text(max_size=10) | values,
        "ref": values,
        "seq": values,
        "data": values,
        "last": values,
        "protocol": values,
        "token": values,
    },
)
frames = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=50),
    values.map(lambda v: msgpack.packb(v, use_bin_type=True)),
    job.map(lambda v: msgpack.packb(v, use_bin_type=True)),
    control.map(lambda v: msgpack.packb(v, use_bin_type=True)),
)


@pytest.fixture(scope="module")
def fuzz_server(models_dir: Path):
    # Tight limits keep any accidentally valid job tiny; the point is parsing, not generating.
    limits = Limits(max_pixels=64 * 64, max_steps=2, max_batch=1, max_image_pixels=64 * 64, max_queued_per_client=1000)
    with in_process(models_dir, limits) as running:
        yield running


def test_fuzzed_frames_never_break_the_server(fuzz_server) -> None:
    raw = Raw(fuzz_server.url)
    seen_codes: set[str] = set()

    @settings(
        max_examples=2500,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(frames)
    def one(frame: bytes | str) -> None:
        replies = raw.replies(frame)  # fails if the connection dies or the server stops answering
        for ev in replies:
            assert isinstance(ev, dict) and isinstance(ev.get("type"), str)
            if ev["type"] == "error":
                assert isinstance(ev["code"], str) and isinstance(ev["message"], str) and ev["message"]
                seen_codes.add(ev["code"])

    one()
    assert {"bad_frame", "bad_field", "unknown_type"} <= seen_codes
    # Afterwards a fresh client still gets a picture.
    fresh = Raw(fuzz_server.url)
    fresh.send(
        {
            "type": "job",
            "id": "after-fuzz",
            "kind": "generate",
            "params": {"prompt": "a cat", "model": "tiny-sd15", "steps": 2, "width": 64, "height": 64},
        }
    )
    ev = fresh.until("after-fuzz")
    assert ev["type"] == "result" and ev["images"][0]["w"] == 64
