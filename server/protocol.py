"""sdbridge wire protocol, sans-I/O (see docs/protocol.md).

Pure Python + msgpack only: the editor plugins vendor this module, so it must not import numpy,
torch or anything from the rest of the server. It knows how frames look, how to validate a
client's map field by field, and how large payloads are split into and reassembled from chunks;
it never touches a socket.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

PROTOCOL_VERSION = 1
CHUNK_BYTES = 1 << 20
IMAGE_FORMATS = ("png", "webp", "jpeg", "rgba8", "gray8")
RAW_BPP = {"rgba8": 4, "gray8": 1}
_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class ProtocolError(Exception):
    """A problem with what a client sent; becomes an `error` event with `code`."""

    def __init__(self, code: str, message: str, job_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.job_id = job_id

    def event(self) -> dict[str, Any]:
        return error_event(self.code, self.message, self.job_id)


def pack(msg: Mapping[str, Any]) -> bytes:
    return msgpack.packb(msg, use_bin_type=True)


def unpack(data: bytes | str, max_len: int) -> dict[str, Any]:
    """Decode one frame into a map; anything else is a `bad_frame` ProtocolError."""
    if isinstance(data, str):
        raise ProtocolError("bad_frame", "text frames are not accepted: send one msgpack map per binary frame")
    if len(data) > max_len:
        raise ProtocolError("message_too_large", f"frame of {len(data)} bytes exceeds the limit of {max_len}")
    try:
        # Caps keep a hostile frame from declaring gigantic containers.
        obj = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_bin_len=max_len,
            max_str_len=max_len,
            max_array_len=100_000,
            max_map_len=10_000,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises many types for garbage, some with an empty message
        raise ProtocolError("bad_frame", f"frame is not valid msgpack: {_msgpack_problem(exc)}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_frame", f"frame must be a msgpack map, got {type(obj).__name__}")
    if not isinstance(obj.get("type"), str):
        raise ProtocolError("bad_frame", "frame has no string 'type' field")
    return obj


def _msgpack_problem(exc: Exception) -> str:
    """A reader's words for what msgpack found wrong (its own messages are often empty or internal)."""
    name = type(exc).__name__
    if name == "StackError":
        return "containers nested too deeply"
    if name == "ExtraData":
        return "bytes left over after the first value (one map per frame)"
    if name == "FormatError":
        return "a byte that starts no msgpack value"
    if isinstance(exc, UnicodeDecodeError):
        return f"a string that is not UTF-8 (byte {exc.start})"
    if "incomplete input" in str(exc):
        return "the data ends in the middle of a value"
    return str(exc) or name


def error_event(code: str, message: str, job_id: str | None = None) -> dict[str, Any]:
    ev: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if job_id is not None:
        ev["id"] = job_id
    return ev


# --- field access with clear errors -------------------------------------------------------------

_MISSING = object()


