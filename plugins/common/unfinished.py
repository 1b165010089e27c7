"""Jobs that outlive an editor session: what an editor keeps of a job it sent, so that after a restart it
can attach to the job again (the server keeps results for the same client id: settings.with_client_id)
and place the result in the document it was made for.

A record holds the job id, the document's id (an editor's own key), the canvas size when the job was sent
and the few request fields placing a result needs (`history.entries_from_result`: the kind, the prompt, an
outpaint's left/top extension); `request()` rebuilds a request with those. No images are kept: a job the
server lost cannot be sent again from a record, it is reported as gone. Records serialise to JSON so an
editor keeps them in its settings store.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .jobs import REQUEST_TYPES, JobRequest, OutpaintRequest, Sampling, SamplingRequest

LIMIT = 50  # the oldest records go first (a result past the server's retention is gone anyway)


@dataclass(frozen=True, slots=True)
class Unfinished:
    job: str
    doc: str
    kind: str
    base: tuple[int, int]
    prompt: str = ""
    origin: tuple[int, int] = (0, 0)  # outpaint: how far the canvas grew left and up
    created: float = field(default_factory=time.time)

    @classmethod
    def of(cls, job_id: str, doc: str, request: JobRequest, base: tuple[int, int]) -> Unfinished:
        origin = (request.left, request.top) if isinstance(request, OutpaintRequest) else (0, 0)
        return cls(job_id, doc, request.kind, (int(base[0]), int(base[1])), request.prompt, origin)

    def request(self) -> JobRequest:
        """A request of the job's kind with what placing its result needs (never sent)."""
        cls = REQUEST_TYPES[self.kind]
        if cls is OutpaintRequest:
            return OutpaintRequest(sampling=Sampling(prompt=self.prompt), left=self.origin[0], top=self.origin[1])
        if issubclass(cls, SamplingRequest):
            return cls(sampling=Sampling(prompt=self.prompt))
        return cls()


def to_json(records: list[Unfinished]) -> str:
    return json.dumps([asdict(r) for r in records])


def from_json(text: str) -> list[Unfinished]:
    """Records from `to_json`; anything unreadable (another version, a hand edit) is left out."""
    try:
        raw = json.loads(text) if text else []
    except ValueError:
        return []
    out = []
    for item in raw if isinstance(raw, list) else []:
        try:
            out.append(_record(item))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def _record(d: dict[str, Any]) -> Unfinished:
    if d["kind"] not in REQUEST_TYPES:
        raise ValueError(d["kind"])
    return Unfinished(
        job=str(d["job"]),
        doc=str(d["doc"]),
        kind=str(d["kind"]),
        base=(int(d["base"][0]), int(d["base"][1])),
        prompt=str(d.get("prompt", "")),
        origin=(int(d.get("origin", (0, 0))[0]), int(d.get("origin", (0, 0))[1])),
        created=float(d.get("created", 0.0)),
    )


def added(records: list[Unfinished], record: Unfinished, limit: int = LIMIT) -> list[Unfinished]:
    """`records` with `record` (replacing one with its job id), the newest `limit` kept."""
    return [*without(records, record.job), record][-limit:]


def without(records: list[Unfinished], job_id: str) -> list[Unfinished]:
    return [r for r in records if r.job != job_id]
