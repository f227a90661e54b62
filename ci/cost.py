"""``modelops-ci cost``: compute and cost per model, from the records in git history.

Every pipeline stage records its compute in ``metrics/compute/<stage>.json`` (see
:mod:`modelops.compute`), committed with the model it produced. A commit that changes one of those
files is a run of that stage; this command walks the first-parent history of the branch and
sums, per model (``params.yaml`` ``model.name`` at that commit), the runs, CPU and GPU hours and
the estimated cost at today's price table (``params.yaml`` ``cost``).

``modelops-ci cost --report reports/report.json [--base REV]`` adds the ``compute`` section to
a PR report instead: every stage's recorded compute, and which stages this change reran.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from modelops.compute import COMPUTE_DIR, CostParams, compute_section, price
from modelops.errors import InputError
from modelops.git import git_text
from modelops.settings import model_name_of


def _git(root: Path, *args: str, check: bool = True) -> str:
    out = git_text(args, cwd=root)
    if out is None:
        if not check:
            return ""
        raise InputError(f"git {args[0]} failed in {root}",
                         hint="run inside the model repository (a git checkout with history)")
    return out


def _model_at(root: Path, commit: str) -> str:
    from modelops.yamlio import load_yaml

    text = _git(root, "show", f"{commit}:params.yaml", check=False)
    try:
        return model_name_of(load_yaml(text)) or "unknown"
    except Exception:  # noqa: BLE001 - an old or broken params.yaml: still count the run
        return "unknown"


def history(root: Path, prices: CostParams, rev: str = "HEAD") -> dict[str, Any]:
    """Per model: runs, stage runs, CPU/GPU seconds and cost, from ``rev``'s history."""
    log = _git(root, "log", "--first-parent", "--format=%H %cI", rev, "--",
               str(COMPUTE_DIR)).split("\n")
    models: dict[str, dict[str, Any]] = defaultdict(lambda: {
        "runs": 0, "stage_runs": defaultdict(int), "cpu_seconds": 0.0, "gpu_seconds": 0.0,
        "cost": 0.0, "first": None, "last": None})
    for line in filter(None, log):
        commit, date = line.split(" ", 1)
        changed = _git(root, "diff-tree", "--no-commit-id", "--name-only", "-r", "--root",
                       "--diff-filter=AM", "-m", "--first-parent", commit, "--",
                       str(COMPUTE_DIR)).split()
        runs = []
        for path in sorted(set(changed)):
            try:
                runs.append(json.loads(_git(root, "show", f"{commit}:{path}")))
            except (ValueError, InputError):
                continue
        if not runs:
            continue
        entry = models[_model_at(root, commit)]
        entry["runs"] += 1
        for data in runs:
            entry["stage_runs"][str(data.get("stage", "?"))] += 1
            entry["cpu_seconds"] += data.get("cpu_seconds", 0.0)
            entry["gpu_seconds"] += data.get("gpu_seconds", 0.0)
            entry["cost"] += price(data, prices)
        entry["first"] = date  # the log is newest first
        entry["last"] = entry["last"] or date
    return {name: {**e, "stage_runs": dict(e["stage_runs"]),
                   "cpu_seconds": round(e["cpu_seconds"], 3),
                   "gpu_seconds": round(e["gpu_seconds"], 3), "cost": round(e["cost"], 6),
                   "currency": prices.currency}
            for name, e in sorted(models.items())}


def reran_since(root: Path, base: str) -> list[str]:
    """Stages whose compute record differs between ``base`` and the working tree."""
    out = _git(root, "diff", "--name-only", base, "--", str(COMPUTE_DIR))
    out += _git(root, "ls-files", "--others", "--exclude-standard", "--", str(COMPUTE_DIR))
    return sorted({Path(p).stem for p in out.split()})


def format_table(summary: dict[str, Any]) -> str:
    if not summary:
        return "no compute records in this history (metrics/compute/*.json)"
    lines = [f"{'model':<24} {'runs':>5} {'CPU h':>9} {'GPU h':>9} {'cost':>12}  since"]
    for name, e in summary.items():
        lines.append(f"{name:<24} {e['runs']:>5} {e['cpu_seconds'] / 3600:>9.3f} "
                     f"{e['gpu_seconds'] / 3600:>9.3f} {e['cost']:>8.4f} {e['currency']}  "
                     f"{(e['first'] or '')[:10]}")
    return "\n".join(lines)


def render_compute_section(section: dict[str, Any]) -> str:
    """The compute block of the PR comment: per stage, and what this change paid for."""
    from modelops.ci.markdown import md

    cur = section.get("prices", {}).get("currency", "")
    lines = ["<details><summary>Compute and estimated cost</summary>", "",
             "| stage | reran here | wall s | CPU s | GPU s | cost |",
             "|---|:---:|---:|---:|---:|---:|"]
    for name, row in section.get("stages", {}).items():
        lines.append(f"| {md(name)} | {'yes' if row.get('reran') else ''} | "
                     f"{row.get('wall_seconds', 0):.1f} | {row.get('cpu_seconds', 0):.1f} | "
                     f"{row.get('gpu_seconds', 0):.1f} | {row.get('cost', 0):.4f} {md(cur)} |")
    total, this = section.get("total") or {}, section.get("this_change")
    lines.append("")
    lines.append(f"Recorded for the whole pipeline: {total.get('cost', 0):.4f} {md(cur)}"
                 + (f"; this change reran stages worth {this['cost']:.4f} {md(cur)}."
                    if this else "."))
    prices = section.get("prices", {})
    lines += ["", f"Prices (params.yaml `cost`): {prices.get('cpu_core_hour')} per CPU hour, "
                  f"{prices.get('gpu_hour')} per GPU hour.", "", "</details>"]
    return "\n".join(lines)


def _cmd_cost(args) -> int:
    from modelops.settings import load_settings

    root = Path(args.repo)
    params = load_settings(root / args.params)
    if args.report:
        from modelops.ci.reportfile import merge_section

        reran = reran_since(root, args.base) if args.base else None
        merge_section(args.report, "compute", compute_section(root, params.cost, reran))
        print(f"cost: compute section added to {args.report}")
        return 0
    summary = history(root, params.cost, args.rev)
    print(json.dumps(summary, indent=2) if args.json else format_table(summary))
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "cost", help="compute and estimated cost per model, from git history",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--repo", default=".", help="model repository (default: .)")
    p.add_argument("--params", default="params.yaml", help="params file (price table)")
    p.add_argument("--rev", default="HEAD", help="history to walk (default: HEAD)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--report", default=None,
                   help="add the compute section to this report.json instead")
    p.add_argument("--base", default=None,
                   help="with --report: base revision, to mark the stages this change reran")
    p.set_defaults(handler=_cmd_cost)
