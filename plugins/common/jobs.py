"""Typed job requests: one frozen dataclass per job contract of docs/protocol.md.

A request is the single serialisable description of a job (krita-ai-diffusion's `WorkflowInput`
lesson): adapters build one from the editor state, the client turns it into `job` frames, and the
same object is stored with the result so the document can say how a layer was made.

Field names are the wire parameter names; the diffusion parameters every sampling job shares are
one typed `Sampling` object, flattened into the frame's params (the wire is flat, like the server's
`GenParams`). `None` means "leave it to the server's default", so a request never pins a value the
user did not choose. Image fields are marked with `metadata={"image": <wire name>}` and travel in
the frame's `images` map.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from ._wire import protocol
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


@dataclass(frozen=True, slots=True)
class Sampling:
    """What every diffusion job samples with (the server's `GenParams`)."""

    prompt: str = ""
    negative: str = ""
    model: str | None = None  # checkpoint name from welcome.models
    seed: int = -1  # -1 = the server picks one (and reports it)
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    vae: str | None = None  # a name from welcome.vaes; None = the checkpoint's own


def _image(name: str) -> Any:
    return field(default=None, metadata={"image": name})


def _params(obj: Any) -> dict[str, Any]:
    """Wire params of a request: None left out, `Sampling` flattened in, rects as `{x, y, w, h}`."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value is None or "image" in f.metadata:
            continue
        if isinstance(value, Sampling):
            out.update(_params(value))
        elif isinstance(value, Rect):
            out[f.name] = asdict(value)
        else:
            out[f.name] = value
    return out


@dataclass(frozen=True, slots=True)
class JobRequest:
    """Base: subclasses set `kind` and add their parameters."""

    kind: ClassVar[str] = ""
    result_format: str | None = None  # png (server default) / rgba8 / webp

    @property
    def prompt(self) -> str:
        """The prompt the job draws (empty for jobs without one): names layers and history entries."""
        return ""

    def params(self) -> dict[str, Any]:
        return _params(self)

    def images(self) -> dict[str, WireImage]:
        return {
            f.metadata["image"]: getattr(self, f.name)
            for f in fields(self)
            if "image" in f.metadata and getattr(self, f.name) is not None
        }

    def message(self, job_id: str) -> dict[str, Any]:
        """The `job` frame with every image inline."""
        msg: dict[str, Any] = {"type": "job", "id": job_id, "kind": self.kind, "params": self.params()}
        imgs = self.images()
        if imgs:
            msg["images"] = {name: img.to_wire() for name, img in imgs.items()}
        return msg

    def frames(self, job_id: str, chunk_bytes: int, refs: Iterator[int]) -> list[dict[str, Any]]:
        """The frames to send: images over `chunk_bytes` go first as `blob` frames (named with numbers
        from `refs`, unique per connection), then the `job` frame that refers to them."""
        msg = self.message(job_id)
        frames: list[dict[str, Any]] = []
        for name, img in (msg.get("images") or {}).items():
            data = img["data"]
            if len(data) > chunk_bytes:
                ref = f"up{next(refs)}.{name}"
                frames.extend(protocol.blob_frames(ref, data, chunk_bytes))
                del img["data"]
                img["blob"] = ref
        frames.append(msg)
        return frames


@dataclass(frozen=True, slots=True)
class SamplingRequest(JobRequest):
    """Base of the diffusion jobs: the shared sampling parameters and the denoising strength."""

    sampling: Sampling = Sampling()
    strength: float | None = None

    @property
    def prompt(self) -> str:
        return self.sampling.prompt


@dataclass(frozen=True, slots=True)
class GenerateRequest(SamplingRequest):
    """`generate`: txt2img, or img2img when `init` is given."""

    kind: ClassVar[str] = "generate"
    width: int | None = None
    height: int | None = None
    batch: int | None = None
    init: WireImage | None = _image("init")


@dataclass(frozen=True, slots=True)
class InpaintRequest(SamplingRequest):
    """`inpaint`: regenerate the masked part of `image` (the whole canvas); returns the changed rect."""

    kind: ClassVar[str] = "inpaint"
    batch: int | None = None
    target: int | None = None  # detail resolution the selection's context is processed at
    grow: int | None = None
    feather: int | None = None
    fill: str | None = None  # pre-fill of the hole (see docs/protocol.md)
    color_match: bool | None = None
    image: WireImage | None = _image("image")
    mask: WireImage | None = _image("mask")


@dataclass(frozen=True, slots=True)
class OutpaintRequest(SamplingRequest):
    """`outpaint`: extend the canvas by `left/right/top/bottom` px and fill the new area, or (sides 0 +
    `mask`) fill a selection that touches a canvas edge."""

    kind: ClassVar[str] = "outpaint"
    batch: int | None = None
    left: int = 0
    right: int = 0
    top: int = 0
    bottom: int = 0
    margin: int | None = None  # blend margin into the existing image
    prefill: str | None = None
    color_match: bool | None = None
    image: WireImage | None = _image("image")
    mask: WireImage | None = _image("mask")  # in-canvas form: a selection at an edge / transparent area


@dataclass(frozen=True, slots=True)
class FaceRequest(SamplingRequest):
    """`face`: re-render faces at detail resolution; `mask` limits it to a selection, else auto-detect."""

    kind: ClassVar[str] = "face"
    batch: int | None = None
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
class UpscaleRequest(SamplingRequest):
    """`upscale`: whole image ×scale with tiled refine, or only `region` regenerated at high detail."""

    kind: ClassVar[str] = "upscale"
    scale: float = 2.0
    upscaler: str | None = None
    region: Rect | None = None
    image: WireImage | None = _image("image")


REQUEST_TYPES: dict[str, type[JobRequest]] = {
    cls.kind: cls
    for cls in (GenerateRequest, InpaintRequest, OutpaintRequest, FaceRequest, RestoreRequest, UpscaleRequest)
}
