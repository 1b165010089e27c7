"""A1111/Forge sampler names and schedule types → diffusers schedulers configured from the model's own
scheduler config.

A sampler is the update rule (Euler, DPM++ 2M, LCM, …); the *schedule type* is where its steps sit on
the noise scale (A1111's "Schedule type" next to the sampler). `Automatic` is the sampler's own
schedule: the model config's spacing, Karras for the legacy "… Karras" names, and the distillation
schedule for `LCM` / `TCD`.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
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
    # clip_sample off as in diffusers' pipelines (its default, on, clamps latents meant for [-1, 1] pixels).
    "DDIM": ("DDIMScheduler", {"set_alpha_to_one": False, "clip_sample": False}),
    "PLMS": ("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    # Few-step samplers for LCM / Hyper-SD / TCD distilled models and LoRAs. They pick their steps
    # from the 50-step distillation schedule themselves, so only `Automatic` applies to them.
    "LCM": ("LCMScheduler", {}),
    "TCD": ("TCDScheduler", {}),
}
NAMES = tuple(SAMPLERS)
# Schedulers whose `step` draws fresh noise (need a generator to stay deterministic).
STOCHASTIC = {"Euler a", "DPM2 a", "DPM++ 2M SDE", "DPM++ 2M SDE Karras", "DPM++ SDE", "LCM", "TCD"}
OWN_SCHEDULE = {"LCMScheduler", "TCDScheduler"}  # timestep_spacing is in their config but unused
DISTILLED_STEPS = 50  # LCM / TCD take their steps from this schedule (diffusers' original_inference_steps)

_SIGMA_FLAGS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")

# schedule type -> config overrides; a type applies to a sampler whose class takes every key.
SCHEDULES: dict[str, dict[str, Any]] = {
    "Automatic": {},
    "Uniform": {"timestep_spacing": "linspace"},  # A1111 "Uniform": t_max … 0 evenly
    "Karras": {"use_karras_sigmas": True},
    "Exponential": {"use_exponential_sigmas": True},
    # A1111 "SGM Uniform" is diffusers' trailing spacing (t_max down in equal strides, t=0 excluded):
    # what SDXL-Lightning and Hyper-SD were distilled with. `Trailing` is the same under diffusers' name.
    "SGM Uniform": {"timestep_spacing": "trailing"},
    "Trailing": {"timestep_spacing": "trailing"},
}
SCHEDULE_NAMES = tuple(SCHEDULES)
_SPACING, _SIGMAS = {"timestep_spacing"}, {"timestep_spacing", "use_karras_sigmas", "use_exponential_sigmas"}
# Which schedule keys each class takes, written out so that `welcome` never imports diffusers (seconds
# on a loaded machine); tests/server/jobs/test_schedules.py checks it against diffusers' signatures.
SCHEDULE_KEYS: dict[str, frozenset[str]] = {
    cls: frozenset(keys)
    for cls, keys in {
        "EulerDiscreteScheduler": _SIGMAS,
        "EulerAncestralDiscreteScheduler": _SPACING,
        "HeunDiscreteScheduler": _SIGMAS,
        "LMSDiscreteScheduler": _SIGMAS,
        "KDPM2DiscreteScheduler": _SIGMAS,
        "KDPM2AncestralDiscreteScheduler": _SIGMAS,
        "DPMSolverMultistepScheduler": _SIGMAS,
        "DPMSolverSinglestepScheduler": {"use_karras_sigmas", "use_exponential_sigmas"},
        "DDIMScheduler": _SPACING,
        "PNDMScheduler": _SPACING,
        "UniPCMultistepScheduler": _SIGMAS,
        "LCMScheduler": _SPACING,
        "TCDScheduler": _SPACING,
    }.items()
}


@dataclass(frozen=True)
class Sampler:
    """A sampler with its schedule type, as a job asked for it (validated by `check`)."""

    name: str
    schedule: str = "Automatic"

    @property
    def stochastic(self) -> bool:
        return self.name in STOCHASTIC


SamplerLike = Sampler | str  # a plain name means its Automatic schedule


def as_sampler(value: SamplerLike) -> Sampler:
    return value if isinstance(value, Sampler) else Sampler(value)


@functools.cache
def _accepts(cls_name: str) -> frozenset[str]:
    import diffusers

    return frozenset(inspect.signature(getattr(diffusers, cls_name).__init__).parameters)


def schedules_for(name: str) -> tuple[str, ...]:
    """The schedule types sampler `name` can run with."""
    cls_name = SAMPLERS[name][0]
    if cls_name in OWN_SCHEDULE:
        return ("Automatic",)
    return tuple(s for s, overrides in SCHEDULES.items() if set(overrides) <= SCHEDULE_KEYS[cls_name])


def check(sampler: Sampler, steps: int | None = None) -> str | None:
    """Why `sampler` cannot run (`steps` steps), starting with the field at fault; None: it can."""
    if sampler.name not in SAMPLERS:
        return f"sampler: unknown sampler {sampler.name!r}; one of: {', '.join(NAMES)}"
    if sampler.schedule not in SCHEDULES:
        return f"schedule: unknown schedule type {sampler.schedule!r}; one of: {', '.join(SCHEDULE_NAMES)}"
    allowed = schedules_for(sampler.name)
    if sampler.schedule not in allowed:
        return f"schedule: {sampler.name} runs with {', '.join(allowed)}, not {sampler.schedule!r}"
    if SAMPLERS[sampler.name][0] in OWN_SCHEDULE and steps is not None and steps > DISTILLED_STEPS:
        return (
            f"steps: {sampler.name} takes its steps from a {DISTILLED_STEPS}-step schedule: at most {DISTILLED_STEPS}"
        )
    return None


def make_scheduler(sampler: SamplerLike, base_config: dict[str, Any]) -> Any:
    import diffusers

    spec = as_sampler(sampler)
    why = check(spec)
    if why is not None:
        raise ValueError(why)
    cls_name, overrides = SAMPLERS[spec.name]
    accepted = _accepts(cls_name)  # the model's config is written for another class: keep what this one takes
    config = {k: v for k, v in base_config.items() if k in accepted and k not in _SIGMA_FLAGS}
    if spec.schedule != "Automatic":  # an explicit schedule type replaces the name's own (e.g. "… Karras")
        overrides = {k: v for k, v in overrides.items() if k not in _SIGMA_FLAGS}
    return getattr(diffusers, cls_name).from_config({**config, **overrides, **SCHEDULES[spec.schedule]})
