"""The rendered Workflow, executed the way Argo runs it (tests/argo_executor.py: each task's
exact command in its own fresh clone, artifacts passed as the Workflow declares them, a shared
DVC remote), returns what local ``dvc repro`` returns, byte for byte, and its last task opens a
pull request with the new dvc.lock and the git-tracked outputs.

The pipeline is a small one built here, a -> b -> c, so each run takes seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from modelops.yamlio import dump_yaml, load_yaml
from tests.argo_executor import LocalArgo
from tests.conftest import PY
from tests.github_imitation import github_api  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow

BIN = str(Path(sys.executable).parent)
ENV = {
    "PATH": f"{BIN}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
    "DVC_NO_ANALYTICS": "1", "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C.UTF-8",
    "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
}
IMAGE = "registry.example/train@sha256:" + "a" * 64
STAGES_PY = textwrap.dedent('''\
    """The three stages of the test pipeline: deterministic outputs from params.yaml."""
    import json, pathlib, sys
    from ruamel.yaml import YAML

    params = YAML(typ="safe").load(pathlib.Path("params.yaml").read_text())
    stage = sys.argv[1]
    if stage == "a":
        pathlib.Path("a.out").write_text(f"a={params['a']['x']}\\n")
    elif stage == "b":
        text = pathlib.Path("a.out").read_text()
        out = pathlib.Path("b")
        out.mkdir(exist_ok=True)
        (out / "part-0.txt").write_text(text * params["b"]["copies"])
        (out / "part-1.txt").write_text("b\\n")
    elif stage == "c":
        lines = sum(len(p.read_text().splitlines()) for p in sorted(pathlib.Path("b").iterdir()))
        x = params["a"]["x"]
        pathlib.Path("c.out").write_text(f"lines={lines} x={x}\\n")
        score = round(1.0 - (x - 3) ** 2 / 100.0, 6)
        pathlib.Path("metrics.json").write_text(json.dumps({"score": score, "lines": lines}))
        pathlib.Path("plots").mkdir(exist_ok=True)
        pathlib.Path("plots/c.csv").write_text(f"step,value\\n0,{lines}\\n1,{x}\\n")
''')


def run(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **ENV, **(env or {})}, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def git(cwd: Path, *args: str) -> str:
    return run(["git", *args], cwd).stdout


def dvc(cwd: Path, *args: str, env: dict | None = None):
    return run([PY, "-m", "dvc", *args], cwd, env=env)


def settings(origin: Path, api_url: str, **workflow) -> dict:
    return {"model": {"name": "abc", "team": "ml-platform", "metrics": ["metrics.json"],
                      "headline": {"score": "higher"}},
            "workflow": {"image": IMAGE, "source_repo": str(origin), "dvc_remote": "shared",
                         "credentials_secret": "", "parallelism": 2,
                         "retry": {"limit": 1, "backoff": "1s"},
                         "pull_request": {"github_repo": "octo/models",
                                          "github_api_url": api_url},
                         **workflow}}


def make_repo(tmp: Path, api_url: str, remote: str, remote_config: dict | None = None,
              env: dict | None = None, **workflow) -> tuple[Path, Path]:
    """A git + dvc repository with the a -> b -> c pipeline, reproduced and pushed."""
    origin, repo = tmp / "origin.git", tmp / "repo"
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], tmp)
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "remote", "add", "origin", str(origin))
    dvc(repo, "init", "-q")
    dvc(repo, "remote", "add", "-d", "shared", remote)
    for key, value in (remote_config or {}).items():
        dvc(repo, "remote", "modify", "shared", key, value)
    (repo / "stages.py").write_text(STAGES_PY)
    (repo / "params.yaml").write_text(dump_yaml({
        "a": {"x": 1}, "b": {"copies": 2},
        "modelops": settings(origin, api_url, **workflow)}))
    (repo / "dvc.yaml").write_text(dump_yaml({"stages": {
        "a": {"cmd": "python stages.py a", "deps": ["stages.py"], "params": ["a"],
              "outs": ["a.out"]},
        "b": {"cmd": "python stages.py b", "deps": ["stages.py", "a.out"], "params": ["b"],
              "outs": ["b"]},
        "c": {"cmd": "python stages.py c", "deps": ["stages.py", "b"], "params": ["a.x"],
              "outs": ["c.out"],
              "metrics": [{"metrics.json": {"cache": False}}],
              "plots": [{"plots/c.csv": {"cache": False}}]},
    }}))
    dvc(repo, "repro", env=env)
    dvc(repo, "push", env=env)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "pipeline")
    git(repo, "push", "-q", "origin", "main")
    return repo, origin


def set_param(repo: Path, section: str, key: str, value) -> str:
    raw = load_yaml((repo / "params.yaml").read_text())
    raw[section][key] = value
    (repo / "params.yaml").write_text(dump_yaml(raw))
    git(repo, "commit", "-q", "-am", f"{section}.{key} = {value}")
    git(repo, "push", "-q", "origin", "main")
    return git(repo, "rev-parse", "HEAD").strip()


def render(repo: Path, *extra: str) -> dict:
    proc = run(["modelops-gitops", "workflow", "render", "--repo", str(repo), *extra], repo)
    return load_yaml(proc.stdout)


def reference(tmp: Path, origin: Path, rev: str, env: dict | None = None) -> Path:
    """What local `dvc repro` gives at ``rev`` in a fresh clone."""
    ref = tmp / f"reference-{rev[:8]}"
    run(["git", "clone", "-q", str(origin), str(ref)], tmp)
    git(ref, "checkout", "-q", rev)
    dvc(ref, "repro", "--pull", env=env)
    return ref


def checkout(tmp: Path, origin: Path, branch: str, env: dict | None = None) -> Path:
    out = tmp / f"branch-{branch.replace('/', '-')}"
    run(["git", "clone", "-q", "-b", branch, str(origin), str(out)], tmp)
    dvc(out, "pull", env=env)
    return out


SECRETS = {"modelops-github-token": {"token": "write-token"}}
COMPARED = ["dvc.lock", "a.out", "b/part-0.txt", "b/part-1.txt", "c.out", "metrics.json",
            "plots/c.csv", "params.yaml"]


def _run_and_compare(tmp: Path, repo: Path, origin: Path, api, *, env: dict | None = None,
                     secrets: dict | None = None) -> None:
    """``env``: what the test's own dvc commands need (the pods get only ENV + Secrets)."""
    before = (repo / "c.out").read_text()
    rev = set_param(repo, "a", "x", 4)
    doc = render(repo)
    assert doc["spec"]["arguments"]["parameters"][0]["value"] == rev
    result = LocalArgo(doc, tmp / "argo", base_env=ENV,
                       secrets={**SECRETS, **(secrets or {})}).run()
    assert result.phase == "Succeeded", result.logs()[-6000:]
    pulls = api.repos["octo/models"].pulls
    assert len(pulls) == 1
    branch = pulls[0]["head"]["ref"]
    assert branch == f"train/abc-{result.name}" and pulls[0]["base"]["ref"] == "main"
    assert "`a`" in pulls[0]["body"] and "`c`" in pulls[0]["body"]
    got = checkout(tmp, origin, branch, env=env)
    want = reference(tmp, origin, rev, env=env)
    for rel in COMPARED:
        assert (got / rel).read_bytes() == (want / rel).read_bytes(), rel
    # the stale-model case: c is the new model, not the committed one
    assert (got / "c.out").read_text() != before
    assert (got / "c.out").read_text() == "lines=3 x=4\n"
    # the pull request's commit holds exactly the lock and the git-tracked outputs
    changed = git(got, "diff", "--name-only", "HEAD~1", "HEAD").split()
    assert sorted(changed) == ["dvc.lock", "metrics.json", "plots/c.csv"]


