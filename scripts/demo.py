"""``make demo``: the whole flow on the bundled example, offline, with embedded defaults.

Each step is one command of the suite; its heading says what it does and the summary at the end
says where each output is. Steps are listed once, in order, in :data:`STEPS`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

# (title, command, outputs to point the user at)
STEPS: list[tuple[str, list[str], list[str]]] = [
    ("check params.yaml", [PY, "-m", "modelops.ci", "check-params"], []),
    ("reproduce the pipeline (dvc repro)", [PY, "-m", "dvc", "repro"],
     ["data/", "models/model.onnx", "metrics/metrics.json", "plots/",
      "model-cards/digits-cnn.md", "plots/png/ (PNG plots: a workflow artifact in CI)"]),
    ("push data and models to the DVC remote", [PY, "-m", "dvc", "push"], [".dvc-remote/"]),
    ("summarise metrics", [PY, "-m", "pipeline.summary"], []),
    ("compile result (dvc stage 'compile': TensorRT on GPU, else ONNX Runtime)",
     [PY, "-m", "modelops.ci.compile.markdown", "metrics/compile.json"],
     ["models/compiled/", "metrics/compile.json"]),
    ("pull-request report: compare with HEAD, gates, card diff",
     [PY, "-m", "modelops.ci", "report"], ["reports/report.json"]),
    ("gate verdict (exit 1 when a gate fails)",
     [PY, "-m", "modelops.ci", "gate", "--report", "reports/report.json"], []),
    ("compute and estimated cost per model, from git history",
     [PY, "-m", "modelops.ci", "cost"], ["metrics/compute/"]),
    ("render Argo Rollouts + Argo CD manifests for every environment (checked before writing)",
     [PY, "-m", "modelops.gitops", "render", "--out", "build/manifests"],
     ["build/manifests/<env>/digits-cnn/"]),
    ("validate them: strict CRD schemas, core kinds, names, references, kubectl kustomize",
     [PY, "-m", "modelops.gitops", "validate", "build/manifests"], []),
    ("publish the release to the local GitOps repository (staging)",
     [PY, "-m", "modelops.gitops", "publish", "--env", "staging"],
     [".gitops-remote/ (git -C .gitops-remote log --stat)"]),
    ("promote staging to production (a direct commit; a pull request on GitHub)",
     [PY, "-m", "modelops.gitops", "promote", "--from", "staging", "--to", "production",
      "--direct"],
     []),
    ("which release runs in production since when",
     [PY, "-m", "modelops.gitops", "history", "--env", "production"], []),
    ("serve the model over the Open Inference Protocol, query it, stop it with SIGTERM",
     [PY, "-m", "scripts.smoke"], []),
    ("render the pipeline as an Argo Workflow for training at scale (strictly validated)",
     [PY, "-m", "modelops.gitops", "workflow", "render", "--out", "build/workflow.yaml"],
     ["build/workflow.yaml"]),
    ("render the Alertmanager route that turns drift alerts into retraining PRs",
     [PY, "-m", "modelops.gitops", "alertmanager-config", "--out",
      "build/alertmanager-retrain.yaml"],
     ["build/alertmanager-retrain.yaml"]),
    # last, so the end of the output is exactly what reviewers will read
    ("preview the sticky PR comment reviewers will see (no token: written and printed)",
     [PY, "-m", "modelops.ci", "comment", "--preview"], ["reports/pr-comment.md"]),
]


def main() -> int:
    os.chdir(ROOT)
    outputs: list[tuple[str, str]] = []
    for i, (title, cmd, outs) in enumerate(STEPS, 1):
        print(f"\n==> [{i}/{len(STEPS)}] {title}", flush=True)
        start = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT)
        took = time.monotonic() - start
        if proc.returncode != 0:
            print(f"\ndemo: step {title!r} failed (exit {proc.returncode}) after {took:.1f}s",
                  file=sys.stderr)
            return proc.returncode
        print(f"    done in {took:.1f}s", flush=True)
        outputs.extend((title, o) for o in outs)
    print("\n==> outputs (the comment preview is just above)")
    for title, out in outputs:
        print(f"  {out:<32} ({title})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
