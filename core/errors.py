"""Errors shared by every command of the suite (``modelops-ci``, ``modelops-gitops``,
``modelops-serve`` and the pipeline stages).

The tree::

    SuiteError                 base; shown as one line, no traceback; exit 2
    ├── ConfigError            a config file (params.yaml, ...) has a bad field
    ├── InputError             a bad input file or argument (corrupt ONNX, truncated CSV, ...)
    ├── ValidationError        a rendered manifest breaks a schema or a naming rule
    ├── ExternalError          a tool or service failed (git, dvc, GitHub, Prometheus)
    │   └── (retryable=True)   only errors marked retryable are retried
    └── GateFailed             a gate or parity check said no; exit 1

Exit codes: 0 ok; 1 a gate said no; 2 bad input, config or environment; 3 a bug (with
traceback); 130 interrupted. A rejected model is a *result*: commands that evaluate gates return
exit 1 through :class:`GateFailed` (or a plain return code) rather than crashing.

Messages are lowercase, quote the bad value and say what to do next.
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_GATE = 1
EXIT_BAD_INPUT = 2
EXIT_BUG = 3
EXIT_INTERRUPTED = 130


class SuiteError(Exception):
    """Base of every expected error. ``exit_code`` decides the process status."""

    exit_code: int = EXIT_BAD_INPUT
    retryable: bool = False

    def __init__(self, message: str, *, hint: str | None = None, retryable: bool | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(SuiteError):
    """A field of a config file is wrong. Names the file, the field path and the bad value."""

    def __init__(self, file: str | Path | None, path: str, value: object, problem: str,
                 *, hint: str | None = None):
        self.file = str(file) if file is not None else None
        self.path = path
        self.value = value
        self.problem = problem
        where = f"{self.file}: " if self.file else ""
        field = f"{path}: " if path else ""
        shown = _show(value)
        super().__init__(f"{where}{field}{problem} (got {shown})", hint=hint)


class InputError(SuiteError):
    """A bad input file or argument."""


class ValidationError(SuiteError):
    """Rendered output (a manifest, a report) breaks a schema or a rule."""


class ExternalError(SuiteError):
    """A tool or service failed. ``retryable`` says whether trying again can help."""


class GateFailed(SuiteError):
    """A gate or a parity check rejected the result."""

    exit_code = EXIT_GATE


_MISSING = object()


def _show(value: object) -> str:
    if value is _MISSING:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


MISSING = _MISSING
