"""Benchmark: render + validate + publish of 1, 100 and 500 model/env pairs, and a no-op publish.

For each size N, N model/env pairs (N/2 models x staging, production) are rendered with the
real renderer (every manifest validated; each release carries a drift baseline, as real ones
do), then published as ONE commit into a bare repository on disk that already holds an older
state of every folder (so every file changes), then published again unchanged (the no-op).
The baseline, measured in the same run on the same bytes: a working-tree repository holding
the same older state, where the folders are rewritten and ``git add -A && git commit`` records
them (no clone, no push).

Goals: a no-op publish under 1 s; publishing 500 pairs within 3x the baseline.

``--steps`` also times render + validate of one folder (median of ``--runs``) with the renderer's
speed-ups switched off one by one, in the same process: the fast writer's plain ``-m`` strings,
writing alone the strings the fast writer cannot (spliced in), the compiled schema check
(gitops/fastschema.py), parsing each template shape once (gitops/template_cache.py).

    .venv/bin/python bench/gitops.py [--sizes 1 100 500] [--steps] [--runs 40]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modelops.gitops.gitrepo import ensure_bare_remote  # noqa: E402
from modelops.gitops.publish import params_renderer, publish  # noqa: E402
from modelops.gitops.release import Release  # noqa: E402

ENVS = ("staging", "production")
NOOP_GOAL_S = 1.0
RATIO_GOAL = 3.0


def drift_baseline(model: str) -> dict:
    """A drift baseline of metrics/drift_baseline.json's shape (64 features), as releases carry
    (it becomes a pod-template annotation: a ~2 KB JSON string, one per model)."""
    seed = zlib.crc32(model.encode())
    feats = [round(((seed >> (i % 24)) % 1000) / 1000 * 0.4, 6) for i in range(64)]
    return {"model": model, "split": "validation", "classes": [str(c) for c in range(10)],
            "class_distribution": [0.1] * 10, "n": 270,
            "features": {"mean": feats, "std": [round(f / 2, 6) for f in feats],
                         "min": [0.0] * 64, "max": [1.0] * 64}}


def release(model: str, version: str) -> Release:
    digit = format(zlib.crc32(model.encode()) & 0xF, "x")
    return Release(model=model, version=version, sha256=digit * 64, dvc_md5=digit * 32,
                   artifact_uri=f"s3://models/files/md5/{digit * 2}/{digit * 30}",
                   image="ghcr.io/example/modelops-serve:0.1.0",
                   source_repo="https://github.com/example/models", source_commit="c" * 40,
                   dvc_lock_sha256="d" * 64, drift_baseline=drift_baseline(model))


def pairs(n: int) -> list[tuple[str, str]]:
    return [(ENVS[i % 2], f"model-{i // 2:04d}") for i in range(n)]


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def write_tree(root: Path, changes: dict[str, dict[str, bytes]]) -> None:
    for folder, files in changes.items():
        target = root / folder
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for name, data in files.items():
            (target / name).write_bytes(data)


def quiet(_line: str) -> None:
    pass


def run_size(n: int, render, tmp: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    changes = {f"{env}/{model}": dict(render(release(model, "v2"), env))
               for env, model in pairs(n)}
    t_render = time.perf_counter() - t0
    older = {f: {k: v + b"# older\n" for k, v in files.items()} for f, files in changes.items()}

    remote = ensure_bare_remote(tmp / f"remote-{n}.git")
    publish(str(remote), older, message="older state\n", log=quiet)
    t0 = time.perf_counter()
    result = publish(str(remote), changes, message=f"publish {n} pairs\n", log=quiet)
    t_publish = time.perf_counter() - t0
    assert result.commit and len(result.changed) == n
    t0 = time.perf_counter()
    noop = publish(str(remote), changes, message="again\n", log=quiet)
    t_noop = time.perf_counter() - t0
    assert noop.noop

    work = tmp / f"baseline-{n}"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    write_tree(work, older)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "older state")
    t0 = time.perf_counter()
    write_tree(work, changes)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", f"publish {n} pairs")
    t_base = time.perf_counter() - t0
    files = sum(len(f) for f in changes.values())
    return {"pairs": n, "files": files, "render": t_render, "publish": t_publish,
            "noop": t_noop, "baseline": t_base}


def _plain_render(name: str, context: dict) -> list:
    """Render and parse every text (what gitops.render did before the template cache)."""
    from modelops.gitops.templating import jinja_env
    from modelops.yamlio import load_yaml_all_fast

    return load_yaml_all_fast(jinja_env().get_template(name).render(**context), f"template {name}")


def steps(render, runs: int) -> list[tuple[str, float]]:
    """Median ms per folder with the speed-ups switched on one at a time (cumulative); the
    levels take turns folder by folder, so load on the machine hits them alike."""
    import re
    import statistics

    from modelops.ci import yamlio
    from modelops.gitops import crd, template_cache, validate

    saved = (yamlio._PLAIN_CANDIDATE, yamlio._STR_CACHE, crd._fast_valid,
             validate._core_fast_valid, template_cache.render_parsed, yamlio._ruamel_value)
    plain_no_dash = re.compile(r"[A-Za-z0-9_./=(][ -~]{0,999}")
    old_cache: dict = {}  # the writer's string cache under the old rule

    def no_splice(*_args: object) -> str:
        raise yamlio._NotFast

    def level(n: int) -> None:
        yamlio._PLAIN_CANDIDATE = saved[0] if n >= 1 else plain_no_dash
        yamlio._STR_CACHE = saved[1] if n >= 1 else old_cache
        yamlio._ruamel_value = saved[5] if n >= 2 else no_splice
        crd._fast_valid = saved[2] if n >= 3 else (lambda _kind: None)
        validate._core_fast_valid = saved[3] if n >= 3 else (lambda _a, _k: None)
        template_cache.render_parsed = saved[4] if n >= 4 else _plain_render

    labels = ["none of the four below (the rollout's '-m' sends it to ruamel)",
              "+ fast writer writes '-m' plain (ci/yamlio.py)",
              "+ the baseline's long string written alone, spliced in (ci/yamlio.py)",
              "+ compiled yes/no schema check (gitops/fastschema.py)",
              "+ each template shape parsed once (gitops/template_cache.py)"]
    times: list[list[float]] = [[] for _ in labels]
    try:
        for i in range(runs + 2):
            for n in range(len(labels)):
                level(n)
                t0 = time.perf_counter()
                render(release(f"model-{i:04d}", "v2"), ENVS[i % 2])
                times[n].append(time.perf_counter() - t0)
    finally:
        (yamlio._PLAIN_CANDIDATE, yamlio._STR_CACHE, crd._fast_valid,
         validate._core_fast_valid, template_cache.render_parsed, yamlio._ruamel_value) = saved
    return [(label, statistics.median(t[2:]) * 1000) for label, t in zip(labels, times)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 500],
                    help="numbers of model/env pairs (default: 1 100 500)")
    ap.add_argument("--steps", action="store_true",
                    help="also time one folder with each renderer speed-up switched off")
    ap.add_argument("--runs", type=int, default=40, help="folders timed per step (default 40)")
    args = ap.parse_args(argv)
    os.environ.setdefault("GIT_AUTHOR_NAME", "bench")
    os.environ.setdefault("GIT_AUTHOR_EMAIL", "bench@example.invalid")
    os.environ.setdefault("GIT_COMMITTER_NAME", "bench")
    os.environ.setdefault("GIT_COMMITTER_EMAIL", "bench@example.invalid")
    render = params_renderer(ROOT / "params.yaml")
    render(release("warm-up", "v0"), "staging")  # template and schema loading, once
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-gitops-") as tmp:
        for n in args.sizes:
            print(f"bench: {n} model/env pair(s)...", file=sys.stderr, flush=True)
            rows.append(run_size(n, render, Path(tmp)))
    head = (f"{'pairs':>5} {'files':>6} {'render+validate s':>17} {'publish s':>9} "
            f"{'no-op s':>7} {'git add+commit s':>16} {'publish/base':>12} "
            f"{'all/base':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['pairs']:>5} {r['files']:>6} {r['render']:>17.2f} {r['publish']:>9.3f} "
              f"{r['noop']:>7.3f} {r['baseline']:>16.3f} "
              f"{r['publish'] / r['baseline']:>11.2f}x "
              f"{(r['render'] + r['publish']) / r['baseline']:>7.1f}x")
    worst_noop = max(r["noop"] for r in rows)
    big = max(rows, key=lambda r: r["pairs"])
    print(f"\nno-op publish: worst {worst_noop:.3f} s (goal < {NOOP_GOAL_S:.0f} s): "
          f"{'met' if worst_noop < NOOP_GOAL_S else 'MISSED'}")
    ratio = big["publish"] / big["baseline"]
    print(f"publish of {big['pairs']} pairs: {ratio:.2f}x the git add+commit baseline "
          f"(goal <= {RATIO_GOAL:.0f}x): {'met' if ratio <= RATIO_GOAL else 'MISSED'}")
    full = (big["render"] + big["publish"]) / big["baseline"]
    print(f"render+validate+publish of {big['pairs']} pairs: {full:.1f}x the baseline "
          f"(goal <= {RATIO_GOAL:.0f}x): {'met' if full <= RATIO_GOAL else 'MISSED'}")
    if args.steps:
        print(f"bench: render + validate of one folder, {args.runs} runs per step...",
              file=sys.stderr, flush=True)
        rows = steps(render, args.runs)
        width = max(len(label) for label, _ in rows)
        print(f"\n{'render + validate of one folder':<{width}} {'ms (median)':>11} "
              f"{'vs first':>8}")
        for label, ms in rows:
            print(f"{label:<{width}} {ms:>11.2f} {rows[0][1] / ms:>7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
