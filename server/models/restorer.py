"""Face restorers (GFPGAN- and CodeFormer-class) through spandrel, from the models tree users already have.

Files are the ones the `gfpgan`/CodeFormer projects release (A1111 keeps them in `GFPGAN/` and
`Codeformer/`, ComfyUI in `facerestore_models/`); spandrel detects the architecture from the keys.
Pitfall: spandrel's descriptor call feeds [0, 1] straight in, but both nets were trained on [-1, 1]
(output is grey mush otherwise), so we call the raw module with `x*2-1` and map back with `(y+1)/2`.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tiling.geometry import Rect

from ..errors import MissingModel
from ..imaging.faces import Face, align_face, detect_faces, paste_back
from ..imaging.tensors import to_pixels, to_tensor
from .files import check_name, find_files

# Relative to --models: the models folder itself or an A1111/ComfyUI root above it.
RESTORER_DIRS = (
    "GFPGAN",
    "Codeformer",
    "CodeFormer",
    "facerestore_models",
    "models/GFPGAN",
    "models/Codeformer",
    "models/facerestore_models",
)
SUFFIXES = (".pth", ".safetensors")
ARCHS = ("GFPGAN", "CodeFormer")
# What a user without any restorer should download, and where it goes.
EXPECTED = {
    "gfpgan": ("GFPGAN", "GFPGANv1.4.pth"),
    "codeformer": ("Codeformer", "codeformer-v0.1.0.pth"),
}
ALIGNED_SIZE = 512


class MissingRestorer(MissingModel):
    """No restorer file (or not the named one): the message says which file to put where."""


def discover_restorers(root: Path) -> dict[str, Path]:
    """Name → file for every restorer-looking file (`.pth`/`.safetensors`) in the known folders.

    Names are the path inside its folder without suffix (`GFPGANv1.4`); the first folder wins on a
    clash. Files are not opened here: a wrong file is reported when it is loaded.
    """
    return find_files(root, RESTORER_DIRS, SUFFIXES)


def _where(root: Path, kind: str) -> str:
    folder, file = EXPECTED[kind]
    return f"{file} into {Path(root) / folder}"


def resolve_restorer(root: Path, name: str | None = None) -> Path:
    """The file for `name` (default: the first GFPGAN-named file, else any). Raises `MissingRestorer`
    naming the expected file and the folder to put it in."""
    if name is not None:
        check_name(name, "restorer")
    found = discover_restorers(root)
    if name is None:
        for n, p in found.items():
            if "gfpgan" in n.lower():
                return p
        if found:
            return next(iter(found.values()))
        raise MissingRestorer(
            f"no face restorer in {root}: put {_where(root, 'gfpgan')} (or {_where(root, 'codeformer')})"
        )
    if name in found:
        return found[name]
    kind = "codeformer" if "codeformer" in name.lower() else "gfpgan"
    folder = EXPECTED[kind][0]
    stem = Path(name).name
    file = stem if stem.lower().endswith(SUFFIXES) else f"{stem}.pth"
    known = ", ".join(sorted(found)) or "none"
    raise MissingRestorer(
        f"face restorer {name!r} not found: put {file} into {Path(root) / folder} (available: {known})"
    )


@functools.cache
def _spandrel() -> Any:
    import spandrel
    import spandrel_extra_arches

    # CodeFormer lives in the extra (non-MIT) architectures; install once per process.
    spandrel_extra_arches.install()
    return spandrel


def load_restorer(path: Path, device: str | torch.device = "cpu") -> Any:
    """A spandrel `ImageModelDescriptor` for a GFPGAN/CodeFormer file, in eval mode on `device`."""
    spandrel = _spandrel()
    path = Path(path)
    if not path.is_file():
        raise MissingRestorer(f"face restorer file {path} does not exist")
    try:
        desc = spandrel.ModelLoader(device=torch.device(device)).load_from_file(path)
    except spandrel.UnsupportedModelError as exc:
        raise ValueError(f"{path.name} is not a model spandrel recognises: expected {' or '.join(ARCHS)}") from exc
    if desc.architecture.id not in ARCHS:
        raise ValueError(f"{path.name} is a {desc.architecture.id} model, not a face restorer ({', '.join(ARCHS)})")
    desc.model.eval()
    return desc


def restore_face(desc: Any, aligned: np.ndarray, fidelity: float = 0.5) -> np.ndarray:
    """Restore one FFHQ-aligned 512² RGB uint8 face; returns uint8 of the same size.

    `fidelity` is CodeFormer's `w` (0 = strongest restoration, 1 = closest to the input); GFPGAN has
    no such knob and ignores it.
    """
    img = np.asarray(aligned)[..., :3]
    if img.shape[:2] != (ALIGNED_SIZE, ALIGNED_SIZE):
        raise ValueError(
            f"restorers take {ALIGNED_SIZE}x{ALIGNED_SIZE} aligned faces, got {img.shape[1]}x{img.shape[0]}"
        )
    x = to_tensor(img, signed=False).to(desc.device, desc.dtype)  # [-1, 1] below, in the model dtype as before
    with torch.inference_mode():
        if desc.architecture.id == "CodeFormer":
            y = desc.model(x * 2 - 1, weight=float(fidelity))[0]
        else:
            y = desc.model(x * 2 - 1)[0]
    if not torch.isfinite(y).all():
        raise RuntimeError(f"{desc.architecture.id} produced NaN/inf (half precision overflow or a broken file)")
    return to_pixels(y)


def restore_faces(
    image: np.ndarray,
    desc: Any,
    faces: list[Face] | None = None,
    blend: float = 1.0,
    fidelity: float = 0.5,
) -> tuple[np.ndarray, list[Rect]]:
    """Detect (unless `faces` is given) → align → restore → paste back with a soft mask.

    Returns the new image and one changed rectangle per face (empty list: no face found). `blend`
    in [0, 1] mixes restored and original faces. Pixels outside the rectangles are untouched.
    """
    out = np.array(image, copy=True)
    if blend <= 0:
        return out, []
    if faces is None:
        faces = detect_faces(out)
    rects = []
    for face in faces:
        aligned, affine = align_face(out, face, ALIGNED_SIZE)
        restored = restore_face(desc, aligned, fidelity)
        out, rect = paste_back(out, restored, affine, blend=blend)
        if not rect.is_empty:
            rects.append(rect)
    return out, rects


# --- tiny test restorers -----------------------------------------------------------------------


def _build(arch: str) -> torch.nn.Module:
    _spandrel()
    if arch == "gfpgan":
        from spandrel.architectures.GFPGAN import GFPGAN

        # The only configuration spandrel builds: it infers nothing from the file for GFPGAN.
        return GFPGAN(
            out_size=512,
            num_style_feat=512,
            channel_multiplier=2,
            decoder_load_path=None,
            fix_decoder=False,
            num_mlp=8,
            input_is_latent=True,
            different_w=True,
            narrow=1,
            sft_half=True,
        )
    if arch == "codeformer":
        from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

        # Smallest transformer spandrel still infers from shapes; the VQGAN around it is fixed-size.
        return CodeFormer(
            dim_embd=64,
            n_head=8,
            n_layers=1,
            codebook_size=64,
            latent_size=256,
            connect_list=["32", "64", "128", "256"],
        )
    raise ValueError(f"unknown restorer arch {arch!r}: gfpgan or codeformer")


def _tiny_like(t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A tensor with `t`'s shape, mean and std whose storage is tiny.

    Each slice along the first non-singleton axis is a window of one short random vector (offset 1
    per slice), so within a slice (one output channel's fan-in) values are independent and the net
    keeps its activation scale, while the file holds O(fan_in + channels) numbers instead of all.
    """
    shape = tuple(t.shape)
    mean, std = float(t.float().mean()), float(t.float().std()) if t.numel() > 1 else 0.0
    if t.numel() <= 1 or std == 0.0 or not math.isfinite(std):
        return torch.full((1,), mean, dtype=t.dtype).expand(shape) if shape else torch.tensor(mean, dtype=t.dtype)
    dims = [i for i, d in enumerate(shape) if d > 1]
    axis = dims[0]
    rest = shape[axis + 1 :]
    strides = [0] * len(shape)
    strides[axis] = 1
    step = 1
    for i in range(len(shape) - 1, axis, -1):
        strides[i] = step
        step *= shape[i]
    n = (shape[axis] - 1) + math.prod(rest) if rest else shape[axis]
    base = torch.randn(n, generator=gen) * std + mean
    return base.to(t.dtype).as_strided(shape, strides)


def write_test_restorer(out_dir: Path, arch: str = "gfpgan", name: str | None = None, seed: int = 0) -> Path:
    """A random-weight restorer in the real key layout (`{"params_ema": state_dict}`) that spandrel
    detects as GFPGAN or CodeFormer: full tensor shapes, but each stored as a strided view of a short
    random vector with the architecture's own init statistics, so the file is ~1 MB instead of
    350 MB. It restores nothing (its faces are noise) but runs the real code path end to end."""
    torch.manual_seed(seed)
    model = _build(arch)
    gen = torch.Generator().manual_seed(seed)
    sd = {k: _tiny_like(v.detach(), gen) for k, v in model.state_dict().items()}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name or 'tiny-' + arch}.pth"
    torch.save({"params_ema": sd}, path)
    return path
