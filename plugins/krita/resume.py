"""Jobs that outlive a Krita session (plugins/common/unfinished.py): every job the plugin sends is kept in
Krita's settings (group `sdbridge`, key `unfinished_jobs`) until its result, error or cancellation came
back. Krita keeps the plugin's client id in the same place (`client_id`), so after Krita restarts the
server still counts those jobs as ours: once their document is open again the plugin attaches to them and
their results land in that document's history (the document must have been saved after the job was sent:
it is found by the id stored in it, document.doc_key)."""

from __future__ import annotations

from typing import Any

from krita import Krita  # type: ignore[import-not-found]

from . import document
from ._common import settings, unfinished

KEY = "unfinished_jobs"
Unfinished = unfinished.Unfinished


def load() -> list[Unfinished]:
    return unfinished.from_json(str(Krita.instance().readSetting(settings.GROUP, KEY, "")))


def _store(records: list[Unfinished]) -> None:
    Krita.instance().writeSetting(settings.GROUP, KEY, unfinished.to_json(records))


def remember(job_id: str, doc_key: str, request: Any, base: tuple[int, int]) -> None:
    _store(unfinished.added(load(), Unfinished.of(job_id, doc_key, request, base)))


def forget(job_id: str) -> None:
    records = load()
    if any(r.job == job_id for r in records):
        _store(unfinished.without(records, job_id))


def waiting(followed: set[str]) -> list[Unfinished]:
    """Every kept job not in `followed` whose document is open now."""
    open_keys = {document.doc_key(d) for d in Krita.instance().documents()}
    return [r for r in load() if r.job not in followed and r.doc in open_keys]
