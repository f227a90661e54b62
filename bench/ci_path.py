"""Wall time of the whole pull-request path against ``dvc repro`` alone, in the same run.

The example repository is copied into a temporary folder and reproduced once (this fills the DVC
cache; not timed). Each round then starts from a fresh copy with the cache warm and the
workspace outputs removed, the way a CI job finds it (nothing to retrain), and times:

- baseline: ``dvc repro`` alone (restores the outputs from the cache), without DVC's usage
  report (``DVC_NO_ANALYTICS=1``), as the suite runs its own DVC commands;
- the PR path: the composite actions setup -> evaluate -> comment, run by the test harness
  against the GitHub API imitation (one sticky comment + check); evaluate's `dvc repro` includes
  the ONNX Runtime compile stage. The rounds share one Actions cache and one runner image, as
  the runs of a repository do; a first, untimed PR run fills the cache (the setup action saves
  the installed environment at the end of its job), so setup restores it. The compile action
  (pr.yml runs it on the GPU runner, for TensorRT) is timed too, here with ONNX Runtime, and
  shown on its own row.

Then, unless ``--no-installs``, what each job of ``modelops-pr.yml`` installs, the way the
setup action installs it (``pip install <suite checkout>[extras] [-r requirements]``) into a
fresh virtual environment: once with an empty pip cache (cold) and once more into another fresh
environment with that cache warm (a runner whose ``actions/cache`` restored ``~/.cache/pip``):
time and installed size per job. The evaluate job's pipeline requirements are
``pipeline/requirements.txt`` (CPU PyTorch); where PyTorch's own index cannot be reached, its
``--extra-index-url`` line is left out and the CPU wheel comes from the machine's pip
configuration, said in the output.

Usage: ``python -m bench.ci_path [--rounds 3] [--epochs N] [--no-installs]`` (``--epochs``
shortens the one-off training; the timed rounds retrain nothing either way).
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.actions_harness import Runner, github_context  # noqa: E402
from tests.github_imitation import GitHubImitation, webhook_payload  # noqa: E402

SKIP = ("tests/", "bench/", ".dvc/cache/", ".dvc/tmp/")  # git ls-files leaves out ignored paths
OUTPUTS = ("data/raw/digits.csv", "data/prepared", "models/model.pt", "models/model.onnx")
ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
       "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid",
       "GIT_CONFIG_NOSYSTEM": "1",
       "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
REPO = "octo/models"


def sh(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, **ENV, **(env or {})},
                          capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def prepare(work: Path, epochs: int | None) -> Path:
    """Copy the project, reproduce once, commit on main, push to a bare origin, open a PR
    branch whose outputs are all in the cache."""
    repo = work / "repo"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for rel in files.split("\0"):
        if rel and not rel.startswith(SKIP) and (ROOT / rel).is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, repo / rel)
    if epochs is not None:
        params = repo / "params.yaml"
        params.write_text(re.sub(r"(?m)^(  epochs: )\d+", rf"\g<1>{epochs}", params.read_text()))
    py = [sys.executable, "-m"]
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                ["git", "commit", "-q", "-m", "example"], [*py, "dvc", "repro"],
                ["git", "add", "-A"], ["git", "commit", "-q", "-m", "reproduced"],
                ["git", "init", "-q", "--bare", str(work / "origin.git")],
                ["git", "remote", "add", "origin", str(work / "origin.git")],
                ["git", "push", "-q", "origin", "main"], ["git", "checkout", "-q", "-b", "pr"],
                ["git", "commit", "-q", "--allow-empty", "-m", "a change to review"]):
        print(f"  prepare: {' '.join(cmd[-3:])}", flush=True)
        sh(cmd, repo)
    return repo


def fresh_copy(repo: Path, dest: Path) -> Path:
    shutil.copytree(repo, dest, symlinks=True)
    for out in OUTPUTS:  # a CI checkout has the cache (restored) but no outputs
        p = dest / out
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    return dest


def time_repro(ws: Path) -> float:
    """``dvc repro`` without DVC's usage report, as the suite's own DVC calls run: the stricter
    baseline (the report's forked daemon costs the command 0.1-0.2 s and then takes a core
    from whatever is timed next)."""
    start = time.perf_counter()
    sh([sys.executable, "-m", "dvc", "repro"], ws, env={"DVC_NO_ANALYTICS": "1"})
    return time.perf_counter() - start


def time_pr_path(ws: Path, api: GitHubImitation, image: Path, cache: Path) -> dict[str, float]:
    payload = copy.deepcopy(webhook_payload("pull_request.opened"))
    pr = payload["pull_request"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ws, capture_output=True, text=True,
                          check=True).stdout.strip()
    pr["head"]["sha"], pr["head"]["ref"], pr["base"]["ref"] = head, "pr", "main"
    for side in (pr["base"]["repo"], pr["head"]["repo"], payload["repository"]):
        side["full_name"] = REPO
    r = Runner(ws, ws.parent / f"{ws.name}-runner",
               github_context("pull_request", payload, ws, token="write-token",
                              api_url=api.api_url), env=ENV, toolcache=image)
    r.cache = cache  # the repository's Actions cache, shared by every run
    times: dict[str, float] = {}
    has_remote = ""
    for name, action, inputs in (("setup", "actions/setup", {"requirements": "",
                                                              "check-remote": "false"}),
                                 ("evaluate", "actions/evaluate", {"pull": "from setup"}),
                                 ("compile", "actions/compile", {"backend": "onnxruntime"}),
                                 ("comment", "actions/comment", {"token": "write-token"})):
        if inputs.get("pull") == "from setup":  # as modelops-pr.yml calls them for pr.yml
            inputs = {"pull": has_remote, "plots": "plots/png"}
        start = time.perf_counter()
        result = r.run_action(action, inputs)
        has_remote = result.outputs.get("has-remote", has_remote)
        times[name] = time.perf_counter() - start
        if name in ("setup", "evaluate", "comment"):
            for step in result.steps:
                times[f"evaluate: {step.name}"] = step.seconds
        if result.status != "success":
            sys.exit(f"bench: the {name} action failed:\n{result.log[-4000:]}")
    return times


# what each job of modelops-pr.yml passes to the setup action: (job, extras, requirements)
INSTALLS = (("comment, comment-gpu", "", None),
            ("evaluate", "ci,onnx", "pipeline/requirements.txt"),
            ("compile-gpu (without tensorrt: no CUDA here)", "onnx", None))
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


def _size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and
               not f.is_symlink()) / 1e6


def _reachable(url: str) -> bool:
    import urllib.request

    try:
        urllib.request.urlopen(url, timeout=10).close()  # noqa: S310 (a fixed https URL)
        return True
    except OSError:
        return False


def measure_installs(work: Path) -> list[tuple[str, float, float, float]]:
    """(job, cold seconds, warm seconds, installed MB) for each job of :data:`INSTALLS`."""
    cache = work / "pip-cache"
    env = {**os.environ, "PIP_CACHE_DIR": str(cache), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    reachable = _reachable(TORCH_INDEX + "/")
    empty = work / "venv-empty"
    subprocess.run([sys.executable, "-m", "venv", str(empty)], check=True)
    base = _size_mb(empty)
    rows = []
    for job, extras, requirements in INSTALLS:
        args = [f"{ROOT}[{extras}]" if extras else str(ROOT)]
        if requirements:
            req = ROOT / requirements
            if not reachable:
                text = req.read_text().replace(f"--extra-index-url {TORCH_INDEX}\n", "")
                req = work / "requirements.txt"
                req.write_text(text.replace("-c ../requirements.lock",
                                            f"-c {ROOT / 'requirements.lock'}"))
                print(f"  installs: {TORCH_INDEX} cannot be reached from here: the CPU torch "
                      "wheel comes from this machine's pip configuration", flush=True)
            args += ["-r", str(req)]
        seconds = []
        for attempt in ("cold", "warm"):
            venv = work / f"venv-{len(rows)}-{attempt}"
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            print(f"  installs: {job}, {attempt} pip cache", flush=True)
            start = time.perf_counter()
            proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                                   "--progress-bar", "off", *args], env=env,
                                  capture_output=True, text=True)
            seconds.append(time.perf_counter() - start)
            if proc.returncode:
                sys.exit(f"bench: installing for {job} failed:\n{proc.stderr[-3000:]}")
        rows.append((job, seconds[0], seconds[1], _size_mb(venv) - base))
        for attempt in ("cold", "warm"):
            shutil.rmtree(work / f"venv-{len(rows) - 1}-{attempt}", ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ci_path", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (default: 3)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="train epochs for the one-off reproduction (default: params.yaml)")
    parser.add_argument("--no-installs", action="store_true",
                        help="do not measure what each job installs")
    parser.add_argument("--installs-only", action="store_true",
                        help="only measure what each job installs")
    args = parser.parse_args(argv)
    if args.installs_only:
        with tempfile.TemporaryDirectory(prefix="ci-installs-") as tmp:
            print_installs(measure_installs(Path(tmp)))
        return 0
    api = GitHubImitation().start()
    api.add_token("write-token", "github-actions[bot]")
    api.add_repo(REPO)
    with tempfile.TemporaryDirectory(prefix="ci-path-") as tmp:
        work = Path(tmp)
        print("==> preparing the example repository (one full dvc repro, not timed)", flush=True)
        repo = prepare(work, args.epochs)
        repro: list[float] = []
        steps: dict[str, list[float]] = {}
        image, cache = work / "runner-image", work / "actions-cache"
        print("==> a first PR run fills the Actions cache (not timed)", flush=True)
        time_pr_path(fresh_copy(repo, work / "warm"), api, image, cache)
        for i in range(args.rounds):
            print(f"==> round {i + 1}/{args.rounds}", flush=True)
            repro.append(time_repro(fresh_copy(repo, work / f"a{i}")))
            for k, v in time_pr_path(fresh_copy(repo, work / f"b{i}"), api, image,
                                     cache).items():
                steps.setdefault(k, []).append(v)
    api.stop()
    base = statistics.median(repro)
    cpu = ("setup", "evaluate", "comment")
    total = statistics.median([sum(vals) for vals in zip(*(steps[k] for k in cpu))])
    with_compile = statistics.median(
        [sum(vals) for vals in zip(*(steps[k] for k in (*cpu, "compile")))])
    print(f"\nPR path on the example, warm DVC cache, median of {args.rounds} round(s)\n")
    w = 50
    print(f"| {'what':<{w}} | {'seconds':>8} | {'x dvc repro':>11} |")
    print(f"|{'-' * (w + 2)}|{'-' * 10}|{'-' * 13}|")
    print(f"| {'dvc repro alone (baseline)':<{w}} | {base:8.1f} | {1.0:11.2f} |")
    for k, vals in steps.items():
        m = statistics.median(vals)
        label = f"    {k.split(': ', 1)[1]}" if ":" in k else f"  {k} action"
        print(f"| {label[:w]:<{w}} | {m:8.1f} | {m / base:11.2f} |")
    print(f"| {'PR path: setup + evaluate + comment':<{w}} | {total:8.1f} | "
          f"{total / base:11.2f} |")
    print(f"| {'  added on top of dvc repro':<{w}} | {total - base:8.1f} | "
          f"{(total - base) / base:11.2f} |")
    work_only = statistics.median([sum(vals) for vals in zip(*(steps[k] for k in cpu[1:]))])
    print(f"| {'  of it the suite at work: evaluate + comment':<{w}} | {work_only:8.1f} | "
          f"{work_only / base:11.2f} |")
    print(f"| {'  + compile action (GPU job; ONNX Runtime here)':<{w}} | "
          f"{with_compile:8.1f} | {with_compile / base:11.2f} |")
    print(f"\ngoal (the PR path, setup + evaluate + comment, within 1.5x dvc repro alone): "
          f"{'met' if total / base <= 1.5 else 'NOT met'} ({total / base:.2f}x; the suite's "
          f"own work, evaluate + comment: {work_only / base:.2f}x)")
    if not args.no_installs:
        with tempfile.TemporaryDirectory(prefix="ci-installs-") as tmp:
            print_installs(measure_installs(Path(tmp)))
    return 0


def print_installs(rows: list[tuple[str, float, float, float]]) -> None:
    print("\nWhat each job installs (a fresh virtual environment; pip cache empty, then warm)\n")
    w = 46
    print(f"| {'job':<{w}} | {'cold s':>7} | {'warm s':>7} | {'installed MB':>12} |")
    print(f"|{'-' * (w + 2)}|{'-' * 9}|{'-' * 9}|{'-' * 14}|")
    for job, cold, warm, size in rows:
        print(f"| {job:<{w}} | {cold:7.1f} | {warm:7.1f} | {size:12.0f} |")
    comment = rows[0][2]
    print(f"\ngoal (the comment job installs in under 60 s, warm cache): "
          f"{'met' if comment < 60 else 'NOT met'} ({comment:.1f} s)")


if __name__ == "__main__":
    sys.exit(main())
