"""``modelops-ci comment``: publish the PR report as ONE sticky comment and a gate verdict.

Reads ``reports/report.json``, renders it with :func:`ci.markdown.render_comment`, and then:

- always writes the Markdown to ``reports/pr-comment.md`` (``--out``) and appends it to
  ``$GITHUB_STEP_SUMMARY`` when that is set;
- without ``GITHUB_TOKEN`` (local use, ``make demo``) prints it: a contributor sees exactly what
  reviewers will see;
- with a token, upserts the sticky comment on the pull request (``--repo`` / ``--pr``, by default
  from ``GITHUB_REPOSITORY`` and the event in ``GITHUB_EVENT_PATH``) and sets a commit status or
  check run on the head commit with the verdict.

A read-only token (a pull request from a fork) is not an error: a neutral notice is printed, the
report is still in the job summary and the file, and the command exits 0. Other GitHub failures
exit 2 after the file and the summary are written. The token is read from the environment only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from modelops.errors import InputError
from modelops.fsutil import atomic_write_text

DEFAULT_REPORT = "reports/report.json"
DEFAULT_OUT = "reports/pr-comment.md"
LOG = logging.getLogger("modelops.ci.comment")


def event_info(event_path: str | None) -> dict[str, Any]:
    """PR number and head sha from a GitHub event payload (``pull_request`` or a PR comment)."""
    info: dict[str, Any] = {"pr": None, "sha": None}
    if not event_path:
        return info
    path = Path(event_path)
    try:
        event = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"GITHUB_EVENT_PATH {str(path)!r} does not exist",
                         hint="unset it, or pass --repo and --pr") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: the event payload is not readable JSON ({exc})",
                         hint="unset GITHUB_EVENT_PATH, or pass --repo and --pr") from None
    if not isinstance(event, dict):
        return info
    pr = event.get("pull_request")
    if isinstance(pr, dict):
        info["pr"] = pr.get("number") if isinstance(pr.get("number"), int) else None
        head = pr.get("head") if isinstance(pr.get("head"), dict) else {}
        info["sha"] = head.get("sha") if isinstance(head.get("sha"), str) else None
        return info
    issue = event.get("issue")
    if isinstance(issue, dict) and issue.get("pull_request") and \
            isinstance(issue.get("number"), int):
        info["pr"] = issue["number"]
    return info


def run_url(env: dict[str, str]) -> str | None:
    server, repo, run = (env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY"),
                         env.get("GITHUB_RUN_ID"))
    return f"{server.rstrip('/')}/{repo}/actions/runs/{run}" if server and repo and run else None


def _verdict_text(report: dict[str, Any]) -> tuple[bool, str]:
    ok = report.get("verdict") == "pass"
    evaluate = report.get("sections", {}).get("evaluate", {})
    summary = evaluate.get("summary") if isinstance(evaluate, dict) else None
    failed = [name for name, s in report.get("sections", {}).items()
              if isinstance(s, dict) and s.get("status") == "fail"]
    text = "all gates pass" if ok else "failed: " + ", ".join(failed or ["gates"])
    if isinstance(summary, str) and summary:
        text += f" ({summary})"
    return ok, text


def _write_outputs(body: str, out: Path, env: dict[str, str]) -> None:
    atomic_write_text(out, body)
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(body if body.endswith("\n") else body + "\n")


def _report_of(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """The report to post: the file, or (``--if-missing``) one saying the evaluation did not
    finish; with ``--fail-section NAME=REASON``, that section failed (when the report does not
    already say so): a job that failed before it could record its own failure."""
    from modelops.ci.reportfile import incomplete_report, load_report, overall_verdict

    if not Path(args.report).is_file() and args.if_missing:
        context = {"repository": env.get("GITHUB_REPOSITORY"), "run_url": run_url(env),
                   "pr_number": args.pr}
        report = incomplete_report(".", args.if_missing, model=args.model, context=context)
        sha = args.sha or event_info(env.get("GITHUB_EVENT_PATH"))["sha"]
        if sha:  # the commit the run evaluated, as the check is attached to it
            report["revisions"]["head"]["sha"] = sha
    else:
        report = load_report(args.report)
    for item in args.fail_section or []:
        name, _, reason = item.partition("=")
        if not name or not reason:
            raise InputError(f"--fail-section {item!r} is not NAME=REASON",
                             hint="e.g. --fail-section 'compile=the GPU job failed'")
        section = report["sections"].get(name) or {}
        if section.get("status") != "fail":
            report["sections"][name] = {**{k: v for k, v in section.items()
                                           if k not in ("status", "reason", "summary")},
                                        "status": "fail", "reason": reason, "summary": reason}
    report["verdict"] = overall_verdict(report["sections"])
    return report


def publish(args: argparse.Namespace, env: dict[str, str] | None = None) -> int:
    from modelops.ci.markdown import marker, render_comment
    from modelops.github import APP_BOT_LOGIN, CommentForbidden, GitHub, GitHubPolicy

    env = dict(os.environ) if env is None else env
    report = _report_of(args, env)
    model = str(report.get("model", {}).get("name") or "model")
    body = render_comment(report, run_url=run_url(env))
    out = Path(args.out)
    _write_outputs(body, out, env)
    token = "" if args.preview else env.get("GITHUB_TOKEN", "")
    if not token:
        print(body)
        why = "--preview" if args.preview else "no GITHUB_TOKEN"
        print(f"comment: {why}, so nothing was posted; the comment is in {out}"
              + (" and the job summary" if env.get("GITHUB_STEP_SUMMARY") else ""),
              file=sys.stderr)
        return 0

    event = event_info(env.get("GITHUB_EVENT_PATH"))
    repo = args.repo or env.get("GITHUB_REPOSITORY")
    number = args.pr or event["pr"] or report.get("context", {}).get("pr_number")
    sha = args.sha or event["sha"]
    if not repo or "/" not in repo:
        raise InputError(f"repository {repo!r} is not 'owner/name'",
                         hint="pass --repo owner/name or set GITHUB_REPOSITORY")
    if not number:
        print(f"comment: not a pull request (no --pr and no pull request in the event); the "
              f"comment is in {out}", file=sys.stderr)
        return 0
    policy = GitHubPolicy(max_wait=args.max_wait, backoff=args.backoff)
    gh = GitHub(token, env.get("GITHUB_API_URL"), policy=policy)
    bot = args.bot_login or env.get("MODELOPS_BOT_LOGIN") or APP_BOT_LOGIN
    print(f"comment: updating the sticky comment of {model} on {repo}#{number} as {bot}",
          file=sys.stderr, flush=True)
    try:
        result = gh.upsert_comment(repo, int(number), body, marker=marker(model), bot_login=bot)
    except CommentForbidden:
        print(f"::notice title=PR comment skipped::this job's token cannot comment on {repo}#"
              f"{number} (read-only, as for a pull request from a fork); the report is in the "
              f"job summary and {out}", flush=True)
        return 0
    print(f"comment: {result.action} {result.url} ({result.requests} API requests)")

    ok, text = _verdict_text(report)
    target = run_url(env)
    if args.verdict_as == "none" or not sha:
        if not sha and args.verdict_as != "none":
            print("comment: no head commit (--sha or a pull_request event), so no "
                  f"{args.verdict_as} was set", file=sys.stderr)
        return 0
    context = args.context or f"modelops-suite/{model}"
    try:
        if args.verdict_as == "status":
            gh.set_status(repo, sha, "success" if ok else "failure", context=context,
                          description=text, target_url=target)
        else:
            gh.create_check_run(repo, sha, name=context, conclusion="success" if ok else "failure",
                                title=text, summary=body, details_url=target)
    except CommentForbidden:
        print(f"::notice title=Verdict not set::this job's token cannot set a {args.verdict_as} "
              f"on {repo}; the verdict is in the comment", flush=True)
        return 0
    print(f"comment: {args.verdict_as} {context} = {'success' if ok else 'failure'} on "
          f"{sha[:12]}")
    return 0


def _cmd_comment(args: argparse.Namespace) -> int:
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    else:
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.pr is not None and args.pr < 1:
        raise InputError(f"--pr {args.pr!r} is not a pull request number",
                         hint="pass the number shown in the pull request URL")
    for name in ("max_wait", "backoff"):
        if getattr(args, name) < 0:
            raise InputError(f"--{name.replace('_', '-')} {getattr(args, name)!r} is negative",
                             hint="pass seconds >= 0")
    return publish(args)


def register(subparsers: Any) -> None:
    """Add ``comment`` to ``modelops-ci``."""
    p = subparsers.add_parser(
        "comment", help="post the report as one sticky PR comment (or preview it locally)",
        description="Render reports/report.json to Markdown and upsert ONE sticky comment per "
                    "pull request and model (found by a hidden marker and the bot's login, "
                    "edited in place), then set a commit status or check run with the verdict. "
                    "Without GITHUB_TOKEN the Markdown is written to reports/pr-comment.md and "
                    "printed. Always appends to $GITHUB_STEP_SUMMARY when set.",
        epilog="Environment: GITHUB_TOKEN (never printed), GITHUB_API_URL, GITHUB_REPOSITORY, "
               "GITHUB_EVENT_PATH (PR number and head sha), GITHUB_SERVER_URL + GITHUB_RUN_ID "
               "(run link), GITHUB_STEP_SUMMARY, MODELOPS_BOT_LOGIN. A read-only token (fork "
               "PR) gives a notice and exit 0.")
    p.add_argument("--report", default=DEFAULT_REPORT, help="report file (default: %(default)s)")
    p.add_argument("--out", default=DEFAULT_OUT,
                   help="where the Markdown is written (default: %(default)s)")
    p.add_argument("--repo", default=None, help="owner/name (default: $GITHUB_REPOSITORY)")
    p.add_argument("--pr", type=int, default=None,
                   help="pull request number (default: from $GITHUB_EVENT_PATH)")
    p.add_argument("--sha", default=None,
                   help="commit for the verdict (default: the PR head from $GITHUB_EVENT_PATH)")
    p.add_argument("--bot-login", default=None,
                   help="login that owns the sticky comment (default: $MODELOPS_BOT_LOGIN or "
                        "github-actions[bot], the login of the Actions token)")
    p.add_argument("--verdict-as", choices=("status", "check", "none"), default="status",
                   help="commit status (needs 'statuses: write'), check run (needs 'checks: "
                        "write' and an app token such as the Actions one; a personal token "
                        "cannot) or none (default: %(default)s)")
    p.add_argument("--context", default=None,
                   help="status context / check name (default: modelops-suite/<model>)")
    p.add_argument("--max-wait", type=float, default=300.0,
                   help="longest wait for a GitHub rate limit, in seconds (default: %(default)s)")
    p.add_argument("--backoff", type=float, default=1.0,
                   help="first delay before retrying a 5xx or timeout, doubled each retry, in "
                        "seconds (default: %(default)s)")
    p.add_argument("--if-missing", default=None, metavar="REASON",
                   help="when the report file does not exist, post a comment saying the "
                        "evaluation did not finish, with this reason (default: a missing "
                        "report is an error)")
    p.add_argument("--model", default=None,
                   help="the model's name for --if-missing (default: the repository's name)")
    p.add_argument("--fail-section", action="append", default=None, metavar="NAME=REASON",
                   help="mark a section failed unless the report already does (a later job "
                        "that failed before recording it), may repeat")
    p.add_argument("--preview", action="store_true",
                   help="only write and print the Markdown, even when GITHUB_TOKEN is set")
    p.add_argument("--debug", action="store_true", help="log every HTTP request (no secrets)")
    p.set_defaults(handler=_cmd_comment)
