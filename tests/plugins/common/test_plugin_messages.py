"""What the plugins say to the user: connection problems as advice, the right job kind, results."""

from __future__ import annotations

import pytest

from plugins.common import messages
from plugins.common.jobs import FaceRequest, GenerateRequest, InpaintRequest, WireImage

URL = "ws://127.0.0.1:9/"


@pytest.mark.parametrize(
    ("reason", "said"),
    [
        ("ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 9)",
         f"Server not reachable at {URL} — start it with `sdbridge serve`"),
        ("OSError: Multiple exceptions: [Errno 111] Connect call failed ('::1', 9, 0, 0), [Errno 111] …",
         f"Server not reachable at {URL} — start it with `sdbridge serve`"),
        ("gaierror: [Errno -2] Name or service not known", f"Server not reachable at {URL}: the host name is unknown"),
        ("auth: missing or wrong token", f"The server at {URL} refused the token — check Settings ▸ Token"),
        ("InvalidURI: http://x isn't a valid URI: scheme isn't ws or wss", f"'{URL}' is not a server address"),
        ("InvalidMessage: did not receive a valid HTTP response", f"Something answers at {URL}, but it is not"),
        ("TimeoutError", f"The server at {URL} did not answer in time"),
        ("connection closed", f"Lost the server at {URL} (connection closed)"),
    ],
)  # fmt: skip
def test_connection_problems_become_advice(reason: str, said: str) -> None:
    text = messages.connection_problem(URL, reason)
    assert text.startswith(said) and "Errno" not in text, text


def test_disconnected_says_when_it_retries_or_what_to_do() -> None:
    refused = "ConnectionRefusedError: [Errno 111] Connect call failed"
    assert messages.disconnected(URL, {"reason": refused, "retry_in": 4.0}).endswith("; retrying in 4 s")
    assert messages.disconnected(URL, {"reason": "auth: wrong", "fatal": True}).endswith(
        "(press Connect after fixing it)"
    )


def test_every_status_names_the_requests_kind() -> None:
    inpaint = InpaintRequest(batch=2)
    assert messages.submitted(inpaint, "online", URL) == "inpaint: sent"
    assert messages.submitted(inpaint, "connecting", URL) == f"inpaint: connecting to {URL}…"
    offline = messages.submitted(GenerateRequest(), "offline", URL)
    assert offline.startswith(f"generate: waiting for the server at {URL} (offline)")
    assert messages.queued("inpaint", 2) == "inpaint: queued, 2 jobs ahead"
    assert messages.queued("face", 0) == "face re-render: queued"
    assert messages.running("inpaint", 3, 20) == "inpaint: step 3/20"
    assert messages.planned("upscale", {"tiles": 4}) == "upscale: running, 4 tiles"
    assert messages.planned("inpaint", {"crop": [0, 0, 64, 64], "process_size": [512, 512]}) == (
        "inpaint: running at 512×512"
    )
    assert messages.planned("outpaint", {}) == "outpaint: running"
    result = {"params": {"seed": 1}}
    assert messages.finished(inpaint, result, 2) == "inpaint: 2 results in the history — Apply to keep"


def test_no_face_and_failures_in_words() -> None:
    none = {"params": {"messages": ["no faces found"]}}
    assert messages.finished(FaceRequest(), none, 0) == "No face found in the image"
    masked = FaceRequest(mask=WireImage.gray(b"\xff", 1, 1))
    assert messages.finished(masked, none, 0) == "No face found in the selection"
    assert messages.failed("inpaint", "not_found", "no job with id 'x'").startswith(
        "inpaint: the server no longer knows this job"
    )
    assert messages.failed("generate", "bad_field", "params.steps: 0 is below the minimum 1") == (
        "generate failed: params.steps: 0 is below the minimum 1"
    )
    assert messages.server_restarted({"resent": 2}) == "Server restarted, re-sending 2 jobs"
    assert messages.server_restarted({}) == "Server restarted, re-sending"
