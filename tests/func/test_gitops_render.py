"""Rendering the example model: golden files, kustomize, CLI behaviour on bad input.

Golden files live in tests/data/gitops/golden/<env>/digits-cnn/. Regenerate them only on
purpose: ``UPDATE_GOLDEN=1 pytest tests/func/test_gitops_render.py`` (refused in CI).
"""

from __future__ import annotations

import copy
import os

import pytest

from modelops.errors import ConfigError, InputError, ValidationError
from modelops.gitops.render import KINDS, render_env, write_env
from modelops.settings import load_settings, parse_settings
from modelops.yamlio import dump_yaml, dump_yaml_all, load_yaml, load_yaml_all, load_yaml_file
from tests.conftest import PY, ROOT, in_ci, require_tool, run
from tests.unit.test_gitops_release import example_release

GOLDEN = ROOT / "tests" / "data" / "gitops" / "golden"


@pytest.fixture(scope="module")
def params():
    return load_settings(ROOT / "params.yaml")


@pytest.mark.parametrize("env", ["staging", "production"])
def test_golden_files(params, env):
    files = render_env(example_release(), params, env)
    folder = GOLDEN / env / "digits-cnn"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        assert not in_ci(), "golden files are never regenerated in CI"
        write_env(files, GOLDEN, env, "digits-cnn")
    expected = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    assert files == expected


def test_same_input_same_bytes(params):
    a = render_env(example_release(), params, "staging")
    b = render_env(example_release(), params, "staging")
    assert a == b
    c = render_env(example_release(version="2"), params, "staging")
    assert c["rollout.yaml"] != a["rollout.yaml"]


def test_rendered_manifests_carry_release_and_env(params):
    release = example_release()
    files = render_env(release, params, "production")
    (rollout,) = load_yaml_all(files["rollout.yaml"].decode())
    meta = rollout["metadata"]
    assert meta["annotations"]["modelops.io/sha256"] == release.sha256
    assert meta["annotations"]["modelops.io/source-commit"] == release.source_commit
    assert meta["labels"]["modelops.io/env"] == "production"
    assert meta["labels"]["modelops.io/team"] == params.model.team
    pod = rollout["spec"]["template"]
    assert pod["metadata"]["annotations"]["modelops.io/sha256"] == release.sha256
    container = pod["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["ports"][0]["containerPort"] == 8080
    assert rollout["spec"]["replicas"] == params.deploy.environments["production"].replicas
    steps = rollout["spec"]["strategy"]["canary"]["steps"]
    assert steps[-1] == {"setWeight": 100}
    (app,) = load_yaml_all(files["application.yaml"].decode())
    assert "automated" not in app["spec"]["syncPolicy"]  # production: manual sync
    assert app["spec"]["source"]["path"] == "production/digits-cnn"
    (app,) = load_yaml_all(render_env(release, params, "staging")["application.yaml"].decode())
    assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}


def test_analysis_templates_use_thresholds_from_params(params):
    raw = copy.deepcopy(load_yaml_file(ROOT / "params.yaml"))
    raw["modelops"]["deploy"]["analysis"].update(error_rate_max=0.01, failure_limit=3, count=7)
    custom = parse_settings(raw)
    files = render_env(example_release(), custom, "staging")
    templates = {d["metadata"]["name"]: d
                 for d in load_yaml_all(files["analysis-templates.yaml"].decode())}
    assert set(templates) == {"digits-cnn-error-rate", "digits-cnn-latency-p99",
                              "digits-cnn-prediction-drift", "digits-cnn-input-drift"}
    metric = templates["digits-cnn-error-rate"]["spec"]["metrics"][0]
    assert metric["successCondition"] == "len(result) > 0 && result[0] < 0.01"
    assert metric["failureCondition"] == "len(result) > 0 && result[0] >= 0.01"
    assert (metric["failureLimit"], metric["count"], metric["inconclusiveLimit"]) == (3, 7, 2)
    assert 'role="canary"' in metric["provider"]["prometheus"]["query"]
    assert "model_requests_total" in metric["provider"]["prometheus"]["query"]


def test_kubectl_kustomize_builds_the_folder(params, tmp_path):
    kubectl = require_tool("kubectl")
    files = render_env(example_release(), params, "staging")
    folder = write_env(files, tmp_path, "staging", "digits-cnn")
    out = run([kubectl, "kustomize", str(folder)], cwd=tmp_path).stdout
    kinds = sorted(d["kind"] for d in load_yaml_all(out))
    expected = sorted(d["kind"] for k in KINDS.values() if k.in_kustomization
                      for d in load_yaml_all(files[k.filename].decode()))
    assert kinds == expected
    assert {"Rollout", "Service", "AnalysisTemplate"} <= set(kinds)


