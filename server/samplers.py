"""A1111 sampler names → diffusers schedulers configured from the model's own scheduler config."""

from __future__ import annotations

from typing import Any

# name -> (diffusers class, config overrides)
SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "LMS Karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "DPM++ 2M SDE Karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
    ),
    "DPM++ SDE": ("DPMSolverSinglestepScheduler", {}),
    "DDIM": ("DDIMScheduler", {"set_alpha_to_one": False}),
    "PLMS": ("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": ("UniPCMultistepScheduler", {}),
}
NAMES = tuple(SAMPLERS)
# Schedulers whose `step` draws fresh noise (need a generator to stay deterministic).
STOCHASTIC = {"Euler a", "DPM2 a", "DPM++ 2M SDE", "DPM++ 2M SDE Karras", "DPM++ SDE"}


def make_scheduler(name: str, base_config: dict[str, Any]) -> Any:
    import diffusers

    cls_name, overrides = SAMPLERS[name]
    config = {k: v for k, v in base_config.items() if not k.startswith("_")}
    config.pop("use_karras_sigmas", None)
    return getattr(diffusers, cls_name).from_config({**config, **overrides})
