"""Benchmark the sticky comment: API requests per upsert and render time.

Runs the real client (modelops.github) against the GitHub imitation (a loopback HTTP server that
checks
every request and response against GitHub's OpenAPI description), with 0, 100 and 1000 existing
comments on the pull request, the sticky one last (the worst case: every page is read).

Baseline, measured in the same run: the same search with GitHub's default page size (30 per
page, what a client that does not set ``per_page`` reads). Goal: at most ceil(n/100)+2 requests
per upsert, and rendering the example report in under 50 ms.

    .venv/bin/python -m bench.comment [--sizes 0 100 1000] [--renders 50]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from github3.issues.comment import IssueComment  # noqa: E402

from modelops.ci.markdown import marker, render_comment  # noqa: E402
from modelops.ci.reportfile import load_report  # noqa: E402
from modelops.github import APP_BOT_LOGIN, GitHub, GitHubPolicy  # noqa: E402
from tests.github_imitation import GitHubImitation  # noqa: E402

REPO = "bench/models"
EXAMPLE = ROOT / "tests" / "data" / "comment" / "report.json"
RENDER_GOAL_MS = 50.0


def naive_upsert(gh: GitHub, number: int, body: str, mark: str) -> None:
    """The baseline: the same search and edit, but pages of 30 (GitHub's default)."""
    url = gh._url("repos", *REPO.split("/"), "issues", number, "comments")
    found = None
    for c in gh.gh._iter(-1, url, IssueComment, params={"per_page": 30}):
        if c.user.login == APP_BOT_LOGIN and (c.body or "").startswith(mark):
            found = c
            break
    if found:
        gh.gh._patch(found._api, json={"body": body})
    else:
        gh.gh._post(url, data={"body": body})


def measure(sizes: list[int], body: str, mark: str) -> list[tuple]:
    api = GitHubImitation().start()
    api.add_token("bench-token", APP_BOT_LOGIN)
    api.add_repo(REPO)
    rows = []
    try:
        gh = GitHub("bench-token", api.api_url, policy=GitHubPolicy(attempts=1))
        gh.gh._get(gh._url("rate_limit"))  # warm up: the imitation loads the OpenAPI document
        for i, n in enumerate(sizes):
            pr = 100 + i
            for k in range(max(0, n - 1)):
                api.add_comment(REPO, pr, f"reviewer{k % 5}", f"comment {k}")
            if n:
                api.add_comment(REPO, pr, APP_BOT_LOGIN, mark + "\nold report")
            print(f"  {n} existing comments ...", file=sys.stderr, flush=True)
            api.reset_log()
            start = time.perf_counter()
            result = gh.upsert_comment(REPO, pr, body, marker=mark)
            took = time.perf_counter() - start
            ours = api.count()
            api.reset_log()
            naive_upsert(gh, pr, body + "\n", mark)
            base = api.count()
            budget = math.ceil(n / 100) + 2
            rows.append((n, result.action, ours, base, budget, took))
        if api.violations:
            raise SystemExit("contract violations:\n" + "\n".join(api.violations))
    finally:
        api.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 100, 1000],
                        help="existing comments per run (default: %(default)s)")
    parser.add_argument("--renders", type=int, default=50,
                        help="renders of the example report to time (default: %(default)s)")
    parser.add_argument("--report", default=str(EXAMPLE), help="report to render")
    args = parser.parse_args(argv)

    report = load_report(args.report)
    mark = marker(report["model"]["name"])
    render_comment(report)  # warm the template cache, as a real run does once
    times = []
    for _ in range(args.renders):
        start = time.perf_counter()
        body = render_comment(report, run_url="https://github.com/o/r/actions/runs/1")
        times.append((time.perf_counter() - start) * 1000)
    rows = measure(args.sizes, body, mark)

    print("\nAPI requests per upsert (sticky comment last; baseline: default 30 per page)")
    print(f"{'comments':>9} {'action':>8} {'requests':>9} {'baseline':>9} {'ratio':>6} "
          f"{'goal':>5} {'ok':>3} {'wall ms':>8}")
    ok = True
    for n, action, ours, base, budget, took in rows:
        good = ours <= budget
        ok &= good
        print(f"{n:>9} {action:>8} {ours:>9} {base:>9} {ours / base:>6.2f} {budget:>5} "
              f"{'yes' if good else 'NO':>3} {took * 1000:>8.1f}")
    p50 = statistics.median(times)
    p95 = sorted(times)[max(0, math.ceil(0.95 * len(times)) - 1)]
    print(f"\nrender of {Path(args.report).name} ({len(body)} chars), {args.renders} runs")
    print(f"{'p50 ms':>8} {'p95 ms':>8} {'goal ms':>8} {'ratio p95/goal':>15}")
    print(f"{p50:>8.2f} {p95:>8.2f} {RENDER_GOAL_MS:>8.0f} {p95 / RENDER_GOAL_MS:>15.2f}")
    ok &= p95 < RENDER_GOAL_MS
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
