"""A release: exactly which model artifact runs, built from ``dvc.lock`` and ``params.yaml``.

A release is identified by model name + version + the sha256 of the ONNX artifact (its DVC md5
is pinned in ``dvc.lock``). It holds no wall-clock time: the same inputs give the same bytes, so
re-publishing an unchanged release is a no-op.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops.compute import CostParams, price, read_compute, totals
from modelops.drift import feature_problems
from modelops.errors import ConfigError, ExternalError, InputError, ValidationError
from modelops.fsutil import md5_file, sha256_file
from modelops.git import git_text
from modelops.yamlio import load_yaml_file

RELEASE_FORMAT = 1

# field -> (regex, what it must be). Every field of a release is checked with these.
_HEX = r"[0-9a-f]"
FIELD_RULES: dict[str, tuple[str, str]] = {
    "model": (r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?",
              "must be a DNS-1123 label: at most 63 lowercase letters, digits and '-', "
              "starting and ending with a letter or digit"),
    "version": (r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?",
                "must be a Kubernetes label value: at most 63 letters, digits, '-', '_', '.', "
                "starting and ending with a letter or digit"),
    "sha256": (f"{_HEX}{{64}}", "must be 64 lowercase hex digits"),
    "dvc_md5": (f"{_HEX}{{32}}", "must be 32 lowercase hex digits"),
    "artifact_uri": (r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\x00-\x1f\x7f]+",
                     "must be a URI like 's3://bucket/path' without spaces"),
    "image": (r".+", "must be an image reference"),  # checked by image_problem()
    "source_repo": (r"[^\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]{1,512}",
                    "must be 1-512 printable characters"),
    "source_commit": (f"{_HEX}{{7,64}}", "must be a git commit id (7-64 lowercase hex digits)"),
    "dvc_lock_sha256": (f"{_HEX}{{64}}", "must be 64 lowercase hex digits"),
}
# Fields that are not strings; checked by their own function (field, value, release) -> problems.
OPTIONAL_FIELDS = ("drift_baseline", "compute")
# The baseline travels in a ConfigMap of its own per release (gitops/render.py), named after
# its content, and a ConfigMap holds at most 1 MiB of data; a per-feature baseline is ~20 KiB
# for 64 pixels, ~250 KiB for 784. What is left is room for the key and the object around it.
BASELINE_MAX_BYTES = 1024 * 1024 - 16 * 1024


def baseline_problems(value: Any, model: str) -> list[tuple[str, Any, str]]:
    """(path, value, problem) for a drift baseline (``metrics/drift_baseline.json``'s shape).

    The serving runtime reads ``class_distribution``; ``model`` must name the released model;
    ``classes`` (when given) must match the distribution's length. Other keys pass through.
    """
    if value is None:
        return []
    if not isinstance(value, dict):
        return [("drift_baseline", value, "must be a JSON object")]
    out: list[tuple[str, Any, str]] = []
    if value.get("model") != model:
        out.append(("drift_baseline.model", value.get("model"),
                    f"must name the released model {model!r}: the baseline must come from "
                    "the same training run"))
    dist = value.get("class_distribution")
    if (not isinstance(dist, list) or not dist
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                       and math.isfinite(x) and x >= 0 for x in dist)):
        out.append(("drift_baseline.class_distribution", dist,
                    "must be a non-empty list of non-negative numbers"))
    elif not math.isclose(float(sum(dist)), 1.0, abs_tol=1e-3):
        out.append(("drift_baseline.class_distribution", dist,
                    f"must sum to 1 (sums to {float(sum(dist)):.4f})"))
    else:
        classes = value.get("classes")
        if classes is not None and (not isinstance(classes, list) or len(classes) != len(dist)
                                    or not all(isinstance(c, str) for c in classes)):
            out.append(("drift_baseline.classes", classes,
                        f"must be {len(dist)} class names, one per class_distribution entry"))
    if not out and value.get("features") is not None:
        out.extend((f"drift_baseline.{path}", v, problem)
                   for path, v, problem in feature_problems(value["features"])[:1])
    if not out:
        try:
            size = len(json.dumps(value, allow_nan=False, sort_keys=True,
                                  separators=(",", ":")))
        except (TypeError, ValueError) as exc:
            return [("drift_baseline", value, f"must be plain finite JSON ({exc})")]
        if size > BASELINE_MAX_BYTES:
            out.append(("drift_baseline", f"{size} bytes",
                        f"must be at most {BASELINE_MAX_BYTES} bytes of compact JSON (it "
                        "travels in a ConfigMap, 1 MiB at most); fewer bins or features"))
    return out


@dataclass(frozen=True)
class Release:
    model: str
    version: str
    sha256: str
    dvc_md5: str
    artifact_uri: str
    image: str
    source_repo: str
    source_commit: str
    dvc_lock_sha256: str
    # metrics/drift_baseline.json of the same training run (the serving runtime's reference
    # for prediction and input drift), rendered as a ConfigMap named after its content that the
    # pod template mounts. None: an older release.json without it, or
    # modelops.model.drift_baseline set to "": the PSI stays NaN.
    drift_baseline: dict[str, Any] | None = None
    # Compute that produced this model (metrics/compute/*.json, see modelops.compute): totals and
    # per-stage CPU/GPU seconds with the estimated cost. None: recorded without the launcher.
    compute: dict[str, Any] | None = None

    def problems(self) -> list[tuple[str, Any, str]]:
        """(field, value, problem) for each field that breaks its rule."""
        from modelops.gitops.validate import image_problem

        out = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "drift_baseline":
                out.extend(baseline_problems(value, self.model))
                continue
            if f.name == "compute":
                out.extend(compute_problems(value))
                continue
            pattern, problem = FIELD_RULES[f.name]
            if not isinstance(value, str):
                out.append((f.name, value, "must be a string"))
            elif not re.fullmatch(pattern, value):
                out.append((f.name, value, problem))
            elif f.name == "image" and (p := image_problem(value)):
                out.append((f.name, value, p))
        return out

    def check(self, source: str = "release") -> Release:
        """Raise ValidationError naming the first bad field and its value."""
        bad = self.problems()
        if bad:
            name, value, problem = bad[0]
            raise ValidationError(f"{source}: {name}: {problem} (got {_show(value)})")
        return self

    def to_dict(self, *, copy: bool = True) -> dict[str, Any]:
        """The release.json object; ``copy=False`` shares the field values (no deep copy of
        the drift baseline, for writing it out at once)."""
        fields = (dataclasses.asdict(self) if copy else
                  {f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        out = {"format": RELEASE_FORMAT, **fields}
        for name in OPTIONAL_FIELDS:  # absent rather than null: older releases keep their bytes
            if out[name] is None:
                del out[name]
        return out

    def has_feature_bins(self) -> bool:
        """Whether the drift baseline describes the model's features with bins (then the
        runtime exports feature drift, and input-drift analyses and alerts apply)."""
        features = (self.drift_baseline or {}).get("features")
        return isinstance(features, dict) and features.get("quantile_edges") is not None

    def baseline_json(self) -> str | None:
        """The drift baseline as the file the serving runtime reads (canonical JSON)."""
        if self.drift_baseline is None:
            return None
        return json.dumps(self.drift_baseline, sort_keys=True, separators=(",", ":"),
                          allow_nan=False) + "\n"

    def to_json(self) -> bytes:
        """Canonical bytes: sorted keys, 2-space indent, trailing newline."""
        return (json.dumps(self.to_dict(copy=False), indent=2, sort_keys=True, ensure_ascii=False)
                + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes | str, source: str = "release.json") -> Release:
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{source}: not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise InputError(f"{source}: must be a JSON object (got {_show(raw)})")
        if raw.get("format") != RELEASE_FORMAT:
            raise InputError(f"{source}: format: must be {RELEASE_FORMAT} "
                             f"(got {_show(raw.get('format'))})")
        names = [f.name for f in dataclasses.fields(cls)]
        for key in raw:
            if key != "format" and key not in names:
                raise InputError(f"{source}: {key}: unknown key (got {_show(raw[key])})")
        missing = [n for n in names if n not in raw and n not in OPTIONAL_FIELDS]
        if missing:
            raise InputError(f"{source}: {missing[0]}: required key is missing")
        release = cls(**{n: raw[n] for n in names if n in raw})
        try:
            release.check(source)
        except ValidationError as exc:
            raise InputError(exc.message) from exc
        return release


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --------------------------------------------------------------------------- dvc.lock

def read_dvc_lock_out(lock_path: Path, stage: str, out_path: str) -> str:
    """The md5 that ``dvc.lock`` pins for ``out_path`` of ``stage`` (DVC's lock file schema)."""

    if not lock_path.exists():
        raise InputError(f"{lock_path.name}: file not found",
                         hint="run `dvc repro` to produce dvc.lock, then release")
    raw = load_yaml_file(lock_path)
    try:
        from dvc.schema import COMPILED_LOCKFILE_SCHEMA

        COMPILED_LOCKFILE_SCHEMA(raw)
    except Exception as exc:  # voluptuous.Invalid and friends
        raise InputError(f"{lock_path.name}: not a valid dvc lock file: {exc}",
                         hint="regenerate it with `dvc repro`") from exc
    stages = raw.get("stages") or {}
    if stage not in stages:
        raise InputError(f"{lock_path.name}: stages: no stage {stage!r} "
                         f"(stages: {', '.join(stages) or 'none'})",
                         hint="check modelops.model.artifact.stage in params.yaml or run "
                              "`dvc repro`")
    for i, out in enumerate(stages[stage].get("outs") or []):
        if out.get("path") == out_path:
            md5 = out.get("md5")
            if not isinstance(md5, str) or not re.fullmatch(f"{_HEX}{{32}}", md5):
                raise InputError(f"{lock_path.name}: stages.{stage}.outs[{i}].md5: "
                                 f"not an md5 (got {_show(md5)})")
            return md5
    raise InputError(f"{lock_path.name}: stages.{stage}.outs: no output {out_path!r}",
                     hint="check modelops.model.artifact.path in params.yaml")


def artifact_of(params: Any, lock_path: Path) -> tuple[str, str]:
    """(path, stage) of the deployable artifact the settings name; the stage from dvc.lock when
    ``modelops.model.artifact.stage`` is ''."""
    artifact = params.model.artifact
    if not artifact.path:
        raise InputError("modelops.model.artifact.path is '': this model has no deployable "
                         "artifact", hint="set it to the ONNX file a dvc stage outputs, or "
                                          "turn deployment off with modelops.steps.deploy: false")
    if artifact.stage:
        return artifact.path, artifact.stage
    found = find_dvc_lock_out(lock_path, artifact.path)
    if found is None:
        raise InputError(f"{lock_path.name}: no stage outputs {artifact.path!r} "
                         "(modelops.model.artifact.path)",
                         hint="run `dvc repro` and commit dvc.lock, or fix the path")
    return artifact.path, found[0]


def find_dvc_lock_out(lock_path: Path, out_path: str) -> tuple[str, str] | None:
    """(stage, md5) of the stage in ``dvc.lock`` that outputs ``out_path``, or None."""

    raw = load_yaml_file(lock_path) if lock_path.exists() else None
    stages = raw.get("stages") if isinstance(raw, dict) else None
    for stage, body in (stages or {}).items():
        outs = body.get("outs") if isinstance(body, dict) else None
        for out in outs or []:
            if isinstance(out, dict) and out.get("path") == out_path:
                return stage, str(out.get("md5"))
    return None


def compute_problems(value: Any) -> list[tuple[str, Any, str]]:
    """(path, value, problem) for a release's compute record."""
    if value is None:
        return []
    if not isinstance(value, dict) or not isinstance(value.get("total"), dict):
        return [("compute", value, "must be an object with a 'total' object")]
    out = []
    for key in ("cpu_seconds", "gpu_seconds", "cost"):
        number = value["total"].get(key)
        if isinstance(number, bool) or not isinstance(number, (int, float)) or number < 0:
            out.append((f"compute.total.{key}", number, "must be a number >= 0"))
    return out


def read_compute_record(root: Path, params: Any) -> dict[str, Any] | None:
    """Totals and per-stage compute from metrics/compute/*.json, priced by params.yaml cost."""

    stages = read_compute(root)
    if not stages:
        return None
    prices = getattr(params, "cost", None) or CostParams()
    keys = ("wall_seconds", "cpu_seconds", "gpu_seconds")
    return {"total": totals(stages, prices),
            "stages": {name: {**{k: data.get(k, 0.0) for k in keys},
                              "cost": round(price(data, prices), 6)}
                       for name, data in stages.items()}}


def read_drift_baseline(root: Path, rel_path: str, model: str) -> dict[str, Any]:
    """The drift baseline at ``rel_path``, checked against its md5 in ``dvc.lock`` and its shape.

    The md5 check makes sure the baseline came from the same ``dvc repro`` as the artifact.
    """
    lock = root / "dvc.lock"
    found = find_dvc_lock_out(lock, rel_path)
    if found is None:
        raise InputError(f"{lock.name}: no stage outputs {rel_path!r} "
                         "(modelops.model.drift_baseline)",
                         hint="run `dvc repro` and commit dvc.lock, or set "
                              "modelops.model.drift_baseline: '' in params.yaml to release without "
                              "a drift baseline (the drift analysis then stays inconclusive)")
    stage, pinned = found
    path = root / rel_path
    if not path.exists():
        raise InputError(f"{rel_path}: file not found",
                         hint="run `dvc repro` (or `dvc pull`) to produce the drift baseline")
    actual = md5_file(path)
    if actual != pinned:
        raise InputError(
            f"{rel_path}: md5 {actual!r} does not match dvc.lock stages.{stage} ({pinned!r})",
            hint="the file changed after `dvc repro`: run `dvc repro` and commit dvc.lock "
                 "before releasing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{rel_path}: not valid JSON: {exc}",
                         hint="regenerate it with `dvc repro`") from exc
    bad = baseline_problems(data, model)
    if bad:
        name, value, problem = bad[0]
        field_path = name.removeprefix("drift_baseline").lstrip(".") or "(top level)"
        raise InputError(f"{rel_path}: {field_path}: {problem} (got {_show(value)})",
                         hint="regenerate it with `dvc repro`")
    return data


def _git(root: Path, *args: str) -> str | None:
    try:
        out = git_text(args, cwd=root, timeout=30)
    except ExternalError:  # git missing, or stalled
        return None
    return out.strip() if out is not None else None


def default_version(root: Path) -> str:
    """The default version: the first 12 hex digits of the source commit."""
    commit = _git(root, "rev-parse", "HEAD")
    if not commit:
        raise ExternalError(f"{root.name or root}: not a git repository with a commit",
                            hint="commit first, or pass --version and --source-commit")
    return commit[:12]


def default_source_repo(root: Path) -> str:
    server, repo = os.environ.get("GITHUB_SERVER_URL"), os.environ.get("GITHUB_REPOSITORY")
    if server and repo:
        return f"{server}/{repo}"
    return _git(root, "remote", "get-url", "origin") or "local"


def default_artifact_remote(root: Path) -> str | None:
    """The URL of the default DVC remote, or None when there is none."""
    try:
        from dvc.config import Config

        config = Config(dvc_dir=str(root / ".dvc"))  # .dvc/config + config.local, validated
        name = config["core"].get("remote")
        if not name:
            return None
        url = config["remote"][name]["url"]
    except Exception:  # no dvc repo, bad config: the caller asks for --artifact-uri
        return None
    if "://" not in url:  # a local remote: make it absolute, then a file URI
        url = (root / url).resolve().as_uri()
    return url.rstrip("/")


def build_release(repo_root: str | Path, params: Any, *, version: str | None = None,
                  image: str | None = None, artifact_uri: str | None = None,
                  source_repo: str | None = None, source_commit: str | None = None) -> Release:
    """Build and check the release of the artifact pinned in ``dvc.lock``.

    ``params`` is the loaded params.yaml (``modelops.settings.load_settings``). Defaults: version =
    the
    first 12 hex digits of the git HEAD, image = ``deploy.image``, artifact URI = the default DVC
    remote's content-addressed path (``<remote>/files/md5/<2>/<30>``), source repo from GitHub
    Actions or the ``origin`` remote, source commit = git HEAD, drift baseline =
    ``modelops.model.drift_baseline`` ("" = none). Refuses an artifact
    or a baseline whose md5 does not match ``dvc.lock``.
    """
    root = Path(repo_root)
    deploy = params.deploy
    pattern, problem = FIELD_RULES["model"]
    if not re.fullmatch(pattern, params.model.name):
        raise ConfigError(getattr(params, "file", "params.yaml"), "modelops.model.name",
                          params.model.name, problem,
                          hint="the model name names Kubernetes objects; shorten it")
    lock = root / "dvc.lock"
    artifact_path, stage = artifact_of(params, lock)
    pinned = read_dvc_lock_out(lock, stage, artifact_path)
    artifact = root / artifact_path
    if not artifact.exists():
        raise InputError(f"{artifact_path}: file not found",
                         hint="run `dvc pull` (or `dvc repro`) to fetch the artifact")
    actual = md5_file(artifact)
    if actual != pinned:
        raise InputError(
            f"{artifact_path}: md5 {actual!r} does not match dvc.lock "
            f"stages.{stage} ({pinned!r})",
            hint="the file changed after `dvc repro`: run `dvc repro` (or `dvc checkout`) "
                 "and commit dvc.lock before releasing")
    if artifact_uri is None:
        remote = default_artifact_remote(root)
        if remote is None:
            raise InputError("no artifact uri: the dvc repository has no default remote",
                             hint="add one (`dvc remote add -d ...`) or pass --artifact-uri")
        artifact_uri = f"{remote}/files/md5/{pinned[:2]}/{pinned[2:]}"
    commit = source_commit or _git(root, "rev-parse", "HEAD")
    if not commit:
        raise ExternalError(f"{root.name or root}: not a git repository with a commit",
                            hint="commit first, or pass --source-commit")
    baseline_path = params.model.drift_baseline
    baseline = (read_drift_baseline(root, baseline_path, params.model.name) if baseline_path
                else None)
    release = Release(
        model=params.model.name,
        version=version if version is not None else commit[:12],
        sha256=sha256_file(artifact),
        dvc_md5=pinned,
        artifact_uri=artifact_uri,
        image=image if image is not None else deploy.image,
        source_repo=source_repo or default_source_repo(root),
        source_commit=commit,
        dvc_lock_sha256=sha256_file(lock),
        drift_baseline=baseline,
        compute=read_compute_record(root, params),
    )
    return release.check()
