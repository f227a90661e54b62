"""The model's metrics files at two revisions, and the names gates and headlines give them.

A repository names its metrics files in ``modelops.model.metrics`` (any number, any path, git-
or DVC-tracked); ``[]`` means every metrics file ``dvc.yaml`` declares. They are read at the
base and the head of a change by DVC itself (``repo.metrics.show`` over both revisions, in
:mod:`modelops.ci.compare`): a DVC-tracked file at a git revision comes from the DVC cache, and
when the cache lacks it, :func:`read_at_revision` streams it with ``dvc.api.read(rev=...)``
(from the remote), so a repository whose metrics live only in DVC still has a baseline.

A metric is named by a dotted path into a file (``accuracy``, ``per_class.3.recall``, or a flat
key that itself contains dots), optionally qualified by the file: ``eval/metrics.json:auc``. An
unqualified name is looked up in every metrics file; a name found in two files is a
:class:`~modelops.errors.ConfigError` naming both (qualify it), so a gate never judges the
wrong number silently.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from modelops.errors import ConfigError

# what DVC reads as a metrics file (dvc/utils/serialize: json, yaml, toml)
METRICS_SUFFIXES = (".json", ".yaml", ".yml", ".toml")


def normalise(path: str) -> str:
    """A repository-relative path as DVC prints it (posix separators, no ``./``)."""
    return PurePosixPath(os.path.normpath(path).replace(os.sep, "/")).as_posix()


@dataclass
class MetricsAt:
    """The metrics files at one revision: parsed content, or why a file could not be read."""

    rev: str
    files: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)  # there, but not parseable
    reproduced: list[str] = field(default_factory=list)  # read from the reproduction instead
    # files of a commit nothing here holds but the workspace: the reproduction's stand in when
    # it wrote them (``reproduced``), so they must be read after it
    needs_workspace: list[str] = field(default_factory=list)

    def data(self, file: str) -> Mapping[str, Any] | None:
        value = self.files.get(file)
        return value if isinstance(value, Mapping) else None

    @property
    def empty(self) -> bool:
        return not any(isinstance(v, Mapping) and v for v in self.files.values())


@dataclass(frozen=True)
class MetricRef:
    """A metric name from ``params.yaml`` resolved to the file that holds it."""

    name: str           # as written (the gate's or headline's key)
    path: str           # the dotted path inside the file
    file: str | None    # None: in no metrics file at the head (nor at the base)

    @property
    def label(self) -> str:
        return self.name


def lookup(metrics: Mapping[str, Any] | None, path: str) -> Any:
    """``path`` in a metrics mapping: a flat (possibly dotted) key, or a path into nested
    mappings (``per_class.3.f1``). ``None`` when absent."""
    if not isinstance(metrics, Mapping) or not path:
        return None
    if path in metrics:
        return metrics[path]
    node: Any = metrics
    parts = path.split(".")
    i = 0
    while i < len(parts):
        if not isinstance(node, Mapping):
            return None
        # the longest dotted prefix that is a key (flat keys may contain dots)
        for j in range(len(parts), i, -1):
            key = ".".join(parts[i:j])
            if key in node:
                node, i = node[key], j
                break
        else:
            return None
    return node


def split_qualified(name: str, files: Sequence[str]) -> tuple[str | None, str]:
    """``("eval/metrics.json", "auc")`` for ``eval/metrics.json:auc``; ``(None, name)`` for an
    unqualified name. Raises ConfigError (without a file; the caller adds it) when the part
    before ``:`` looks like a file but is not one of ``files``."""
    if ":" not in name:
        return None, name
    head, _, rest = name.partition(":")
    candidate = normalise(head) if head else head
    if candidate in files:
        if not rest:
            raise ConfigError(None, "", name, "names a metrics file but no metric in it",
                              hint=f"write it as '{candidate}:<dotted.path>'")
        return candidate, rest
    if head.lower().endswith(METRICS_SUFFIXES) or "/" in head:
        raise ConfigError(None, "", name, f"{head!r} is not one of the metrics files "
                                          f"({', '.join(files) or 'none'})",
                          hint="list it in modelops.model.metrics, or declare it in dvc.yaml")
    return None, name


def resolve(name: str, files: Sequence[str], head: MetricsAt, base: MetricsAt | None = None,
            *, where: str, settings_file: str | Path | None = "params.yaml") -> MetricRef:
    """The file ``name`` lives in, looked up in the head's files (then the base's, for a metric
    the head lost). ``where`` is the field path for errors (``modelops.gates.<name>``)."""
    try:
        file, path = split_qualified(name, files)
    except ConfigError as exc:
        raise ConfigError(settings_file, where, name, exc.problem, hint=exc.hint) from None
    if file is not None:
        return MetricRef(name, path, file)
    for side in (head, base):
        if side is None:
            continue
        found = [f for f in files if lookup(side.data(f), path) is not None]
        if len(found) > 1:
            raise ConfigError(
                settings_file, where, name,
                f"is ambiguous: both {found[0]} and {found[1]} have it",
                hint=f"qualify it with its file, e.g. '{found[0]}:{path}'")
        if found:
            return MetricRef(name, path, found[0])
    return MetricRef(name, path, None)


def value_of(ref: MetricRef, at: MetricsAt | None) -> Any:
    if at is None or ref.file is None:
        return None
    return lookup(at.data(ref.file), ref.path)


def describe_missing(ref: MetricRef, at: MetricsAt, files: Sequence[str]) -> str:
    """Why ``ref`` has no value at ``at``, for a gate's reason."""
    if ref.file is not None and ref.file in at.errors:
        return f"{ref.file} could not be read ({at.errors[ref.file]})"
    if ref.file is not None:
        return f"missing in {ref.file}"
    return f"missing in the metrics files ({', '.join(files) or 'none'})"


def flat_names(data: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """Every leaf of a metrics mapping as ``(dotted.path, value)``."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flat_names(value, name + ".")
        else:
            yield name, value


def per_class(data: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    """The per-class slices of a metrics mapping (``per_class: {<class>: {<metric>: v}}``, the
    suite's convention), or ``{}`` when it has none."""
    slices = data.get("per_class") if isinstance(data, Mapping) else None
    if not isinstance(slices, Mapping):
        return {}
    return {str(k): v for k, v in slices.items() if isinstance(v, Mapping)}


# --------------------------------------------------------------------------- reading

def parse_metrics_text(text: str, path: str) -> Any:
    """Parse a metrics file as DVC does (by suffix), keeping what ``dvc metrics`` keeps."""
    from dvc.repo.metrics.show import _extract_metrics
    from dvc.utils.serialize import PARSERS

    suffix = PurePosixPath(path).suffix.lower()
    return _extract_metrics(PARSERS[suffix](text, path), path) or {}


def read_at_revision(root: Path, path: str, rev: str) -> Any:
    """A DVC-tracked metrics file at git revision ``rev``, through ``dvc.api.read``: from the
    DVC cache, else streamed from the remote. Raises what DVC raises when it cannot."""
    import dvc.api

    text = dvc.api.read(path, repo=str(root), rev=rev, mode="r", encoding="utf-8")
    return parse_metrics_text(text, path)


def error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]
