"""Load a checkpoint into resident torch modules, offline.

Single-file `.safetensors` go through diffusers' `from_single_file` with a config folder written
from `arch` (never the hub); diffusers folders through `from_pretrained(local_files_only=True)`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import arch, detect
from .tokenizer import clip_tokenizer


class PickleRefused(PermissionError):
    pass


@dataclass
class LoadedModel:
    """The components the pipelines use; stays resident until another model is selected."""

    name: str
    family: arch.Family
    device: torch.device
    dtype: torch.dtype
    unet: Any
    vae: Any
    text_encoders: list[Any]
    tokenizers: list[Any]
    scheduler_config: dict[str, Any]
    vae_dtype: torch.dtype = torch.float32
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def vae_scale(self) -> float:
        return float(self.vae.config.scaling_factor)

    def push_undo(self, fn: Callable[[], None]) -> None:
        """Register a per-job change (LoRA patch, VAE swap) to revert when the job ends."""
        self.extras.setdefault("undo", []).append(fn)

    def undo_job_changes(self) -> None:
        """Revert every per-job change, newest first (the queue calls this after each job)."""
        undo = self.extras.get("undo", [])
        while undo:
            undo.pop()()


def _read_header(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 - not a dict
        return shapes, dict(f.metadata() or {})


def _write_config_dir(family: arch.Family, root: Path) -> None:
    cfg = family.configs
    index: dict[str, Any] = {
        "_class_name": family.pipeline_class,
        "scheduler": ["diffusers", cfg["scheduler"]["_class_name"]],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    if family.refiner:  # bigG only, no CLIP-L
        index |= {"text_encoder": [None, None], "tokenizer": [None, None], "requires_aesthetics_score": True}
    if family.xl:
        index |= {
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer_2": ["transformers", "CLIPTokenizer"],
            "force_zeros_for_empty_prompt": True,
        }
    else:
        index |= {"safety_checker": [None, None], "feature_extractor": [None, None], "requires_safety_checker": False}
    (root / "model_index.json").write_text(json.dumps(index))
    for comp, conf in cfg.items():
        (root / comp).mkdir()
        fname = "scheduler_config.json" if comp == "scheduler" else "config.json"
        (root / comp / fname).write_text(json.dumps(conf))


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _place(model: LoadedModel) -> LoadedModel:
    model.unet.to(model.device, model.dtype)
    for te in model.text_encoders:
        te.to(model.device, model.dtype)
    # SDXL's VAE overflows in fp16 (NaN → black images): keep it in fp32 when the config says so.
    upcast = bool(model.vae.config.get("force_upcast", False)) and model.dtype == torch.float16
    model.vae_dtype = torch.float32 if upcast else model.dtype
    model.vae.to(model.device, model.vae_dtype)
    for m in (model.unet, model.vae, *model.text_encoders):
        m.eval().requires_grad_(False)
    return model


def _components(pipe: Any, name: str, family: arch.Family, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    if family.refiner:
        tes, toks = [pipe.text_encoder_2], [clip_tokenizer("!")]
    else:
        tes = [pipe.text_encoder] + ([pipe.text_encoder_2] if family.xl else [])
        toks = [clip_tokenizer()] + ([clip_tokenizer("!")] if family.xl else [])
    sched = dict(pipe.scheduler.config)
    return _place(LoadedModel(name, family, device, dtype, pipe.unet, pipe.vae, tes, toks, sched))


def load_single_file(
    path: Path, name: str, device: torch.device, dtype: torch.dtype, allow_pickle: bool
) -> LoadedModel:
    import diffusers

    if path.suffix.lower() in (".ckpt", ".pt", ".pth", ".bin"):
        if not allow_pickle:
            raise PickleRefused(
                f"{path.name} is a pickled checkpoint; loading it can run arbitrary code. "
                "Convert it to .safetensors or start the server with --allow-pickle."
            )
        raw = torch.load(str(path), map_location="cpu", weights_only=False)
        state = raw.get("state_dict", raw)
        family = detect.family_for({k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}, None)
        source: Any = state
    else:
        shapes, meta = _read_header(path)
        family = detect.family_for(shapes, meta)
        source = str(path)
    cls = getattr(diffusers, family.pipeline_class)
    toks: dict[str, Any] = {"tokenizer": None if family.refiner else clip_tokenizer()}
    if family.refiner:
        toks |= {"text_encoder": None, "requires_aesthetics_score": True}
    if family.xl:
        toks["tokenizer_2"] = clip_tokenizer("!")
    else:
        toks |= {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    with tempfile.TemporaryDirectory(prefix="sdbridge-cfg-") as tmp:
        _write_config_dir(family, Path(tmp))
        if isinstance(source, dict):
            # from_single_file wants a path; a pickled checkpoint is re-saved as safetensors in the tmp dir.
            from safetensors.torch import save_file

            tmp_file = Path(tmp) / "converted.safetensors"
            save_file({k: v.contiguous() for k, v in source.items() if isinstance(v, torch.Tensor)}, str(tmp_file))
            source = str(tmp_file)
        pipe = cls.from_single_file(source, config=tmp, local_files_only=True, torch_dtype=torch.float32, **toks)
    return _components(pipe, name, family, device, dtype)


def load_diffusers_folder(path: Path, name: str, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    import diffusers

    index = json.loads((path / "model_index.json").read_text())
    xl = "text_encoder_2" in index
    unet_cfg = json.loads((path / "unet" / "config.json").read_text())
    inpaint = unet_cfg.get("in_channels") == 9
    fam_name = ("sdxl" if xl else "sd15") + ("-inpaint" if inpaint else "")
    if not xl and unet_cfg.get("cross_attention_dim") == 1024:
        fam_name = "sd2"
    native = int(unet_cfg.get("sample_size", 64)) * 8
    family = arch.Family(fam_name, xl, inpaint, native, {})
    cls = getattr(diffusers, family.pipeline_class)
    extra: dict[str, Any] = {} if xl else {"safety_checker": None, "requires_safety_checker": False}
    pipe = cls.from_pretrained(str(path), local_files_only=True, torch_dtype=torch.float32, **extra)
    return _components(pipe, name, family, device, dtype)
