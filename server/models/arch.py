"""Model families and their diffusers configs, authored here so loading never touches a hub.

`REAL` holds the published architectures; `TINY` the random-weight test variants written by
`make-test-model`. A tiny checkpoint records its family and configs in the safetensors header, so the
same loader code path serves both.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

Config = dict[str, Any]

_SCHEDULER: Config = {
    "_class_name": "EulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
}

_CLIP_L: Config = {
    "architectures": ["CLIPTextModel"],
    "model_type": "clip_text_model",
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
    "layer_norm_eps": 1e-5,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}

_VAE: Config = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}

_SD15_UNET: Config = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-5,
    "norm_num_groups": 32,
    "sample_size": 64,
}

_SDXL_UNET: Config = {
    **_SD15_UNET,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10],
    "use_linear_projection": True,
}


@dataclass(frozen=True)
class Family:
    """One checkpoint family: how to load it and how it behaves at sampling time."""

    name: str  # sd15 | sd15-inpaint | sd2 | sdxl | sdxl-inpaint | sdxl-refiner
    xl: bool
    inpaint: bool
    native: int  # native resolution in pixels (square side)
    configs: Config  # component name -> config dict (+ "scheduler")

    @property
    def refiner(self) -> bool:
        """SDXL refiner: one (bigG) text encoder, aesthetic-score time ids; only used to finish a base's work."""
        return self.name == "sdxl-refiner"

    @property
    def pipeline_class(self) -> str:
        if self.refiner:
            return "StableDiffusionXLImg2ImgPipeline"
        return "StableDiffusionXLPipeline" if self.xl else "StableDiffusionPipeline"


def _sd15(inpaint: bool) -> Config:
    unet = {**_SD15_UNET, "in_channels": 9 if inpaint else 4}
    return {"unet": unet, "vae": dict(_VAE), "text_encoder": dict(_CLIP_L), "scheduler": dict(_SCHEDULER)}


def _sd2() -> Config:
    unet = {
        **_SD15_UNET,
        "attention_head_dim": [5, 10, 20, 20],
        "cross_attention_dim": 1024,
        "use_linear_projection": True,
        "sample_size": 96,
    }
    # OpenCLIP ViT-H; diffusers keeps 23 of 24 layers (SD2 conditions on the penultimate layer).
    text = {
        **_CLIP_L,
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_attention_heads": 16,
        "num_hidden_layers": 23,
        "hidden_act": "gelu",
        "projection_dim": 512,
    }
    sched = {**_SCHEDULER, "prediction_type": "v_prediction"}
    return {"unet": unet, "vae": dict(_VAE), "text_encoder": text, "scheduler": sched}


def _sdxl(inpaint: bool) -> Config:
    text2 = {
        **_CLIP_L,
        "architectures": ["CLIPTextModelWithProjection"],
        "hidden_size": 1280,
        "intermediate_size": 5120,
        "num_attention_heads": 20,
        "num_hidden_layers": 32,
        "hidden_act": "gelu",
        "projection_dim": 1280,
    }
    return {
        "unet": {**_SDXL_UNET, "in_channels": 9 if inpaint else 4},
        "vae": {**_VAE, "scaling_factor": 0.13025, "force_upcast": True},
        "text_encoder": dict(_CLIP_L),
        "text_encoder_2": text2,
        "scheduler": dict(_SCHEDULER),
    }


def _sdxl_refiner() -> Config:
    base = _sdxl(False)
    unet = {
        **_SDXL_UNET,
        "attention_head_dim": [6, 12, 24, 24],
        "block_out_channels": [384, 768, 1536, 1536],
        "cross_attention_dim": 1280,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        # time ids: original size (2), crop (2), aesthetic score (1) → 5 x 256 + pooled 1280
        "projection_class_embeddings_input_dim": 2560,
        "transformer_layers_per_block": 4,
    }
    return {"unet": unet, "vae": base["vae"], "text_encoder_2": base["text_encoder_2"], "scheduler": base["scheduler"]}


