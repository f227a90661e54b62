"""modelops: GitOps CI/CD for ML models.

This package is the suite's shared core (errors, the CLI runner, settings, YAML, files, git,
retry policy, the GitHub client, Kubernetes value grammars, metric-name contracts). The parts
above it are :mod:`modelops.ci` (pull-request time), :mod:`modelops.gitops` (merge time) and
:mod:`modelops.serve` (the serving runtime). The core imports none of them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("modelops-suite")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
