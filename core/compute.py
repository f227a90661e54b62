"""Compute used by each pipeline stage run, and what it cost (estimates).

``python -m modelops.compute --stage NAME -- CMD...`` runs one DVC stage's command (the
launcher ``pipeline/run.sh`` does this) and records the run, whether it succeeds or fails:

- **CPU seconds** of the whole process tree: user + system time of every process the stage
  started (``RUSAGE_CHILDREN``), including grandchildren its children never waited for (this
  process is their *subreaper*, so orphans are reparented to it, waited for (up to
  ``MODELOPS_ORPHAN_WAIT_SECONDS``, 300 by default) and reaped), plus the time so far of any
  still running after that;
- **GPU seconds** only for GPUs the stage was *given*: ``CUDA_VISIBLE_DEVICES`` (CUDA's rule:
  the list ends at the first invalid entry), else ``NVIDIA_VISIBLE_DEVICES`` (what the NVIDIA
  device plugin sets in a pod). A given GPU is billed for the wall time, as a cloud bills an
  attached GPU; its utilisation is sampled with ``nvidia-smi`` where it exists. A stage given no
  GPU is billed none, however many the host has, unless ``nvidia-smi`` shows its processes
  on a GPU (then the sampled time counts, ``gpu_source: measured``);
- **memory**: the peak resident set of the tree (sampled, and never below the largest
  single process's ``ru_maxrss``), priced as peak x wall time;
- who ran it: the model and team (``params.yaml``), the environment and the run (a CI job, a
  Workflow task, a local run), its date, its status and exit code.

Every run is written to the runs folder (``.dvc/tmp/modelops/runs/<id>.json``: DVC's own
ignored folder, so no repository needs a .gitignore entry); a successful run is also written to
``metrics/compute/<stage>.json``, the stage's ``cache: false`` output, so git holds the compute
that produced each committed model, unless the run remade exactly the outputs ``dvc.lock``
records (a forced rerun, a fresh clone without the DVC cache): then the record ``dvc.lock``
names is kept, so a rerun with the same result changes no tracked file. CI jobs and Workflow
tasks upload the runs folder to the cost ledger (``modelops.cost.ledger``), so failed runs,
retries, rejected pull requests and Workflow runs are counted too (``modelops-ci cost``). Prices
are dated (``modelops.cost.prices``) and a run is priced at the prices of its own day. All
figures are estimates.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelops.fsutil import write_json
from modelops.settings import SETTINGS_KEY, load_settings
from modelops.settings.cost import CostParams
from modelops.yamlio import load_yaml_file

COMPUTE_DIR = Path("metrics/compute")
RUNS_DIR = Path(".dvc/tmp/modelops/runs")
SCHEMA = 2
PR_SET_CHILD_SUBREAPER = 36
_NO_GPU = ("", "none", "void", "nodevfiles")

__all__ = ["COMPUTE_DIR", "CostParams", "compute_section", "given_gpus", "measure", "price",
           "read_compute", "read_runs", "runs_dir", "totals", "upload_runs", "visible_gpus"]


# --------------------------------------------------------------------------- GPUs

def _nvidia_smi(*query: str, timeout: float = 10) -> list[list[str]]:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, *query, "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    return [[c.strip() for c in line.split(",")] for line in out.stdout.splitlines()
            if line.strip()]


def given_gpus(env: Mapping[str, str] | None = None) -> list[str]:
    """The GPUs this stage was given (indexes or UUIDs), from its environment.

    ``CUDA_VISIBLE_DEVICES`` wins; CUDA stops at the first invalid entry (``-1`` hides every
    later one). Else ``NVIDIA_VISIBLE_DEVICES`` (``all`` = every GPU ``nvidia-smi`` lists;
    ``none``/``void`` = none). Neither set: none was given."""
    env = os.environ if env is None else env
    for var in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"):
        if var not in env:
            continue
        value = env[var].strip()
        if value.lower() in _NO_GPU:
            return []
        if value.lower() == "all":
            return [row[0] for row in _nvidia_smi("--query-gpu=uuid")]
        out = []
        for item in value.split(","):
            item = item.strip()
            if not item or (item.lstrip("-").isdigit() and int(item) < 0):
                break
            out.append(item)
        return out
    return []


def visible_gpus() -> int:
    """How many GPUs the stage was given (see :func:`given_gpus`)."""
    return len(given_gpus())


# --------------------------------------------------------------------------- sampling

class _Sampler(threading.Thread):
    """Samples the process tree's resident memory and, with nvidia-smi, the GPUs."""

    def __init__(self, pid: int, gpus: Sequence[str], interval: float):
        super().__init__(daemon=True)
        self.pid, self.gpus, self.interval = pid, list(gpus), interval
        self.stop_event = threading.Event()
        self.peak_rss = 0
        self.utilization: list[float] = []
        self.measured_gpu_seconds = 0.0
        self.smi = shutil.which("nvidia-smi") is not None

    def tree(self) -> list[Any]:
        import psutil

        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def sample(self) -> None:
        import psutil

        procs = self.tree()
        rss = 0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                rss += p.memory_info().rss
        self.peak_rss = max(self.peak_rss, rss)
        if not self.smi:
            return
        if self.gpus:
            rows = _nvidia_smi("--query-gpu=index,uuid,utilization.gpu")
            for index, gpu_uuid, util in (r for r in rows if len(r) >= 3):
                if index in self.gpus or gpu_uuid in self.gpus:
                    with contextlib.suppress(ValueError):
                        self.utilization.append(float(util))
        else:
            pids = {p.pid for p in procs}
            rows = _nvidia_smi("--query-compute-apps=pid,gpu_uuid")
            used = {r[1] for r in rows if len(r) >= 2 and r[0].isdigit() and int(r[0]) in pids}
            self.measured_gpu_seconds += len(used) * self.interval

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.interval)