def test_registry_drives_kustomization(params):
    files = render_env(example_release(), params, "staging")
    (kust,) = load_yaml_all(files["kustomization.yaml"].decode())
    assert kust["resources"] == [k.filename for k in KINDS.values() if k.in_kustomization]
    assert set(files) == {k.filename for k in KINDS.values()} | {"release.json"}


@pytest.mark.parametrize(("change", "field"), [
    ({"model": "Digits"}, "model"), ({"model": "a" * 64}, "model"), ({"model": "a_b"}, "model"),
    ({"image": "ghcr.io/x/s:1\n---"}, "image"), ({"version": "a: b"}, "version"),
])
def test_bad_release_raises_before_rendering(params, change, field):
    with pytest.raises(ValidationError, match=f"{field}: "):
        render_env(example_release(**change), params, "staging")


def test_service_name_too_long_is_caught_by_validation(params):
    with pytest.raises(ValidationError, match=r"metadata.name: must be a DNS-1035 label"):
        render_env(example_release(model="m" * 60), params, "staging")


def test_unknown_environment(params):
    with pytest.raises(ConfigError, match="unknown environment"):
        render_env(example_release(), params, "qa")


def _cli(tmp_path, *args):
    return run([PY, "-m", "modelops.gitops", *args], cwd=ROOT, check=False)


def test_cli_render_and_validate(tmp_path):
    rel = tmp_path / "release.json"
    rel.write_bytes(example_release().to_json())
    out = tmp_path / "out"
    proc = _cli(tmp_path, "render", "--release", str(rel), "--out", str(out), "--env", "staging")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (out / "staging" / "digits-cnn").iterdir()) == sorted(
        [k.filename for k in KINDS.values()] + ["release.json"])
    proc = _cli(tmp_path, "validate", "--no-kustomize", str(out))
    assert proc.returncode == 0, proc.stderr
    count = sum(len(load_yaml_all((out / "staging" / "digits-cnn" / k.filename).read_text()))
                for k in KINDS.values() if k.validated)
    assert f"ok: {count} manifests" in proc.stderr


@pytest.fixture
def model_repo(tmp_path):
    """A model repository with dvc.lock pinning models/model.onnx (no git needed)."""
    from tests.unit.test_gitops_release import ARTIFACT, BASELINE_BYTES, _write_baseline

    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    (repo / "models" / "model.onnx").write_bytes(ARTIFACT)
    _write_baseline(repo, BASELINE_BYTES)  # dvc.lock pins the model and the drift baseline
    return repo


GOOD = ["--artifact-uri", "s3://bucket/m.onnx", "--source-commit", "c" * 40,
        "--source-repo", "https://github.com/example/modelops"]


def test_cli_render_from_dvc_lock(tmp_path, model_repo):
    out = tmp_path / "out"
    proc = _cli(tmp_path, "render", "--repo", str(model_repo), "--out", str(out), *GOOD)
    assert proc.returncode == 0, proc.stderr
    for env in ("staging", "production"):
        release = (out / env / "digits-cnn" / "release.json").read_text()
        assert '"version": "cccccccccccc"' in release


@pytest.mark.parametrize(("args", "message"), [
    (["--env", "qa"], "modelops.deploy.environments: unknown environment (got 'qa')"),
    (["--image", "ghcr.io/x/s:1\n---"], "image: "),
    (["--image", "ghcr.io/x/s:---"], "image: "),
    (["--version", "a: b"], "version: "),
    (["--version", "x" * 64], "version: "),
])
def test_cli_bad_input_exit_2_nothing_written(tmp_path, model_repo, args, message):
    out = tmp_path / "out"
    proc = _cli(tmp_path, "render", "--repo", str(model_repo), "--out", str(out), *GOOD, *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert repr(args[1])[:30] in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_cli_refuses_artifact_not_matching_dvc_lock(tmp_path, model_repo):
    (model_repo / "models" / "model.onnx").write_bytes(b"other bytes")
    out = tmp_path / "out"
    proc = _cli(tmp_path, "render", "--repo", str(model_repo), "--out", str(out), *GOOD)
    assert proc.returncode == 2
    assert "does not match dvc.lock" in proc.stderr
    assert not out.exists()


def test_cli_validate_reports_upstream_style_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata:\n  name: x\n"
                   "spec:\n  replicaz: 1\n")
    proc = _cli(tmp_path, "validate", str(bad))
    assert proc.returncode == 2
    assert "replicaz" in proc.stderr


@pytest.mark.parametrize("env", ["staging", "production"])
def test_templates_read_the_same_in_yaml_1_1_and_1_2(params, env):
    # Templates are parsed with libyaml (YAML 1.1, fast); the strict pure-Python 1.2 loader
    # (which also rejects duplicate keys) must read exactly the same documents.
    from modelops.gitops.render import build_context
    from modelops.gitops.templating import jinja_env
    from modelops.yamlio import load_yaml_all_fast

    context = build_context(example_release(), params, env)
    for kind in KINDS.values():
        template = getattr(kind, "template", None)
        if template is None:
            continue
        text = jinja_env().get_template(template).render(**context)
        assert load_yaml_all_fast(text) == load_yaml_all(text), template


