"""A models tree in the A1111 layout (Stable-diffusion/, Lora/, embeddings/, VAE/, ESRGAN/) with tiny
files from `make-test-model`, and a real server on it: for the tests of LoRAs, embeddings, VAE
overrides, refiners and upscalers, whichever job kind they go through."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from server.models.testmodels import ARCHS
from tests.servers import served


@pytest.fixture(scope="session")
def a1111_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("a1111")
    ckpt = root / "Stable-diffusion"
    for arch in ("sd15", "sdxl", "sdxl-refiner"):
        ARCHS[arch](ckpt, None, 0)
    ARCHS["lora-sd15"](root / "Lora", None, 1)
    ARCHS["lora-sd15"](root / "Lora" / "styles", "other", 2)  # a sub-folder name
    ARCHS["lora-sd15-diffusers"](root / "Lora", None, 3)
    ARCHS["lora-sdxl"](root / "Lora", None, 4)
    ARCHS["embedding-sd15"](root / "embeddings", None, 5)
    ARCHS["embedding-sdxl"](root / "embeddings", None, 6)
    ARCHS["vae-sd15"](root / "VAE", None, 7)
    ARCHS["realesrgan-compact"](root / "ESRGAN", "tiny-upscaler", 8)
    # the checkpoint's own VAE as a separate file (prefixed LDM layout): must reproduce the base image
    own = {k: v for k, v in load_file(str(ckpt / "tiny-sd15.safetensors")).items() if k.startswith("first_stage")}
    save_file(own, str(root / "VAE" / "same-as-base.safetensors"))
    return root


a1111_server = served("a1111_server", "a1111_tree", "The in-process server over `a1111_tree`.")
