"""Review-then-apply history, editor-independent: every result image of a job becomes one entry that
the user previews, applies, discards, or takes the prompt and seed back from.

A job's result rects are grouped per batch image (an outpaint strip pair, the faces of one image)
into ONE entry: its pieces merged into one RGBA image over their union. Entries keep their pixels
as PNG and serialise to bytes (msgpack), so an editor stores the whole history in its document
(a Krita annotation) and it survives save and reload. Nothing here touches an editor.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import msgpack

from . import png, results
from .actions import ActionError
from .geometry import Rect
from .jobs import JobRequest

FORMAT = 1
MAX_ENTRIES = 40  # the oldest entries go first: each holds a full-size PNG in the document
_BATCH_NAME = re.compile(r"batch (\d+)$")  # face: "face N, batch B"

Decode = Callable[[dict[str, Any]], tuple[int, int, bytes]]


@dataclass(frozen=True, slots=True)
class Entry:
    """One result image. `rect` is where it goes on a canvas of size `canvas`; the document was
    `base` when the job was sent (they differ when the job resizes the canvas: `change`)."""

    id: str  # "<job id>.<batch index>"
    job: str
    kind: str
    prompt: str
    negative: str
    seed: int | None
    index: int  # batch image, 0-based
    rect: Rect
    canvas: tuple[int, int]
    base: tuple[int, int]
    change: results.CanvasChange | None
    image: bytes = field(repr=False)  # PNG, rect.w × rect.h
    params: dict[str, Any] = field(default_factory=dict, repr=False)
    created: float = 0.0
    applied: bool = False  # applied as a layer at least once (the strip marks it)

    @property
    def name(self) -> str:
        """The layer name when applied: `prompt (seed)`."""
        return results.layer_name(self.prompt, self.kind, self.seed)

    def rgba(self, decode: Callable[[bytes], tuple[int, int, bytes]] | None = None) -> bytes:
        """Straight RGBA pixels (`decode`: an editor's fast PNG decoder; the portable one otherwise)."""
        w, h, px = (decode or png.decode)(self.image)
        if (w, h) != (self.rect.w, self.rect.h):
            raise ValueError(f"history image is {w}x{h}, its rect {self.rect.w}x{self.rect.h}")
        return px

    def placement(self, doc_w: int, doc_h: int) -> Placement:
        """Where this entry lands on a document of the given size (see `Placement`)."""
        if (doc_w, doc_h) == self.canvas:
            return Placement(self.rect, None, exact=True)
        if (doc_w, doc_h) == self.base and self.change is not None:
            if self.change.scale:  # shown scaled down to the document until applied
                sx, sy = doc_w / self.canvas[0], doc_h / self.canvas[1]
                r = self.rect
                x, y = int(r.x * sx), int(r.y * sy)
                shown = Rect(x, y, max(1, round(r.right * sx) - x), max(1, round(r.bottom * sy) - y))
                return Placement(shown, self.change, exact=False)
            ox, oy = self.change.origin  # outpaint: the old canvas sits at `origin` of the new one
            return Placement(Rect(self.rect.x - ox, self.rect.y - oy, self.rect.w, self.rect.h), self.change, True)
        raise ActionError(
            f"this result was made for a {self.canvas[0]}×{self.canvas[1]} canvas; the document is {doc_w}×{doc_h} now"
        )

    def to_plain(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["rect"] = [self.rect.x, self.rect.y, self.rect.w, self.rect.h]
        ch = self.change
        d["change"] = None if ch is None else [ch.w, ch.h, ch.scale, list(ch.origin)]
        return d

    @classmethod
    def from_plain(cls, d: dict[str, Any]) -> Entry:
        ch = d.get("change")
        change = results.CanvasChange(ch[0], ch[1], bool(ch[2]), (ch[3][0], ch[3][1])) if ch else None
        return cls(
            id=str(d["id"]),
            job=str(d["job"]),
            kind=str(d["kind"]),
            prompt=str(d.get("prompt", "")),
            negative=str(d.get("negative", "")),
            seed=d.get("seed") if isinstance(d.get("seed"), int) else None,
            index=int(d.get("index", 0)),
            rect=Rect(*(int(v) for v in d["rect"])),
            canvas=(int(d["canvas"][0]), int(d["canvas"][1])),
            base=(int(d["base"][0]), int(d["base"][1])),
            change=change,
            image=bytes(d["image"]),
            params=dict(d.get("params") or {}),
            created=float(d.get("created", 0.0)),
            applied=bool(d.get("applied", False)),
        )


@dataclass(frozen=True, slots=True)
class Placement:
    """`rect`: where the entry shows on the document as it is now (scaled when `exact` is False);
    `change`: the canvas change applying it makes first (None: the document already fits)."""

    rect: Rect
    change: results.CanvasChange | None
    exact: bool


def batch_index(img: dict[str, Any], params: dict[str, Any]) -> int:
    """Which batch image a result rect belongs to: `face` names it ("face 2, batch 3"), the other
    kinds give each rect its batch image's seed (`params.seeds` lists them in order)."""
    name = img.get("name")
    if isinstance(name, str):
        m = _BATCH_NAME.search(name)
        if m:
            return int(m.group(1)) - 1
        if name.startswith("face "):
            return 0
    seeds = params.get("seeds")
    seed = img.get("seed")
    if isinstance(seeds, list) and seed in seeds:
        return seeds.index(seed)
    return 0


def entries_from_result(
    request: JobRequest, result: dict[str, Any], base: tuple[int, int], decode: Decode = results.decode_image
) -> list[Entry]:
    """One entry per batch image of a `result` event, in batch order (none when it has no image,
    e.g. no face was found: see `params.messages`)."""
    params = result.get("params") or {}
    groups: dict[int, list[tuple[int, int, int, int, bytes]]] = {}
    for img in result.get("images") or []:
        w, h, rgba = decode(img)
        groups.setdefault(batch_index(img, params), []).append((int(img.get("x", 0)), int(img.get("y", 0)), w, h, rgba))
    change = results.canvas_change(request, result, *base)
    canvas = (change.w, change.h) if change is not None else base
    seeds = params.get("seeds") if isinstance(params.get("seeds"), list) else []
    job = str(result.get("id") or "job")
    out = []
    for index in sorted(groups):
        x, y, w, h, rgba = results.merge_pieces(groups[index])
        seed = seeds[index] if index < len(seeds) else params.get("seed")
        out.append(
            Entry(
                id=f"{job}.{index}",
                job=job,
                kind=request.kind,
                prompt=str(params.get("prompt", request.prompt) or ""),
                negative=str(params.get("negative", "") or ""),
                seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
                index=index,
                rect=Rect(x, y, w, h),
                canvas=canvas,
                base=base,
                change=change,
                image=png.encode(rgba, w, h),
                params=results.plain(params),
                created=time.time(),
            )
        )
    return out


class History:
    """A document's entries, oldest first, at most `limit`."""

    def __init__(self, entries: list[Entry] | None = None, limit: int = MAX_ENTRIES) -> None:
        self.limit = limit
        self.entries: list[Entry] = list(entries or [])[-limit:]

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def get(self, entry_id: str) -> Entry | None:
        return next((e for e in self.entries if e.id == entry_id), None)

    def require(self, entry_id: str) -> Entry:
        entry = self.get(entry_id)
        if entry is None:
            raise ActionError("that result is no longer in the history")
        return entry

    def add(self, entries: list[Entry]) -> None:
        self.entries = (self.entries + entries)[-self.limit :]

    def discard(self, entry_id: str) -> Entry | None:
        entry = self.get(entry_id)
        if entry is not None:
            self.entries.remove(entry)
        return entry

    def update(self, entry_id: str, **changes: Any) -> None:
        self.entries = [replace(e, **changes) if e.id == entry_id else e for e in self.entries]

    def to_bytes(self) -> bytes:
        return msgpack.packb({"format": FORMAT, "entries": [e.to_plain() for e in self.entries]}, use_bin_type=True)

    @classmethod
    def from_bytes(cls, data: bytes, limit: int = MAX_ENTRIES) -> History:
        """A stored history; unreadable data gives an empty one (a damaged annotation must never
        stop the document from opening in the plugin)."""
        if not data:
            return cls(limit=limit)
        try:
            obj = msgpack.unpackb(data, raw=False)
            if not isinstance(obj, dict) or obj.get("format") != FORMAT:
                return cls(limit=limit)
            return cls([Entry.from_plain(d) for d in obj.get("entries") or []], limit)
        except (ValueError, KeyError, TypeError, IndexError, msgpack.UnpackException):
            return cls(limit=limit)


def settings_from(entry: Entry) -> dict[str, Any]:
    """The settings that make the docker produce this entry again: prompt, negative, seed (fixed)."""
    out: dict[str, Any] = {"prompt": entry.prompt, "negative": entry.negative}
    if entry.seed is not None:
        out |= {"seed": entry.seed, "fixed_seed": True}
    return out
