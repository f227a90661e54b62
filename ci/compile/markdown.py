"""The compile block of the PR comment: ``render_compile_section(section) -> str``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _esc(text: Any) -> str:
    """Escape untrusted text (the suite's one Markdown escaper: no HTML, mentions, links)."""
    from modelops.ci.markdown import md

    return md(text, limit=600)


def _ms(v: float) -> str:
    return f"{v:.3f}"


def render_compile_section(section: dict[str, Any]) -> str:
    status = section.get("status", "fail")
    icon = {"pass": "✅", "fail": "❌", "skipped": "⏭️"}.get(status, "❔")
    lines = [f"### {icon} Compile: {_esc(section.get('backend', '?'))} "
             f"{_esc(section.get('precision', ''))}".rstrip()]
    for name, why in (section.get("skipped_backends") or {}).items():
        lines.append(f"- {_esc(name)}: {_esc(why)}")
    if section.get("precision_note"):
        lines.append(f"- note: {_esc(section['precision_note'])}")
    if section.get("error"):
        lines.append(f"- **{_esc(section['error'])}**")
    engine = section.get("engine")
    if engine:
        built = (f", built in {section['build_seconds']:.2f}s"
                 if isinstance(section.get("build_seconds"), (int, float)) else "")
        lines.append(f"- artifact: `{engine['sha256'][:12]}` ({engine['bytes'] / 1024:.1f} KiB)"
                     f"{built} by {_esc(section.get('runner', '?'))}")
    par = section.get("parity")
    if par:
        tol = section.get("tolerance", {})
        lines += [
            "",
            "| parity (test split) | value | limit |",
            "|---|---:|---:|",
            f"| max abs error | {par['max_abs_error']:.3g} | atol {tol.get('atol', '?')} + "
            f"rtol {tol.get('rtol', '?')} |",
            f"| max rel error | {par['max_rel_error']:.3g} | |",
            f"| logits beyond tolerance | {par['mismatched_elements']} | 0 |",
            f"| top-1 agreement | {par['top1_agreement']:.4f} | "
            f"≥ {tol.get('min_top1_agreement', '?')} |",
            f"| accuracy (reference) | {par['accuracy']:.4f} ({par['reference_accuracy']:.4f}) "
            f"| drop ≤ {tol.get('max_accuracy_drop', '?')} |",
        ]
    rows = section.get("latency") or []
    if rows:
        lines += [
            "",
            f"Latency, ms: compiled ({_esc(section.get('runner', '?'))}) vs baseline "
            f"({_esc(section.get('baseline', '?'))})",
            "",
            "| batch | p50 | p95 | p99 | throughput/s | baseline p50 | baseline p95 | "
            "baseline throughput/s | speedup p50 |",  # throughput at the median call
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            c, b = r["compiled"], r["baseline"]
            speed = f"{r['speedup_p50']:.2f}x" if r.get("speedup_p50") else "n/a"
            lines.append(f"| {r['batch']} | {_ms(c['p50_ms'])} | {_ms(c['p95_ms'])} | "
                         f"{_ms(c['p99_ms'])} | {c['throughput_per_s']:.0f} | "
                         f"{_ms(b['p50_ms'])} | {_ms(b['p95_ms'])} | "
                         f"{b['throughput_per_s']:.0f} | {speed} |")
    env = section.get("environment")
    if env:
        gpu = ", ".join(g["name"] for g in env.get("gpu", [])) or "none"
        libs = ", ".join(f"{k} {v}" for k, v in env.get("libraries", {}).items())
        lines += ["", f"<sub>cpu: {_esc(env.get('cpu'))}; gpu: {_esc(gpu)}; {_esc(libs)}</sub>"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m modelops.ci.compile.markdown [reports/compile.json]``: print the comment
    block."""

    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0] if args else "reports/compile.json")
    try:
        section = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        print(f"compile: error: {path}: cannot read the compile section ({exc}); run "
              "`modelops-ci compile` first", file=sys.stderr)
        return 2
    print(render_compile_section(section), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
