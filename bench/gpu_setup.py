"""`bench/gpu.py`'s set-up: the benchmark's scale (full size or the tiny CPU smoke run), its
checkpoints, its inputs (scikit-image's astronaut), and the `sdbridge serve` it measures.

Full-size random-weight checkpoints of the real architectures cost exactly what real weights cost.
They come from `sdbridge make-test-model --full-size` when the CLI has that option; otherwise they
are built here from the published configs (`server.models.arch.REAL`), on the GPU when there is one
(seconds, not minutes of CPU init), and saved in fp16 as single files like real ones.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from server.models import arch
from server.models.testmodels import build_state_dict, write_sd_checkpoint
from tests.servers import ROOT, SDBRIDGE, ServeProcess, start_serve


@dataclass(frozen=True)
class Scale:
    """Sizes and step counts of one benchmark run."""

    sd15_px: int
    sd15_steps: int
    sdxl_px: int
    sdxl_steps: int
    upscale_from: int  # source side; the job doubles it
    roundtrip_px: int
    repeats: int  # timed runs per job after the first request
    tiny: bool


FULL = Scale(512, 20, 1024, 30, 2048, 4096, repeats=3, tiny=False)
TINY = Scale(64, 4, 128, 4, 96, 512, repeats=2, tiny=True)


def has_full_size_option() -> bool:
    """Whether this checkout's `make-test-model` writes full-size checkpoints itself."""
    out = subprocess.run(
        [*SDBRIDGE, "make-test-model", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    return "--full-size" in out.stdout


def write_full_size(out_dir: Path, arch_name: str, name: str, device: torch.device) -> Path:
    """Random weights of the published `arch_name` architecture, fp16, in the LDM single-file layout."""
    from safetensors.torch import save_file

    with torch.device(device):  # module init on the GPU: ~3.5 B SDXL weights in seconds
        sd = build_state_dict(arch.REAL[arch_name], seed=0)
    path = out_dir / f"{name}.safetensors"
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(torch.float16).cpu().contiguous() for k, v in sd.items()}, str(path))
    del sd
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return path


def make_checkpoint(
    out_dir: Path, arch_name: str, scale: Scale, device: torch.device, own: bool = False
) -> tuple[Path, str]:
    """(path, how it was made) of the benchmark's `arch_name` checkpoint, named `bench-ARCH`; one
    already there (`--models` of an earlier run) is used as it is."""
    name = f"bench-{arch_name}"
    path = out_dir / f"{name}.safetensors"
    if path.exists():
        return path, "reused from --models"
    if scale.tiny:
        return write_sd_checkpoint(out_dir, arch_name, name=name), "tiny (make-test-model)"
    if not own and has_full_size_option():
        cmd = [*SDBRIDGE, "make-test-model", str(out_dir), "--arch", arch_name, "--full-size", "--name", name]
        subprocess.run(cmd, cwd=ROOT, check=True, timeout=600)
        return out_dir / f"{name}.safetensors", "make-test-model --full-size"
    return write_full_size(out_dir, arch_name, name, device), "full size, built by bench/gpu_setup.py"


def photo(side: int) -> np.ndarray:
    """The astronaut photo as side x side RGBA."""
    from skimage import data

    rgb = np.asarray(Image.fromarray(data.astronaut()).resize((side, side), Image.Resampling.LANCZOS))
    return np.dstack([rgb, np.full((side, side), 255, np.uint8)])


def rgba8(img: np.ndarray) -> dict:
    h, w = img.shape[:2]
    return {"format": "rgba8", "w": w, "h": h, "data": np.ascontiguousarray(img).tobytes()}


def selection(side: int) -> dict:
    """A centred square selection (gray8), a third of the side, as an editor would send it."""
    mask = np.zeros((side, side), np.uint8)
    a, b = side // 3, 2 * side // 3
    mask[a:b, a:b] = 255
    return {"format": "gray8", "w": side, "h": side, "data": mask.tobytes()}


def serve(models: Path, log: Path, device: torch.device, fast: str) -> ServeProcess:
    """`sdbridge serve` on a free loopback port with the fast path `fast`; our child, stopped by pid."""
    env = {"OMP_NUM_THREADS": str(os.cpu_count() or 1)}  # the test helper's default is 2
    return start_serve(models, log, "--device", str(device), "--fast", fast, env=env)
