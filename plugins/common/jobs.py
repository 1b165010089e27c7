"""Typed job requests: one frozen dataclass per job contract of docs/protocol.md.

A request is the single serialisable description of a job (krita-ai-diffusion's `WorkflowInput`
lesson): adapters build one from the editor state, the client turns it into a `job` frame, and the
same object is stored with the result so the document can say how a layer was made.

Field names are the wire parameter names. `None` means "leave it to the server's default", so a
request never pins a value the user did not choose. Image fields are marked with
`metadata={"image": <wire name>}` and travel in the frame's `images` map.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from .geometry import Rect


@dataclass(frozen=True, slots=True)
class WireImage:
    """An image as it goes on the wire: raw `rgba8`/`gray8` (no encoder needed) or encoded bytes."""

    format: str
    data: bytes = field(repr=False)
    w: int | None = None
    h: int | None = None

    @classmethod
    def rgba(cls, data: bytes, w: int, h: int) -> WireImage:
        if len(data) != w * h * 4:
            raise ValueError(f"rgba8 {w}x{h} needs {w * h * 4} bytes, got {len(data)}")
        return cls("rgba8", bytes(data), w, h)

    @classmethod
    def gray(cls, data: bytes, w: int, h: int) -> WireImage:
        if len(data) != w * h:
            raise ValueError(f"gray8 {w}x{h} needs {w * h} bytes, got {len(data)}")
        return cls("gray8", bytes(data), w, h)

    def to_wire(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"format": self.format, "data": self.data}
        if self.w is not None:
            obj["w"], obj["h"] = self.w, self.h
        return obj


def _image(name: str) -> Any:
    return field(default=None, metadata={"image": name})


@dataclass(frozen=True, slots=True)
class JobRequest:
    """Base: subclasses set `kind` and add their parameters."""

    kind: ClassVar[str] = ""

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if "image" in f.metadata:
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, Rect):
                value = asdict(value)
            out[f.name] = value
        return out

    def images(self) -> dict[str, WireImage]:
        return {
            f.metadata["image"]: getattr(self, f.name)
            for f in fields(self)
            if "image" in f.metadata and getattr(self, f.name) is not None
        }

    def message(self, job_id: str) -> dict[str, Any]:
        """The `job` frame (images still inline; the client moves large ones into blobs)."""
        msg: dict[str, Any] = {"type": "job", "id": job_id, "kind": self.kind, "params": self.params()}
        imgs = self.images()
        if imgs:
            msg["images"] = {name: img.to_wire() for name, img in imgs.items()}
        return msg

    def describe(self) -> dict[str, Any]:
        """Parameters without pixel data, for annotations/history."""
        return {"kind": self.kind, **self.params()}


@dataclass(frozen=True, slots=True)
class GenerateRequest(JobRequest):
    """`generate`: txt2img, or img2img when `init` is given."""

    kind: ClassVar[str] = "generate"
    prompt: str = ""
    negative: str = ""
    model: str | None = None
    seed: int = -1
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    result_format: str | None = None  # png (default) / rgba8 / webp
    width: int | None = None
    height: int | None = None
    batch: int | None = None
    strength: float | None = None
    init: WireImage | None = _image("init")


@dataclass(frozen=True, slots=True)
class InpaintRequest(JobRequest):
    """`inpaint`: regenerate the masked part of `image` (the whole canvas); returns the changed rect."""

    kind: ClassVar[str] = "inpaint"
    prompt: str = ""
    negative: str = ""
    model: str | None = None
    seed: int = -1
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    strength: float | None = None
    target: int | None = None  # detail resolution the selection's context is processed at
    grow: int | None = None
    feather: int | None = None
    fill: str | None = None  # pre-fill of the hole (see docs/protocol.md)
    color_match: bool | None = None
    image: WireImage | None = _image("image")
    mask: WireImage | None = _image("mask")


@dataclass(frozen=True, slots=True)
class OutpaintRequest(JobRequest):
    """`outpaint`: extend the canvas by `left/right/top/bottom` px and fill the new area, or (sides 0 +
    `mask`) fill a selection that touches a canvas edge."""

    kind: ClassVar[str] = "outpaint"
    prompt: str = ""
    negative: str = ""
    model: str | None = None
    seed: int = -1
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    batch: int | None = None
    left: int = 0
    right: int = 0
    top: int = 0
    bottom: int = 0
    strength: float | None = None
    margin: int | None = None  # blend margin into the existing image
    prefill: str | None = None
    color_match: bool | None = None
    image: WireImage | None = _image("image")
    mask: WireImage | None = _image("mask")  # in-canvas form: a selection at an edge / transparent area


@dataclass(frozen=True, slots=True)
class FaceRequest(JobRequest):
    """`face`: re-render faces at detail resolution; `mask` limits it to a selection, else auto-detect."""

    kind: ClassVar[str] = "face"
    prompt: str = ""
    negative: str = ""
    model: str | None = None
    seed: int = -1
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    strength: float | None = None
    image: WireImage | None = _image("image")
    mask: WireImage | None = _image("mask")


@dataclass(frozen=True, slots=True)
class RestoreRequest(JobRequest):
    """`restore`: face restoration model (GFPGAN/CodeFormer-like) over the image."""

    kind: ClassVar[str] = "restore"
    model: str | None = None  # a name from welcome.restorers
    fidelity: float | None = None
    blend: float | None = None
    image: WireImage | None = _image("image")
    mask: WireImage | None = _image("mask")


@dataclass(frozen=True, slots=True)
class UpscaleRequest(JobRequest):
    """`upscale`: whole image ×scale with tiled refine, or only `region` regenerated at high detail."""

    kind: ClassVar[str] = "upscale"
    prompt: str = ""
    negative: str = ""
    model: str | None = None
    seed: int = -1
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    scale: float = 2.0
    upscaler: str | None = None
    strength: float | None = None
    region: Rect | None = None
    image: WireImage | None = _image("image")


REQUEST_TYPES: dict[str, type[JobRequest]] = {
    cls.kind: cls
    for cls in (GenerateRequest, InpaintRequest, OutpaintRequest, FaceRequest, RestoreRequest, UpscaleRequest)
}
