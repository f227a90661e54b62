#!/bin/sh
# Launcher for the DVC stages (dvc.yaml):
#   sh pipeline/run.sh <stage> [-m <module>] [args...]
# runs `python -m <module> [args...]` (default module: pipeline.<stage>) under modelops.compute,
# which records the stage's CPU/GPU seconds in metrics/compute/<stage>.json on success.
# DVC runs commands with the caller's PATH, so `python` may not be the project's interpreter
# when dvc is called as `.venv/bin/dvc`. Pick, in order: the active virtualenv, the project's
# .venv, then `python3` on PATH.
set -eu
stage="$1"
shift
module="pipeline.$stage"
if [ "${1:-}" = "-m" ]; then
  module="$2"
  shift 2
fi
if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
  py="$VIRTUAL_ENV/bin/python"
elif [ -x .venv/bin/python ]; then
  py=.venv/bin/python
else
  py=python3
fi
# shellcheck disable=SC2086  # the module may be "modelops.ci card": two words on purpose
exec "$py" -m modelops.compute --stage "$stage" -- "$py" -m $module "$@"
