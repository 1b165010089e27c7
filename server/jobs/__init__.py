"""Job kinds by protocol name. A new kind registers itself here."""

from __future__ import annotations

from .base import JobKind
from .generate import Generate
from .inpaint import Inpaint

KINDS: dict[str, JobKind] = {k.kind: k for k in (Generate(), Inpaint())}