def test_workflow_result_equals_local_repro_with_a_local_folder_remote(tmp_path, github_api):  # noqa: F811
    repo, origin = make_repo(tmp_path, github_api.api_url, str(tmp_path / "dvc-remote"))
    _run_and_compare(tmp_path, repo, origin, github_api)


@pytest.fixture
def moto_s3():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
             "AWS_DEFAULT_REGION": "us-east-1"}
    import boto3

    boto3.client("s3", endpoint_url=url, **{k.lower(): v for k, v in creds.items()
                                            if k != "AWS_DEFAULT_REGION"},
                 region_name="us-east-1").create_bucket(Bucket="models")
    try:
        yield url, creds
    finally:
        server.stop()


def test_workflow_result_equals_local_repro_with_an_s3_remote(tmp_path, github_api, moto_s3):  # noqa: F811
    url, creds = moto_s3
    repo, origin = make_repo(tmp_path, github_api.api_url, "s3://models/dvc",
                             {"endpointurl": url}, env=creds,
                             credentials_secret="dvc-remote-credentials")
    _run_and_compare(tmp_path, repo, origin, github_api, env=creds,
                     secrets={"dvc-remote-credentials": creds})
    # the pods had only the Secret's credentials: the test's own were never in their env
    assert "AWS_ACCESS_KEY_ID" not in ENV


def test_nothing_changed_opens_no_pull_request(tmp_path, github_api):  # noqa: F811
    repo, origin = make_repo(tmp_path, github_api.api_url, str(tmp_path / "dvc-remote"))
    result = LocalArgo(render(repo), tmp_path / "argo", base_env=ENV, secrets=SECRETS).run()
    assert result.phase == "Succeeded", result.logs()[-4000:]
    assert github_api.repos["octo/models"].pulls == []
    summary = json.loads((result.node(".modelops-open-pr").artifacts["summary"]
                          / "summary.json").read_text())
    assert summary["status"] == "unchanged"


