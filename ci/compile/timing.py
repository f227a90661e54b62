"""``modelops-ci timing``: the ONNX artifact's latency at the base and at the head, on this runner.

Latency measured on one machine means nothing on another: a figure committed from a laptop
against one from a CI runner is a comparison of machines. So timing is never a pipeline output
(nothing tracked by git or DVC holds it, so a rerun changes no file) and is only ever judged
against the same runner: this step fetches the base revision's artifact (``dvc.api``: the DVC
cache, else the remote) and times both with ONNX Runtime on the CPU (one intra-op thread, as
``modelops-serve`` runs by default), in ``rounds`` rounds that each time the base and the head
one after the other, the order alternating, so a slow moment of the machine hits both.

For each batch size the section holds both revisions' p50/p95 over all rounds, the throughput
*at the median call* (``batch / p50``: it agrees with the percentiles beside it, where "calls /
total time" would let a few slow calls rule) and the ratio head/base of each round's p50: the
median ratio and its band (the smallest and largest round) are what a reviewer reads. A ratio
band that reaches within the revisions' own round-to-round spread (at least 5 %) of 1 is
"within noise". With ``modelops.compile.timing.max_slowdown`` set, the
step fails when the head is slower than that in *every* round at some batch size: a real
slowdown fires it, noise (which moves the rounds both ways) cannot.

When the artifact did not change (the base's has the same sha256) nothing is timed: the same
bytes on the same runtime have the same latency, and the section says so. When the base has no
artifact this runner can read (no DVC remote, e.g. a fork's run), the head alone is timed and
its noise band is the spread of its rounds. Nothing is gated then.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelops.errors import SuiteError
from modelops.fsutil import md5_file, sha256_file, write_json

if TYPE_CHECKING:  # numpy is in the onnx extra; this module's CLI loads in the base package
    import numpy as np

DEFAULT_SECTION = Path("reports") / "timing.json"
SECTION = "timing"
MIN_EFFECT = 0.05  # head/base ratios within 5% of 1 are "within noise" however tight the band


def _stderr(message: str) -> None:
    print(f"timing: {message}", file=sys.stderr, flush=True)


def base_artifact(root: Path, path: str, rev: str, dest: Path) -> tuple[Path | None, str]:
    """The artifact ``path`` of revision ``rev`` written to ``dest`` (``None`` and why when this
    runner cannot read it)."""
    try:
        import dvc.api
    except ImportError:  # pragma: no cover - dvc is in the ci extra
        return None, "dvc is not installed"
    try:
        with dvc.api.open(path, repo=str(root), rev=rev, mode="rb") as src, \
                open(dest, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
    except Exception as exc:  # not at that revision, not in the cache, no remote, no creds
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, text[:200]
    return dest, ""


def _runtime_version() -> str:
    """ONNX Runtime's version from its distribution's metadata (importing it takes 0.3 s)."""
    from modelops.ci.compile.latency import _version

    for dist in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"):
        found = _version(dist)
        if found:
            return found
    from modelops.ci.compile.onnxruntime import _ort_version

    return _ort_version()


def base_lock_md5(root: Path, path: str, rev: str) -> str | None:
    """The md5 that ``rev``'s top-level ``dvc.lock`` records for the file output ``path``
    (DVC 3's ``hash: md5``, the file's own md5), or None when it records none: the path is not
    an output there, is inside a folder output, or the lock is older or unreadable."""
    from modelops.ci.compare import read_lock_at
    from modelops.ci.metrics import normalise

    try:
        stages = read_lock_at(root, rev)
    except SuiteError:
        return None
    want = normalise(path)
    for stage in stages.values():
        outs = stage.get("outs") if isinstance(stage, dict) else None
        for out in outs if isinstance(outs, list) else []:
            if isinstance(out, dict) and normalise(str(out.get("path", ""))) == want:
                md5 = out.get("md5")
                if out.get("hash") == "md5" and isinstance(md5, str) and len(md5) == 32:
                    return md5
                return None
    return None


def _percentiles(times_ms: list[float], batch: int) -> dict[str, float]:
    import numpy as np

    p50, p95 = (float(v) for v in np.percentile(times_ms, [50, 95]))
    return {"p50_ms": p50, "p95_ms": p95,
            "throughput_per_s": batch * 1000.0 / p50 if p50 > 0 else float("inf")}


def _time(infer: Callable[[np.ndarray], Any], batch: np.ndarray, runs: int, warmup: int,
          clock: Callable[[], float]) -> list[float]:
    for _ in range(warmup):
        infer(batch)
    out = []
    for _ in range(runs):
        t0 = clock()
        infer(batch)
        out.append((clock() - t0) * 1000.0)
    return out


def measure(runners: dict[str, Callable[[np.ndarray], Any]], x: np.ndarray,
            batch_sizes: list[int], *, rounds: int, runs: int, warmup: int,
            max_slowdown: float | None = None,
            clock: Callable[[], float] = time.perf_counter,
            log: Callable[[str], None] = _stderr) -> list[dict[str, Any]]:
    """One row per batch size: ``runners`` (``head``, and ``base`` when it can be timed) in
    interleaved rounds. Pure apart from the clock, so the rules are testable with a fake one."""
    import numpy as np

    from modelops.ci.compile.latency import make_batch

    names = [n for n in ("base", "head") if n in runners]
    rows = []
    for size in batch_sizes:
        batch = make_batch(x, size)
        pooled: dict[str, list[float]] = {n: [] for n in names}
        per_round: dict[str, list[float]] = {n: [] for n in names}
        for r in range(rounds):
            order = names if r % 2 == 0 else list(reversed(names))
            for name in order:
                times = _time(runners[name], batch, runs, warmup, clock)
                pooled[name] += times
                per_round[name].append(float(np.percentile(times, 50)))
        row: dict[str, Any] = {"batch": size,
                               **{n: _percentiles(pooled[n], size) for n in names}}
        head_rounds = per_round["head"]
        mid = statistics.median(head_rounds)
        row["head_band"] = [min(head_rounds) / mid, max(head_rounds) / mid] if mid > 0 \
            else [1.0, 1.0]
        if "base" in runners:
            ratios = [h / b for h, b in zip(per_round["head"], per_round["base"]) if b > 0]
            row["ratio_p50"] = statistics.median(ratios)
            row["ratio_band"] = [min(ratios), max(ratios)]
            lo, hi = row["ratio_band"]
            # a change smaller than the revisions' own round-to-round spread, or than
            # MIN_EFFECT, is noise whatever its sign
            spread = max(max(v) / min(v) - 1 for v in per_round.values() if min(v) > 0)
            floor = max(MIN_EFFECT, spread)
            row["noise"] = floor
            row["change"] = "slower" if lo > 1 + floor else "faster" if hi < 1 - floor \
                else "within noise"
            if max_slowdown is not None:
                row["gate"] = "fail" if lo > max_slowdown else "pass"
        log(f"batch {size}: head p50 {row['head']['p50_ms']:.4f} ms"
            + (f", base {row['base']['p50_ms']:.4f} ms, head/base {row['ratio_p50']:.3f} "
               f"[{row['ratio_band'][0]:.3f}, {row['ratio_band'][1]:.3f}]"
               if "base" in row else ""))
        rows.append(row)
    return rows


def timing_section(root: Path, base_rev: str | None, *, params_file: str = "params.yaml",
                   model: Path | None = None, test_data: Path | None = None,
                   log: Callable[[str], None] = _stderr) -> dict[str, Any]:
    """The ``timing`` report section for the workspace's artifact against ``base_rev``'s."""
    from modelops.ci.compile.latency import cpu_model
    from modelops.settings import load_settings
    from modelops.settings.model import step_skipped

    settings = load_settings(root / params_file)
    cfg, info = settings.compile, settings.model
    if model is None:
        reason = step_skipped(info, settings.steps, "compile")
        if reason:
            return {"status": "skipped", "reason": reason}
        if not info.test_data and test_data is None:
            return {"status": "skipped", "reason": "no test data to time the model on "
                                                   "(modelops.model.test_data is '')"}
    artifact = root / (model or Path(info.artifact.path))
    data = root / (test_data or Path(info.test_data))
    t = cfg.timing
    if not artifact.is_file():
        from modelops.ci.compile.step import check_onnx

        check_onnx(artifact, cfg.input_name, cfg.output_name)  # names what is wrong with it
    head_sha = sha256_file(artifact)
    section: dict[str, Any] = {
        "status": "pass", "model": {"path": artifact.relative_to(root).as_posix()
                                    if artifact.is_relative_to(root) else str(artifact),
                                    "sha256": head_sha},
        "runner": f"onnxruntime {_runtime_version()} (CPUExecutionProvider, 1 thread)",
        "cpu": cpu_model(), "cpu_count": os.cpu_count(),
        "rounds": t.rounds, "runs": t.runs, "max_slowdown": t.max_slowdown,
    }
    rel = Path(info.artifact.path).as_posix() if model is None else str(model)
    if base_rev and base_lock_md5(root, rel, base_rev) == md5_file(artifact):
        # the base's dvc.lock records these very bytes: nothing to fetch, nothing to time
        section["base"] = {"rev": base_rev, "sha256": head_sha}
        section.update(compared="same-artifact", rows=[])
        section["summary"] = summarize(section)
        log(f"the artifact is the base's (its dvc.lock records the same md5; sha256 "
            f"{head_sha[:12]}): not timed")
        return section
    from modelops.ci.compile.onnxruntime import make_session
    from modelops.ci.compile.step import check_onnx, load_split

    check_onnx(artifact, cfg.input_name, cfg.output_name)
    x, _ = load_split(data)

    def runner(path: Path) -> Callable[[np.ndarray], Any]:
        session = make_session(path, optimize=True, provider_list=["CPUExecutionProvider"],
                               threads=1)
        return lambda batch: session.run([cfg.output_name], {cfg.input_name: batch})
    runners = {"head": runner(artifact)}
    with tempfile.TemporaryDirectory(prefix="modelops-timing-") as tmp:
        base_path, why = (None, "no base revision") if not base_rev else base_artifact(
            root, rel, base_rev, Path(tmp) / "base.onnx")
        if base_path is not None:
            base_sha = sha256_file(base_path)
            section["base"] = {"rev": base_rev, "sha256": base_sha}
            if base_sha == head_sha:  # the same bytes on the same runtime: nothing to time
                section.update(compared="same-artifact", rows=[])
                section["summary"] = summarize(section)
                log(f"the artifact is the base's (sha256 {head_sha[:12]}): not timed")
                return section
            runners["base"] = runner(base_path)
            section["compared"] = "base-and-head"
        else:
            section["compared"] = "head-only"
            section["base_missing"] = why
        log(f"{section['compared']}: {t.rounds} rounds x {t.runs} runs at batch "
            f"{', '.join(map(str, t.batch_sizes))} ({section['runner']})")
        section["rows"] = measure(runners, x, list(t.batch_sizes), rounds=t.rounds, runs=t.runs,
                                  warmup=t.warmup,
                                  max_slowdown=t.max_slowdown if "base" in runners else None,
                                  log=log)
    slow = [r for r in section["rows"] if r.get("gate") == "fail"]
    if slow:
        section["status"] = "fail"
        worst = max(slow, key=lambda r: r["ratio_band"][0])
        section["reason"] = (f"the head is {worst['ratio_band'][0]:.2f}x to "
                             f"{worst['ratio_band'][1]:.2f}x slower than the base at batch "
                             f"{worst['batch']} in every round (max_slowdown "
                             f"{t.max_slowdown:g})")
    section["summary"] = summarize(section)
    return section


def summarize(section: dict[str, Any]) -> str:
    """One line for the section table."""
    rows = section.get("rows") or []
    if section.get("compared") == "same-artifact":
        return (f"the ONNX artifact is the base's (sha256 "
                f"{section['model']['sha256'][:12]}): its latency did not change, nothing timed")
    if not rows:
        return ""
    r = rows[0]
    head = r["head"]
    text = f"batch {r['batch']}: p50 {head['p50_ms']:.3f} ms"
    if "ratio_p50" in r:
        lo, hi = r["ratio_band"]
        text += (f", head/base {r['ratio_p50']:.2f}x (rounds {lo:.2f}-{hi:.2f}x: "
                 f"{r['change']})")
    else:
        lo, hi = r["head_band"]
        text += f" ±{max(1 - lo, hi - 1) * 100:.0f}% (head only: {section.get('base_missing')})"
    if section.get("status") == "fail":
        text += f"; {section.get('reason')}"
    return text


def render_timing_section(section: dict[str, Any]) -> str:
    """The timing block of the PR comment."""
    from modelops.ci.markdown import md

    rows = section.get("rows") or []
    if not rows:  # same artifact: the section table's line says so
        return ""
    icon = {"pass": "✅", "fail": "❌"}.get(section.get("status"), "❔")
    compared = section.get("compared")
    lines = [f"### {icon} Latency on this runner (ONNX Runtime, CPU)", ""]
    if compared == "base-and-head":
        lines += [f"Base and head timed in the same job, {section['rounds']} interleaved rounds "
                  f"of {section['runs']} calls; the band is the smallest and largest round's "
                  "head/base ratio."
                  + (f" Gate: slower than {section['max_slowdown']:g}x in every round fails."
                     if section.get("max_slowdown") else " No latency gate is set."), "",
                  "| batch | base p50 ms | head p50 ms | head/base | rounds | | base p95 ms "
                  "| head p95 ms | head throughput/s |",
                  "|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
        for r in rows:
            lo, hi = r["ratio_band"]
            lines.append(f"| {r['batch']} | {r['base']['p50_ms']:.4f} | {r['head']['p50_ms']:.4f}"
                         f" | {r['ratio_p50']:.2f}x | {lo:.2f}-{hi:.2f}x | {md(r['change'])}"
                         f"{' ❌' if r.get('gate') == 'fail' else ''} | "
                         f"{r['base']['p95_ms']:.4f} | {r['head']['p95_ms']:.4f} | "
                         f"{r['head']['throughput_per_s']:.0f} |")
    else:
        why = f"the base's artifact cannot be read here ({md(section.get('base_missing'))})"
        lines += [f"Informational, head only: {why}. The noise band is the spread of "
                  f"{section['rounds']} rounds of {section['runs']} calls.", "",
                  "| batch | p50 ms | noise band | p95 ms | throughput/s |",
                  "|---:|---:|---:|---:|---:|"]
        for r in rows:
            lo, hi = r["head_band"]
            lines.append(f"| {r['batch']} | {r['head']['p50_ms']:.4f} | "
                         f"−{(1 - lo) * 100:.0f}% / +{(hi - 1) * 100:.0f}% | "
                         f"{r['head']['p95_ms']:.4f} | {r['head']['throughput_per_s']:.0f} |")
    lines += ["", f"<sub>throughput at the median call (batch / p50); {md(section.get('runner'))};"
                  f" cpu: {md(section.get('cpu'))}</sub>"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- CLI

def run(args: argparse.Namespace) -> int:
    root = Path(".")
    try:
        section = timing_section(root, args.base, params_file=args.params, model=args.model,
                                 test_data=args.test_data)
    except SuiteError as exc:  # a model or data that cannot be timed: the section says why
        section = {"status": "skipped", "reason": f"cannot time the model: {exc.message}"}
    out = Path(args.out)
    write_json(out, section)
    if section["status"] == "skipped":
        print(f"timing: skipped: {section['reason']}")
    else:
        print(render_timing_section(section), end="")
    print(f"wrote {out}")
    return 1 if section["status"] == "fail" and args.gate else 0


def register(subparsers: Any) -> None:
    """Add ``timing`` to ``modelops-ci``."""
    p = subparsers.add_parser(
        "timing", help="time the ONNX artifact against the base's on this runner",
        description="Time the ONNX artifact (modelops.model.artifact.path) and the base "
                    "revision's (from the DVC cache or remote) with ONNX Runtime on the CPU, in "
                    "interleaved rounds on this runner (modelops.compile.timing), and write "
                    "the report section 'timing': p50/p95, throughput at the median call, the "
                    "head/base ratio and its band over the rounds. When the base's artifact "
                    "cannot be read or did not change, the head alone is timed "
                    "(informational). Never writes a tracked file.",
        epilog="Exit codes: 0 done (or skipped, with the reason in the section); 1 with "
               "--gate when max_slowdown fired; 2 bad input.")
    p.add_argument("--base", default=None, metavar="REV",
                   help="the base revision whose artifact is timed too (default: none, the "
                        "head alone)")
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--model", type=Path, default=None,
                   help="ONNX model (default: modelops.model.artifact.path)")
    p.add_argument("--test-data", type=Path, default=None,
                   help=".npz whose x the calls use (default: modelops.model.test_data)")
    p.add_argument("--out", default=str(DEFAULT_SECTION),
                   help="where the section is written (default: %(default)s)")
    p.add_argument("--gate", action="store_true",
                   help="exit 1 when modelops.compile.timing.max_slowdown fired")
    p.set_defaults(handler=run)

