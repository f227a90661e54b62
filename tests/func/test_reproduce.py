"""``modelops-ci reproduce`` and ``modelops-ci dvc-remote`` on real git + DVC repositories.

A two-stage pipeline (``make`` -> ``count``) with a local DVC remote stands for the example;
each test runs the command as the evaluate and setup actions do, in a subprocess, and checks
what lands in the workspace, what DVC printed and the exit code. The global and system DVC
config levels point into the test's folder, so this machine's config cannot leak in; the
global level is also used to check that every level is read, as ``dvc remote default`` does.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import PY, ROOT, run

pytestmark = pytest.mark.slow

DVC_YAML = """\
stages:
  make:
    cmd: python make.py
    deps: [make.py]
    outs: [data/big.txt, data/dir]
  count:
    cmd: python count.py
    deps: [count.py, data/big.txt]
    outs:
      - metrics/count.json:
          cache: false
  pick:
    cmd: python pick.py
    deps: [pick.py, data/dir/0.txt]
    outs:
      - metrics/pick.json:
          cache: false
"""

MAKE_PY = """\
import pathlib
pathlib.Path("data/dir").mkdir(parents=True, exist_ok=True)
pathlib.Path("data/big.txt").write_text("x" * 1000)
for i in range(3):
    pathlib.Path(f"data/dir/{i}.txt").write_text(str(i))
