"""Live painting, editor side (`plugins/common/live.py`): the frame request, and the adaptive debounce
that decides when a frame goes (a simulated clock: no test here waits on real time)."""

from __future__ import annotations

from plugins.common.actions import Canvas
from plugins.common.jobs import GenerateRequest, InpaintRequest
from plugins.common.live import CUSTOM, PRESET_NAMES, PRESETS, LiveLoop, live_request
from plugins.common.settings import Settings

W, H = 16, 8
CANVAS = Canvas(W, H, bytes([10, 20, 30, 128]) * (W * H))
WELCOME = {
    "samplers": ["Euler a", "Euler", "DDIM", "DPM++ 2M", "LCM", "TCD"],
    "schedules": ["Automatic", "Karras", "SGM Uniform"],
    "models": [{"name": "m1"}],
}


def test_a_frame_is_live_img2img_of_the_canvas_with_the_preset_and_a_fixed_seed() -> None:
    s = Settings(prompt="a cat", live_preset="Lightning 8 steps", live_strength=0.4, live_seed=99, model="m1")
    req = live_request(CANVAS, s, WELCOME)
    assert isinstance(req, GenerateRequest) and req.live and req.result_format == "rgba8"
    msg = req.message("f1")
    assert msg["live"] is True and "live" not in msg["params"]
    p = msg["params"]
    assert (p["sampler"], p["schedule"], p["steps"], p["cfg"]) == ("Euler", "SGM Uniform", 8, 1.0)
    assert (p["seed"], p["strength"], p["model"], p["prompt"]) == (99, 0.4, "m1", "a cat")
    init = msg["images"]["init"]
    assert init["format"] == "rgba8" and init["data"][3::4] == b"\xff" * (W * H)  # opaque init


def test_with_a_selection_the_frame_inpaints_it() -> None:
    sel = bytes(255 if 4 <= x < 8 else 0 for _ in range(H) for x in range(W))
    req = live_request(Canvas(W, H, CANVAS.rgba, sel), Settings(), WELCOME)
    assert isinstance(req, InpaintRequest) and req.live
    assert set(req.message("f2")["images"]) == {"image", "mask"}


def test_older_servers_get_what_they_understand() -> None:
    old = {"samplers": ["Euler a", "DPM++ 2M"], "models": [{"name": "m1"}]}
    p = live_request(CANVAS, Settings(live_preset="LCM 6 steps", model="gone"), old).params()
    assert p["sampler"] == "DPM++ 2M" and "schedule" not in p and "model" not in p
    assert live_request(CANVAS, Settings(live_preset="no such preset"), WELCOME).params()["sampler"] == "LCM"
    assert all(p.steps <= 12 for p in PRESETS.values())


def test_one_change_sends_one_frame_after_a_quiet_period() -> None:
    loop = LiveLoop(latency=0.4)  # quiet = 0.1 s
    assert not loop.due(0.0)
    loop.changed(1.0)
    assert not loop.due(1.05) and loop.due(1.1)
    loop.sent("a", 1.1)
    assert not loop.due(1.2)  # nothing changed since


def test_while_painting_a_frame_goes_about_once_per_frame_time() -> None:
    loop, sent, t, n = LiveLoop(latency=0.5), [], 0.0, 0
    while t < 5.0:  # a stroke event every 20 ms for 5 s
        loop.changed(t)
        if loop.due(t):
            loop.sent(f"f{n}", t)
            sent.append(t)
            n += 1
        t = round(t + 0.02, 2)
    gaps = [b - a for a, b in zip(sent, sent[1:], strict=False)]
    assert 8 <= len(sent) <= 11 and all(g >= 0.5 for g in gaps)


def test_latency_adapts_the_debounce_and_superseded_frames_do_not_count() -> None:
    loop = LiveLoop(latency=0.5)
    loop.changed(0.0)
    loop.sent("a", 0.2)
    loop.changed(0.3)
    loop.sent("b", 0.5)
    assert loop.finished("a", 0.6, produced=False) and loop.latency == 0.5  # superseded
    assert loop.finished("b", 0.6, produced=True) and abs(loop.latency - (0.35 + 0.03)) < 1e-9
    assert not loop.finished("unknown", 0.7, produced=True)
    for _ in range(30):  # fast frames: the quiet period shrinks to its floor
        loop.sent("x", 0.0)
        loop.finished("x", 0.01, produced=True)
    assert loop.quiet == loop.min_quiet
    loop.sent("y", 1.0)
    loop.changed(1.1)
    assert loop.stop() == ["y"] and not loop.due(5.0) and not loop.in_flight


def test_the_custom_preset_samples_with_the_settings() -> None:
    s = Settings(live_preset=CUSTOM, sampler="DPM++ 2M", schedule="Karras", steps=9, cfg=4.5)
    welcome = WELCOME | {"sampler_schedules": {"DPM++ 2M": ["Automatic", "Karras"], "Euler": ["Automatic"]}}
    p = live_request(CANVAS, s, welcome).params()
    assert (p["sampler"], p["schedule"], p["steps"], p["cfg"]) == ("DPM++ 2M", "Karras", 9, 4.5)
    assert live_request(CANVAS, s.replace(sampler="Euler"), welcome).params()["schedule"] == "Automatic"
    assert PRESET_NAMES[-1] == CUSTOM and set(PRESET_NAMES[:-1]) == set(PRESETS)
