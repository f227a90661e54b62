"""``reports/report.json``: what the pull-request steps found, in one versioned document.

Shape (schema: ``ci/schemas/report.schema.json``, ``schema_version`` 1)::

    {"schema_version": 1, "generated_at": "...", "model": {"name", "team"},
     "revisions": {"base": {"rev", "sha"}, "head": {"rev", "sha"}},
     "context": {"pr_number", "pr_title", "head_ref", "base_ref", "repository", "run_url"},
     "verdict": "pass" | "fail",                       # fail when any section failed
     "sections": {
        "evaluate": {"status", "summary", "headline", "metrics", "metrics_files", "gates",
                     "per_class", "params", "data", "stages", "stale", "notes"},
        "card":     {"status", "path", "changed", "base_found", "diff"} | skipped (reason),
        "compile":  {"status": "skipped", "reason": "..."},   # filled by the compile step
        "deploy":   {"status": "skipped", "reason": "..."},   # only when deploy does not apply
        ...}}                                            # any later section: status (+ reason)

Everything the report reads about the repository comes from its self-description
(``modelops.model``, ``modelops.steps``): the metrics files, the headline metrics and their
direction, the plot files, the card, the ONNX artifact. A step that does not apply (no ONNX
artifact, ``steps.card: false`` ...) is a ``skipped`` section with the reason, never a failure.

Every section has ``status`` pass | fail | skipped, and a ``reason`` when skipped. Later steps
add their section with :func:`merge_section`, which validates and writes atomically.
"""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import io
import json
import math
import os
from pathlib import Path
from typing import Any

from modelops.ci.reportfile import (
    DEFAULT_REPORT,
    SCHEMA_VERSION,
    load_report,
    ordered,
    overall_verdict,
    validate_report,
    write_report,
)
from modelops.compute import compute_section, read_compute
from modelops.errors import InputError, SuiteError, ValidationError
from modelops.fsutil import atomic_write_text, sha256_file, write_json
from modelops.git import git_text
from modelops.settings import Settings, load_settings, parse_settings
from modelops.settings.model import step_skipped
from modelops.yamlio import load_yaml

COMPILE_PENDING = "the compile step has not run for this revision (modelops-ci compile adds it)"
DEFAULT_COMPILE_SECTION = Path("reports") / "compile.json"
DEFAULT_TIMING_SECTION = Path("reports") / "timing.json"
MAX_CONFUSION_CLASSES = 30


def section_files(settings: Settings) -> dict[str, str]:
    """Sections that other steps write to a file of their own (possibly a DVC output), picked
    up by the report when present: the compile step's ``modelops.compile.section_file`` and the
    timing step's ``reports/timing.json``."""
    return {"compile": settings.compile.section_file or DEFAULT_COMPILE_SECTION.as_posix(),
            "timing": DEFAULT_TIMING_SECTION.as_posix()}


# --------------------------------------------------------------------------- building

