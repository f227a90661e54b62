"""``modelops-ci reproduce`` and ``modelops-ci dvc-remote``: the pipeline run of a CI job.

``reproduce`` is ``dvc repro [--pull --allow-missing]`` followed by putting the outputs the rest
of the job needs into the workspace (``dvc pull`` with a remote; without one a plain ``dvc
repro`` has restored them already, and ``dvc checkout`` runs only for one that is missing):
``dvc repro --pull --allow-missing`` skips unchanged stages *without* fetching their outputs,
so the compile step, the report artifact and the plots artifact would otherwise find nothing.
The DVC commands run in this one process through DVC's own command-line entry point
(``dvc.cli.main``), so they print, fail and exit exactly as ``dvc`` does, but DVC is imported
once rather than twice (about 0.6 s of every pull request's run on the example).

A changed stage pulls only the dependencies that do not exist, and a dependency on one file of
a folder output pulls that file alone; a later stage that depends on the whole folder then runs
on part of it and records that part's hash (DVC 3.x: ``_pull_missing_deps`` checks
``dep.exists``). ``reproduce`` finds such folders (fewer files than dvc.lock records), pulls
them whole and runs ``dvc repro`` once more, so the stages that saw part of a folder run again
on all of it.

``dvc-remote`` prints the name of the default DVC remote (nothing when there is none), read
with DVC's own config reader (system, global, repository and ``config.local`` levels merged,
as ``dvc remote default`` does) without starting DVC's command machinery: about 0.2 s instead
of 0.6 s. A default that names no configured remote is an error naming the file and the value.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelops.errors import ConfigError, ExternalError

PULL_CHOICES = ("auto", "true", "false")


def _dvc_config(root: Path) -> Any:
    try:
        from dvc.config import Config
        from dvc.config import ConfigError as DvcConfigError
    except ImportError as exc:
        raise ExternalError(f"cannot import dvc: {exc}",
                            hint="install the pinned dependencies: "
                                 "pip install -r requirements.lock") from exc
    dvc_dir = root / ".dvc"
    if not dvc_dir.is_dir():
        raise ExternalError(f"{root.resolve().name!r} is not a DVC repository (no .dvc/ folder)",
                            hint="run the command from the root of the model repository")
    try:
        return Config(dvc_dir=str(dvc_dir))
    except DvcConfigError as exc:
        raise ConfigError(dvc_dir / "config", "", str(exc),
                          "DVC cannot read its configuration",
                          hint="fix .dvc/config (or .dvc/config.local); "
                               "`dvc config --list --show-origin` shows every level") from exc


def default_remote(root: str | Path = ".") -> str | None:
    """Name of the default DVC remote of the repository at ``root`` (``None``: none set)."""
    config = _dvc_config(Path(root))
    name = config["core"].get("remote")
    if not name:
        return None
    if name not in config["remote"]:
        known = ", ".join(sorted(config["remote"])) or "none"
        raise ConfigError(Path(root) / ".dvc" / "config", "core.remote", name,
                          f"the default remote is not defined (remotes: {known})",
                          hint="dvc remote add --default <name> <url>, or "
                               "dvc remote default --unset")
    return str(name)


@contextlib.contextmanager
def _no_dvc_analytics() -> Any:
    """DVC's usage report off for the suite's own DVC calls, as in its Argo workflows: the
    `dvc` CLI sends one per command from a forked daemon (0.1-0.2 s of a command's wall time
    and CPU beside the job's on a 2-core runner); commands a user runs are not touched."""
    before = os.environ.get("DVC_NO_ANALYTICS")
    os.environ["DVC_NO_ANALYTICS"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("DVC_NO_ANALYTICS", None)
        else:
            os.environ["DVC_NO_ANALYTICS"] = before


def _dvc(args: list[str], root: str | Path) -> None:
    from dvc.cli import main as dvc_main

    print(f"==> dvc {' '.join(args)}", flush=True)
    with contextlib.chdir(root), _no_dvc_analytics():  # as `dvc` run from the repository's root
        rc = dvc_main(args)
    if rc:
        raise ExternalError(f"dvc {args[0]} failed (exit {rc}); DVC's message is above")


def needed_outputs(root: str | Path = ".", params_file: str = "params.yaml",
                   also: Sequence[str] = ()) -> list[str]:
    """The cached DVC outputs that hold what the rest of a pull request's (or a release's) job
    reads, from the repository's self-description: the metrics files, the plot files, the ONNX
    artifact, the test and calibration data, the drift baseline (the release embeds it) and
    the card (``modelops.model``), plus ``also``. Each path maps to the output that holds it (a
    file inside a folder output pulls the folder); paths that are in git, or no stage outputs,
    need nothing."""
    from dvc.repo import Repo

    from modelops.ci.metrics import normalise
    from modelops.settings import load_settings

    root = Path(root)
    model = load_settings(root / params_file).model
    wanted = [*model.metrics, *model.plots, model.artifact.path, model.test_data,
              model.calibration_data, model.drift_baseline, model.card_path, *also]
    with contextlib.chdir(root), Repo(".") as repo:
        outs = [out for out in repo.index.outs if out.use_cache]
        paths = [normalise(str(out.def_path)) for out in outs]
        if not model.metrics:
            wanted += [normalise(os.path.relpath(o.fs_path, repo.root_dir))
                       for o in repo.index.metrics]
        if not model.plots:
            wanted += [normalise(os.path.relpath(o.fs_path, repo.root_dir))
                       for o in repo.index.plots]
    needed = []
    for want in (normalise(w) for w in wanted if w):
        holder = next((p for p in paths if want == p or want.startswith(p.rstrip("/") + "/")),
                      None)
        if holder is not None:
            needed.append(holder)
    return list(dict.fromkeys(needed))


def reproduce(pull: str = "auto", outputs: Sequence[str] | None = None,
              root: str | Path = ".", params_file: str = "params.yaml",
              also: Sequence[str] = ()) -> str | None:
    """Run the pipeline, then put ``outputs`` (default: :func:`needed_outputs`) into the
    workspace, whole and as dvc.lock says. ``pull="auto"`` uses the default remote when one is
    configured and one bounded read of it works from here (:func:`remote_usable`); returns why
    a configured remote is not used (``None``: it is, or there is none)."""
    if pull not in PULL_CHOICES:
        raise ConfigError(None, "--pull", pull, f"must be one of {', '.join(PULL_CHOICES)}")
    unused = None
    if pull == "auto":
        remote = default_remote(root)
        why = remote_usable(root, remote) if remote else None
        pull = "true" if remote and why is None else "false"
        if why is not None:
            unused = f"the remote {remote!r} cannot be read from here: {why}"
            print(f"==> {unused}; reproducing without it", flush=True)
        else:
            print(f"==> DVC remote: {remote}" if remote else
                  "==> no DVC remote configured: every changed stage runs", flush=True)
    use_remote = pull == "true"
    start = time.perf_counter()
    if use_remote:
        print("==> unchanged stages are skipped, changed ones pull their inputs and run",
              flush=True)
    repro = ["repro", "--pull", "--allow-missing"] if use_remote else ["repro"]
    _dvc(repro, root)
    print(f"==> reproduced in {time.perf_counter() - start:.1f}s", flush=True)
    if outputs is None:
        outputs = needed_outputs(root, params_file, also)
    partial = partial_outputs(root) if use_remote else []
    if partial:
        print(f"==> {', '.join(partial)}: only part of it is here (a changed stage pulls just the "
              "files it depends on, and a later stage may have run on the rest missing); "
              "pulling it whole and reproducing again", flush=True)
    targets = list(dict.fromkeys([*outputs, *partial]))
    if targets and not use_remote and all((Path(root) / t).exists() for t in targets):
        # a plain `dvc repro` leaves every output as dvc.lock records it (a missing one makes
        # its stage changed: restored from the cache or run), so a checkout has nothing to do
        print(f"==> outputs in place: {', '.join(targets)} (dvc repro restored them)",
              flush=True)
    elif targets:
        # Every listed output, present or not: pull and checkout only touch what differs from
        # dvc.lock, and pull reads the local cache before the remote.
        start = time.perf_counter()
        _dvc(["pull", *targets] if use_remote else ["checkout", *targets], root)
        missing = [t for t in targets if not (Path(root) / t).exists()]
        if missing:
            raise ExternalError(f"outputs not in the workspace after dvc "
                                f"{'pull' if use_remote else 'checkout'}: {', '.join(missing)}",
                                hint="is each one an output of a stage in dvc.yaml?")
        print(f"==> outputs in place in {time.perf_counter() - start:.1f}s", flush=True)
    if partial:  # the stages that ran on part of a folder see it changed, and run again
        _dvc(repro, root)
    return unused


def partial_outputs(root: str | Path = ".") -> list[str]:
    """Folder outputs in dvc.lock that are in the workspace with fewer files than recorded.

    ``dvc repro --pull`` pulls a stage's missing dependencies only when they do not exist, and
    a dependency on one file of a folder output pulls that file alone: a later stage that
    depends on the whole folder then finds it, partial, runs on it and records its hash.
    """
    from modelops.ci.compare import read_lock_at

    partial = []
    for stage in read_lock_at(Path(root), None).values():
        for out in (stage or {}).get("outs") or []:
            nfiles, path = out.get("nfiles"), out.get("path")
            folder = Path(root) / str(path)
            if isinstance(nfiles, int) and path and folder.is_dir():
                present = sum(1 for p in folder.rglob("*") if not p.is_dir())
                if present < nfiles:
                    partial.append(str(path))
    return sorted(set(partial))


def _cmd_reproduce(args: argparse.Namespace) -> int:
    outputs = ([t for chunk in args.outputs for t in chunk.split()]
               if args.outputs is not None else None)  # "" = none; absent = from the settings
    also = [t for chunk in args.also or [] for t in chunk.split()]
    reproduce(args.pull, outputs, params_file=args.params, also=also)
    return 0


CHECK_SECONDS = 30.0


def remote_usable(root: str | Path = ".", name: str | None = None,
                  timeout: float = CHECK_SECONDS) -> str | None:
    """Why the DVC remote ``name`` (default: the default remote) cannot be read from here, or
    ``None`` when it can: one bounded ``exists`` on the remote through DVC's own filesystem for
    it, so missing or wrong credentials (a fork's pull request gets no secrets), an unknown
    host or a remote that does not answer within ``timeout`` seconds are told apart from a
    remote that works, before a ``dvc repro --pull`` would fail on them."""

    outcome: dict[str, str | None] = {}

    def probe() -> None:
        try:
            # the remote's filesystem as `repo.cloud.get_remote` builds it (DVC's own
            # get_cloud_fs over the merged config), without opening the repository: its
            # index, state database and SCM are not needed for one read (0.3 s less)
            from dvc.fs import get_cloud_fs

            config = _dvc_config(Path(root))
            cls, conf, fs_path = get_cloud_fs(config, name=name or config["core"].get("remote"))
            cls(**conf).exists(fs_path)
            outcome["why"] = None
        except Exception as exc:  # boto's NoCredentialsError, DVC's RemoteNotFound ...
            text = str(exc).strip().splitlines()[0] if str(exc).strip() \
                else type(exc).__name__
            outcome["why"] = f"{type(exc).__name__}: {text}"[:300]

    worker = threading.Thread(target=probe, daemon=True)  # a hung socket dies with us
    worker.start()
    worker.join(timeout)
    if "why" not in outcome:
        return f"no answer within {timeout:g}s"
    return outcome["why"]


def _cmd_remote(args: argparse.Namespace) -> int:
    name = default_remote(".")
    if name and args.check:
        why = remote_usable(".", name, args.timeout)
        if why is not None:
            print(f"dvc-remote: the remote {name!r} cannot be read from here ({why}); "
                  "reproduce without it", file=sys.stderr)
            return 0
    if name:
        print(name)
    return 0


def register(subparsers: Any) -> None:
    """Add ``reproduce`` and ``dvc-remote`` to ``modelops-ci``."""
    p = subparsers.add_parser(
        "reproduce", help="dvc repro, then put the outputs the job needs into the workspace",
        description="Run `dvc repro` (with a DVC remote: `--pull --allow-missing`, so unchanged "
                    "stages are skipped and changed ones pull only their inputs), then `dvc "
                    "pull` (or, without a remote, `dvc checkout`) the listed outputs, so each "
                    "is in the workspace whole; a folder a changed stage pulled only in part "
                    "is pulled whole and the pipeline reproduced again. All in this one "
                    "process. Exit 2 when DVC fails (its message is printed above) or an "
                    "output is still missing.")
    p.add_argument("--pull", choices=PULL_CHOICES, default="auto",
                   help="use the DVC remote: auto uses the default one when it is configured "
                        "and can be read from here (default: %(default)s)")
    p.add_argument("--outputs", action="append", default=None,
                   help="outputs needed afterwards, space separated, may repeat; '' = none "
                        "(default: the DVC outputs holding the metrics files, plot files, ONNX "
                        "artifact, test and calibration data, drift baseline and card of "
                        "modelops.model)")
    p.add_argument("--also", action="append", default=None, metavar="PATHS",
                   help="paths needed besides the default ones (space separated, may repeat); "
                        "each pulls the DVC output holding it, paths no stage outputs are "
                        "ignored")
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.set_defaults(handler=_cmd_reproduce)

    p = subparsers.add_parser(
        "dvc-remote", help="print the default DVC remote (nothing when none is set)",
        description="Print the name of the default DVC remote, read with DVC's config reader "
                    "(all levels, config.local included) without starting DVC. Prints nothing "
                    "when no default is set; exit 2 when the config is broken or the default "
                    "names no remote. With --check, also nothing (and why, on stderr) when the "
                    "remote cannot be read from here: no credentials (a fork's pull request), "
                    "an unknown host, no answer.")
    p.add_argument("--check", action="store_true",
                   help="print the remote only when one bounded read of it works")
    p.add_argument("--timeout", type=float, default=CHECK_SECONDS,
                   help="seconds the check may take (default: %(default)s)")
    p.set_defaults(handler=_cmd_remote)