def _become_subreaper() -> bool:
    """Orphans of the stage's processes are reparented to us (Linux), so we reap and count
    them; elsewhere only processes their parents waited for are counted."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _reap_orphans(wait: float) -> None:
    """Reap the stage's orphaned descendants (reparented to us), waiting up to ``wait``
    seconds for those still running: the stage is not done until its tree is."""
    deadline = time.monotonic() + wait
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return  # no children left
        if pid == 0:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.05)


def _still_running_cpu() -> float:
    """CPU seconds so far of our still-running (reparented) descendants."""
    import psutil

    total = 0.0
    with contextlib.suppress(psutil.Error):
        for p in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
    return total


# --------------------------------------------------------------------------- who ran it

def repo_root(start: Path | None = None) -> Path:
    """The DVC repository around ``start`` (the stage's working directory)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return here


def runs_dir(root: Path | None = None) -> Path:
    override = os.environ.get("MODELOPS_RUNS_DIR")
    return Path(override) if override else repo_root(root) / RUNS_DIR


def _owner(root: Path) -> dict[str, str]:
    try:
        raw = load_yaml_file(root / "params.yaml") or {}
        model = ((raw.get(SETTINGS_KEY) or {}).get("model") or {})
        return {"model": str(model.get("name") or "unknown"), "team": str(model.get("team") or "")}
    except Exception:  # noqa: BLE001 - a broken params.yaml fails the stage, not the record
        return {"model": "unknown", "team": ""}


def run_context(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The run a record belongs to: a Workflow task, a CI job or a local run."""
    env = os.environ if env is None else env
    kind = env.get("MODELOPS_RUN_KIND") or ("ci" if env.get("GITHUB_ACTIONS") == "true"
                                            else "local")
    run: dict[str, Any] = {"kind": kind}
    if kind == "ci":
        run["id"] = env.get("MODELOPS_RUN_ID") or env.get("GITHUB_RUN_ID", "")
        run["attempt"] = env.get("GITHUB_RUN_ATTEMPT", "")
        ref = env.get("GITHUB_REF", "")
        if ref.startswith("refs/pull/"):
            with contextlib.suppress(ValueError, IndexError):
                run["pr"] = int(ref.split("/")[2])
        run["sha"] = env.get("GITHUB_SHA", "")
        run["ref"] = ref
        run["repository"] = env.get("GITHUB_REPOSITORY", "")
    else:
        run["id"] = env.get("MODELOPS_RUN_ID", "")
        if env.get("MODELOPS_WORKFLOW"):
            run["workflow"] = env["MODELOPS_WORKFLOW"]
        if env.get("SOURCE_COMMIT"):
            run["sha"] = env["SOURCE_COMMIT"]
    return run


def _default_env(kind: str) -> str:
    return {"workflow": "training", "ci": "ci"}.get(kind, "local")


def _iso(t: float) -> str:
    """UTC, to the millisecond (runs of one job sort by when they started)."""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# --------------------------------------------------------------------------- measure

def measure(stage: str, cmd: Sequence[str], out_dir: Path = COMPUTE_DIR, *,
            interval: float | None = None, reap: bool = False) -> int:
    """Run ``cmd``; record the run (always) and the stage's output record (on success);
    return the command's exit code. ``reap`` (the command line does it) makes this process
    the subreaper of the stage's tree, so orphaned grandchildren are reaped and counted; a
    caller with children of its own must leave it off."""

    root = repo_root()
    gpus = given_gpus()
    interval = interval or float(os.environ.get("MODELOPS_SAMPLE_SECONDS", "0.5"))
    if reap:
        _become_subreaper()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    start = time.monotonic()
    try:
        proc = subprocess.Popen(list(cmd))
    except FileNotFoundError:
        print(f"modelops.compute: {cmd[0]!r} not found", file=sys.stderr)
        return 2
    sampler = _Sampler(proc.pid, gpus, interval)
    sampler.start()
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        code = proc.wait()
    sampler.stop_event.set()
    sampler.join()  # before reaping: the sampler's own nvidia-smi children must not be reaped
    if reap:
        _reap_orphans(float(os.environ.get("MODELOPS_ORPHAN_WAIT_SECONDS", "300")))
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cpu += _still_running_cpu()
    peak = max(sampler.peak_rss, after.ru_maxrss * 1024)  # ru_maxrss is in KiB on Linux
    if gpus:
        gpu_seconds, source = wall * len(gpus), "allocated"
    elif sampler.measured_gpu_seconds:
        gpu_seconds, source = sampler.measured_gpu_seconds, "measured"
    else:
        gpu_seconds, source = 0.0, "none"
    run = run_context()
    env_name = os.environ.get("MODELOPS_ENV") or _default_env(run["kind"])
    record = {
        "schema": SCHEMA,
        "id": uuid.uuid4().hex,
        "stage": stage,
        "status": "succeeded" if code == 0 else "failed",
        "exit_code": code,
        "started_at": _iso(started),
        "ended_at": _iso(started + wall),
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "max_rss_bytes": int(peak),
        "memory_gb_seconds": round(peak / 1e9 * wall, 3),
        "gpus": len(gpus),
        "gpu_ids": gpus,
        "gpu_seconds": round(gpu_seconds, 3),
        "gpu_source": source,
        "gpu_utilization": round(sum(sampler.utilization) / len(sampler.utilization), 1)
        if sampler.utilization else None,
        "cpu_count": os.cpu_count() or 1,
        "host": socket.gethostname(),
        **_owner(root),
        "env": env_name,
        "run": run,
    }
    runs = runs_dir(root)
    runs.mkdir(parents=True, exist_ok=True)
    write_json(runs / f"{record['id']}.json", record)
    committed = out_dir / f"{stage}.json"
    if code == 0:
        kept = recorded_record(root, stage, committed)
        if kept is not None:
            # the run remade exactly the outputs dvc.lock records: the record dvc.lock names
            # still describes what made them, and a new one would only churn git and dvc.lock
            # (the run itself is in the runs folder, for the cost ledger)
            committed.parent.mkdir(parents=True, exist_ok=True)
            committed.write_bytes(kept)
            print(f"modelops.compute: {stage} remade the outputs dvc.lock records; kept the "
                  f"recorded {committed}", file=sys.stderr)
        else:
            write_json(committed, record)
    return code


def recorded_record(root: Path, stage: str, record: Path) -> bytes | None:
    """The bytes of the compute record ``dvc.lock`` names for ``stage``, when the run just made
    every other output of the stage with the hash dvc.lock records (DVC's own check,
    ``Output.changed_checksum``): a rerun with the same result. ``dvc repro`` deletes a stage's
    outputs before running it, so the recorded record comes from the file when it is still
    there, else from the last commit (``git show HEAD:<path>``), and only when its md5 is the
    one dvc.lock records. ``None`` whenever that cannot be told (no DVC, no such stage, a stage
    not in dvc.lock, an output that changed): a new record is written then."""
    import hashlib

    try:
        from dvc.repo import Repo
    except ImportError:
        return None
    mine = os.path.abspath(record)
    try:
        with Repo(str(root)) as repo:
            found = [s for s in repo.index.stages if getattr(s, "name", None) == stage]
            if len(found) != 1:
                return None
            outs = {os.path.abspath(o.fs_path): o for o in found[0].outs}
            own = outs.pop(mine, None)
            if own is None or not own.hash_info or not outs or not all(
                    o.hash_info and o.exists and not o.changed_checksum() for o in outs.values()):
                return None
            want = own.hash_info.value
    except Exception:  # noqa: BLE001 - any doubt writes a new record
        return None
    candidates = [record.read_bytes()] if record.is_file() else []
    rel = os.path.relpath(mine, root)
    shown = subprocess.run(["git", "show", f"HEAD:./{Path(rel).as_posix()}"], cwd=root,
                           capture_output=True, timeout=60)
    if shown.returncode == 0:
        candidates.append(shown.stdout)
    return next((c for c in candidates if hashlib.md5(c).hexdigest() == want), None)  # noqa: S324


# --------------------------------------------------------------------------- reading, pricing

def read_compute(root: Path) -> dict[str, dict[str, Any]]:
    """stage -> its committed compute record, from ``metrics/compute/*.json`` under ``root``."""
    out = {}
    for path in sorted((root / COMPUTE_DIR).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        if isinstance(data, dict):
            out[path.stem] = data
    return out


def read_runs(root: Path) -> list[dict[str, Any]]:
    """Every run record in the runs folder (uploaded ones too), oldest first."""
    folder = runs_dir(root)
    records = []
    for path in sorted([*folder.glob("*.json"), *folder.glob("uploaded/*.json")]):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            records.append(data)
    return sorted(records, key=lambda r: str(r.get("started_at", "")))


def record_date(record: Mapping[str, Any], default: str | None = None) -> str | None:
    return record.get("started_at") or record.get("date") or default


def price(compute: Mapping[str, Any], prices: CostParams, when: str | None = None) -> float:
    """The estimated cost of one record at the prices in force on its own day."""
    period = prices.at(when or record_date(compute))
    return (float(compute.get("cpu_seconds", 0.0) or 0.0) / 3600 * period.cpu_core_hour
            + float(compute.get("gpu_seconds", 0.0) or 0.0) / 3600 * period.gpu_hour
            + float(compute.get("memory_gb_seconds", 0.0) or 0.0) / 3600
            * period.memory_gb_hour)


def totals(stages: Mapping[str, Mapping[str, Any]] | Sequence[Mapping[str, Any]],
           prices: CostParams) -> dict[str, Any]:
    items = list(stages.values()) if isinstance(stages, Mapping) else list(stages)

    def total(key: str) -> float:
        return round(sum(float(s.get(key, 0.0) or 0.0) for s in items), 3)

    return {"runs": len(items),
            "failed": sum(1 for s in items if s.get("status") == "failed"),
            "wall_seconds": total("wall_seconds"), "cpu_seconds": total("cpu_seconds"),
            "gpu_seconds": total("gpu_seconds"), "memory_gb_seconds": total("memory_gb_seconds"),
            "cost": round(sum(price(s, prices) for s in items), 6),
            "currency": prices.currency, "estimate": True}


def this_job_runs(root: Path, env: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The runs recorded by this CI job (or, outside CI, every run in the runs folder)."""
    env = os.environ if env is None else env
    runs = read_runs(root)
    run_id = env.get("GITHUB_RUN_ID") if env.get("GITHUB_ACTIONS") == "true" else None
    if run_id:
        runs = [r for r in runs if (r.get("run") or {}).get("id") == run_id]
    return runs


def compute_section(root: Path, prices: CostParams, reran: Sequence[str] | None = None
                    ) -> dict[str, Any]:
    """The ``compute`` section of report.json (estimates).

    ``stages``: each stage's committed record and its cost; ``reran`` marks the stages this
    change reran. ``pull_request``: the compute this pull request's own job spent, every run
    the job recorded (failed runs and retries included, stages restored from cache cost
    nothing), and ``runs`` lists them."""
    stages = read_compute(root)
    job = this_job_runs(root)
    if not stages and not job:
        return {"status": "skipped", "reason": "no metrics/compute/*.json and no recorded runs: "
                "stages ran without the compute launcher"}
    rows = {name: {**data, "cost": round(price(data, prices), 6),
                   "reran": reran is not None and name in reran}
            for name, data in stages.items()}
    this_run = {n: d for n, d in stages.items() if reran is not None and n in reran}
    period = prices.at(None)
    return {"status": "pass", "stages": rows, "total": totals(stages, prices),
            "this_change": totals(this_run, prices) if reran is not None else None,
            "pull_request": totals(job, prices) if job else None,
            "runs": [{"stage": r.get("stage"), "status": r.get("status"),
                      "exit_code": r.get("exit_code"), "wall_seconds": r.get("wall_seconds"),
                      "cpu_seconds": r.get("cpu_seconds"), "gpu_seconds": r.get("gpu_seconds"),
                      "memory_gb_seconds": r.get("memory_gb_seconds"),
                      "started_at": r.get("started_at"),
                      "cost": round(price(r, prices), 6)} for r in job],
            "prices": {"cpu_core_hour": period.cpu_core_hour, "gpu_hour": period.gpu_hour,
                       "memory_gb_hour": period.memory_gb_hour, "since": period.since,
                       "currency": prices.currency},
            "estimate": True}


# --------------------------------------------------------------------------- the ledger

def ledger_of(root: Path) -> str:
    """``$MODELOPS_COST_LEDGER``, else ``modelops.cost.ledger`` of the repository."""
    if os.environ.get("MODELOPS_COST_LEDGER"):
        return os.environ["MODELOPS_COST_LEDGER"]

    try:
        return load_settings(root / "params.yaml").cost.ledger
    except Exception:  # noqa: BLE001 - no settings, no ledger
        return ""


def _ledger_fs(ledger: str) -> tuple[Any, str]:
    if "://" not in ledger:
        import fsspec

        return fsspec.filesystem("file"), str(Path(ledger).resolve())
    import fsspec

    fs, path = fsspec.core.url_to_fs(ledger)
    return fs, path.rstrip("/")


def upload_runs(root: Path, ledger: str | None = None) -> int:
    """Copy the runs folder's records to the ledger (``<ledger>/<model>/<day>/<id>.json``);
    uploaded ones move to ``runs/uploaded/``. Returns how many were uploaded."""
    root = repo_root(root)
    ledger = ledger if ledger is not None else ledger_of(root)
    folder = runs_dir(root)
    pending = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not ledger or not pending:
        return 0
    fs, base = _ledger_fs(ledger)
    done = folder / "uploaded"
    done.mkdir(parents=True, exist_ok=True)
    for path in pending:
        try:
            record = json.loads(path.read_text())
        except ValueError:
            continue
        day = str(record.get("started_at", "unknown"))[:10]
        target = f"{base}/{record.get('model', 'unknown')}/{day}/{path.name}"
        fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(target, "wb") as fh:
            fh.write(path.read_bytes())
        path.replace(done / path.name)
    return len(pending)


def read_ledger(ledger: str) -> list[dict[str, Any]]:
    """Every record in the ledger."""
    fs, base = _ledger_fs(ledger)
    if not fs.exists(base):
        return []
    out = []
    for path in sorted(fs.glob(f"{base}/**/*.json")):
        try:
            with fs.open(path, "rb") as fh:
                data = json.loads(fh.read())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            out.append(data)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelops.compute",
        description="Run one DVC stage's command and record its compute (every run in "
                    f"{RUNS_DIR}/, a successful one also in metrics/compute/<stage>.json).")
    parser.add_argument("--stage", required=True, help="stage name (the file's name)")
    parser.add_argument("--out-dir", default=str(COMPUTE_DIR), help="default: %(default)s")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="-- the stage's command")
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("give the stage's command after --")
    return measure(args.stage, cmd, Path(args.out_dir), reap=True)


if __name__ == "__main__":
    sys.exit(main())
