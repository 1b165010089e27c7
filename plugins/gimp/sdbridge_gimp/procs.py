"""The plug-in's PDB procedures: names, menu labels and typed arguments (what `plugin.py` registers).

Argument names are the job's wire parameter names where there is one (`prompt`, `seed`, `left`…),
so `logic.py` maps them to a request without a translation table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._common import geometry, settings

SEED_MAX = 2**31 - 1  # GIMP int arguments are gint; the server accepts up to 2**32-1
BATCH_MAX = 16  # the server's own limit (welcome.limits.max_batch, 8 by default) is checked by the server


@dataclass(frozen=True)
class Arg:
    """One procedure argument; `type` is "str", "int", "float" or "bool"."""

    name: str
    type: str
    nick: str
    blurb: str
    default: Any
    lo: float | None = None
    hi: float | None = None


@dataclass(frozen=True)
class ProcSpec:
    name: str  # PDB name
    kind: str  # protocol job kind
    label: str  # menu label
    blurb: str
    args: tuple[Arg, ...] = field(default=())
    needs_selection: bool = False

    @property
    def title(self) -> str:
        """The label as text ("Inpaint selection"), for messages and the dialog title."""
        return self.label.replace("_", "").rstrip("…")


def _prompt_args(strength: float) -> tuple[Arg, ...]:
    return (
        Arg("prompt", "str", "Prompt", "What to draw (A1111 weighting syntax)", ""),
        Arg("negative", "str", "Negative prompt", "What to avoid", ""),
        Arg("seed", "int", "Seed", "-1 = random; the seed used is in the layer name", -1, -1, SEED_MAX),
        Arg("steps", "int", "Steps", "Sampling steps", 20, 1, 150),
        Arg("cfg", "float", "CFG scale", "Prompt guidance strength", 7.0, 0.0, 30.0),
        Arg("sampler", "str", "Sampler", "A1111 sampler name, e.g. 'Euler a' (empty = server default)", "Euler a"),
        Arg("strength", "float", "Strength", "Denoising strength (1.0 = repaint fully)", strength, 0.0, 1.0),
        Arg("model", "str", "Model", "Checkpoint name on the server (empty = server default)", ""),
    )


BATCH_ARGS: tuple[Arg, ...] = (
    Arg("batch", "int", "Batch", "Alternative results (seeds seed, seed+1, …): one layer each, in one layer group",
        1, 1, BATCH_MAX),
)  # fmt: skip
SERVER_ARGS: tuple[Arg, ...] = (
    Arg("server-url", "str", "Server URL", "sdbridge websocket URL", settings.DEFAULT_URL),
    Arg("token", "str", "Token", "Access token, if the server requires one", ""),
    Arg("timeout", "int", "Timeout (s)", "Give up waiting for the result after this many seconds", 600, 5, 86400),
)
SIDE_ARGS: tuple[Arg, ...] = tuple(
    Arg(
        side,
        "int",
        f"Extend {side}",
        f"Pixels to add on the {side} (all 0 = fill the selection in place)",
        128 if side == "right" else 0,
        0,
        8192,
    )
    for side in geometry.SIDES
)

PROCS: tuple[ProcSpec, ...] = (
    ProcSpec(
        "sdbridge-generate",
        "generate",
        "_Generate…",
        "Generate a new layer from a prompt (img2img from the visible image when strength < 1; "
        "limited to the selection's bounds when there is one)",
        _prompt_args(1.0) + BATCH_ARGS + SERVER_ARGS,
    ),
    ProcSpec(
        "sdbridge-inpaint",
        "inpaint",
        "_Inpaint selection…",
        "Repaint the selected area from a prompt (needs a selection)",
        _prompt_args(1.0) + BATCH_ARGS + SERVER_ARGS,
        needs_selection=True,
    ),
    ProcSpec(
        "sdbridge-outpaint",
        "outpaint",
        "_Outpaint…",
        "Extend the canvas on chosen sides and fill the new area (all sides 0: fill the selection in place, "
        "which should touch a canvas edge or cover a transparent area)",
        _prompt_args(0.9) + SIDE_ARGS + BATCH_ARGS + SERVER_ARGS,
    ),
    ProcSpec(
        "sdbridge-face",
        "face",
        "Re-render _face…",
        "Re-render the selected face (or detected faces) at detail resolution",
        _prompt_args(0.5) + BATCH_ARGS + SERVER_ARGS,
    ),
    ProcSpec(
        "sdbridge-restore",
        "restore",
        "_Restore faces…",
        "Run a face-restoration model (GFPGAN/CodeFormer) over detected faces (or the selected one)",
        (
            Arg("restorer", "str", "Restorer", "Restorer name on the server (empty = default)", ""),
            Arg("fidelity", "float", "Fidelity", "CodeFormer: 0 = quality, 1 = faithful to the input", 0.5, 0.0, 1.0),
            Arg("blend", "float", "Blend", "Opacity of the restored faces", 1.0, 0.0, 1.0),
        )
        + SERVER_ARGS,
    ),
    ProcSpec(
        "sdbridge-upscale",
        "upscale",
        "_Upscale…",
        "Upscale the image ×scale with tiled refine (with a selection: only its bounds are re-rendered)",
        _prompt_args(0.3)
        + (
            Arg("scale", "float", "Scale", "Upscale factor for the whole image", 2.0, 1.0, 8.0),
            Arg("upscaler", "str", "Upscaler", "Upscaler model on the server (empty = default)", ""),
        )
        + SERVER_ARGS,
    ),
)
PROCS_BY_NAME = {p.name: p for p in PROCS}
