"""`make-test-model --full-size`: the published architectures' exact sizes, in the real key layout,
streamed to disk (checked here on the tiny configs through the same writer and the real loader)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch
from safetensors import safe_open

from server.models import arch, fullsize, loader
from server.models.testmodels import header_metadata, write_sd_checkpoint
from tests.servers import SDBRIDGE

# Parameter counts of the published checkpoints, by component.
PUBLISHED = {
    "sd15": {"model": 859_520_964, "first_stage_model": 83_653_863, "cond_stage_model": 123_060_480},
    "sdxl": {
        "model": 2_567_463_684,
        "first_stage_model": 83_653_863,
        "conditioner.embedders.0": 123_060_480,
        "conditioner.embedders.1": 694_659_840,
    },
    "sdxl-refiner": {"model": 2_259_526_660, "first_stage_model": 83_653_863, "conditioner.embedders.0": 694_659_840},
}


def component(key: str) -> str:
    return ".".join(key.split(".")[:3]) if key.startswith("conditioner.") else key.split(".")[0]


def test_layouts_have_the_published_sizes() -> None:
    for name, expected in PUBLISHED.items():
        counts: dict[str, int] = {}
        for key, shape in fullsize.layout(arch.REAL[name]).items():
            counts[component(key)] = counts.get(component(key), 0) + shape.numel()
        assert counts == expected, name


def test_streamed_file_is_a_real_layout_checkpoint_the_loader_reads(tmp_path: Path) -> None:
    family = arch.TINY["sdxl"]
    streamed = fullsize.stream_checkpoint(tmp_path / "s.safetensors", family, seed=3, metadata=header_metadata(family))
    reference = write_sd_checkpoint(tmp_path, "sdxl")  # the tiny writer: same keys and shapes, float32
    with safe_open(str(streamed), "pt") as a, safe_open(str(reference), "pt") as b:
        assert set(a.keys()) == set(b.keys())
        assert all(a.get_slice(k).get_shape() == b.get_slice(k).get_shape() for k in a.keys())  # noqa: SIM118
        assert {a.get_slice(k).get_dtype() for k in a.keys()} == {"F16"}  # noqa: SIM118
    model = loader.load_single_file(streamed, "s", torch.device("cpu"), torch.float16, False)
    assert model.unet.dtype == torch.float16 and model.vae_dtype == torch.float32  # SDXL's VAE upcast
    assert torch.equal(model.unet.conv_norm_out.weight, torch.ones_like(model.unet.conv_norm_out.weight))
    w = model.unet.conv_in.weight.float()
    assert w.std() > 0 and abs(float(w.std()) - w[0].numel() ** -0.5) < 0.5 * w[0].numel() ** -0.5


def test_full_size_is_only_for_checkpoint_families(tmp_path: Path) -> None:
    res = subprocess.run(
        [*SDBRIDGE, "make-test-model", str(tmp_path), "--arch", "esrgan", "--full-size"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "--full-size makes sd15, sdxl, sdxl-refiner" in res.stderr
    assert not any(tmp_path.iterdir())
