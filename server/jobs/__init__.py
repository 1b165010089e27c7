"""Job kinds by protocol name. A new kind registers itself here."""

from __future__ import annotations

from .base import JobKind
from .echo import Echo
from .face import FaceRerender
from .generate import Generate
from .inpaint import Inpaint
from .outpaint import Outpaint
from .preprocess import PreprocessJob
from .restore import Restore
from .upscale import Upscale

_ALL: tuple[JobKind, ...] = (Generate(), Inpaint(), Outpaint(), FaceRerender(), Restore(), Upscale(), Echo())
KINDS: dict[str, JobKind] = {k.kind: k for k in (*_ALL, PreprocessJob())}
