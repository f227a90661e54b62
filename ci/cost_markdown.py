"""The compute section of the PR comment, in a module of its own: the comment job renders it
without importing what computes it (``modelops.ci.cost``: settings, the stage ledger, git)."""

from __future__ import annotations

from typing import Any


def render_compute_section(section: dict[str, Any]) -> str:
    """The compute block of the PR comment: this pull request's own compute first, then the
    committed stage records. Every figure is an estimate."""
    from modelops.ci.markdown import md

    cur = section.get("prices", {}).get("currency", "")
    lines = ["<details><summary>Compute and estimated cost</summary>", ""]
    pr = section.get("pull_request")
    if pr:
        failed = f", {pr['failed']} failed" if pr.get("failed") else ""
        lines += [f"**This pull request's own compute** (estimate): {pr['runs']} stage run(s)"
                  f"{failed}, {pr['cpu_seconds']:.1f} CPU s, {pr['gpu_seconds']:.1f} GPU s, "
                  f"{pr['memory_gb_seconds']:.1f} GB·s of memory: about "
                  f"**{pr['cost']:.4f} {md(cur)}**.", "",
                  "| run | status | wall s | CPU s | GPU s | memory GB·s | est. cost |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for run in section.get("runs") or []:
            lines.append(f"| {md(run.get('stage'))} | {md(run.get('status'))} | "
                         f"{run.get('wall_seconds') or 0:.1f} | {run.get('cpu_seconds') or 0:.1f}"
                         f" | {run.get('gpu_seconds') or 0:.1f} | "
                         f"{run.get('memory_gb_seconds') or 0:.1f} | "
                         f"{run.get('cost') or 0:.4f} |")
        lines.append("")
    stages = section.get("stages") or {}
    if stages:
        lines += ["Committed records of the model's stages:", "",
                  "| stage | reran here | wall s | CPU s | GPU s | est. cost |",
                  "|---|:---:|---:|---:|---:|---:|"]
        for name, row in stages.items():
            lines.append(f"| {md(name)} | {'yes' if row.get('reran') else ''} | "
                         f"{row.get('wall_seconds', 0):.1f} | {row.get('cpu_seconds', 0):.1f} | "
                         f"{row.get('gpu_seconds', 0):.1f} | {row.get('cost', 0):.4f} {md(cur)} |")
        total, this = section.get("total") or {}, section.get("this_change")
        lines.append("")
        lines.append(f"Recorded for the whole pipeline: about {total.get('cost', 0):.4f} "
                     f"{md(cur)}" + (f"; this change reran stages worth about "
                                     f"{this['cost']:.4f} {md(cur)}." if this else "."))
    prices = section.get("prices", {})
    lines += ["", f"Estimates: recorded resources x the prices of `modelops.cost` in force since "
                  f"{md(prices.get('since', '?'))}: {prices.get('cpu_core_hour')} per CPU hour, "
                  f"{prices.get('gpu_hour')} per GPU hour, {prices.get('memory_gb_hour')} per "
                  "GB-hour of memory.", "", "</details>"]
    return "\n".join(lines)
