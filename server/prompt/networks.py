"""LoRA tags and embedding references checked against the models folder, and LoRAs activated per job."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import ModelLoadError, UnknownModel
from ..models import lora
from .syntax import NetworkTag, explicit_embeddings, extract_networks


def validate(text: str, manager: Any, field: str = "prompt", networks: bool = True) -> None:
    """Parse-time checks (before queueing): LoRA and explicit embedding names must exist."""
    if networks:
        _, tags = extract_networks(text)
        for tag in tags:
            manager.asset("loras", tag.name)
    known = manager.assets.get("embeddings", {})
    for name in explicit_embeddings(text):
        if name not in known:
            avail = ", ".join(sorted(known)[:10]) or "none"
            raise UnknownModel(f"params.{field}: unknown embedding {name!r}; available: {avail}")


def activate_networks(model: Any, tags: list[NetworkTag]) -> None:
    """Patch the LoRAs into `model` for this job (idempotent for the same set; reverted at job end)."""
    key = tuple(sorted((t.name, t.unet, t.te) for t in tags))
    active = model.extras.get("lora_active")
    if active is not None and active[0] == key:
        return
    if active is not None:
        active[1]()  # a different set within the same job: back to the checkpoint first
    if not tags:
        return
    restore = _patch(model, [(t.name, t.unet, t.te) for t in tags])

    def undo() -> None:
        restore()
        model.extras.pop("lora_active", None)

    model.push_undo(undo)
    model.extras["lora_active"] = (key, undo)


@contextmanager
def text_loras(model: Any, tags: Sequence[NetworkTag]) -> Iterator[None]:
    """Only the text-encoder part of `tags`, for what runs inside (one region's prompt encoding)."""
    tags = [t for t in tags if t.te != 0]
    restore = _patch(model, [(t.name, 0.0, t.te) for t in tags]) if tags else None
    try:
        yield
    finally:
        if restore is not None:
            restore()


def _patch(model: Any, weights: list[tuple[str, float, float]]) -> Callable[[], None]:
    """Patch (name, UNet weight, text-encoder weight) LoRAs into `model`; returns their undo."""
    manager = model.extras.get("manager")
    if manager is None:
        raise UnknownModel(f"LoRA {weights[0][0]!r}: this model has no models folder to look in")
    specs = [(name, manager.asset("loras", name), unet, te) for name, unet, te in weights]
    try:
        _, restore = lora.apply_loras(model, specs)
    except lora.BadLora as exc:
        raise ModelLoadError(str(exc)) from exc
    return restore
