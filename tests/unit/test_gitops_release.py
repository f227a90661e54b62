"""Release: built from dvc.lock, refuses mismatched artifacts, checks every field."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from modelops.errors import InputError, ValidationError
from modelops.gitops.release import Release, build_release
from modelops.settings import load_settings
from tests.conftest import ROOT

ARTIFACT = b"\x08\x07onnx-bytes-for-tests"


BASELINE = {"model": "digits-cnn", "split": "validation", "classes": [str(i) for i in range(10)],
            "class_distribution": [0.1] * 10, "n": 270,
            "features": {"names": ["pixel_0_0", "pixel_0_1"], "mean": [0.25, 0.5],
                         "std": [0.1, 0.2], "min": [0.0, 0.0], "max": [1.0, 1.0],
                         "quantile_edges": [[0.25], [0.25, 0.75]],
                         "bin_distribution": [[0.5, 0.5], [0.25, 0.5, 0.25]]}}


def example_release(**changes) -> Release:
    base = Release(
        model="digits-cnn", version="0123456789ab", sha256="a" * 64, dvc_md5="b" * 32,
        artifact_uri="s3://models/files/md5/bb/" + "b" * 30,
        image="ghcr.io/example/modelops-serve:0.1.0",
        source_repo="https://github.com/example/modelops",
        source_commit="0123456789ab" + "c" * 28, dvc_lock_sha256="d" * 64,
        drift_baseline=BASELINE)
    if "model" in changes and "drift_baseline" not in changes:  # the same run's baseline
        changes["drift_baseline"] = {**BASELINE, "model": changes["model"]}
    return dataclasses.replace(base, **changes)


BASELINE_BYTES = (json.dumps(BASELINE, indent=2) + "\n").encode()


def _lock(md5: str, baseline_md5: str | None = None) -> str:
    text = (
        "schema: '2.0'\nstages:\n  export:\n    cmd: python -m pipeline.export\n"
        "    deps:\n    - path: models/model.pt\n      hash: md5\n"
        "      md5: 0123456789abcdef0123456789abcdef\n      size: 10\n"
        "    outs:\n    - path: models/model.onnx\n      hash: md5\n"
        f"      md5: {md5}\n      size: {len(ARTIFACT)}\n")
    if baseline_md5:
        text += ("  evaluate:\n    cmd: python -m pipeline.evaluate\n"
                 "    outs:\n    - path: metrics/drift_baseline.json\n      hash: md5\n"
                 f"      md5: {baseline_md5}\n      size: {len(BASELINE_BYTES)}\n")
    return text


def _write_baseline(repo, data: bytes) -> None:
    (repo / "metrics").mkdir(exist_ok=True)
    (repo / "metrics" / "drift_baseline.json").write_bytes(data)
    (repo / "dvc.lock").write_text(_lock(hashlib.md5(ARTIFACT).hexdigest(),
                                         hashlib.md5(data).hexdigest()))


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.onnx").write_bytes(ARTIFACT)
    _write_baseline(tmp_path, BASELINE_BYTES)
    return tmp_path


@pytest.fixture(scope="module")
def params():
    return load_settings(ROOT / "params.yaml")


def _build(repo, params, **kw):
    kw.setdefault("artifact_uri", "s3://bucket/files/md5/xx/yy")
    kw.setdefault("source_commit", "c" * 40)
    kw.setdefault("source_repo", "https://github.com/example/modelops")
    return build_release(repo, params, **kw)


def test_build_release_from_dvc_lock(repo, params):
    release = _build(repo, params)
    assert release.dvc_md5 == hashlib.md5(ARTIFACT).hexdigest()
    assert release.sha256 == hashlib.sha256(ARTIFACT).hexdigest()
    assert release.dvc_lock_sha256 == hashlib.sha256((repo / "dvc.lock").read_bytes()).hexdigest()
    assert release.version == "c" * 12  # default: short source commit
    assert release.image == params.deploy.image
    assert release.model == "digits-cnn"


def test_refuses_artifact_that_does_not_match_dvc_lock(repo, params):
    (repo / "models" / "model.onnx").write_bytes(ARTIFACT + b"tampered")
    with pytest.raises(InputError) as info:
        _build(repo, params)
    assert "does not match dvc.lock" in str(info.value)
    assert "models/model.onnx" in str(info.value)


def test_missing_and_malformed_dvc_lock(repo, params):
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages:\n  export: [1, 2]\n")
    with pytest.raises(InputError, match="not a valid dvc lock file"):
        _build(repo, params)
    (repo / "dvc.lock").unlink()
    with pytest.raises(InputError, match="dvc.lock: file not found"):
        _build(repo, params)


def test_lock_without_the_export_stage(repo, params):
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    with pytest.raises(InputError, match="no stage 'export'"):
        _build(repo, params)


def test_default_artifact_uri_from_dvc_remote(repo, params):
    (repo / ".dvc").mkdir()
    (repo / ".dvc" / "config").write_text("[core]\n    remote = store\n"
                                          "['remote \"store\"']\n    url = s3://bucket/dvc\n")
    release = _build(repo, params, artifact_uri=None)
    md5 = release.dvc_md5
    assert release.artifact_uri == f"s3://bucket/dvc/files/md5/{md5[:2]}/{md5[2:]}"


@pytest.mark.parametrize(("field", "value"), [
    ("model", "Digits-CNN"), ("model", "a" * 64), ("model", "a_b"), ("model", "-x"),
    ("version", "1.0\n---"), ("version", "v: 1"), ("version", "a" * 64), ("version", ""),
    ("image", "ghcr.io/x/serve:1\n---\nkind: Secret"), ("image", "ghcr.io/x/serve:---"),
    ("image", "serve:a b"), ("sha256", "A" * 64), ("dvc_md5", "b" * 31),
    ("artifact_uri", "s3://x/y\nz"), ("artifact_uri", "no-scheme"),
    ("source_commit", "main"), ("source_repo", "x\ny"), ("source_repo", "x\x85y"),
])
def test_bad_release_fields_name_field_and_value(field, value):
    with pytest.raises(ValidationError) as info:
        example_release(**{field: value}).check()
    message = str(info.value)
    assert f"{field}: " in message
    assert repr(value)[:40] in message


def test_json_round_trip_is_canonical():
    release = example_release()
    data = release.to_json()
    assert Release.from_json(data) == release
    assert Release.from_json(data).to_json() == data
    assert json.loads(data)["format"] == 1


@pytest.mark.parametrize(("data", "match"), [
    (b"{", "not valid JSON"), (b"[]", "must be a JSON object"),
    (json.dumps({"format": 2}).encode(), "format"),
])
def test_from_json_rejects_bad_input(data, match):
    with pytest.raises(InputError, match=match):
        Release.from_json(data)


def test_from_json_rejects_unknown_and_bad_fields():
    raw = json.loads(example_release().to_json())
    with pytest.raises(InputError, match="extra: unknown key"):
        Release.from_json(json.dumps({**raw, "extra": 1}))
    with pytest.raises(InputError, match="model: must be a DNS-1123 label"):
        Release.from_json(json.dumps({**raw, "model": "Bad_Name"}))


def test_model_name_too_long_for_kubernetes_names_params_path(repo):
    from modelops.errors import ConfigError
    from modelops.settings import parse_settings
    from modelops.yamlio import load_yaml_file

    raw = load_yaml_file(ROOT / "params.yaml")
    raw["modelops"]["model"]["name"] = "m" * 64
    long_params = parse_settings(raw, "params.yaml")
    with pytest.raises(ConfigError) as info:
        _build(repo, long_params)
    assert (info.value.path, info.value.value) == ("modelops.model.name", "m" * 64)
    for bad in ("Digits", "a_b"):
        raw["modelops"]["model"]["name"] = bad
        with pytest.raises(ConfigError) as info:
            parse_settings(raw, "params.yaml")
        assert (info.value.path, info.value.value) == ("modelops.model.name", bad)


# --------------------------------------------------------------------------- drift baseline

def test_build_release_carries_the_drift_baseline(repo, params):
    release = _build(repo, params)
    assert release.drift_baseline == BASELINE
    assert json.loads(release.to_json())["drift_baseline"] == BASELINE
    assert json.loads(release.baseline_json()) == BASELINE


def test_baseline_that_changed_after_dvc_repro_is_refused(repo, params):
    (repo / "metrics" / "drift_baseline.json").write_bytes(BASELINE_BYTES + b" ")
    with pytest.raises(InputError) as info:
        _build(repo, params)
    assert "metrics/drift_baseline.json: md5" in str(info.value)
    assert "does not match dvc.lock stages.evaluate" in str(info.value)


def test_baseline_missing_from_dvc_lock_or_disk(repo, params):
    (repo / "metrics" / "drift_baseline.json").unlink()
    with pytest.raises(InputError, match="metrics/drift_baseline.json: file not found"):
        _build(repo, params)
    (repo / "dvc.lock").write_text(_lock(hashlib.md5(ARTIFACT).hexdigest()))
    with pytest.raises(InputError) as info:
        _build(repo, params)
    assert "no stage outputs 'metrics/drift_baseline.json'" in str(info.value)
    assert "drift_baseline: ''" in str(info.value)  # says how to release without one
    no_baseline = dataclasses.replace(
        params, sections={**params.sections,
                          "model": dataclasses.replace(params.model, drift_baseline="")})
    assert _build(repo, no_baseline).drift_baseline is None


@pytest.mark.parametrize(("change", "field"), [
    ({"model": "other-model"}, "model"),
    ({"class_distribution": [0.5, 0.6]}, "class_distribution"),
    ({"class_distribution": [1.0, -0.0, "x"]}, "class_distribution"),
    ({"class_distribution": []}, "class_distribution"),
    ({"classes": ["0", "1"]}, "classes"),
])
def test_bad_baseline_file_names_file_field_and_value(repo, params, change, field):
    _write_baseline(repo, json.dumps({**BASELINE, **change}).encode())
    with pytest.raises(InputError) as info:
        _build(repo, params)
    message = str(info.value)
    assert message.startswith(f"metrics/drift_baseline.json: {field}: ")
    assert repr(next(iter(change.values())))[:30] in message


def test_older_release_json_without_baseline_still_loads():
    old = example_release(drift_baseline=None)
    data = old.to_json()
    assert b"drift_baseline" not in data  # the bytes an older release.json has
    loaded = Release.from_json(data)
    assert loaded.drift_baseline is None and loaded.to_json() == data


def test_release_json_with_bad_baseline_is_refused():
    raw = json.loads(example_release().to_json())
    raw["drift_baseline"]["class_distribution"] = [0.2] * 10
    with pytest.raises(InputError, match=r"drift_baseline.class_distribution: must sum to 1"):
        Release.from_json(json.dumps(raw))
    raw["drift_baseline"] = [1, 2]
    with pytest.raises(InputError, match=r"drift_baseline: must be a JSON object"):
        Release.from_json(json.dumps(raw))


def test_a_baseline_too_big_for_its_configmap_is_refused(repo, params):
    from modelops.gitops.release import BASELINE_MAX_BYTES

    big = {**BASELINE, "features": {"mean": [0.5] * (BASELINE_MAX_BYTES // 4)}}
    _write_baseline(repo, json.dumps(big).encode())
    with pytest.raises(InputError) as info:
        _build(repo, params)
    message = str(info.value)
    assert message.startswith("metrics/drift_baseline.json: (top level): ")
    assert f"must be at most {BASELINE_MAX_BYTES} bytes of compact JSON" in message
    assert "ConfigMap" in message


def test_a_per_pixel_baseline_of_a_28x28_image_fits(repo, params):
    """784 features of 10 bins each, edges at full precision: beyond the 128 KiB an annotation
    could carry (the Rollout's last-applied copy doubles it); the release renders and its
    folder passes every check (its ConfigMap applied server-side)."""
    import random

    from modelops.gitops.render import render_env

    rng = random.Random(0)
    n = 784
    edges = [sorted(rng.random() for _ in range(9)) for _ in range(n)]
    big = {**BASELINE, "features": {
        "names": [f"pixel_{j // 28}_{j % 28}" for j in range(n)], "min": [0.0] * n,
        "max": [1.0] * n, "quantile_edges": edges, "bin_distribution": [[0.1] * 10] * n}}
    data = json.dumps(big).encode()
    assert len(data) > 128 * 1024
    _write_baseline(repo, data)
    release = _build(repo, params)
    assert release.has_feature_bins()
    files = render_env(release, params, "production")
    assert len(files["drift-baseline.yaml"]) > 128 * 1024


def test_a_baseline_with_unsound_features_is_refused(repo, params):
    bad = {**BASELINE, "features": {**BASELINE["features"],
                                    "bin_distribution": [[0.5, 0.5], [0.5, 0.5]]}}
    _write_baseline(repo, json.dumps(bad).encode())
    with pytest.raises(InputError) as info:
        _build(repo, params)
    assert "features.bin_distribution[1]: must have 3 (one per bin" in str(info.value)
