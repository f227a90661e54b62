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

import datetime as dt
import difflib
import json
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
from modelops.errors import InputError, SuiteError, ValidationError
from modelops.settings import Settings
from modelops.settings.model import step_skipped

COMPILE_PENDING = "the compile step has not run for this revision (modelops-ci compile adds it)"
DEFAULT_COMPILE_SECTION = Path("reports") / "compile.json"
MAX_CONFUSION_CLASSES = 30


def section_files(settings: Settings) -> dict[str, str]:
    """Sections that other steps write to a file of their own (possibly a DVC output), picked
    up by the report when present: the compile step's ``modelops.compile.section_file``."""
    return {"compile": settings.compile.section_file or DEFAULT_COMPILE_SECTION.as_posix()}


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
        else:
            entry[metric] = {"base": row["base"], "head": row["head"], "delta": row["delta"]}

    def key(c: str) -> tuple[int, Any]:
        return (0, int(c)) if c.isdigit() else (1, c)

    return [classes[c] for c in sorted(classes, key=key)]


def confusion(text: str | None) -> tuple[list[str], list[list[int]]] | None:
    """A confusion matrix from ``actual,predicted`` CSV rows (DVC's confusion plot data)."""
    import csv
    import io

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
        from modelops.settings import load_settings

        settings = load_settings(root / "params.yaml")
    path = section_files(settings).get(name)
    if path is None:
        return None
    try:
        section = read_json_at(root, head, path)
    except SuiteError:
        return None
    if not isinstance(section, dict):
        return None
    model = section.get("model")
    if head is None and isinstance(model, dict) and isinstance(model.get("sha256"), str):
        from modelops.fsutil import sha256_file

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
                 metrics: Any = None, files: list[str] | None = None) -> dict[str, Any]:
    """The card of the change and its diff with the base revision's card; ``skipped`` with the
    reason when ``modelops.steps.card`` is false.

    ``stale`` (the workspace's ``dvc status``, when the head is the workspace) lets an up-to-date
    card stage's file stand in for generating the card again, see :func:`card_from_stage`;
    ``metrics`` and ``files`` are the head's metrics already read by the comparison.
    """
    from modelops.ci.card import card_path, generate_card
    from modelops.ci.compare import read_at
    from modelops.settings import load_settings

    root = Path(root)
    if settings is None:
        settings = load_settings(root / params_file)
    skipped = step_skipped(settings.model, settings.steps, "card")
    if skipped:
        return {"status": "skipped", "reason": skipped}
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


def build_report(root: str | Path = ".", base: str | None = None, head: str | None = None, *,
                 params_file: str = "params.yaml", fetch: bool = True,
                 context: dict[str, Any] | None = None,
                 previous: dict[str, Any] | None = None,
                 plots_dir: str | Path | None = None) -> dict[str, Any]:
    """Compare, gate and card: the report for ``head`` (``None``: workspace) against ``base``.

    Sections of ``previous`` (an earlier report for the same head commit) other than the ones
    built here are kept, so running the report after the compile step loses nothing.
    ``plots_dir`` is where the PNG plots were written (for the artifact's name in Actions).
    """
    from modelops.ci import plots as plotlib
    from modelops.ci.compare import WORKSPACE, compare, dvc_queries
    from modelops.ci.gates import evaluate_gates, verdict
    from modelops.settings import load_settings

    root = Path(root)
    settings = load_settings(root / params_file)
    model = settings.model
    base = base or default_base()
    with dvc_queries(root) as dvc:
        comparison = compare(root, base, head, fetch=fetch,
                             metrics_files=list(model.metrics) or None, dvc=dvc)
        head_rev = comparison.head_sha if head else WORKSPACE
        try:
            plots = plotlib.show(dvc.repo, list(model.plots) or None,
                                 [comparison.base_sha, head_rev])
        except SuiteError as exc:
            plots = {}
            comparison.notes.append(f"plots could not be read: {exc.message}")
    files = comparison.metrics_files
    gates = evaluate_gates(settings.gates, comparison.head_metrics, comparison.base_metrics,
                           files=files, settings_file=settings.file)
    gate_dicts = [g.to_dict() for g in gates]
    headline = headline_rows(settings, files, comparison.head_metrics, comparison.base_metrics)
    evaluate: dict[str, Any] = {
        "status": verdict(gate_dicts),
        "summary": _summary(gate_dicts, headline),
        "metrics_file": files[0],
        "metrics_files": files,
        "headline": headline,
        "metrics": comparison.metrics,
        "gates": gate_dicts,
        "per_class": per_class_rows(comparison.metrics),
        "params": comparison.params,
        "data": comparison.data,
        "stages": comparison.stages,
        "stale": comparison.stale,
        "notes": comparison.notes,
    }
    cm = confusion_section(plots, comparison.base_sha, head_rev)
    if cm is not None:
        evaluate["confusion"] = cm
    compile_skip = step_skipped(model, settings.steps, "compile")
    sections: dict[str, Any] = {"evaluate": evaluate,
                                "compile": {"status": "skipped",
                                            "reason": compile_skip or COMPILE_PENDING}}
    if previous and previous.get("revisions", {}).get("head", {}).get("sha") == \
            comparison.head_sha:
        for name, section in previous.get("sections", {}).items():
            if name not in ("evaluate", "card", "deploy"):
                sections[name] = section
    if not compile_skip:
        for name in section_files(settings):
            from_file = section_from_file(root, name, head, settings)
            if from_file is not None:
                sections[name] = from_file
    else:
        sections["compile"] = {"status": "skipped", "reason": compile_skip}
    deploy_skip = step_skipped(model, settings.steps, "deploy")
    if deploy_skip:
        sections["deploy"] = {"status": "skipped", "reason": deploy_skip}
    sections["card"] = card_section(root, comparison.base_sha, params_file, settings=settings,
                                    stale=comparison.stale if head is None else None,
                                    metrics=comparison.head_metrics if head is None else None,
                                    files=files)
    if head is None and getattr(settings, "cost", None) is not None:
        from modelops.ci.cost import reran_since
        from modelops.compute import compute_section, read_compute

        if read_compute(root):  # recorded by the stage launchers (modelops.compute)
            sections["compute"] = compute_section(root, settings.cost,
                                                  reran_since(root, comparison.base_sha))
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
    from modelops.fsutil import write_json
    from modelops.settings import load_settings

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
    from modelops.settings import load_settings

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
    from modelops.fsutil import atomic_write_text
    from modelops.settings import load_settings

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
                          fetch=not args.no_fetch, previous=previous, plots_dir=args.plots_dir)
    write_report(out, report)
    evaluate = report["sections"]["evaluate"]
    print(f"report: {report['verdict']} ({evaluate['summary']}); "
          + ", ".join(f"{k}: {v['status']}" for k, v in report["sections"].items()))
    print(f"wrote {out}")
    if args.markdown:
        from modelops.ci.markdown import render_comment
        from modelops.fsutil import atomic_write_text

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
    p.add_argument("--head", default=None, help="head revision (default: the workspace)")
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
