"""The README's commands as a user runs them: `sdbridge make-test-model`, `serve`, `generate`, `models`."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.servers import SDBRIDGE, free_port, start_serve


def sdbridge(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*SDBRIDGE, *args], capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module", params=["sd15", "sdxl"])
def served(request, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    models = tmp_path_factory.mktemp(f"cli-{request.param}")
    made = sdbridge("make-test-model", str(models), "--arch", request.param)
    assert made.returncode == 0, made.stderr
    assert Path(made.stdout.strip()).suffix == ".safetensors"
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with start_serve(models, log, "--vram-budget", "1.5", "--ram-cache-gb", "0.5") as srv:
        assert "model cache 1.5 GB on the device, 0.5 GB in RAM" in log.read_text()
        yield srv.url, tmp_path_factory.mktemp("out")


def test_generate_writes_png_with_parameters_and_is_repeatable(served) -> None:
    url, out = served
    cmd = ["generate", "a cat", "--seed", "1", "--steps", "2", "--size", "64x64", "--url", url]
    first = sdbridge(*cmd, "--out", str(out / "a.png"))
    assert first.returncode == 0, first.stderr
    second = sdbridge(*cmd, "--out", str(out / "b.png"))
    assert second.returncode == 0, second.stderr
    a, b = Image.open(out / "a.png"), Image.open(out / "b.png")
    assert a.size == (64, 64)
    params = a.info["parameters"]
    assert params.startswith("a cat\n") and "Seed: 1," in params and "Steps: 2" in params
    assert "Sampler: Euler a" in params and "Size: 64x64" in params and "Model: tiny-" in params
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_models_lists_the_checkpoint_and_whether_it_is_loaded(served) -> None:
    url, out = served
    made = sdbridge("generate", "x", "--steps", "1", "--size", "64x64", "--url", url, "--out", str(out / "m.png"))
    assert made.returncode == 0, made.stderr
    res = sdbridge("models", "--url", url)
    assert res.returncode == 0 and "tiny-" in res.stdout and "native" in res.stdout
    assert "loaded (ram)" in res.stdout  # a CPU server: its device memory is RAM


def test_img2img_and_batch_from_the_cli(served) -> None:
    url, out = served
    init = out / "a.png"
    if not init.exists():
        sdbridge("generate", "x", "--seed", "1", "--steps", "1", "--size", "64x64", "--url", url, "--out", str(init))
    res = sdbridge(
        "generate",
        "a dog",
        "--init",
        str(init),
        "--strength",
        "0.5",
        "--steps",
        "2",
        "--seed",
        "5",
        "--batch",
        "2",
        "--url",
        url,
        "--out",
        str(out / "i.png"),
    )
    assert res.returncode == 0, res.stderr
    files = [Path(p) for p in res.stdout.split()]
    assert [f.name for f in files] == ["i-1.png", "i-2.png"]
    assert "Seed: 5," in Image.open(files[0]).info["parameters"]
    assert "Seed: 6," in Image.open(files[1]).info["parameters"]
    assert "Denoising strength: 0.5" in Image.open(files[0]).info["parameters"]


def test_server_errors_are_reported_with_exit_code(served) -> None:
    url, out = served
    res = sdbridge("generate", "x", "--model", "../../etc/passwd", "--url", url, "--out", str(out / "n.png"))
    assert res.returncode == 2 and "bad_name" in res.stderr


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    res = sdbridge("generate", "x", "--url", f"ws://127.0.0.1:{free_port()}", "--out", str(tmp_path / "x.png"))
    assert res.returncode == 3 and "cannot reach the server" in res.stderr


def test_serve_refuses_public_bind_without_token(tmp_path: Path) -> None:
    res = sdbridge("serve", "--host", "0.0.0.0", "--port", str(free_port()), "--models", str(tmp_path))
    assert res.returncode == 2 and "--token" in res.stderr


def test_serve_without_models_uses_tiny_demo_model(tmp_path: Path) -> None:
    with start_serve(None, tmp_path / "serve.log", env={"SDBRIDGE_HOME": str(tmp_path)}) as srv:
        res = sdbridge(
            "generate", "demo", "--steps", "1", "--seed", "3", "--url", srv.url, "--out", str(tmp_path / "demo.png")
        )
        assert res.returncode == 0, res.stderr
        assert Image.open(tmp_path / "demo.png").size == (64, 64)
        assert (tmp_path / "demo-models" / "demo-tiny-sd15.safetensors").is_file()
