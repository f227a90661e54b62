"""``modelops-ci evaluate``: the whole evaluation of a pull request, in one process.

What the evaluate action runs on the runner, in order, with DVC and the suite imported once:

1. check ``params.yaml`` and say which steps apply (``$GITHUB_OUTPUT``: ``compile``, ``deploy``,
   ``model``);
2. reproduce the pipeline (:func:`modelops.ci.reproduce.reproduce`: ``dvc repro`` with the
   remote when there is one, then the outputs the rest of the job reads);
3. time the ONNX artifact against the base's on this runner (:mod:`modelops.ci.compile.timing`);
4. build the report of the head commit against the merge base with the base branch, judged by
   the base branch's gates (:func:`modelops.ci.report.build_report`), with the check of what
   DVC proves stale or hand-edited in the commit;
5. draw the PNG plots of the base and of the head (``<report dir>/plots/{base,head}``, for the
   workflow artifact), write the comment's Markdown and append it to the job summary.

When any of it fails, a report that says so (``evaluate.incomplete``, the error as the reason)
is written in place of the real one before the command exits with the error's code, so the
comment job still has something true to post; in GitHub Actions the error is also an
``::error`` annotation (on the file and line of a bad ``params.yaml``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from modelops.errors import InputError, SuiteError
from modelops.fsutil import atomic_write_text, write_json
from modelops.settings import load_settings
from modelops.settings.model import step_skipped

PLOT_CHOICES = ("render", "none")


def _summary(text: str) -> None:
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text if text.endswith("\n") else text + "\n")


def _output(**values: str) -> None:
    path = os.environ.get("GITHUB_OUTPUT")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write("".join(f"{k.replace('_', '-')}={v}\n" for k, v in values.items()))


def summary_header(title: str | None, base: str) -> str:
    """The job summary's first lines: the pull request's title and base, each inside a code
    span that nothing in them can end (no HTML, link or mention comes alive)."""
    from modelops.ci.markdown import code

    lines = ["### Model evaluation", ""]
    if title:
        lines.append(f"- change: `{code(title, 300)}`")
    lines.append(f"- base: `{code(base, 200)}`")
    return "\n".join(lines) + "\n\n"


def draw_plots(changes: Any, base_key: str, head_key: str, out: Path,
               stage_dir: Path | None) -> Path | None:
    """PNG images of the plot files: every one at the head (``out/head``; copied from
    ``stage_dir`` when a DVC stage draws them) and, at the base, those whose data changed
    (``out/base``). ``None`` when there is none."""

    from modelops.ci.plots import IMAGE_SUFFIXES, make_plots

    written = False
    for side, key in (("base", base_key), ("head", head_key)):
        folder = out / side
        shutil.rmtree(folder, ignore_errors=True)
        if side == "head" and stage_dir is not None:
            images = [p for p in sorted(stage_dir.glob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
            if images:
                folder.mkdir(parents=True, exist_ok=True)
                for p in images:
                    shutil.copy2(p, folder / p.name)
                written = True
            continue
        plots = [p for p in changes.plots.get(key, []) if p.error is None and
                 (p.rows or p.is_image)]
        if side == "base":  # a plot whose data did not change is the head's image
            head_rows = {p.path: p.rows for p in changes.plots.get(head_key, [])}
            plots = [p for p in plots if p.is_image or head_rows.get(p.path) != p.rows]
        if not plots:
            continue
        try:
            make_plots(plots, folder, progress=lambda line, s=side: print(
                f"plots ({s}): {line}", flush=True))
            written = True
        except SuiteError as exc:  # a plot of one revision that cannot be drawn: said, not fatal
            print(f"plots ({side}): not drawn: {exc.message}", flush=True)
    return out if written else None


def evaluate(args: argparse.Namespace) -> int:
    from modelops.ci.compare import WORKSPACE, Changes, merge_base_of, resolve_revision
    from modelops.ci.compile.timing import timing_section
    from modelops.ci.markdown import render_comment
    from modelops.ci.report import DEFAULT_TIMING_SECTION, build_report, github_context
    from modelops.ci.reportfile import write_report
    from modelops.ci.reproduce import reproduce

    root = Path(".")
    report_path = Path(args.report)
    reports = report_path.parent
    markdown = Path(args.markdown) if args.markdown else reports / "comment.md"
    _summary(summary_header(args.title, args.base))
    settings = load_settings(args.params)
    _output(model=settings.model.name)
    for step in ("card", "compile", "deploy"):
        reason = step_skipped(settings.model, settings.steps, step)
        print(f"{step}: {'applies' if reason is None else 'skipped: ' + reason}", flush=True)
        _output(**{step: "false" if reason else "true", f"{step}_reason": reason or ""})
    head = args.head or None
    base_tip = resolve_revision(root, args.base, fetch=not args.no_fetch)
    head_sha = resolve_revision(root, head, fetch=False) if head else None
    base_sha = merge_base_of(root, base_tip, head_sha) if head_sha else base_tip
    _output(base_rev=args.base, base_sha=base_sha)

    outputs = ([t for chunk in args.outputs for t in chunk.split()]
               if args.outputs is not None else None)
    stage_dir = None
    also: list[str] = []
    if args.plots not in PLOT_CHOICES:
        stage_dir = Path(args.plots)
        also.append(args.plots)
    # The comparison of the two commits reads git and the DVC cache, not the workspace: it
    # runs in a forked child beside the reproduction (modelops.beside), on another core.
    compared = None
    if head:
        from modelops import beside
        from modelops.ci.report import compare_for_report

        compared = beside.start(lambda: compare_for_report(
            root, args.base, head, params_file=args.params, fetch=not args.no_fetch,
            merge_base=True))
        if compared.forked:
            print("==> reading the two commits with DVC in a child process, beside the "
                  "reproduction", flush=True)
    try:
        unused = reproduce(args.pull, outputs, params_file=args.params, also=also)
    except BaseException:
        if compared is not None:
            compared.cancel()
        raise

    timing_file = reports / DEFAULT_TIMING_SECTION.name
    timing_file.unlink(missing_ok=True)
    if step_skipped(settings.model, settings.steps, "compile") is None and \
            settings.model.test_data and not args.no_timing:
        try:
            section = timing_section(root, base_sha, params_file=args.params)
        except SuiteError as exc:
            section = {"status": "skipped", "reason": f"cannot time the model: {exc.message}"}
        write_json(timing_file, section)

    changes = Changes()
    plots_dir = reports / "plots"
    ready = compared.result() if compared is not None else None
    if ready is not None and ready[0].head_metrics is not None and \
            ready[0].head_metrics.needs_workspace:
        ready = None  # a head metrics file only the reproduction holds: read it now
    report = build_report(root, args.base, head, params_file=args.params,
                          fetch=not args.no_fetch, merge_base=bool(head),
                          gates_from=args.gates_from, changes=changes,
                          context=github_context(plots_dir=""), compared=ready)
    remote_reason = args.remote_reason or unused
    if remote_reason:
        report["sections"]["evaluate"]["notes"].insert(0, (
            f"reproduced without the DVC remote ({remote_reason}): the stages ran from "
            "scratch on this runner, and what only the remote holds (the base's DVC-tracked "
            "files, its artifact) was not read"))
    drawn = None
    if args.plots != "none":
        drawn = draw_plots(changes, report["revisions"]["base"]["sha"],
                           report["revisions"]["head"]["sha"] if head else WORKSPACE,
                           plots_dir, stage_dir)
    if drawn is not None and os.environ.get("GITHUB_RUN_ID"):
        from modelops.ci.plots import ARTIFACT

        report["context"]["plots_artifact"] = ARTIFACT
    report = write_report(report_path, report)
    body = render_comment(report)
    atomic_write_text(markdown, body)
    _summary(body)
    evaluate_section = report["sections"]["evaluate"]
    print(f"report: {report['verdict']} ({evaluate_section['summary']}); "
          + ", ".join(f"{k}: {v['status']}" for k, v in report["sections"].items()))
    print(f"wrote {report_path} and {markdown}")
    _output(verdict=report["verdict"], report=str(report_path),
            plots_dir=str(drawn) if drawn is not None else "")
    from modelops.ci.report import report_verdict

    code = report_verdict(report)
    return code if args.gate else 0


def failure_report(args: argparse.Namespace, error: BaseException) -> None:
    """Write the report of an evaluation that did not finish (and its Markdown and summary)."""
    from modelops.ci.markdown import render_comment
    from modelops.ci.report import github_context
    from modelops.ci.reportfile import incomplete_report, write_report

    message = str(error) if isinstance(error, SuiteError) else \
        f"internal error (a bug): {type(error).__name__}: {error}"
    report = incomplete_report(Path("."), message, params_file=args.params, base=args.base,
                               context=github_context(plots_dir=""))
    report_path = Path(args.report)
    write_report(report_path, report)
    body = render_comment(report)
    markdown = Path(args.markdown) if args.markdown else report_path.parent / "comment.md"
    atomic_write_text(markdown, body)
    _summary(body)
    _output(verdict="error", report=str(report_path), model=report["model"]["name"])


def _cmd_evaluate(args: argparse.Namespace) -> int:
    if args.pull not in ("auto", "true", "false"):
        raise InputError(f"--pull {args.pull!r} must be auto, true or false")
    try:
        return evaluate(args)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        try:
            failure_report(args, exc)
        except Exception as inner:  # noqa: BLE001 - the first error is the one to show
            print(f"modelops-ci: could not write the report of the failure: {inner}",
                  file=sys.stderr)
        raise


def register(subparsers: Any) -> None:
    """Add ``evaluate`` to ``modelops-ci``."""
    p = subparsers.add_parser(
        "evaluate", help="the whole pull-request evaluation in one process (the evaluate action)",
        description="Check params.yaml, reproduce the pipeline, time the ONNX artifact against "
                    "the base's on this runner, build reports/report.json for the head commit "
                    "against its merge base with --base (judged by --base's gates, with what "
                    "DVC proves stale or hand-edited in the commit), draw the base's and the "
                    "head's PNG plots and write the comment's Markdown. In GitHub Actions it "
                    "also writes the job summary and $GITHUB_OUTPUT (model, card, compile, "
                    "deploy, verdict, report, plots-dir, base-sha). When it fails, the report "
                    "says so (the comment job posts that) and the command exits with the "
                    "error's code.")
    p.add_argument("--base", required=True, metavar="REV",
                   help="the base branch, e.g. origin/main")
    p.add_argument("--head", default="HEAD",
                   help="the commit evaluated (default: %(default)s; '' = the workspace, a "
                        "local preview)")
    p.add_argument("--gates-from", default=None, metavar="REV",
                   help="whose modelops.gates judge (default: --base)")
    p.add_argument("--pull", default="auto",
                   help="use the DVC remote: true, false, or auto (the default one when it is "
                        "configured and can be read from here; the report says why not) "
                        "(default: %(default)s)")
    p.add_argument("--outputs", action="append", default=None,
                   help="DVC outputs needed in the workspace (default: from modelops.model)")
    p.add_argument("--plots", default="render",
                   help="render (draw the plot files), none, or the folder a DVC stage draws "
                        "them into (default: %(default)s)")
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--report", default="reports/report.json",
                   help="report file (default: %(default)s)")
    p.add_argument("--markdown", default=None,
                   help="the comment's Markdown (default: comment.md beside the report)")
    p.add_argument("--title", default=None, help="the change's title, for the job summary")
    p.add_argument("--no-timing", action="store_true", help="do not time the ONNX artifact")
    p.add_argument("--remote-reason", default=None, metavar="TEXT",
                   help="why no DVC remote is used (for example: no credentials on a fork's "
                        "pull request); said in the report")
    p.add_argument("--no-fetch", action="store_true",
                   help="never fetch a missing base from origin")
    p.add_argument("--gate", action="store_true",
                   help="exit 1 when the verdict is fail (the report is written either way)")
    p.set_defaults(handler=_cmd_evaluate)
