"""What the model layer, the prompt encoder and the pipelines raise, without knowing the wire protocol.

`Cancelled` ends a job quietly (a `cancelled` event). A `JobError` carries the `code` and message of
the `error` event the client gets: the job layer (`app._submit` at parse time, `queue` at run time)
turns it into a `protocol.ProtocolError` / error event with this job's id. `ProtocolError` itself
stays in `protocol.py` (the editors vendor that file) for problems with the frames and fields a
client sent.
"""

from __future__ import annotations

from typing import ClassVar


class Cancelled(Exception):
    """Raised between steps once the job's cancel flag is seen; nothing is returned."""


class JobError(Exception):
    """A failure the client should hear about by its `code`; the message names the problem."""

    code: ClassVar[str] = "job_failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadName(JobError):
    """A model/asset name that looks like a path out of the models folder."""

    code = "bad_name"


class UnknownModel(JobError):
    """A name that is not among the discovered models / assets (or an unknown embedding reference)."""

    code = "unknown_model"


class MissingModel(JobError):
    """A model the job needs is not installed; the message says which file to put where."""

    code = "missing_model"


class ModelLoadError(JobError):
    """A discovered file could not be loaded (corrupt, wrong kind, refused pickle, out of memory…)."""

    code = "model_load"


class BadPrompt(JobError):
    """Prompt syntax the encoder cannot use (e.g. a LoRA weight that is not a number)."""

    code = "bad_field"
