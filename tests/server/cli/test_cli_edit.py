"""`sdbridge inpaint|outpaint|face|restore` end to end against real servers: each writes the full
composited image to --out (and the rects to --layers), leaving pixels outside the result untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from server import cli
from tests.server.jobs.edit_helpers import photo

GEN = ["--model", "tiny-sd15", "--steps", "2", "--seed", "7"]


def save(path: Path, arr: np.ndarray) -> Path:
    Image.fromarray(arr).save(path)
    return path


def load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGBA"))


def test_cli_inpaint(server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = photo("astronaut", 96, 80)
    mask = np.zeros((80, 96), np.uint8)
    mask[20:40, 30:60] = 255
    out = tmp_path / "out.png"
    rc = cli.main(
        [
            "inpaint",
            str(save(tmp_path / "in.png", img)),
            str(save(tmp_path / "mask.png", mask)),
            "--out",
            str(out),
            "--layers",
            str(tmp_path / "layers"),
            "--url",
            server.url,
            "--prompt",
            "a visor",
            "--grow",
            "4",
            "--feather",
            "4",
            *GEN,
        ]
    )
    assert rc == 0, capsys.readouterr().err
    res = load(out)
    assert res.shape == img.shape
    layers = sorted((tmp_path / "layers").iterdir())
    assert len(layers) == 1
    x, y = (int(p[1:]) for p in layers[0].stem.split("_")[1:])
    layer = load(layers[0])
    touched = np.zeros((80, 96), bool)
    touched[y : y + layer.shape[0], x : x + layer.shape[1]] = layer[..., 3] > 0
    assert np.array_equal(res[~touched], img[~touched])
    assert np.abs(res[25:35, 35:55].astype(int) - img[25:35, 35:55]).mean() > 2
    assert "a visor" in Image.open(out).text["parameters"]


def test_cli_outpaint(server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = photo("coffee", 80, 60)
    out = tmp_path / "wide.png"
    rc = cli.main(
        [
            "outpaint",
            str(save(tmp_path / "in.png", img)),
            "--left",
            "16",
            "--bottom",
            "8",
            "--margin",
            "8",
            "--out",
            str(out),
            "--url",
            server.url,
            *GEN,
        ]
    )
    assert rc == 0, capsys.readouterr().err
    res = load(out)
    assert res.shape == (68, 96, 4) and (res[..., 3] == 255).all()
    # The old image sits at (16, 0); beyond the 8 px margin it is untouched.
    assert np.array_equal(res[: 60 - 9, 16 + 9 :], img[: 60 - 9, 9:])


def test_cli_face(server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = photo("astronaut", 256, 256)
    out = tmp_path / "face.png"
    rc = cli.main(
        ["face", str(save(tmp_path / "in.png", img)), "--out", str(out), "--url", server.url, "--strength", "0.5", *GEN]
    )
    assert rc == 0, capsys.readouterr().err
    res = load(out)
    diff = np.any(res != img, axis=2)
    ys, xs = np.nonzero(diff)
    assert len(xs) > 100
    assert xs.min() > 60 and xs.max() < 170 and ys.max() < 120  # only around the astronaut's face
    # A photo without faces: a message on stderr, the image written unchanged.
    rc = cli.main(
        [
            "face",
            str(save(tmp_path / "cup.png", photo("coffee", 120, 90))),
            "--out",
            str(tmp_path / "cup-out.png"),
            "--url",
            server.url,
            *GEN,
        ]
    )
    assert rc == 0 and "no faces found" in capsys.readouterr().err
    assert np.array_equal(load(tmp_path / "cup-out.png"), photo("coffee", 120, 90))


def test_cli_restore(restore_server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = photo("astronaut", 256, 256)
    out = tmp_path / "restored.png"
    restore = ["restore", str(save(tmp_path / "in.png", img)), "--url", restore_server.url]
    rc = cli.main([*restore, "--out", str(out), "--model", "tiny-gfpgan", "--fidelity", "0.3", "--blend", "0.9"])
    assert rc == 0, capsys.readouterr().err
    diff = np.any(load(out) != img, axis=2)
    assert diff.any() and not diff[:, :50].any() and not diff[150:].any()
    rc = cli.main([*restore, "--out", str(tmp_path / "x.png"), "--model", "nope"])
    assert rc == 2 and "nope.pth" in capsys.readouterr().err
