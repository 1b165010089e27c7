"""What the plugins tell the user, in words an artist reads: one place for every status and error
text, shared by the Krita docker and the GIMP plug-in. Raw exception texts never reach the user
as the whole message; they are translated here (the raw reason stays in the log)."""

from __future__ import annotations

from typing import Any

from .jobs import JobRequest

# Job kinds as the user knows them (the request's kind, not the button: Generate with a selection inpaints).
KIND_NAMES = {
    "generate": "generate",
    "inpaint": "inpaint",
    "outpaint": "outpaint",
    "face": "face re-render",
    "restore": "face restore",
    "upscale": "upscale",
}

_REFUSED = ("Errno 111", "Connect call failed", "Connection refused", "ConnectionRefused", "Errno 61", "WinError 1225")
_NO_HOST = ("Name or service not known", "getaddrinfo failed", "nodename nor servname", "gaierror")
_NOT_WS = ("InvalidMessage", "InvalidStatus", "InvalidHandshake", "did not receive a valid HTTP")


def kind_name(kind: str) -> str:
    return KIND_NAMES.get(kind, kind)


def connection_problem(url: str, reason: str) -> str:
    """A disconnect reason (`Type: text` from the client) as advice."""
    if any(s in reason for s in _REFUSED):
        return f"Server not reachable at {url} — start it with `sdbridge serve`"
    if any(s in reason for s in _NO_HOST):
        return f"Server not reachable at {url}: the host name is unknown — check the server address"
    if reason.startswith("auth") or ": auth:" in reason:
        return f"The server at {url} refused the token — check Settings ▸ Token"
    if "protocol_version" in reason:
        return f"The server at {url} speaks another protocol version — update the plugin or the server"
    if "InvalidURI" in reason or "isn't a valid URI" in reason:
        return f"'{url}' is not a server address; it looks like ws://127.0.0.1:8765/"
    if any(s in reason for s in _NOT_WS):
        return f"Something answers at {url}, but it is not an sdbridge server"
    if "Timeout" in reason or "timed out" in reason:
        return f"The server at {url} did not answer in time"
    return f"Lost the server at {url} ({reason})" if reason else f"Lost the server at {url}"


def disconnected(url: str, data: dict[str, Any]) -> str:
    text = connection_problem(url, str(data.get("reason") or ""))
    retry = data.get("retry_in")
    if data.get("fatal"):
        return text + " (press Connect after fixing it)"
    return f"{text}; retrying in {retry:.0f} s" if isinstance(retry, int | float) and retry >= 1 else text


def connected(welcome: dict[str, Any]) -> str:
    return f"Connected: {welcome.get('server', 'sdbridge')} on {welcome.get('device', '?')}"


def submitted(request: JobRequest, link: str, url: str) -> str:
    """`link`: "online", "connecting" (no answer yet either way) or "offline" (the last try failed)."""
    kind = kind_name(request.kind)
    if link == "online":
        return f"{kind}: sent"
    if link == "connecting":
        return f"{kind}: connecting to {url}…"
    return f"{kind}: waiting for the server at {url} (offline) — it is sent as soon as the server is reachable"


def queued(kind: str, position: Any) -> str:
    if isinstance(position, int) and position > 0:
        return f"{kind_name(kind)}: queued, {position} job{'s' if position != 1 else ''} ahead"
    return f"{kind_name(kind)}: queued"


def running(kind: str, step: int = 0, total: int = 0) -> str:
    return f"{kind_name(kind)}: step {step}/{total}" if total else f"{kind_name(kind)}: running"


def planned(kind: str, plan: dict[str, Any]) -> str:
    """The `plan` event: tiles for tiled jobs, the processed area for masked ones."""
    tiles = plan.get("tiles")
    if isinstance(tiles, int):
        return f"{kind_name(kind)}: running, {tiles} tile{'s' if tiles != 1 else ''}"
    size = plan.get("process_size")
    if isinstance(size, list | tuple) and len(size) == 2:
        return f"{kind_name(kind)}: running at {size[0]}×{size[1]}"
    return running(kind)


def no_faces(had_selection: bool) -> str:
    return "No face found in the selection" if had_selection else "No face found in the image"


def finished(request: JobRequest, result: dict[str, Any], added: int) -> str:
    """The result line: how many entries landed in the history, or the server's notes when none did."""
    kind = kind_name(request.kind)
    notes = [str(m) for m in (result.get("params") or {}).get("messages") or []]
    if added == 0:
        if request.kind in ("face", "restore") and any("face" in n for n in notes):
            return no_faces(getattr(request, "mask", None) is not None)
        return f"{kind}: nothing came back" + (f" ({'; '.join(notes)})" if notes else "")
    what = "1 result" if added == 1 else f"{added} results"
    return f"{kind}: {what} in the history — Apply to keep" + (f" ({'; '.join(notes)})" if notes else "")


def failed(kind: str, code: str, message: str) -> str:
    if code == "not_found":
        return f"{kind_name(kind)}: the server no longer knows this job (it restarted?) — run it again"
    if code == "out_of_memory":
        return f"{kind_name(kind)}: the GPU ran out of memory — try a smaller size or batch"
    return f"{kind_name(kind)} failed: {message}" if message else f"{kind_name(kind)} failed ({code})"


def server_restarted(data: dict[str, Any]) -> str:
    # The count's key is the client's business: take the number it carries.
    n = next((v for v in data.values() if isinstance(v, int) and not isinstance(v, bool)), None)
    return (
        f"Server restarted, re-sending {n} job{'s' if n != 1 else ''}"
        if isinstance(n, int) and n
        else ("Server restarted, re-sending")
    )


def preview_undecodable(fmt: str) -> str:
    return f"Step previews cannot be shown: this editor cannot decode {fmt} images (results are not affected)"