@pytest.mark.parametrize("value", ["yes", "on", "off", "y", "n", "0b101", "1_000", "012",
                                   "1e3", "null", "2020-01-01"])
def test_yaml_1_1_lookalikes_stay_strings_for_kubectl(params, value):
    # kubectl and Argo CD read YAML 1.1: plain `yes` would become a boolean there.
    import yaml

    release = example_release(version=value)
    files = render_env(release, params, "staging")
    text = files["rollout.yaml"].decode()
    (doc,) = yaml.load_all(text, Loader=yaml.SafeLoader)  # the pure YAML 1.1 loader
    assert doc["metadata"]["labels"]["app.kubernetes.io/version"] == value
    assert f"'{value}'" in text


def test_cli_release_writes_a_release_render_can_use(tmp_path, model_repo):
    from modelops.gitops.release import Release

    rel = tmp_path / "release.json"
    proc = _cli(tmp_path, "release", "--repo", str(model_repo), "--out", str(rel), *GOOD,
                "--version", "1.4.0", "--image", "ghcr.io/example/serve@sha256:" + "e" * 64)
    assert proc.returncode == 0, proc.stderr
    release = Release.from_json(rel.read_bytes())
    assert (release.version, release.image[-64:]) == ("1.4.0", "e" * 64)
    out = tmp_path / "out"
    proc = _cli(tmp_path, "render", "--release", str(rel), "--out", str(out), "--env",
                "production")
    assert proc.returncode == 0, proc.stderr
    assert (out / "production" / "digits-cnn" / "release.json").read_bytes() == rel.read_bytes()


def test_write_env_replaces_the_folder_and_recovers_an_interrupted_swap(params, tmp_path):
    files = render_env(example_release(), params, "staging")
    target = write_env({**files, "stale.yaml": b"x: 1\n"}, tmp_path, "staging", "digits-cnn")
    write_env(files, tmp_path, "staging", "digits-cnn")
    assert sorted(p.name for p in target.iterdir()) == sorted(files)  # stale file gone
    # Simulate a kill between "move the old folder aside" and "rename the new one in".
    target.rename(tmp_path / "staging" / ".digits-cnn.old")
    with pytest.raises(InputError, match="refusing to write"):
        write_env({"../escape": b""}, tmp_path, "staging", "digits-cnn")
    assert sorted(p.name for p in target.iterdir()) == sorted(files)  # old folder restored
    assert not [p for p in (tmp_path / "staging").iterdir() if p.name.startswith(".")]


