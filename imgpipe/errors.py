"""Errors a stage reports as one clear line instead of a traceback."""


class PipelineError(Exception):
    """A user-facing failure: the message names the file or source and the problem."""


class SourceError(PipelineError):
    """The download source cannot be fetched, verified or unpacked."""


class UnsafeArchiveError(SourceError):
    """An archive holds a member that would escape the destination or is not a plain file."""


class ChecksumMismatch(SourceError):
    """The fetched bytes do not match the expected sha256."""


class LabelError(PipelineError):
    """A label file is malformed or violates a policy set to ``fail``."""


class ValidationFailed(PipelineError):
    """The dataset failed validation (for example, too much was quarantined)."""