REAL: dict[str, Family] = {
    "sd15": Family("sd15", False, False, 512, _sd15(False)),
    "sd15-inpaint": Family("sd15-inpaint", False, True, 512, _sd15(True)),
    "sd2": Family("sd2", False, False, 768, _sd2()),
    "sdxl": Family("sdxl", True, False, 1024, _sdxl(False)),
    "sdxl-inpaint": Family("sdxl-inpaint", True, True, 1024, _sdxl(True)),
    "sdxl-refiner": Family("sdxl-refiner", True, False, 1024, _sdxl_refiner()),
}


def _tiny_text(hidden: int, layers: int, **extra: Any) -> Config:
    return {
        **_CLIP_L,
        "hidden_size": hidden,
        "intermediate_size": 37,
        "num_attention_heads": 4,
        "num_hidden_layers": layers,
        **extra,
    }


_TINY_VAE: Config = {**_VAE, "block_out_channels": [32, 32, 64, 64], "layers_per_block": 1, "sample_size": 64}


def _tiny_sd15(inpaint: bool) -> Config:
    unet = {
        **_SD15_UNET,
        "block_out_channels": [32, 64],
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "layers_per_block": 1,
        "cross_attention_dim": 32,
        "attention_head_dim": 8,
        "sample_size": 8,
        "in_channels": 9 if inpaint else 4,
    }
    return {"unet": unet, "vae": dict(_TINY_VAE), "text_encoder": _tiny_text(32, 2), "scheduler": dict(_SCHEDULER)}


def _tiny_sdxl(inpaint: bool) -> Config:
    # The two encoders must differ in width: diffusers tells them apart by that.
    te1 = _tiny_text(32, 2)
    te2 = _tiny_text(64, 10, architectures=["CLIPTextModelWithProjection"], hidden_act="gelu", projection_dim=32)
    time_dim = 8
    unet = {
        **_SDXL_UNET,
        "block_out_channels": [32, 64],
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "layers_per_block": 1,
        "attention_head_dim": [2, 4],
        "transformer_layers_per_block": [1, 1],
        "cross_attention_dim": te1["hidden_size"] + te2["hidden_size"],
        "addition_time_embed_dim": time_dim,
        "projection_class_embeddings_input_dim": 6 * time_dim + te2["projection_dim"],
        "sample_size": 16,
        "in_channels": 9 if inpaint else 4,
    }
    vae = {**_TINY_VAE, "scaling_factor": 0.13025, "force_upcast": True}
    return {"unet": unet, "vae": vae, "text_encoder": te1, "text_encoder_2": te2, "scheduler": dict(_SCHEDULER)}


def _tiny_sdxl_refiner() -> Config:
    base = _tiny_sdxl(False)
    te2, time_dim = base["text_encoder_2"], base["unet"]["addition_time_embed_dim"]
    unet = {
        **base["unet"],
        "cross_attention_dim": te2["hidden_size"],
        "projection_class_embeddings_input_dim": 5 * time_dim + te2["projection_dim"],
    }
    return {"unet": unet, "vae": base["vae"], "text_encoder_2": te2, "scheduler": base["scheduler"]}


TINY: dict[str, Family] = {
    "sd15": Family("sd15", False, False, 64, _tiny_sd15(False)),
    "sd15-inpaint": Family("sd15-inpaint", False, True, 64, _tiny_sd15(True)),
    "sdxl": Family("sdxl", True, False, 128, _tiny_sdxl(False)),
    "sdxl-inpaint": Family("sdxl-inpaint", True, True, 128, _tiny_sdxl(True)),
    "sdxl-refiner": Family("sdxl-refiner", True, False, 128, _tiny_sdxl_refiner()),
}


def family_from_metadata(name: str, configs: Config, native: int) -> Family:
    """Rebuild a Family from what a test checkpoint recorded in its header."""
    base = REAL[name]
    return Family(name, base.xl, base.inpaint, native, copy.deepcopy(configs))
