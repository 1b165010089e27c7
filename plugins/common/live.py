"""Live painting, editor side (sans-I/O): presets, the frame request, and when to send the next frame.

The adapter tells `LiveLoop` about every document change (stroke, layer edit, selection change) and
asks it on a timer whether a frame is due. Debounce is adaptive: a short quiet period after the last
change (longer when frames come back slowly), and during a long stroke a frame about once per frame
time, so the picture follows the brush without sending frames the server would only supersede.
The server keeps at most one pending frame per client anyway (latest frame wins).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .actions import Canvas, clamp_strength, model_names, schedule
from .jobs import GenerateRequest, InpaintRequest, JobRequest, Sampling
from .settings import Settings


@dataclass(frozen=True, slots=True)
class LivePreset:
    """Steps / CFG / sampler for a kind of few-step model (add its LoRA to the prompt: `<lora:…>`)."""

    label: str
    sampler: str
    steps: int
    cfg: float
    schedule: str = "Automatic"


PRESETS: dict[str, LivePreset] = {
    p.label: p
    for p in (
        LivePreset("LCM 6 steps", "LCM", 6, 1.5),
        LivePreset("Hyper-SD 8 steps", "DDIM", 8, 3.5, "SGM Uniform"),
        LivePreset("Lightning 8 steps", "Euler", 8, 1.0, "SGM Uniform"),
        LivePreset("TCD 8 steps", "TCD", 8, 1.5),
        LivePreset("Regular model 12 steps", "DPM++ 2M", 12, 5.0, "Karras"),
    )
}
DEFAULT_PRESET = "LCM 6 steps"
# Not a preset: the sampler, schedule, steps and CFG the docker's Generate settings use.
CUSTOM = "Custom (sampler, steps, CFG of the settings)"
PRESET_NAMES = (*PRESETS, CUSTOM)


def preset_for(s: Settings, welcome: dict | None = None) -> LivePreset:
    """The preset a frame samples with: the chosen one (`CUSTOM`: the settings' own sampling); one of
    few-step samplers an older server lacks falls back to the regular-model preset."""
    if s.live_preset == CUSTOM:
        return LivePreset(CUSTOM, s.sampler, s.steps, s.cfg, schedule(s, welcome) or "Automatic")
    preset = PRESETS.get(s.live_preset) or PRESETS[DEFAULT_PRESET]
    samplers = (welcome or {}).get("samplers") or []
    if samplers and preset.sampler not in samplers:
        preset = PRESETS["Regular model 12 steps"]  # an older server without the few-step samplers
    return preset


def live_request(canvas: Canvas, s: Settings, welcome: dict | None = None) -> JobRequest:
    """One live frame (fixed seed: the same canvas gives the same picture): img2img of the whole
    canvas, or inpaint of the selection when there is one."""
    preset = preset_for(s, welcome)
    models = model_names(welcome)
    sampling = Sampling(
        prompt=s.prompt,
        negative=s.negative,
        model=s.model if s.model and (not models or s.model in models) else None,
        seed=s.live_seed,
        steps=preset.steps,
        cfg=preset.cfg,
        sampler=preset.sampler,
        schedule=preset.schedule if "schedules" in (welcome or {}) else None,
    )
    strength = clamp_strength(s.live_strength)
    if canvas.selection_bounds() is not None:
        return InpaintRequest(
            sampling=sampling,
            strength=strength,
            image=canvas.image(),
            mask=canvas.mask(),
            result_format="rgba8",
            live=True,
        )
    return GenerateRequest(
        sampling=sampling, strength=strength, init=canvas.image(opaque=True), result_format="rgba8", live=True
    )


@dataclass
class LiveLoop:
    """When the next frame is due. Times are the caller's clock (seconds, monotonic)."""

    min_quiet: float = 0.05
    max_quiet: float = 0.5
    latency: float = 0.5  # estimate of a frame's round trip, updated from finished frames
    dirty_since: float | None = None
    last_change: float = 0.0
    last_sent: float = float("-inf")
    in_flight: dict[str, float] = field(default_factory=dict)  # job id -> sent at

    @property
    def quiet(self) -> float:
        """How long the document must rest before a frame goes: a quarter of a frame time, bounded."""
        return min(self.max_quiet, max(self.min_quiet, self.latency / 4))

    def changed(self, now: float) -> None:
        if self.dirty_since is None:
            self.dirty_since = now
        self.last_change = now

    def due(self, now: float) -> bool:
        if self.dirty_since is None:
            return False
        if now - self.last_change >= self.quiet:
            return True
        # Still painting: one frame per frame time keeps the picture following the stroke.
        return now - self.dirty_since >= self.quiet and now - self.last_sent >= self.latency

    def sent(self, job_id: str, now: float) -> None:
        self.dirty_since = None
        self.last_sent = now
        self.in_flight[job_id] = now

    def finished(self, job_id: str, now: float, produced: bool) -> bool:
        """A frame's terminal event; True when it is ours. Frames that produced a picture teach the
        latency estimate (moving average), superseded ones only leave."""
        sent_at = self.in_flight.pop(job_id, None)
        if sent_at is None:
            return False
        if produced:
            self.latency = 0.7 * self.latency + 0.3 * (now - sent_at)
        return True

    def stop(self) -> list[str]:
        """Forget everything; returns the frames still in flight (to cancel)."""
        ids = list(self.in_flight)
        self.in_flight.clear()
        self.dirty_since = None
        return ids