class Fields:
    """Typed access to a client map; every failure names the field (`bad_field`)."""

    def __init__(self, data: Mapping[str, Any], where: str, job_id: str | None = None) -> None:
        if not isinstance(data, Mapping):
            raise ProtocolError("bad_field", f"{where} must be a map, got {type(data).__name__}", job_id)
        self.data = data
        self.where = where
        self.job_id = job_id

    def _fail(self, name: str, why: str) -> ProtocolError:
        return ProtocolError("bad_field", f"{self.where}.{name}: {why}", self.job_id)

    def _get(self, name: str, default: Any) -> Any:
        value = self.data.get(name, _MISSING)
        if value is _MISSING or value is None:
            if default is _MISSING:
                raise self._fail(name, "missing")
            return default
        return value

    def str(self, name: str, default: Any = _MISSING, max_len: int = 10_000) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            raise self._fail(name, f"expected a string, got {type(value).__name__}")
        if len(value) > max_len:
            raise self._fail(name, f"longer than {max_len} characters")
        return value

    def int(self, name: str, default: Any = _MISSING, lo: int | None = None, hi: int | None = None) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(name, f"expected an integer, got {type(value).__name__}")
        return self._range(name, value, lo, hi)

    def float(self, name: str, default: Any = _MISSING, lo: float | None = None, hi: float | None = None) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(name, f"expected a number, got {type(value).__name__}")
        value = float(value)
        if value != value:  # NaN never compares inside a range
            raise self._fail(name, "NaN is not allowed")
        return self._range(name, value, lo, hi)

    def bool(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise self._fail(name, f"expected true/false, got {type(value).__name__}")
        return value

    def map(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if not isinstance(value, Mapping):
            raise self._fail(name, f"expected a map, got {type(value).__name__}")
        return value

    def choice(self, name: str, options: tuple[str, ...] | list[str], default: Any = _MISSING) -> Any:
        value = self.str(name, default)
        if value not in options:
            shown = ", ".join(options[:20])
            raise self._fail(name, f"{value!r} is not one of: {shown}")
        return value

    def _range(self, name: str, value: Any, lo: Any, hi: Any) -> Any:
        if lo is not None and value < lo:
            raise self._fail(name, f"{value} is below the minimum {lo}")
        if hi is not None and value > hi:
            raise self._fail(name, f"{value} is above the maximum {hi}")
        return value


def check_id(value: Any) -> str:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise ProtocolError("bad_field", "id must be 1-64 characters of letters, digits, '_', '.', ':' or '-'")
    return value


# --- images ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRef:
    """An image as it arrived: format + bytes (+ size for raw formats). Decoding is the server's job."""

    format: str
    data: bytes
    w: int | None = None
    h: int | None = None


def parse_image(obj: Any, name: str, blobs: Mapping[str, bytes], job_id: str | None = None) -> ImageRef:
    f = Fields(obj, f"images.{name}", job_id)
    fmt = f.choice("format", IMAGE_FORMATS)
    if "blob" in f.data:
        ref = f.str("blob", max_len=64)
        if ref not in blobs:
            raise ProtocolError("bad_field", f"images.{name}.blob: no complete blob named {ref!r}", job_id)
        data = blobs[ref]
    else:
        data = f.data.get("data")
        if not isinstance(data, bytes):
            raise ProtocolError("bad_field", f"images.{name}.data: expected bin bytes", job_id)
    w = h = None
    if fmt in RAW_BPP:
        w = f.int("w", lo=1, hi=1 << 16)
        h = f.int("h", lo=1, hi=1 << 16)
        if len(data) != w * h * RAW_BPP[fmt]:
            raise ProtocolError(
                "bad_image", f"images.{name}: {fmt} {w}x{h} needs {w * h * RAW_BPP[fmt]} bytes, got {len(data)}", job_id
            )
    return ImageRef(fmt, bytes(data), w, h)


# --- chunked blobs -----------------------------------------------------------------------------------


def blob_frames(ref: str, data: bytes, chunk: int = CHUNK_BYTES) -> Iterator[dict[str, Any]]:
    """Split `data` into `blob` frames (at least one, even when empty)."""
    n = max(1, -(-len(data) // chunk))
    for seq in range(n):
        yield {
            "type": "blob",
            "ref": ref,
            "seq": seq,
            "data": data[seq * chunk : (seq + 1) * chunk],
            "last": seq == n - 1,
        }


@dataclass
class BlobAssembler:
    """Collects `blob` frames per ref; completed blobs are available by ref until taken."""

    max_total: int
    parts: dict[str, list[bytes]] = field(default_factory=dict)
    done: dict[str, bytes] = field(default_factory=dict)
    size: int = 0

    def add(self, frame: Mapping[str, Any]) -> str | None:
        f = Fields(frame, "blob")
        ref = f.str("ref", max_len=64)
        seq = f.int("seq", lo=0)
        data = frame.get("data")
        if not isinstance(data, bytes):
            raise ProtocolError("bad_field", "blob.data: expected bin bytes")
        last = f.bool("last", False)
        parts = self.parts.setdefault(ref, [])
        if seq != len(parts):
            self.drop(ref)
            raise ProtocolError("bad_field", f"blob.seq: expected {len(parts)} for {ref!r}, got {seq}")
        self.size += len(data)
        if self.size > self.max_total:
            self.drop(ref)
            raise ProtocolError("message_too_large", f"blobs exceed {self.max_total} bytes in total")
        parts.append(bytes(data))
        if not last:
            return None
        self.done[ref] = b"".join(self.parts.pop(ref))
        return ref

    def drop(self, ref: str) -> None:
        for chunk in self.parts.pop(ref, []):
            self.size -= len(chunk)
        blob = self.done.pop(ref, None)
        if blob is not None:
            self.size -= len(blob)


def split_large_images(event: dict[str, Any], ref_prefix: str, chunk: int = CHUNK_BYTES) -> Iterator[dict[str, Any]]:
    """Frames to send for `event`: large image `data` moved into preceding blob frames.

    `event` is never changed (a retained result is sent again on every `fetch`): the last frame is a
    copy whose large images name their blobs instead of holding the bytes. Frames are made one at a
    time, so a sender holds one chunk beyond the event, not a second copy of it."""
    key = "images" if isinstance(event.get("images"), list) else "image" if isinstance(event.get("image"), dict) else ""
    if not key:
        yield event
        return
    images = event["images"] if key == "images" else [event["image"]]
    out: list[Any] = []
    for i, img in enumerate(images):
        data = img.get("data") if isinstance(img, dict) else None
        if isinstance(data, bytes) and len(data) > chunk:
            ref = f"{ref_prefix}.{i}"
            yield from blob_frames(ref, data, chunk)
            img = {k: v for k, v in img.items() if k != "data"} | {"blob": ref}
        out.append(img)
    yield {**event, key: out if key == "images" else out[0]}


def resolve_blobs(event: dict[str, Any], blobs: BlobAssembler) -> dict[str, Any]:
    """Client side: put assembled blob bytes back into an event's images."""
    images = event.get("images") or ([event["image"]] if isinstance(event.get("image"), dict) else [])
    for img in images:
        ref = img.get("blob")
        if isinstance(ref, str) and ref in blobs.done:
            img["data"] = blobs.done[ref]
            blobs.drop(ref)
            img.pop("blob")
    return event


def hello(
    client: str,
    token: str | None = None,
    preview_formats: Sequence[str] | None = None,
    client_id: str | None = None,
) -> dict[str, Any]:
    """The first frame. `preview_formats`: the step-preview formats the client decodes, preferred first;
    `client_id`: a stable id of this installation, so jobs stay ours across reconnects."""
    msg: dict[str, Any] = {"type": "hello", "protocol": PROTOCOL_VERSION, "client": client}
    if token:
        msg["token"] = token
    if preview_formats:
        msg["preview_formats"] = list(preview_formats)
    if client_id:
        msg["client_id"] = client_id
    return msg


def preview_formats(msg: Mapping[str, Any], default: tuple[str, ...]) -> tuple[str, ...]:
    """`hello.preview_formats` checked: a list of up to 16 short strings (unknown names are allowed;
    the server skips those it cannot encode). Absent = `default`."""
    value = msg.get("preview_formats")
    if value is None:
        return default
    if not isinstance(value, list) or len(value) > 16 or not all(isinstance(v, str) and len(v) <= 32 for v in value):
        raise ProtocolError("bad_field", "hello.preview_formats: expected a list of up to 16 format names")
    return tuple(value)
