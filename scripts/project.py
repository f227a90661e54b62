"""The project's files as a fresh clone holds them, for tests and benchmarks that work on a copy.

"Tracked and untracked-but-not-ignored" (``git ls-files --cached --others --exclude-standard``):
what a clone has, plus new files not committed yet, so a copy behaves like the checkout would
after a commit.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def project_files(root: Path = ROOT, skip: Sequence[str] = ()) -> list[str]:
    """Relative paths of the project's files, without those starting with a ``skip`` prefix."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=root, capture_output=True,
                            check=True).stdout.decode().split("\0")
    return [rel for rel in listed
            if rel and not rel.startswith(tuple(skip)) and (root / rel).is_file()]


def copy_project(dest: Path, root: Path = ROOT, skip: Sequence[str] = ()) -> Path:
    """Copy the project's files into ``dest`` (created); returns ``dest``."""
    for rel in project_files(root, skip):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dest / rel)
    return dest