pathlib.Path("ran.log").open("a").write("make\\n")
"""

COUNT_PY = """\
import pathlib
text = pathlib.Path("data/big.txt").read_text()
pathlib.Path("metrics").mkdir(exist_ok=True)
pathlib.Path("metrics/count.json").write_text(str(len(text)))
"""


PICK_PY = """\
import pathlib
pathlib.Path("metrics/pick.json").write_text(pathlib.Path("data/dir/0.txt").read_text())
"""


def _env(tmp: Path) -> dict[str, str]:
    return {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
            "GIT_CONFIG_NOSYSTEM": "1", "PYTHONPATH": str(ROOT),
            "DVC_GLOBAL_CONFIG_DIR": str(tmp / "dvc-global"),
            "DVC_SYSTEM_CONFIG_DIR": str(tmp / "dvc-system"),
            "PATH": os.pathsep.join([str(Path(PY).parent), os.environ.get("PATH", "")])}


def ci(repo: Path, *args: str, check: bool = True):
    return run([PY, "-m", "modelops.ci", *args], repo, check=check, env=_env(repo.parent),
               timeout=300)


def dvc(repo: Path, *args: str) -> str:
    return run([PY, "-m", "dvc", *args], repo, env=_env(repo.parent), timeout=300).stdout


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Path:
    """The pipeline reproduced, committed, pushed to ``.dvc-remote`` (the default remote)."""
    repo = tmp_path_factory.mktemp("reproduce") / "repo"
    repo.mkdir()
    run(["git", "init", "-q", "-b", "main"], repo, env=_env(repo.parent))
    dvc(repo, "init", "-q")
    dvc(repo, "config", "core.analytics", "false")
    dvc(repo, "remote", "add", "-d", "local", "../dvc-remote")
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / "make.py").write_text(MAKE_PY)
    (repo / "count.py").write_text(COUNT_PY)
    (repo / "pick.py").write_text(PICK_PY)
    (repo / ".gitignore").write_text("ran.log\n")
    dvc(repo, "repro", "-q")
    dvc(repo, "push", "-q")
    run(["git", "add", "-A"], repo, env=_env(repo.parent))
    run(["git", "commit", "-q", "-m", "pipeline"], repo, env=_env(repo.parent))
    return repo


@pytest.fixture
def checkout(origin, tmp_path) -> Path:
    """What a CI job finds: the repository and its remote, no outputs and no cache."""
    shutil.copytree(origin.parent / "dvc-remote", tmp_path / "dvc-remote")
    repo = tmp_path / "repo"
    shutil.copytree(origin, repo, symlinks=True, ignore=shutil.ignore_patterns("cache", "tmp"))
    for p in ("data/big.txt", "data/dir", "ran.log"):
        target = repo / p
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    return repo


# --------------------------------------------------------------------------- dvc-remote

def test_dvc_remote_prints_the_default_and_nothing_without_one(checkout):
    assert ci(checkout, "dvc-remote").stdout == "local\n"
    dvc(checkout, "remote", "default", "--unset")
    proc = ci(checkout, "dvc-remote")
    assert (proc.returncode, proc.stdout) == (0, "")


def test_dvc_remote_reads_config_local_and_the_global_level(checkout):
    dvc(checkout, "remote", "add", "--local", "--default", "ci", "/elsewhere")
    assert ci(checkout, "dvc-remote").stdout == "ci\n"  # config.local wins over config
    (checkout / ".dvc" / "config.local").unlink()
    dvc(checkout, "remote", "default", "--unset")
    dvc(checkout, "remote", "add", "--global", "--default", "team", "/team-store")
    assert ci(checkout, "dvc-remote").stdout == "team\n"
    assert dvc(checkout, "remote", "default").strip() == "team"  # DVC agrees


def test_dvc_remote_names_an_undefined_default(checkout):
    cfg = checkout / ".dvc" / "config"
    cfg.write_text(cfg.read_text().replace("remote = local", "remote = typo"))
    proc = ci(checkout, "dvc-remote", check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "config: core.remote: the default remote is not defined (remotes: local)" in proc.stderr
    assert "'typo'" in proc.stderr


def test_dvc_remote_reports_a_broken_config_file(checkout):
    (checkout / ".dvc" / "config").write_text("[core]\n    remtoe = local\n")
    proc = ci(checkout, "dvc-remote", check=False)
    assert proc.returncode == 2
    assert ".dvc/config" in proc.stderr and "remtoe" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_dvc_remote_outside_a_dvc_repository(tmp_path):
    proc = ci(tmp_path, "dvc-remote", check=False)
    assert proc.returncode == 2 and "not a DVC repository" in proc.stderr


# --------------------------------------------------------------------------- reproduce

def test_reproduce_with_a_remote_skips_unchanged_stages_and_pulls_the_outputs(checkout):
    proc = ci(checkout, "reproduce", "--pull", "auto", "--outputs", "data/dir data/big.txt")
    assert "==> DVC remote: local" in proc.stdout
    assert "==> dvc repro --pull --allow-missing" in proc.stdout
    assert "Stage 'make' didn't change, skipping" in proc.stdout
    assert "==> dvc pull data/dir data/big.txt" in proc.stdout
    assert (checkout / "data/big.txt").read_text() == "x" * 1000
    assert sorted(p.name for p in (checkout / "data/dir").iterdir()) == ["0.txt", "1.txt", "2.txt"]
    assert not (checkout / "ran.log").exists(), "an unchanged stage ran"
    assert "M " not in run(["git", "status", "--short"], checkout).stdout


def test_reproduce_runs_a_changed_stage_after_pulling_its_inputs(checkout):
    (checkout / "make.py").write_text(MAKE_PY.replace('"x" * 1000', '"y" * 10'))
    proc = ci(checkout, "reproduce", "--pull", "true", "--outputs", "data/big.txt")
    assert "Running stage 'make'" in proc.stdout and "Running stage 'count'" in proc.stdout
    assert (checkout / "data/big.txt").read_text() == "y" * 10
    assert (checkout / "metrics/count.json").read_text() == "10"
    assert "==> dvc pull data/big.txt" in proc.stdout  # present: nothing to do
    assert "Everything is up to date." in proc.stdout


def test_reproduce_completes_a_folder_a_changed_stage_pulled_in_part(checkout):
    (checkout / "pick.py").write_text(PICK_PY + "# changed\n")
    proc = ci(checkout, "reproduce", "--pull", "true", "--outputs", "data/dir")
    assert "Running stage 'pick'" in proc.stdout
    assert "==> data/dir: only part of it is here" in proc.stdout  # pick pulled 0.txt alone
    assert proc.stdout.count("==> dvc repro --pull --allow-missing") == 2
    assert (checkout / "metrics/pick.json").read_text() == "0"
    assert sorted(p.name for p in (checkout / "data/dir").iterdir()) == ["0.txt", "1.txt", "2.txt"]
    assert not (checkout / "ran.log").exists()


def test_reproduce_without_a_remote_checks_out_from_the_cache(checkout):
    dvc(checkout, "pull", "-q")                 # a warm cache, as actions/cache leaves it
    dvc(checkout, "remote", "default", "--unset")
    for p in ("data/big.txt", "data/dir"):
        target = checkout / p
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    proc = ci(checkout, "reproduce", "--outputs", "data/dir")
    assert "no DVC remote configured" in proc.stdout
    assert "==> dvc repro\n" in proc.stdout
    assert (checkout / "data/dir/2.txt").read_text() == "2"
    assert not (checkout / "ran.log").exists(), "the unchanged stage ran instead of checkout"
    # dvc repro restored them from the cache: no second DVC command
    assert "==> outputs in place: data/dir (dvc repro restored them)" in proc.stdout
    assert "==> dvc checkout" not in proc.stdout


def test_reproduce_an_empty_outputs_list_fetches_nothing(checkout):
    proc = ci(checkout, "reproduce", "--pull", "true", "--outputs", "")
    assert "==> dvc pull" not in proc.stdout
    assert not (checkout / "data/big.txt").exists()


def test_reproduce_an_output_dvc_does_not_track_is_an_error(checkout):
    proc = ci(checkout, "reproduce", "--pull", "true", "--outputs", "data/dir models/nope.onnx",
              check=False)
    assert proc.returncode == 2
    assert "ci: error: dvc pull failed" in proc.stderr
    assert "models/nope.onnx" in proc.stdout + proc.stderr


def test_reproduce_a_failing_stage_is_an_error_with_dvcs_message(checkout):
    (checkout / "make.py").write_text("raise SystemExit('make: broken input')\n")
    proc = ci(checkout, "reproduce", "--pull", "true", check=False)
    assert proc.returncode == 2
    assert "make: broken input" in proc.stderr
    assert "ci: error: dvc repro failed" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_dvc_remote_check_reads_the_remote_once_and_says_why_not(checkout, tmp_path):
    """--check prints the remote only when one read of it works; a remote that cannot be read
    (a folder that is not there) or does not answer (an S3 endpoint that accepts the connection
    and never replies) prints nothing, and why on stderr, within the bound."""
    import socket
    import threading

    assert ci(checkout, "dvc-remote", "--check").stdout == "local\n"
    dvc(checkout, "remote", "add", "--local", "--default", "gone", "s3://bucket/none")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def hold() -> None:
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(silent.accept()[0])  # and never answer
            except OSError:
                continue

    threading.Thread(target=hold, daemon=True).start()
    try:
        dvc(checkout, "remote", "modify", "--local", "gone", "endpointurl",
            f"http://127.0.0.1:{silent.getsockname()[1]}")
        env = {**_env(tmp_path), "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
               "AWS_DEFAULT_REGION": "us-east-1"}
        proc = run([PY, "-m", "modelops.ci", "dvc-remote", "--check", "--timeout", "3"],
                   checkout, env=env, timeout=120)
        assert proc.stdout == ""
        assert "dvc-remote: the remote 'gone' cannot be read from here (no answer within 3s)" \
            in proc.stderr
    finally:
        stop.set()
        silent.close()
        for conn in accepted:
            conn.close()


def test_reproduce_auto_does_without_a_remote_it_cannot_read_and_says_why(checkout, tmp_path):
    """``--pull auto`` (what evaluate does when setup left the check to it) reads the default
    remote once; a private S3 remote without credentials (a fork's pull request) is not used:
    the pipeline runs from scratch and the reason is printed."""
    dvc(checkout, "remote", "add", "--local", "--default", "private", "s3://bucket/models")
    dvc(checkout, "remote", "modify", "--local", "private", "endpointurl", "http://127.0.0.1:9")
    env = {**_env(tmp_path), "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    env = {k: v for k, v in env.items() if not (k.startswith("AWS_") and "KEY" in k)}
    proc = run([PY, "-m", "modelops.ci", "reproduce", "--pull", "auto", "--outputs", "data/dir"],
               checkout, env={k: "" for k in os.environ if k.startswith("AWS_") and "KEY" in k}
               | env, timeout=300)
    assert "==> the remote 'private' cannot be read from here: NoCredentialsError" in \
        proc.stdout, proc.stdout[-3000:]
    assert "reproducing without it" in proc.stdout
    assert "--pull" not in proc.stdout.split("reproducing without it", 1)[1]
    assert (checkout / "ran.log").read_text() == "make\n"  # no remote, no cache: it ran
    assert (checkout / "data/dir/1.txt").read_text() == "1"
