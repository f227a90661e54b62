#!/bin/sh
# The `compile` stage of dvc.yaml: `python -m ci compile` with the project's interpreter.
# DVC runs commands with the caller's PATH, so `python` may not be the project's interpreter:
# pick the active virtualenv, then the project's .venv, then `python3` on PATH.
set -eu
if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
  py="$VIRTUAL_ENV/bin/python"
elif [ -x .venv/bin/python ]; then
  py=.venv/bin/python
else
  py=python3
fi
# ci.compute records the stage's CPU/GPU seconds in metrics/compute/compile.json on success.
exec "$py" -m ci.compute --stage compile -- "$py" -m ci compile "$@"
