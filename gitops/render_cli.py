"""``modelops-gitops release | render | validate``: thin CLI over release.py, render.py and
validate.py."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from modelops.errors import InputError
from modelops.fsutil import atomic_write_bytes
from modelops.settings import load_settings
from modelops.yamlio import load_yaml_all

_RELEASE_HELP = """\
defaults: --version is the first 12 hex digits of the git HEAD commit; --image is
modelops.deploy.image
from params.yaml (prefer a digest: name@sha256:...); --artifact-uri is the default DVC remote's
content-addressed path of the artifact (<remote>/files/md5/<2>/<30>); --source-commit is the git
HEAD; --source-repo comes from GitHub Actions or the 'origin' remote. The artifact
(modelops.model.artifact.path) must match its md5 in dvc.lock; so must the drift baseline
(modelops.model.drift_baseline; '' = none), which the release carries."""

_RENDER_HELP = """\
writes OUT/<env>/<model>/ with rollout.yaml, services.yaml, analysis-templates.yaml,
pod-monitor.yaml, prometheus-rules.yaml, drift-baseline.yaml, dashboard.yaml,
application.yaml, kustomization.yaml and release.json (all files or none; stale files
removed; each folder checked as `publish --rendered-dir` checks it). The Rollout's
fetch-model init container (python -m modelops.serve.fetch) downloads and checks the
artifact into /models; the server reads
DRIFT_BASELINE, the release's drift baseline, from the release's own ConfigMap
(drift-baseline.yaml, named after its content, never pruned: stable and canary pods each read
their own model's baseline). dashboard.yaml is the model's Grafana dashboard, a ConfigMap
labelled grafana_dashboard: "1" for the Grafana sidecar.

analysis thresholds (params.yaml deploy.analysis) -> AnalysisTemplates:
  error_rate_max          <model>-error-rate: share of 5xx in model_requests_total{role="canary"}
  latency_p99_max_seconds <model>-latency-p99: histogram_quantile(0.99, model_request_duration_
                          seconds_bucket{role="canary"})
  drift_psi_max           <model>-prediction-drift: max(model_prediction_psi{role="canary"})
  input_drift_psi_max     <model>-input-drift: max(model_feature_psi_max{role="canary"}) (a
                          baseline with per-feature bins only)
each metric: successCondition 'len(result) > 0 && result[0] < T', failureCondition
'len(result) > 0 && result[0] >= T'. No data (empty result or NaN) is inconclusive; after
inconclusive_limit of those the rollout pauses for a human."""


def _add_release_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--repo", default=".", help="model repository root (default: .)")
    p.add_argument("--release", metavar="FILE",
                   help="use this release.json instead of building one from dvc.lock")
    p.add_argument("--version", dest="release_version",
                   help="release version (default: first 12 hex digits of git HEAD)")
    p.add_argument("--image", help="serving image (default: modelops.deploy.image)")
    p.add_argument("--artifact-uri", help="artifact URI (default: from the DVC remote)")
    p.add_argument("--source-repo", help="source repository (default: from git/GitHub)")
    p.add_argument("--source-commit", help="source commit (default: git HEAD)")


def load_release(args: argparse.Namespace, params):
    from modelops.gitops.release import Release, build_release

    if args.release:
        path = Path(args.release)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise InputError(f"{path}: file not found",
                             hint="write one with `modelops-gitops release --out FILE`") from exc
        return Release.from_json(data, str(path))
    return build_release(args.repo, params, version=args.release_version, image=args.image,
                         artifact_uri=args.artifact_uri, source_repo=args.source_repo,
                         source_commit=args.source_commit)


def _cmd_release(args: argparse.Namespace) -> int:
    params = load_settings(args.params)
    release = load_release(args, params)
    data = release.to_json()
    if args.out:
        atomic_write_bytes(args.out, data)
        print(f"release {release.model} {release.version} (sha256 {release.sha256[:12]}) "
              f"-> {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(data.decode("utf-8"))
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    from modelops.gitops.render import render_env, write_env

    params = load_settings(args.params)
    envs = args.env or list(params.deploy.environments)
    for env in envs:  # check every environment name before rendering anything
        params.deploy.environment(env, args.params)
    release = load_release(args, params)
    for warning in params.deploy.placeholders(release.image):
        print(f"warning: {warning}", file=sys.stderr)
    rendered = {env: render_env(release, params, env, branch=args.branch) for env in envs}
    for env, files in rendered.items():
        target = write_env(files, args.out, env, release.model)
        print(f"rendered {len(files)} files -> {target}", file=sys.stderr)
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from modelops.gitops.render import KINDS
    from modelops.gitops.validate import check_manifests, kustomize_build

    # rendered files that are not Kubernetes objects this validator knows (kustomization.yaml)
    unchecked = {k.filename for k in KINDS.values() if not k.validated}
    files: list[Path] = []
    folders: list[Path] = []
    for item in args.paths:
        p = Path(item)
        if p.is_dir():
            found = sorted(x for x in p.rglob("*.y*ml") if x.name not in unchecked)
            files.extend(found)
            folders.extend(sorted({x.parent for x in p.rglob("kustomization.yaml")}))
        elif p.exists():
            files.append(p)
        else:
            raise InputError(f"{p}: no such file or folder")
    docs, sources = [], []
    for f in files:
        for d in load_yaml_all(f.read_text(encoding="utf-8"), str(f)):
            docs.append(d)
            sources.append(str(f))
    check_manifests(docs, sources, cross_refs=not args.no_cross_refs,
                    hint="fix the fields named above (paths are inside each document)")
    built = 0
    if not args.no_kustomize:
        for folder in folders:
            if kustomize_build(folder) is not None:
                built += 1
    print(f"ok: {len(docs)} manifests in {len(files)} files"
          + (f", {built} kustomization(s) built" if built else ""), file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser("release", help="build the release record (model, version, hashes)",
                       description="Build and check the release of the artifact pinned in "
                                   "dvc.lock; print its JSON or write it with --out.",
                       epilog=_RELEASE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_release_args(p)
    p.add_argument("--out", help="write release.json here (default: stdout)")
    p.set_defaults(handler=_cmd_release)

    p = sub.add_parser("render", help="render Argo Rollouts + Argo CD manifests",
                       description="Render, validate and write the manifests of one release for "
                                   "each environment (nothing is written if any check fails).",
                       epilog=_RENDER_HELP + "\n\n" + _RELEASE_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_release_args(p)
    p.add_argument("--env", action="append",
                   help="environment from modelops.deploy.environments (repeatable; default: all)")
    p.add_argument("--out", required=True, help="output folder (gets <env>/<model>/...)")
    p.add_argument("--branch", default=None,
                   help="the GitOps branch the folders will be published to, which the "
                        "Applications follow (default: modelops.deploy.argocd.target_revision; "
                        "`publish --rendered-dir --branch B` accepts only folders rendered for B)")
    p.set_defaults(handler=_cmd_render)

    p = sub.add_parser("validate", help="validate manifests (strict CRDs, names, references)",
                       description="Validate Kubernetes manifests: custom resources against "
                                   "the upstream CRD schemas with unknown fields rejected, core "
                                   "kinds with kubernetes-validate --strict, name/label/image "
                                   "rules, cross references, and `kubectl kustomize` for each "
                                   "folder with a kustomization.yaml (when kubectl is "
                                   "installed).")
    p.add_argument("paths", nargs="+", help="YAML files or folders")
    p.add_argument("--no-cross-refs", action="store_true",
                   help="skip checks that need the whole set (templates/services exist)")
    p.add_argument("--no-kustomize", action="store_true", help="skip `kubectl kustomize`")
    p.set_defaults(handler=_cmd_validate)