def test_core_kinds_agree_with_the_kubernetes_validate_cli(params, tmp_path):
    # The in-process check uses kubernetes-validate's bundled strict schemas (offline); its own
    # CLI must agree on the rendered Services, and on a Service with an unknown field.
    import sys
    from pathlib import Path

    from modelops.gitops.validate import K8S_VERSION, validate_manifests

    cli = str(Path(sys.executable).parent / "kubernetes-validate")
    files = render_env(example_release(), params, "staging")
    good = tmp_path / "services.yaml"
    good.write_bytes(files["services.yaml"])
    proc = run([cli, "--strict", "-k", K8S_VERSION, str(good)], cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    docs = load_yaml_all(files["services.yaml"].decode())
    docs[0]["spec"]["ports"][0]["targetPortt"] = "http"
    bad = tmp_path / "bad.yaml"
    bad.write_text(dump_yaml_all(docs))
    proc = run([cli, "--strict", "-k", K8S_VERSION, str(bad)], cwd=tmp_path, check=False)
    assert proc.returncode != 0
    problems = validate_manifests(docs, cross_refs=False)
    assert [p.path for p in problems] == ["spec.ports[0]"]
    assert "targetPortt" in problems[0].message


def test_the_dashboard_is_published_for_the_grafana_sidecar(params):
    """dashboard.yaml: a ConfigMap labelled grafana_dashboard "1" holding the model's Grafana
    dashboard (built with grafana-foundation-sdk), its thresholds from the params."""
    import json

    files = render_env(example_release(), params, "production")
    (cm,) = load_yaml_all(files["dashboard.yaml"].decode())
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "digits-cnn-dashboard"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == params.deploy.environments["production"].namespace
    board = json.loads(cm["data"]["digits-cnn-production.json"])
    assert board["uid"] == "modelops-digits-cnn-production"
    assert board["title"] == "Model digits-cnn (production)"
    # staging's dashboard sits beside it in a Grafana that watches every namespace: its own
    # uid and file, and every query on its own namespace
    (staging,) = load_yaml_all(render_env(example_release(), params, "staging")
                               ["dashboard.yaml"].decode())
    other = json.loads(staging["data"]["digits-cnn-staging.json"])
    assert other["uid"] != board["uid"]
    namespace = params.deploy.environments["production"].namespace
    assert all(f'namespace="{namespace}"' in t["expr"]
               for p in board["panels"] for t in p.get("targets") or [])
    titles = [p["title"] for p in board["panels"] if p["type"] != "row"]
    assert len(titles) == 11 and "Most drifted features (top 10 PSI)" in titles
    latency = next(p for p in board["panels"] if p["title"].startswith("Latency p99"))
    steps = latency["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["value"] == params.deploy.analysis.latency_p99_max_seconds
    assert "dashboard.yaml" in files["kustomization.yaml"].decode()


def test_the_pods_are_scraped_and_every_query_selects_the_environment(params):
    """pod-monitor.yaml has the Rollout's pods scraped (the operator labels each target with
    its namespace); the analysis, the rules and the dashboard of an environment select that
    namespace, so staging's pods of the same version never count for production."""
    from modelops.gitops.validate import validate_document

    files = render_env(example_release(), params, "production")
    namespace = params.deploy.environments["production"].namespace
    (monitor,) = load_yaml_all(files["pod-monitor.yaml"].decode())
    assert validate_document(monitor) == []
    (rollout,) = load_yaml_all(files["rollout.yaml"].decode())
    assert monitor["metadata"]["namespace"] == rollout["metadata"]["namespace"] == namespace
    assert monitor["spec"]["selector"]["matchLabels"] == rollout["spec"]["selector"]["matchLabels"]
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    port = rollout["spec"]["template"]["spec"]["containers"][0]["ports"][0]
    assert (endpoint["port"], endpoint["path"]) == (port["name"], "/metrics")
    assert endpoint["interval"] == params.deploy.prometheus.scrape_interval
    assert "pod-monitor.yaml" in files["kustomization.yaml"].decode()
    queries = [m["provider"]["prometheus"]["query"]
               for t in load_yaml_all(files["analysis-templates.yaml"].decode())
               for m in t["spec"]["metrics"]]
    (rule,) = load_yaml_all(files["prometheus-rules.yaml"].decode())
    queries += [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert queries and all(f'namespace="{namespace}"' in q for q in queries)


def test_the_operator_selects_what_monitor_labels_name(params, tmp_path):
    """modelops.deploy.prometheus.monitor_labels go on the PodMonitor and the PrometheusRule
    (kube-prometheus-stack's selectors); a rate window of fewer than four scrapes is refused."""
    raw = load_yaml((ROOT / "params.yaml").read_text())
    raw["modelops"]["deploy"].setdefault("prometheus", {})["monitor_labels"] = {
        "release": "kube-prometheus-stack"}
    path = tmp_path / "params.yaml"
    path.write_text(dump_yaml(raw))
    files = render_env(example_release(), load_settings(path), "production")
    for name in ("pod-monitor.yaml", "prometheus-rules.yaml"):
        (doc,) = load_yaml_all(files[name].decode())
        assert doc["metadata"]["labels"]["release"] == "kube-prometheus-stack", name
    raw["modelops"]["deploy"]["prometheus"] = {"scrape_interval": "1m"}
    raw["modelops"]["deploy"].setdefault("analysis", {})["rate_window"] = "2m"
    path.write_text(dump_yaml(raw))
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    assert exc.value.path == "modelops.deploy.analysis.rate_window"
    assert "four scrapes" in exc.value.problem and "1m" in exc.value.problem


def test_every_object_names_the_release_it_belongs_to(params):
    """Version, artifact sha256 and source commit on every Kubernetes object of the folder, so
    any object in the cluster traces back to the release (the baseline's ConfigMap, shared by
    the releases with the same baseline, carries the baseline's own sha256 instead)."""
    release = example_release()
    files = render_env(release, params, "production")
    seen = set()
    for name, data in files.items():
        if not name.endswith(".yaml") or name == "kustomization.yaml":
            continue
        for doc in load_yaml_all(data.decode()):
            notes = doc["metadata"].get("annotations") or {}
            if name == "drift-baseline.yaml":
                assert "modelops.io/drift-baseline-sha256" in notes
                continue
            assert (notes.get("modelops.io/version"), notes.get("modelops.io/sha256"),
                    notes.get("modelops.io/source-commit")) == (
                release.version, release.sha256, release.source_commit), (name, doc["kind"])
            seen.add(doc["kind"])
    assert {"Rollout", "Service", "AnalysisTemplate", "PodMonitor", "PrometheusRule",
            "ConfigMap", "Application"} <= seen