def github_context(env: dict[str, str] | None = None,
                   plots_dir: str | Path | None = None) -> dict[str, Any]:
    """PR number, title and refs from ``GITHUB_EVENT_PATH``; the run URL from ``GITHUB_*``.

    ``plots_artifact`` names the workflow artifact with the PNG plots when this runs in Actions
    and ``plots_dir`` holds plot images (default ``reports/plots``, where ``modelops-ci plots``
    writes; ``''`` = no plots are attached).
    """
    env = dict(os.environ) if env is None else env
    ctx: dict[str, Any] = {"pr_number": None, "pr_title": None,
                           "head_ref": env.get("GITHUB_HEAD_REF") or None,
                           "base_ref": env.get("GITHUB_BASE_REF") or None,
                           "repository": env.get("GITHUB_REPOSITORY") or None, "run_url": None,
                           "plots_artifact": None}
    server, repo, run = (env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY"),
                         env.get("GITHUB_RUN_ID"))
    if server and repo and run:
        ctx["run_url"] = f"{server}/{repo}/actions/runs/{run}"
    if run:  # in Actions the evaluate job uploads the plots folder as an artifact
        from modelops.ci.plots import DEFAULT_OUT, artifact_name

        ctx["plots_artifact"] = artifact_name(DEFAULT_OUT if plots_dir is None else plots_dir)
    event_path = env.get("GITHUB_EVENT_PATH")
    if event_path and Path(event_path).is_file():
        try:
            event = json.loads(Path(event_path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            event = {}
        pr = event.get("pull_request") if isinstance(event, dict) else None
        if isinstance(pr, dict):
            ctx["pr_number"] = pr.get("number") if isinstance(pr.get("number"), int) else None
            ctx["pr_title"] = pr.get("title") if isinstance(pr.get("title"), str) else None
            ctx["head_ref"] = (pr.get("head") or {}).get("ref") or ctx["head_ref"]
            ctx["base_ref"] = (pr.get("base") or {}).get("ref") or ctx["base_ref"]
    return ctx


def default_base(env: dict[str, str] | None = None) -> str:
    """``origin/$GITHUB_BASE_REF`` on a pull request, else ``HEAD`` (compare the workspace)."""
    env = dict(os.environ) if env is None else env
    ref = env.get("GITHUB_BASE_REF")
    return f"origin/{ref}" if ref else "HEAD"


def per_class_rows(metric_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``per_class.<c>.<m>`` metric rows grouped by class: ``{"class", "support", m: {...}}``.

    Only the first metrics file with per-class slices counts (rows of several files would
    mix); ``[]`` when no metrics file has any."""
    files = [row.get("file") for row in metric_rows
             if str(row["name"]).startswith("per_class.")]
    if not files:
        return []
    classes: dict[str, dict[str, Any]] = {}
    for row in metric_rows:
        parts = str(row["name"]).split(".")
        if len(parts) != 3 or parts[0] != "per_class" or row.get("file") != files[0]:
            continue
        _, cls, metric = parts
        entry = classes.setdefault(cls, {"class": cls})
        if metric == "support":
            entry["support"] = row["head"] if row["head"] is not None else row["base"]
            entry["support_base"], entry["support_head"] = row["base"], row["head"]
        else:
            entry[metric] = {"base": row["base"], "head": row["head"], "delta": row["delta"]}

    def key(c: str) -> tuple[int, Any]:
        return (0, int(c)) if c.isdigit() else (1, c)

    return [classes[c] for c in sorted(classes, key=key)]


def confusion(text: str | None) -> tuple[list[str], list[list[int]]] | None:
    """A confusion matrix from ``actual,predicted`` CSV rows (DVC's confusion plot data)."""

    from modelops.ci.plots import Plot, confusion_counts

    if not text:
        return None
    rows = list(csv.DictReader(io.StringIO(text)))
    plot = Plot("confusion.csv", {"template": "confusion", "x": "actual", "y": "predicted"},
                rows)
    try:
        return confusion_counts(plot)
    except InputError:
        return None


def confusion_section(plots: dict[str, list[Any]], base_rev: str,
                      head_rev: str) -> dict[str, Any] | None:
    """The first confusion plot (``template: confusion`` in dvc.yaml) at head and base."""
    from modelops.ci.plots import CONFUSION_TEMPLATES, confusion_counts

    def matrix(rev: str, path: str) -> tuple[list[str], list[list[int]]] | None:
        plot = next((p for p in plots.get(rev, []) if p.path == path), None)
        if plot is None or plot.rows is None:
            return None
        try:
            return confusion_counts(plot)
        except InputError:
            return None

    for plot in plots.get(head_rev, []):
        if plot.template not in CONFUSION_TEMPLATES:
            continue
        head_cm = matrix(head_rev, plot.path)
        if head_cm is None or len(head_cm[0]) > MAX_CONFUSION_CLASSES:
            continue
        labels, counts = head_cm
        base_cm = matrix(base_rev, plot.path)
        return {"file": plot.path, "classes": labels, "head": counts,
                "base": base_cm[1] if base_cm is not None and base_cm[0] == labels else None}
    return None


def headline_rows(settings: Settings, files: list[str], head: Any, base: Any
                  ) -> list[dict[str, Any]]:
    """The headline metrics (``modelops.model.headline``) at head and base, with the delta and
    whether the change is ``better``, ``worse`` or ``unchanged`` for the metric's direction."""
    from modelops.ci.compare import _delta
    from modelops.ci.metrics import resolve, value_of

    rows = []
    for name, direction in settings.model.headline.items():
        ref = resolve(name, files, head, base, where=f"modelops.model.headline.{name}",
                      settings_file=settings.file)
        h, b = value_of(ref, head), value_of(ref, base)
        h = h if isinstance(h, (int, float)) and not isinstance(h, bool) else None
        b = b if isinstance(b, (int, float)) and not isinstance(b, bool) else None
        delta = _delta(b, h)
        if h is None:
            change = "missing"
        elif b is None:
            change = "new"
        elif abs(delta or 0.0) < 1e-12:
            change = "unchanged"
        else:
            up = (delta or 0.0) > 0
            change = "better" if up == (direction == "higher") else "worse"
        rows.append({"name": name, "file": ref.file, "direction": direction, "base": b,
                     "head": h, "delta": delta, "change": change})
    return rows


def section_from_file(root: Path, name: str, head: str | None,
                      settings: Settings | None = None) -> dict[str, Any] | None:
    """The section another step wrote to its file (:func:`section_files`), if present, valid
    and made for the artifact in the workspace."""
    from modelops.ci.compare import read_json_at

    if settings is None:
        settings = load_settings(root / "params.yaml")
    from modelops.ci.compare import _in_git

    path = section_files(settings).get(name)
    if path is None:
        return None
    # a file the head commit holds (a DVC stage's output) is read from the commit; one a CI
    # step wrote in this job (reports/) from the workspace, checked against its artifact
    committed = head is not None and _in_git(root, head, path)
    try:
        section = read_json_at(root, head if committed else None, path)
    except SuiteError:
        return None
    if not isinstance(section, dict):
        return None
    model = section.get("model")
    if not committed and isinstance(model, dict) and isinstance(model.get("sha256"), str):
        onnx = root / str(model.get("path") or settings.model.artifact.path)
        if onnx.is_file() and sha256_file(onnx) != model["sha256"]:
            return {"status": "skipped",
                    "reason": f"{path} was made for another {onnx.name} (sha256 "
                              f"{model['sha256'][:12]}); rerun dvc repro"}
    probe = {"schema_version": SCHEMA_VERSION, "model": {"name": "x"},
             "revisions": {"base": {"rev": "x", "sha": None}, "head": {"rev": "x", "sha": None}},
             "verdict": "pass", "sections": {"evaluate": {"status": "pass"}, name: section}}
    try:
        validate_report(probe)
    except ValidationError:
        return None
    return section


def card_from_stage(root: Path, settings: Settings, stale: list[str] | None,
                    params_file: str) -> str | None:
    """The card the card stage (``modelops.model.card.stage``) wrote, when ``dvc status``
    found every stage up to date in the workspace (``stale`` is its list, empty). The stage
    runs :func:`generate_card` on exactly the inputs it declares, so the file is what
    generating the card again would give, validated the same way, without importing
    huggingface_hub and rendering again (0.3 s). ``None`` when that cannot be relied on: a stage
    is stale (say an edited card or a changed input), there is no card stage, the workspace was
    not checked, or another params file is asked for."""
    from modelops.ci.card import card_inputs, card_path

    model = settings.model
    if stale is None or stale or Path(params_file) != Path("params.yaml") or \
            card_inputs(root, model.card.stage) is None:
        return None
    path = card_path(model, root)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def card_section(root: Path, base_sha: str, params_file: str, *,
                 settings: Settings | None = None, stale: list[str] | None = None,
                 metrics: Any = None, files: list[str] | None = None,
                 head: str | None = None) -> dict[str, Any]:
    """The card of the change and its diff with the base revision's card; ``skipped`` with the
    reason when ``modelops.steps.card`` is false.

    ``stale`` (the workspace's ``dvc status``, when the head is the workspace) lets an up-to-date
    card stage's file stand in for generating the card again, see :func:`card_from_stage`;
    with a ``head`` commit and a card stage, the card is the one that commit holds.
    ``metrics`` and ``files`` are the head's metrics already read by the comparison.
    """
    from modelops.ci.card import card_path, generate_card
    from modelops.ci.compare import read_at

    root = Path(root)
    if settings is None:
        settings = load_settings(root / params_file)
    skipped = step_skipped(settings.model, settings.steps, "card")
    if skipped:
        return {"status": "skipped", "reason": skipped}
    from modelops.ci.card import card_inputs

    text = None
    if head is not None and card_inputs(root, settings.model.card.stage) is not None:
        # the card stage's output as the head commit holds it: what the pull request commits
        # (the reproduction section says when that is stale)
        text = read_at(root, head, card_path(settings.model, ".").as_posix())
    if text is None:
        text = card_from_stage(root, settings, stale, params_file)
    if text is None:
        try:
            _, text = generate_card(root, params_file, metrics=metrics, files=files)
        except SuiteError as exc:
            return {"status": "fail", "reason": str(exc).splitlines()[0], "changed": False,
                    "base_found": False, "diff": ""}
    rel = card_path(settings.model, ".").as_posix()
    base_text = read_at(root, base_sha, rel)
    diff = "".join(difflib.unified_diff(
        (base_text or "").splitlines(keepends=True), text.splitlines(keepends=True),
        fromfile=f"a/{rel}", tofile=f"b/{rel}", n=2))
    return {"status": "pass", "path": rel, "changed": bool(diff), "base_found": base_text
            is not None, "diff": diff}


def gates_at(root: Path, rev: str, params_file: str) -> tuple[dict[str, Any] | None, str]:
    """``modelops.gates`` of ``params_file`` at git revision ``rev`` (``None`` and why, when
    that revision has no readable, valid suite section: the first pull request that adopts the
    suite, or a base whose settings are broken)."""
    from modelops.ci.compare import read_at

    text = read_at(root, rev, params_file)
    if text is None:
        return None, f"{params_file} is not in the base revision"
    try:
        return dict(parse_settings(load_yaml(text, f"{params_file}@{rev[:12]}"),
                                   f"{params_file} at {rev[:12]}").gates), ""
    except SuiteError as exc:
        return None, str(exc).splitlines()[0]


def reproduction_section(problems: list[Any], reproduced: list[str]) -> dict[str, Any]:
    """What DVC proves about the head commit (:func:`modelops.ci.revisions.committed_problems`),
    and which tracked files this runner's reproduction changed."""
    if problems:
        files = list(dict.fromkeys(p.file for p in problems))
        return {"status": "fail",
                "summary": "committed outputs differ from a reproduction: run `dvc repro` and "
                           "commit (" + ", ".join(files) + ")",
                "files": files,
                "problems": [{"file": p.file, "stage": p.stage, "why": p.why} for p in problems],
                "reproduced_changes": reproduced}
    summary = "the committed outputs are the ones dvc.lock records for the committed inputs"
    if reproduced:
        summary += ("; this runner's reproduction differs in " + ", ".join(reproduced)
                    + " (not bit-for-bit reproducible across machines; not stale)")
    return {"status": "pass", "summary": summary, "files": [], "problems": [],
            "reproduced_changes": reproduced}


def reproduced_changes(root: Path, head_sha: str | None) -> list[str]:
    """Tracked files the workspace changed against ``head_sha``, when the workspace is a
    reproduction of that commit (HEAD); ``[]`` otherwise."""

    if not head_sha or (git_text(["rev-parse", "HEAD"], cwd=root) or "").strip() != head_sha:
        return []
    out = git_text(["status", "--porcelain", "--untracked-files=no", "-z"], cwd=root) or ""
    return sorted({entry[3:] for entry in out.split("\0") if len(entry) > 3})


def _rows_of(plot: Any) -> int | None:
    return len(plot.rows) if plot is not None and isinstance(plot.rows, list) else None


def evaluation_set_note(settings: Settings, base_lock: dict[str, Any],
                        head_lock: dict[str, Any], plots: dict[str, list[Any]], base_key: str,
                        head_key: str, per_class: list[dict[str, Any]]) -> str | None:
    """A note when the base and the head were evaluated on different data: the test data's
    hash in the two dvc.lock files differs, or the evaluation has another number of rows (the
    confusion plot's rows, else the per-class supports)."""
    from modelops.ci.plots import CONFUSION_TEMPLATES

    path = settings.model.test_data

    def md5(lock: dict[str, Any]) -> str | None:
        for entry in lock.values():
            for item in [*((entry or {}).get("outs") or []), *((entry or {}).get("deps") or [])]:
                if isinstance(item, dict) and item.get("path") == path and item.get("md5"):
                    return str(item["md5"])
        return None

    rows: dict[str, int | None] = {}
    for key in (base_key, head_key):
        cm = next((p for p in plots.get(key, []) if p.template in CONFUSION_TEMPLATES), None)
        rows[key] = _rows_of(cm)
    if rows[base_key] is None or rows[head_key] is None:
        sides = []
        for side in ("base", "head"):
            supports = [c.get(f"support_{side}") for c in per_class]
            sides.append(sum(supports) if supports and all(
                isinstance(v, int) for v in supports) else None)
        rows = {base_key: sides[0], head_key: sides[1]}
    old, new = md5(base_lock) if path else None, md5(head_lock) if path else None
    hashed = bool(path and old and new and old != new)
    counted = rows[base_key] is not None and rows[head_key] is not None \
        and rows[base_key] != rows[head_key]
    if not hashed and not counted:
        return None
    what = f"{path} changed" if hashed else "the evaluation has another number of rows"
    count = f" ({rows[base_key]} → {rows[head_key]} rows)" \
        if rows[base_key] is not None and rows[head_key] is not None else ""
    return (f"the evaluation set differs between the revisions: {what}{count}; the metric "
            "deltas compare results on different data")


PLOT_POINTS = 24


def _sample(values: list[Any], n: int = PLOT_POINTS) -> list[Any]:
    if len(values) <= n:
        return list(values)
    step = (len(values) - 1) / (n - 1)
    return [values[round(i * step)] for i in range(n)]


def plot_summaries(plots: dict[str, list[Any]], base_key: str, head_key: str
                   ) -> list[dict[str, Any]]:
    """Each plot file at base and head, small enough for the comment: series (at most
    :data:`PLOT_POINTS` points each) or per-label values; ``changed`` when the rows differ."""
    from modelops.ci.plots import CONFUSION_TEMPLATES, series

    base = {p.path: p for p in plots.get(base_key, [])}
    out = []
    for plot in plots.get(head_key, []):
        old = base.get(plot.path)
        entry: dict[str, Any] = {"file": plot.path, "title": plot.props.get("title"),
                                 "template": plot.template,
                                 "changed": old is None or old.rows != plot.rows}
        if plot.template in CONFUSION_TEMPLATES or plot.is_image:
            entry["kind"] = "confusion" if not plot.is_image else "image"
            out.append(entry)
            continue
        try:
            x_name, xs, values = series(plot)
            bx, bvals = (None, {}) if old is None or old.rows is None else series(old)[1:]
        except InputError as exc:
            entry.update(kind="error", error=exc.message)
            out.append(entry)
            continue
        numeric = all(isinstance(v, (int, float)) or _is_float(v) for v in xs)
        entry["x"] = x_name
        if numeric and not plot.template.startswith("bar"):
            entry["kind"] = "series"
            entry["series"] = {name: {"head": _sample(vals),
                                      "base": _sample(bvals.get(name, [])) if bvals else None}
                               for name, vals in values.items()}
            entry["points"] = {"head": len(xs), "base": len(bx) if bx is not None else None}
            # the x of each sampled point, so the comment draws base and head on one axis
            # only where they share it
            entry["x_values"] = {"head": _sample([_x_number(v) for v in xs]),
                                 "base": _sample([_x_number(v) for v in bx])
                                 if bvals and bx is not None else None}
        else:
            entry["kind"] = "bars"
            labels = [str(v) for v in xs]
            old_at = {str(lbl): i for i, lbl in enumerate(bx or [])}
            entry["labels"] = labels
            entry["values"] = {name: {"head": vals,
                                      "base": [bvals[name][old_at[lbl]] if bvals and
                                               lbl in old_at and name in bvals else None
                                               for lbl in labels]}
                               for name, vals in values.items()}
        out.append(entry)
    return out


def _x_number(v: Any) -> float | int | None:
    """An x value as a number (``"3"`` -> 3), ``None`` when it is not a finite one."""
    if not _is_float(v) or isinstance(v, bool):
        return None
    number = float(v)
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() and abs(number) < 2 ** 53 else number


def _is_float(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def compute_summary(section: dict[str, Any]) -> str:
    """The section table's line for the compute section."""
    cur = (section.get("prices") or {}).get("currency", "")
    total = (section.get("total") or {}).get("cost")
    this, pr = section.get("this_change"), section.get("pull_request")
    parts = []
    if pr:
        parts.append(f"this job: {pr.get('runs', 0)} stage run(s), about {pr['cost']:.4f} {cur}")
    if this and this.get("cost"):
        parts.append(f"stages this change reran: about {this['cost']:.4f} {cur}")
    elif section.get("stages"):
        parts.append("no stage record changed")
    if isinstance(total, (int, float)):
        parts.append(f"whole pipeline as recorded: about {total:.4f} {cur}")
    return "; ".join(parts) + " (estimates)" if parts else "estimates"


def compare_for_report(root: str | Path = ".", base: str | None = None,
                       head: str | None = None, *, params_file: str = "params.yaml",
                       fetch: bool = True, merge_base: bool = False) -> tuple[Any, Any]:
    """The comparison :func:`build_report` reports on, and what DVC read besides the metrics:
    ``(Comparison, Changes)`` of ``head`` against ``base``, reading the model's metrics and
    plot files (``modelops.model``) at both revisions."""
    from modelops.ci.compare import Changes, compare, dvc_queries

    root = Path(root)
    model = load_settings(root / params_file).model
    changes = Changes()
    with dvc_queries(root) as dvc:
        comparison = compare(root, base or default_base(), head, fetch=fetch,
                             metrics_files=list(model.metrics) or None, dvc=dvc,
                             plots=list(model.plots) or None, with_plots=True, changes=changes,
                             merge_base=merge_base)
    return comparison, changes


def build_report(root: str | Path = ".", base: str | None = None, head: str | None = None, *,
                 params_file: str = "params.yaml", fetch: bool = True,
                 context: dict[str, Any] | None = None,
                 previous: dict[str, Any] | None = None,
                 plots_dir: str | Path | None = None, merge_base: bool = False,
                 gates_from: str | None = None, changes: Any = None,
                 compared: tuple[Any, Any] | None = None) -> dict[str, Any]:
    """Compare, gate and card: the report for ``head`` (``None``: workspace) against ``base``.

    Everything is read from the two revisions (with a head commit, nothing of the workspace
    counts but the reproduction's changes, which the ``reproduction`` section lists).
    ``merge_base`` compares with the merge base of ``base`` and the head (what the pull request
    itself changed); the gates are those of ``gates_from`` (default: ``base``, the base
    branch's tip), never the head's: a change that moves its gates is judged by the base's, and
    ``evaluate.gate_changes`` says what the verdict would be under its own.

    Sections of ``previous`` (an earlier report for the same head commit) other than the ones
    built here are kept, so running the report after the compile step loses nothing.
    ``plots_dir`` is where the PNG plots were written (for the artifact's name in Actions);
    ``changes`` (a :class:`modelops.ci.compare.Changes`) receives what DVC read besides the
    metrics (both revisions' plots, for drawing them).
    ``compared`` is :func:`compare_for_report`'s answer for the same arguments, when
    the caller already has it.
    """
    from modelops.ci.compare import WORKSPACE, Changes
    from modelops.ci.gates import (
        check_gate_names,
        evaluate_gates,
        gate_changes,
        resolve_gates,
        verdict,
    )

    root = Path(root)
    settings = load_settings(root / params_file)
    model = settings.model
    base = base or default_base()
    changes = changes if changes is not None else Changes()
    if compared is None:
        compared = compare_for_report(root, base, head, params_file=params_file, fetch=fetch,
                                      merge_base=merge_base)
    comparison = compared[0]
    for name in ("plots", "problems", "base_lock", "head_lock"):
        setattr(changes, name, getattr(compared[1], name))
    head_key = comparison.head_sha if head else WORKSPACE
    plots = changes.plots
    files = comparison.metrics_files
    head_at, base_at = comparison.head_metrics, comparison.base_metrics
    # the gates: the base branch's; a typo in the change's own is a config error
    gates_rev = comparison.base_tip_sha or comparison.base_sha
    if gates_from:
        from modelops.ci.compare import resolve_revision

        gates_rev = resolve_revision(root, gates_from, fetch=fetch)
    check_gate_names(settings.gates, files, head_at, base_at, settings_file=settings.file)
    base_gates, why_not = gates_at(root, gates_rev, params_file)
    if base_gates is not None:
        try:
            resolve_gates(base_gates, files, head_at, base_at, settings_file=settings.file)
        except SuiteError as exc:
            base_gates, why_not = None, str(exc).splitlines()[0]
    judged_by = base_gates if base_gates is not None else dict(settings.gates)
    gates = evaluate_gates(judged_by, head_at, base_at, files=files,
                           settings_file=settings.file)
    gate_dicts = [g.to_dict() for g in gates]
    headline = headline_rows(settings, files, head_at, base_at)
    per_class = per_class_rows(comparison.metrics)
    notes = list(comparison.notes)
    gates_info: dict[str, Any] = {"from": gates_rev, "own": base_gates is None}
    if base_gates is None:
        notes.insert(0, f"the base has no gates this report can use ({why_not}): the change is "
                        "judged by its own modelops.gates")
    else:
        moved = gate_changes(base_gates, dict(settings.gates))
        if moved:
            under_own = evaluate_gates(settings.gates, head_at, base_at, files=files,
                                       settings_file=settings.file)
            gates_info["changes"] = moved
            gates_info["verdict_under_own"] = verdict(under_own)
            gates_info["failed_under_own"] = [g.to_dict() for g in under_own
                                              if g.status == "fail"]
    errors = [{"file": f, "error": e} for f, e in head_at.unreadable.items()]
    status = verdict(gate_dicts)
    summary = _summary(gate_dicts, headline)
    if errors:
        status = "fail"
        summary = "; ".join(f"{e['file']} at the head is unreadable ({e['error']})"
                            for e in errors) + "; " + summary
    evaluate: dict[str, Any] = {
        "status": status,
        "summary": summary,
        "metrics_file": files[0],
        "metrics_files": files,
        "headline": headline,
        "metrics": comparison.metrics,
        "gates": gate_dicts,
        "gates_from": gates_info,
        "per_class": per_class,
        "params": comparison.params,
        "data": comparison.data,
        "stages": comparison.stages,
        "stale": comparison.stale,
        "notes": notes,
        "errors": errors,
        "base_unreadable": [{"file": f, "error": e} for f, e in base_at.unreadable.items()],
        "plots": plot_summaries(plots, comparison.base_sha, head_key),
    }
    note = evaluation_set_note(settings, changes.base_lock, changes.head_lock, plots,
                               comparison.base_sha, head_key, per_class)
    if note:
        evaluate["notes"].insert(0, note)
        evaluate["evaluation_set_changed"] = True
    cm = confusion_section(plots, comparison.base_sha, head_key)
    if cm is not None:
        evaluate["confusion"] = cm
    compile_skip = step_skipped(model, settings.steps, "compile")
    sections: dict[str, Any] = {"evaluate": evaluate,
                                "compile": {"status": "skipped",
                                            "reason": compile_skip or COMPILE_PENDING}}
    if head:
        sections["reproduction"] = reproduction_section(
            changes.problems, reproduced_changes(root, comparison.head_sha))
    if previous and previous.get("revisions", {}).get("head", {}).get("sha") == \
            comparison.head_sha:
        for name, section in previous.get("sections", {}).items():
            if name not in ("evaluate", "card", "deploy", "reproduction"):
                sections[name] = section
    if not compile_skip:
        for name in section_files(settings):
            from_file = section_from_file(root, name, comparison.head_sha if head else None,
                                          settings)
            if from_file is not None:
                sections[name] = from_file
    else:
        sections["compile"] = {"status": "skipped", "reason": compile_skip}
    deploy_skip = step_skipped(model, settings.steps, "deploy")
    if deploy_skip:
        sections["deploy"] = {"status": "skipped", "reason": deploy_skip}
    sections["card"] = card_section(root, comparison.base_sha, params_file, settings=settings,
                                    stale=comparison.stale if head is None else None,
                                    metrics=head_at, files=files,
                                    head=comparison.head_sha if head else None)
    if getattr(settings, "cost", None) is not None and (head is None or sections.get(
            "reproduction") is not None):
        from modelops.ci.cost import reran_since

        if read_compute(root):  # recorded by the stage launchers (modelops.compute)
            compute = compute_section(root, settings.cost,
                                      reran_since(root, comparison.base_sha))
            if compute.get("status") != "skipped":
                compute.setdefault("summary", compute_summary(compute))
            sections["compute"] = compute
    report = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": {"name": model.name, "team": model.team},
        "revisions": {"base": {"rev": comparison.base_rev, "sha": comparison.base_sha},
                      "head": {"rev": comparison.head_rev, "sha": comparison.head_sha}},
        "context": context if context is not None else github_context(plots_dir=plots_dir),
        "verdict": "pass",
        "sections": ordered(sections),
    }
    if comparison.base_tip_sha and comparison.base_tip_sha != comparison.base_sha:
        report["revisions"]["base"]["tip"] = comparison.base_tip_sha
    report["verdict"] = overall_verdict(report["sections"])
    validate_report(report)
    return report


def _headline_text(row: dict[str, Any]) -> str:
    from modelops.ci.markdown import num, signed

    if row["head"] is None:
        return f"{row['name']} missing"
    text = f"{row['name']} {num(row['head'])}"
    if row["change"] in ("better", "worse"):
        text += f" ({signed(row['delta'])}, {row['change']})"
    elif row["change"] == "unchanged":
        text += " (unchanged)"
    return text


def _summary(gates: list[dict[str, Any]], headline: list[dict[str, Any]] | None = None) -> str:
    """One line: the headline metrics with their change, then the gate count."""
    failed = [g for g in gates if g["status"] == "fail"]
    missing = [g for g in gates if g["status"] == "no-baseline"]
    text = f"{len(gates) - len(failed) - len(missing)}/{len(gates)} gate bound(s) passed"
    if failed:
        text += f", {len(failed)} failed"
    if missing:
        text += f", {len(missing)} without baseline"
    if headline:
        text = ", ".join(_headline_text(r) for r in headline) + "; " + text
    return text


# --------------------------------------------------------------------------- CLI

def _cmd_compare(args: Any) -> int:
    from modelops.ci.compare import compare

    files = args.metrics or list(load_settings(args.params).model.metrics) or None
    result = compare(".", args.base or default_base(), args.head, fetch=not args.no_fetch,
                     metrics_files=files)
    data = result.to_dict()
    if args.out:
        write_json(args.out, data)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"compare {result.base_rev} ({result.base_sha[:12]}) -> {result.head_rev}")
    several = len(result.metrics_files) > 1
    for m in result.metrics:
        if not str(m["name"]).startswith("per_class."):
            delta = "" if m["delta"] is None else f"{m['delta']:+.6g}"
            name = f"{m['file']}:{m['name']}" if several else m["name"]
            print(f"  metric {name}: {m['base']} -> {m['head']} {delta}")
    for p in result.params:
        print(f"  param  {p['name']}: {p['base']!r} -> {p['head']!r}")
    for d in result.data:
        print(f"  data   {d['path']}: {d['change']} ({d['base_size']} -> {d['head_size']} bytes)")
    for s in result.stages:
        print(f"  stage  {s['stage']}: {s['change']} {', '.join(s['why'])}")
    for n in result.notes:
        print(f"  note: {n}")
    if args.out:
        print(f"wrote {args.out}")
    return 0


def report_verdict(report: dict[str, Any]) -> int:
    """Print a report's gate table, its failed sections and verdict; 0 on pass, 1 on fail."""
    from modelops.ci.gates import GateResult, format_table

    gates = [GateResult(**g) for g in report["sections"]["evaluate"].get("gates", [])]
    print(format_table(gates))
    failed = [name for name, sec in report["sections"].items() if sec["status"] == "fail"]
    for name in failed:
        sec = report["sections"][name]
        why = sec.get("summary") or sec.get("reason") or sec.get("error") or ""
        print(f"section {name}: fail{': ' + str(why) if why else ''}")
    print(f"gate verdict: {report['verdict']}")
    return 0 if report["verdict"] == "pass" else 1


def _cmd_gate(args: Any) -> int:
    from modelops.ci.card import metrics_files, workspace_metrics
    from modelops.ci.compare import dvc_queries, read_metrics, resolve_revision
    from modelops.ci.gates import evaluate_gates, format_table, verdict

    if args.report:
        return report_verdict(load_report(args.report))
    root = Path(".")
    settings = load_settings(args.params)
    files = list(args.metrics or []) or metrics_files(settings, root)
    if not files:
        raise InputError("no metrics files: modelops.model.metrics is empty and dvc.yaml "
                         "declares none", hint="pass --metrics FILE or list them in "
                                               "modelops.model.metrics")
    base = None
    if args.base:
        sha = resolve_revision(root, args.base, fetch=not args.no_fetch)
        with dvc_queries(root) as dvc:
            _, base, head, files = read_metrics(dvc, root, sha, None, files)
    else:
        head = workspace_metrics(root, files)
    if not head.files:
        raise InputError(f"{files[0]}: metrics file not found"
                         if len(files) == 1 else
                         f"no metrics file found ({', '.join(files)})",
                         hint="run the pipeline first: dvc repro")
    gates = evaluate_gates(settings.gates, head, base, files=files,
                           settings_file=str(args.params))
    print(format_table(gates))
    result = verdict(gates)
    print(f"gate verdict: {result}")
    return 0 if result == "pass" else 1


def _cmd_card(args: Any) -> int:
    from modelops.ci.card import card_path, generate_card

    settings = load_settings(args.params)
    name, text = generate_card(".", args.params, args.template)
    if args.stdout:
        print(text, end="")
        return 0
    out = Path(args.out) if args.out else card_path(settings.model)
    atomic_write_text(out, text)
    print(f"wrote {out} (front matter checked with huggingface_hub.ModelCard)")
    return 0


def _cmd_report(args: Any) -> int:
    previous = None
    out = Path(args.out)
    if out.is_file():
        try:
            previous = load_report(out)
        except SuiteError:
            previous = None  # an old or broken report is simply replaced
    report = build_report(".", args.base, args.head, params_file=args.params,
                          fetch=not args.no_fetch, previous=previous, plots_dir=args.plots_dir,
                          merge_base=args.merge_base, gates_from=args.gates_from)
    write_report(out, report)
    evaluate = report["sections"]["evaluate"]
    print(f"report: {report['verdict']} ({evaluate['summary']}); "
          + ", ".join(f"{k}: {v['status']}" for k, v in report["sections"].items()))
    print(f"wrote {out}")
    if args.markdown:
        from modelops.ci.markdown import render_comment

        atomic_write_text(args.markdown, render_comment(report))
        print(f"wrote {args.markdown}")
    if args.gate:  # what `ci gate --report OUT` would say, without a second process
        return report_verdict(report)
    return 0


def register(subparsers: Any) -> None:
    """Add ``compare``, ``gate``, ``card`` and ``report`` to ``modelops-ci``."""
    def common_base(p: Any) -> None:
        p.add_argument("--base", default=None,
                       help="base revision (default: origin/$GITHUB_BASE_REF on a pull request, "
                            "else HEAD)")
        p.add_argument("--no-fetch", action="store_true",
                       help="never fetch a missing base from origin (shallow clones)")

    p = subparsers.add_parser(
        "compare", help="compare metrics, params, data and stages with the base revision",
        description="Compare the head (workspace by default) with the base revision through "
                    "dvc metrics show/diff (the metrics files of modelops.model.metrics, or "
                    "every metrics file dvc.yaml declares; DVC-tracked files too), dvc params "
                    "diff, dvc diff and dvc.lock.")
    common_base(p)
    p.add_argument("--head", default=None, help="head revision (default: the workspace)")
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--metrics", action="append", default=None, metavar="FILE",
                   help="metrics file to compare, may repeat (default: modelops.model.metrics)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument("--out", default=None, help="also write the comparison as JSON to this file")
    p.set_defaults(handler=_cmd_compare)

    p = subparsers.add_parser(
        "gate", help="judge modelops.gates of params.yaml; exit 1 when a gate fails",
        description="Check the gates of params.yaml (modelops.gates) against the head metrics "
                    "(the files of modelops.model.metrics, or every metrics file dvc.yaml "
                    "declares) and, for regression bounds, the base revision's metrics (read "
                    "through DVC, so DVC-tracked files count). With --report, use that "
                    "report's verdict instead: any failed section (a gate, compile parity, "
                    "...) fails. Exit 0 when all pass (no-baseline does not fail), 1 when one "
                    "fails, 2 on bad input.")
    common_base(p)
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--metrics", action="append", default=None, metavar="FILE",
                   help="metrics file to judge, may repeat (default: modelops.model.metrics)")
    p.add_argument("--report", default=None,
                   help="use the gate results of this report.json instead of recomputing")
    p.set_defaults(handler=_cmd_gate)

    p = subparsers.add_parser(
        "card", help="generate the model card (modelops.model.card.path)",
        description="Render the model card from params.yaml (modelops.model), dvc.lock, the "
                    "metrics files and the ONNX sha256, with modelops.model.card.template or "
                    "the suite's built-in template; the front matter is checked with "
                    "huggingface_hub.ModelCard before the file is written.")
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--template", default=None, metavar="FILE",
                   help="card template (default: modelops.model.card.template, else built-in)")
    p.add_argument("--out", default=None,
                   help="output file (default: modelops.model.card.path, else "
                        "model-cards/<model>.md)")
    p.add_argument("--stdout", action="store_true", help="print the card instead of writing it")
    p.set_defaults(handler=_cmd_card)

    p = subparsers.add_parser(
        "report", help="compare + gates + card diff -> reports/report.json",
        description="Build the pull-request report: comparison with the base (every metrics "
                    "file, git- or DVC-tracked), headline metrics, gate results, confusion "
                    "matrix, model card diff, and the compile section (from "
                    "modelops.compile.section_file when a compile stage ran, else skipped "
                    "with a reason; skipped too when the model has no ONNX artifact or "
                    "modelops.steps.compile is false). Sections added by later steps for the "
                    "same head commit are kept. Exit 0 even when a gate fails, unless --gate "
                    "is given (or use `modelops-ci gate --report` to decide).")
    common_base(p)
    p.add_argument("--head", default=None,
                   help="head revision, e.g. HEAD: everything is read from that commit, and the "
                        "report says what DVC proves stale or hand-edited in it (default: the "
                        "workspace, for a local preview)")
    p.add_argument("--merge-base", action="store_true",
                   help="compare with the merge base of --base and the head (what the change "
                        "itself did), as a pull request's diff does")
    p.add_argument("--gates-from", default=None, metavar="REV",
                   help="the revision whose modelops.gates judge the change (default: --base, "
                        "the base branch's tip); the head's own gates never do")
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--out", default=str(DEFAULT_REPORT), help="report file (default: %(default)s)")
    p.add_argument("--markdown", default=None,
                   help="also write the comment Markdown preview to this file")
    p.add_argument("--plots-dir", default=None, metavar="DIR",
                   help="folder of the PNG plots attached to the workflow run (default: "
                        "reports/plots; '' = none are attached)")
    p.add_argument("--gate", action="store_true",
                   help="then judge the report as `modelops-ci gate --report` does: print the "
                        "gate table and exit 1 when the verdict is fail (the report and the "
                        "Markdown are written either way)")
    p.set_defaults(handler=_cmd_report)
