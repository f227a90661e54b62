"""``reports/report.json``: what the pull-request steps found, in one versioned document.

Shape (schema: ``ci/schemas/report.schema.json``, ``schema_version`` 1)::

    {"schema_version": 1, "generated_at": "...", "model": {"name", "team"},
     "revisions": {"base": {"rev", "sha"}, "head": {"rev", "sha"}},
     "context": {"pr_number", "pr_title", "head_ref", "base_ref", "repository", "run_url"},
     "verdict": "pass" | "fail",                       # fail when any section failed
     "sections": {
        "evaluate": {"status", "metrics", "gates", "per_class", "params", "data", "stages",
                     "stale", "notes"},
        "card":     {"status", "path", "changed", "base_found", "diff"},
        "compile":  {"status": "skipped", "reason": "..."},   # filled by the compile step
        ...}}                                            # any later section: status (+ reason)

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

COMPILE_PENDING = "the compile step has not run for this revision (modelops-ci compile adds it)"
# Sections that other steps write to a file of their own (a DVC output): picked up when present.
SECTION_FILES = {"compile": "metrics/compile.json"}
CONFUSION_FILE = "plots/confusion.csv"
MAX_CONFUSION_CLASSES = 30


# --------------------------------------------------------------------------- building

def github_context(env: dict[str, str] | None = None,
                   plots_dir: str | Path | None = None) -> dict[str, Any]:
    """PR number, title and refs from ``GITHUB_EVENT_PATH``; the run URL from ``GITHUB_*``.

    ``plots_artifact`` names the workflow artifact with the PNG plots when this runs in Actions
    and the PNGs are in ``plots_dir`` (default ``plots/png``, the ``figures`` stage's output).
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
    if run:  # in Actions the evaluate job uploads plots/png (dvc stage `figures`)
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
    """``per_class.<c>.<m>`` metric rows grouped by class: ``{"class", "support", m: {...}}``."""
    classes: dict[str, dict[str, Any]] = {}
    for row in metric_rows:
        parts = str(row["name"]).split(".")
        if len(parts) != 3 or parts[0] != "per_class":
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
    """A confusion matrix from ``actual,predicted`` rows (DVC's confusion plot data)."""
    import csv
    import io

    if not text:
        return None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [c.strip() for c in rows[0][:2]] != ["actual", "predicted"]:
        return None
    pairs = [(r[0].strip(), r[1].strip()) for r in rows[1:] if len(r) >= 2]
    labels = sorted({a for a, _ in pairs} | {p for _, p in pairs},
                    key=lambda c: (0, int(c)) if c.isdigit() else (1, c))
    if not labels or len(labels) > MAX_CONFUSION_CLASSES:
        return None
    index = {c: i for i, c in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for a, p in pairs:
        matrix[index[a]][index[p]] += 1
    return labels, matrix


def confusion_section(root: Path, base_sha: str, head: str | None) -> dict[str, Any] | None:
    from modelops.ci.compare import read_at

    head_cm = confusion(read_at(root, head, CONFUSION_FILE))
    if head_cm is None:
        return None
    base_cm = confusion(read_at(root, base_sha, CONFUSION_FILE))
    labels, matrix = head_cm
    out: dict[str, Any] = {"file": CONFUSION_FILE, "classes": labels, "head": matrix,
                           "base": None}
    if base_cm is not None and base_cm[0] == labels:
        out["base"] = base_cm[1]
    return out


def section_from_file(root: Path, name: str, head: str | None) -> dict[str, Any] | None:
    """The section another step wrote to ``SECTION_FILES[name]``, if present and valid."""
    from modelops.ci.compare import read_json_at

    path = SECTION_FILES.get(name)
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

        onnx = root / str(model.get("path") or "models/model.onnx")
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


def card_from_stage(root: Path, model: str, stale: list[str] | None,
                    params_file: str) -> str | None:
    """The card the ``card`` stage wrote, when ``dvc status`` found every stage up to date in
    the workspace (``stale`` is its list, empty). The stage runs :func:`generate_card` on exactly
    the inputs it declares, so the file is what generating the card again would give, validated
    the same way, without importing huggingface_hub and rendering again (0.3 s). ``None`` when
    that cannot be relied on: a stage is stale (say an edited card or a changed input), there is
    no card stage, the workspace was not checked, or another params file is asked for."""
    from modelops.ci.card import card_inputs, card_path

    if stale is None or stale or Path(params_file) != Path("params.yaml") or \
            card_inputs(root) is None:
        return None
    path = card_path(model, root)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def card_section(root: Path, base_sha: str, params_file: str, *, model: str | None = None,
                 stale: list[str] | None = None) -> dict[str, Any]:
    """The card of the change and its diff with the base revision's card.

    ``stale`` (the workspace's ``dvc status``, when the head is the workspace) lets an up-to-date
    ``card`` stage's file stand in for generating the card again, see :func:`card_from_stage`.
    """
    from modelops.ci.card import card_path, generate_card
    from modelops.ci.compare import read_at

    text = card_from_stage(root, model, stale, params_file) if model else None
    if text is not None:
        name = model
    else:
        try:
            name, text = generate_card(root, params_file)
        except SuiteError as exc:
            return {"status": "fail", "reason": str(exc).splitlines()[0], "changed": False,
                    "base_found": False, "diff": ""}
    rel = card_path(name, ".").as_posix()
    base_text = read_at(root, base_sha, rel)
    diff = "".join(difflib.unified_diff(
        (base_text or "").splitlines(keepends=True), text.splitlines(keepends=True),
        fromfile=f"a/{rel}", tofile=f"b/{rel}", n=2))
    return {"status": "pass", "path": rel, "changed": bool(diff), "base_found": base_text
            is not None, "diff": diff}


def build_report(root: str | Path = ".", base: str | None = None, head: str | None = None, *,
                 params_file: str = "params.yaml", fetch: bool = True,
                 context: dict[str, Any] | None = None,
                 previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Compare, gate and card: the report for ``head`` (``None``: workspace) against ``base``.

    Sections of ``previous`` (an earlier report for the same head commit) other than the ones
    built here are kept, so running the report after the compile step loses nothing.
    """
    from modelops.ci.compare import compare
    from modelops.ci.gates import evaluate_gates, verdict
    from modelops.settings import load_settings

    root = Path(root)
    params = load_settings(root / params_file)
    base = base or default_base()
    comparison = compare(root, base, head, fetch=fetch)
    gates = evaluate_gates(params.gates, comparison.head_metrics,
                           comparison.base_metrics)
    gate_dicts = [g.to_dict() for g in gates]
    evaluate: dict[str, Any] = {
        "status": verdict(gate_dicts),
        "summary": _summary(gate_dicts),
        "metrics_file": comparison.metrics_file,
        "metrics": comparison.metrics,
        "gates": gate_dicts,
        "per_class": per_class_rows(comparison.metrics),
        "params": comparison.params,
        "data": comparison.data,
        "stages": comparison.stages,
        "stale": comparison.stale,
        "notes": comparison.notes,
    }
    cm = confusion_section(root, comparison.base_sha, head)
    if cm is not None:
        evaluate["confusion"] = cm
    sections: dict[str, Any] = {"evaluate": evaluate,
                                "compile": {"status": "skipped", "reason": COMPILE_PENDING}}
    if previous and previous.get("revisions", {}).get("head", {}).get("sha") == \
            comparison.head_sha:
        for name, section in previous.get("sections", {}).items():
            if name not in ("evaluate", "card"):
                sections[name] = section
    for name in SECTION_FILES:
        from_file = section_from_file(root, name, head)
        if from_file is not None:
            sections[name] = from_file
    sections["card"] = card_section(root, comparison.base_sha, params_file,
                                    model=params.model.name,
                                    stale=comparison.stale if head is None else None)
    if head is None and getattr(params, "cost", None) is not None:
        from modelops.ci.cost import reran_since
        from modelops.compute import compute_section, read_compute

        if read_compute(root):  # recorded by the stage launchers (modelops.compute)
            sections["compute"] = compute_section(root, params.cost,
                                                  reran_since(root, comparison.base_sha))
    report = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": {"name": params.model.name, "team": params.model.team},
        "revisions": {"base": {"rev": comparison.base_rev, "sha": comparison.base_sha},
                      "head": {"rev": comparison.head_rev, "sha": comparison.head_sha}},
        "context": context if context is not None else github_context(),
        "verdict": "pass",
        "sections": ordered(sections),
    }
    report["verdict"] = overall_verdict(report["sections"])
    validate_report(report)
    return report


def _summary(gates: list[dict[str, Any]]) -> str:
    failed = [g for g in gates if g["status"] == "fail"]
    missing = [g for g in gates if g["status"] == "no-baseline"]
    text = f"{len(gates) - len(failed) - len(missing)}/{len(gates)} gate bound(s) passed"
    if failed:
        text += f", {len(failed)} failed"
    if missing:
        text += f", {len(missing)} without baseline"
    return text


# --------------------------------------------------------------------------- CLI

def _cmd_compare(args: Any) -> int:
    from modelops.ci.compare import compare
    from modelops.fsutil import write_json

    result = compare(".", args.base or default_base(), args.head, fetch=not args.no_fetch)
    data = result.to_dict()
    if args.out:
        write_json(args.out, data)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"compare {result.base_rev} ({result.base_sha[:12]}) -> {result.head_rev}")
    for m in result.metrics:
        if not str(m["name"]).startswith("per_class."):
            delta = "" if m["delta"] is None else f"{m['delta']:+.6g}"
            print(f"  metric {m['name']}: {m['base']} -> {m['head']} {delta}")
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
    from modelops.ci.compare import read_json_at, resolve_revision
    from modelops.ci.gates import evaluate_gates, format_table, verdict
    from modelops.settings import load_settings

    if args.report:
        return report_verdict(load_report(args.report))
    else:
        params = load_settings(args.params)
        head = read_json_at(Path("."), None, args.metrics)
        if head is None:
            raise InputError(f"{args.metrics}: metrics file not found",
                             hint="run the pipeline first: dvc repro")
        base = None
        if args.base:
            sha = resolve_revision(Path("."), args.base, fetch=not args.no_fetch)
            base = read_json_at(Path("."), sha, args.metrics)
        gates = evaluate_gates(params.gates, head, base)
    print(format_table(gates))
    result = verdict(gates)
    print(f"gate verdict: {result}")
    return 0 if result == "pass" else 1


def _cmd_card(args: Any) -> int:
    from modelops.ci.card import card_path, generate_card
    from modelops.fsutil import atomic_write_text

    name, text = generate_card(".", args.params, args.templates)
    if args.stdout:
        print(text, end="")
        return 0
    out = Path(args.out) if args.out else card_path(name)
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
                          fetch=not args.no_fetch, previous=previous)
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
                    "dvc metrics diff, dvc params diff, dvc diff and dvc.lock.")
    common_base(p)
    p.add_argument("--head", default=None, help="head revision (default: the workspace)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument("--out", default=None, help="also write the comparison as JSON to this file")
    p.set_defaults(handler=_cmd_compare)

    p = subparsers.add_parser(
        "gate", help="judge modelops.gates of params.yaml; exit 1 when a gate fails",
        description="Check the gates of params.yaml (modelops.gates) against the head metrics "
                    "and, for regression bounds, the base revision's metrics. With --report, "
                    "use that report's verdict instead: any failed section (a gate, compile "
                    "parity, ...) fails. Exit 0 when all pass (no-baseline does not fail), 1 "
                    "when one fails, 2 on bad input.")
    common_base(p)
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--metrics", default="metrics/metrics.json",
                   help="head metrics file (default: %(default)s)")
    p.add_argument("--report", default=None,
                   help="use the gate results of this report.json instead of recomputing")
    p.set_defaults(handler=_cmd_gate)

    p = subparsers.add_parser(
        "card", help="generate the model card (model-cards/<model>.md)",
        description="Render model-cards/templates/model-card.md.j2 with params.yaml, dvc.lock, "
                    "the metrics and the ONNX sha256; the front matter is checked with "
                    "huggingface_hub.ModelCard before the file is written.")
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--templates", default=None,
                   help="template folder (default: model-cards/templates)")
    p.add_argument("--out", default=None, help="output file (default: model-cards/<model>.md)")
    p.add_argument("--stdout", action="store_true", help="print the card instead of writing it")
    p.set_defaults(handler=_cmd_card)

    p = subparsers.add_parser(
        "report", help="compare + gates + card diff -> reports/report.json",
        description="Build the pull-request report: comparison with the base, gate results, "
                    "confusion matrix, model card diff, and the compile section (from "
                    "metrics/compile.json when the compile stage ran, else skipped with a "
                    "reason). Sections added by later steps for the same head commit are kept. "
                    "Exit 0 even when a gate fails, unless --gate is given (or use "
                    "`modelops-ci gate --report` to decide).")
    common_base(p)
    p.add_argument("--head", default=None, help="head revision (default: the workspace)")
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--out", default=str(DEFAULT_REPORT), help="report file (default: %(default)s)")
    p.add_argument("--markdown", default=None,
                   help="also write the comment Markdown preview to this file")
    p.add_argument("--gate", action="store_true",
                   help="then judge the report as `modelops-ci gate --report` does: print the "
                        "gate table and exit 1 when the verdict is fail (the report and the "
                        "Markdown are written either way)")
    p.set_defaults(handler=_cmd_report)
