"""`--control MODEL:IMAGE[:strength[:start:end]]` on generate and the editing commands: parsing, what goes
on the wire, and end to end against a server with tiny ControlNets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from server import cli
from server.cli.options import control_list, control_spec, gen_params
from server.cli.run import input_images
from tests.server.jobs.edit_helpers import photo
from tests.server.jobs.test_controls_parse import CANNY, SCRIBBLE


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("canny:edges.png", {"model": "canny", "image": Path("edges.png")}),
        ("canny:edges.png:0.5", {"model": "canny", "image": Path("edges.png"), "strength": 0.5}),
        (
            "sub/canny:e.png:0.5:0.1:0.9",
            {"model": "sub/canny", "image": Path("e.png"), "strength": 0.5, "start": 0.1, "end": 0.9},
        ),  # fmt: skip
        ("m:C:/maps/e.png:1", {"model": "m", "image": Path("C:/maps/e.png"), "strength": 1.0}),  # a drive letter
        ("m:a:b.png", {"model": "m", "image": Path("a:b.png")}),
    ],
)
def test_control_spec(text: str, spec: dict) -> None:
    assert control_spec(text) == spec


@pytest.mark.parametrize("bad", ["canny", ":e.png", "canny:"])
def test_bad_control_spec_is_a_usage_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["generate", "x", "--out", "o.png", "--control", bad])
    assert "MODEL:IMAGE" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "a cat"],
        ["inpaint", "IMG", "IMG"],
        ["outpaint", "IMG", "--left", "8"],
        ["face", "IMG"],
        ["upscale", "IMG"],
    ],
)
def test_every_diffusion_command_sends_its_controls(argv: list[str], tmp_path: Path) -> None:
    img = tmp_path / "img.png"
    Image.fromarray(photo("astronaut", 32, 24)).save(img)
    argv = [str(img) if a == "IMG" else a for a in argv]
    args = cli.build_parser().parse_args(
        [*argv, "--out", "o.png", "--control", f"a:{img}:0.7", "--control", f"b:{img}:1:0:0.5",
         "--control-preprocess", "canny", "--control-preprocess", "none"]
    )  # fmt: skip
    assert gen_params(args)["controls"] == [
        {"model": "a", "image": "control0", "strength": 0.7, "preprocess": "canny"},
        {"model": "b", "image": "control1", "strength": 1.0, "start": 0.0, "end": 0.5, "preprocess": "none"},
    ]
    if argv[0] != "generate":
        sent = input_images(args)
        assert {"image", "control0", "control1"} <= set(sent) and sent["control0"]["data"] == img.read_bytes()
    three = ["--control-preprocess", "canny", "--control-preprocess", "none", "--control-preprocess", "x"]
    args = cli.build_parser().parse_args([*argv, "--out", "o.png", "--control", f"a:{img}", "--control", f"b:{img}",
                                          *three])  # fmt: skip
    with pytest.raises(SystemExit, match="3 --control-preprocess for 2 --control"):
        control_list(args)


def test_generate_with_controls_end_to_end(control_server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sketch = tmp_path / "sketch.png"
    Image.fromarray(photo("camera", 64, 48)).save(sketch)
    base = ["generate", "a house", "--model", "tiny-sd15", "--steps", "2", "--seed", "3", "--size", "64x48",
            "--url", control_server.url]  # fmt: skip
    assert cli.main([*base, "--out", str(tmp_path / "plain.png")]) == 0, capsys.readouterr().err
    rc = cli.main([*base, "--out", str(tmp_path / "ctl.png"), "--control", f"{CANNY}:{sketch}:0.9",
                   "--control", f"{SCRIBBLE}:{sketch}:1:0:0.5", "--control-preprocess", "canny",
                   "--control-preprocess", "scribble"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    plain = np.asarray(Image.open(tmp_path / "plain.png"))
    ctl = np.asarray(Image.open(tmp_path / "ctl.png"))
    assert ctl.shape == plain.shape == (48, 64, 4) and not np.array_equal(ctl, plain)
    rc = cli.main([*base, "--out", str(tmp_path / "bad.png"), "--control", f"no-such-net:{sketch}"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown_model" in err and "unknown control model 'no-such-net'" in err
    assert not (tmp_path / "bad.png").exists()
