#!/bin/sh
# Launcher for the DVC stages (dvc.yaml: `sh pipeline/run.sh <stage>`).
# DVC runs commands with the caller's PATH, so `python` may not be the project's interpreter
# when dvc is called as `.venv/bin/dvc`. Pick, in order: the active virtualenv, the project's
# .venv, then `python3` on PATH.
set -eu
stage="$1"
shift
if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
  py="$VIRTUAL_ENV/bin/python"
elif [ -x .venv/bin/python ]; then
  py=.venv/bin/python
else
  py=python3
fi
# ci.compute records the stage's CPU/GPU seconds in metrics/compute/<stage>.json on success.
exec "$py" -m ci.compute --stage "$stage" -- "$py" -m "pipeline.$stage" "$@"