def test_a_failed_stage_fails_the_workflow_stops_downstream_and_its_run_is_counted(
        tmp_path, github_api):  # noqa: F811
    """b fails for its own reasons: it is not retried (a deterministic failure), c and the
    pull request never run, and the failed run's compute record reaches the ledger."""
    from modelops.compute import read_ledger

    ledger = tmp_path / "ledger"
    repo, origin = make_repo(tmp_path, github_api.api_url, str(tmp_path / "dvc-remote"))
    raw = load_yaml((repo / "dvc.yaml").read_text())
    for name, stage in raw["stages"].items():
        stage["cmd"] = f"python -m modelops.compute --stage {name} -- python stages.py {name}"
        stage.setdefault("metrics", []).append({f"metrics/compute/{name}.json": {"cache": False}})
    (repo / "dvc.yaml").write_text(dump_yaml(raw))
    params = load_yaml((repo / "params.yaml").read_text())
    params["modelops"]["cost"] = {"ledger": str(ledger)}
    (repo / "params.yaml").write_text(dump_yaml(params))
    dvc(repo, "repro")
    dvc(repo, "push")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "stages under the compute launcher")
    git(repo, "push", "-q", "origin", "main")
    set_param(repo, "b", "copies", "many")  # stages.py b: str * str raises
    result = LocalArgo(render(repo), tmp_path / "argo", base_env=ENV, secrets=SECRETS).run()
    assert result.phase == "Failed"
    assert result.node(".a").phase == "Succeeded"
    b = result.node(".b")
    assert b.phase == "Failed" and b.exit_code == 1 and b.attempts == 1  # not retried
    assert not any(k.endswith((".c", ".modelops-open-pr")) for k in result.nodes)
    assert github_api.repos["octo/models"].pulls == []
    runs = read_ledger(str(ledger))
    # a was restored from the run cache (nothing ran, nothing to pay); b ran and failed
    assert [(r["stage"], r["status"]) for r in runs] == [("b", "failed")]
    failed = next(r for r in runs if r["stage"] == "b")
    assert failed["run"]["kind"] == "workflow" and failed["env"] == "training"
    assert failed["run"]["workflow"] == result.name and failed["model"] == "abc"


class _GitHTTP:
    """A real git smart-HTTP server (``git http-backend``) that demands basic auth."""

    def __init__(self, root: Path, user: str, password: str):
        import base64
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        want = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.denied = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _serve(self):
                if self.headers.get("Authorization") != want:
                    outer.denied += 1
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                env = {"GIT_PROJECT_ROOT": str(root), "GIT_HTTP_EXPORT_ALL": "1",
                       "PATH_INFO": path, "QUERY_STRING": query, "REMOTE_USER": user,
                       "REQUEST_METHOD": self.command, "PATH": os.environ["PATH"],
                       "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                       "CONTENT_LENGTH": str(len(body))}
                if self.headers.get("Content-Encoding"):
                    env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
                out = subprocess.run(["git", "http-backend"], input=body, env=env,
                                     capture_output=True).stdout
                head, _, payload = out.partition(b"\r\n\r\n")
                status, headers = 200, []
                for line in head.decode().split("\r\n"):
                    key, _, value = line.partition(":")
                    if key.lower() == "status":
                        status = int(value.split()[0])
                    elif key:
                        headers.append((key, value.strip()))
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_private_repository_is_cloned_and_pushed_with_the_mounted_secret(
        tmp_path, github_api):  # noqa: F811
    password = "s3cret-token-for-git"
    server = _GitHTTP(tmp_path, "x-access-token", password)
    try:
        url = f"{server.url}/origin.git"
        repo, origin = make_repo(tmp_path, github_api.api_url, str(tmp_path / "dvc-remote"),
                                 source_repo=url, git_credentials_secret="model-repo-git")
        anonymous = run(["git", "ls-remote", url], tmp_path, check=False)
        assert anonymous.returncode != 0 and server.denied  # the repository is private
        set_param(repo, "a", "x", 2)
        doc = render(repo)
        for template in doc["spec"]["templates"]:
            assert password not in json.dumps(template)
        result = LocalArgo(doc, tmp_path / "argo", base_env=ENV, secrets={
            **SECRETS, "model-repo-git": {"username": "x-access-token",
                                          "password": password}}).run()
        assert result.phase == "Succeeded", result.logs()[-4000:]
        assert password not in result.logs()
        branch = github_api.repos["octo/models"].pulls[0]["head"]["ref"]
        assert git(origin, "rev-parse", "--verify", f"refs/heads/{branch}").strip()
    finally:
        server.close()
