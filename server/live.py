"""Live painting frames: which jobs may be live, and the content key that lets an unchanged frame
reuse the last result instead of being computed again (docs/protocol.md, "Live frames")."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from .protocol import ImageRef, ProtocolError, pack

LIVE_KINDS = ("generate", "inpaint")  # img2img and inpaint: a frame always starts from the canvas


def check_live(kind: str, refs: Mapping[str, ImageRef], job_id: str) -> None:
    if kind not in LIVE_KINDS or (kind == "generate" and "init" not in refs):
        why = f"live: only img2img (generate with images.init) and inpaint frames can be live, not {kind!r}"
        raise ProtocolError("bad_field", why, job_id)


def _canonical(value: Any) -> Any:
    """Maps with sorted keys, so the same params in another order give the same key."""
    if isinstance(value, Mapping):
        return [[k, _canonical(value[k])] for k in sorted(value, key=str)]
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def live_key(kind: str, params: Mapping[str, Any], refs: Mapping[str, ImageRef]) -> str | None:
    """Content hash of a frame's inputs: kind, params and every image (its content hash when the
    client named one, else its bytes as sent). None when the frame asks for a random seed: then no
    two frames are the same picture."""
    seed = params.get("seed", -1)
    if seed is None or seed == -1:
        return None
    digest = hashlib.sha256(pack({"kind": kind, "params": _canonical(params)}))
    for name in sorted(refs):
        ref = refs[name]
        digest.update(name.encode() + b"\0")
        if ref.hash is not None:
            digest.update(ref.hash.encode())
        else:
            digest.update(f"{ref.format}:{ref.w}x{ref.h}:".encode())
            digest.update(hashlib.sha256(ref.data).digest())
    return digest.hexdigest()
