"""modelops: GitOps CI/CD for ML models.

This package is the suite's shared core (errors, the CLI runner, settings, YAML, files, git,
retry policy, the GitHub client, Kubernetes value grammars, metric-name contracts). The parts
above it are :mod:`modelops.ci` (pull-request time), :mod:`modelops.gitops` (merge time) and
:mod:`modelops.serve` (the serving runtime). The core imports none of them.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    """``modelops.__version__``, read from the package metadata when first asked for:
    importlib.metadata costs every command 40 ms to import, and few commands need it."""
    if name != "__version__":
        raise AttributeError(f"module 'modelops' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("modelops-suite")
    except PackageNotFoundError:  # running from a source tree that was never installed
        value = "0+unknown"
    globals()["__version__"] = value
    return value
