"""The images cannot be built here (no Docker engine), so their Dockerfiles are parsed with the
official Go parser (the `dockerfile` package) and held to a hadolint-style subset of rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_module

DOCKERFILES = [ROOT / "serve/Dockerfile", ROOT / "docker/train.Dockerfile",
               ROOT / "docker/train-cuda.Dockerfile"]


def _parse(path: Path):
    dockerfile = require_module("dockerfile")
    return dockerfile.parse_file(str(path))


def problems(path: Path) -> list[str]:
    """Rules (hadolint numbers in brackets) this project's images keep."""
    cmds = _parse(path)
    out = []
    froms = [c for c in cmds if c.cmd.upper() == "FROM"]
    for c in froms:
        image = c.value[0]
        if ":" not in image and "@" not in image:
            out.append(f"FROM {image}: pin a tag or digest [DL3006]")
        if image.endswith(":latest"):
            out.append(f"FROM {image}: not :latest [DL3007]")
    for c in cmds:
        if c.cmd.upper() == "ADD" and any(v.startswith(("http://", "https://"))
                                          for v in c.value):
            out.append("ADD of a URL: use RUN with a checksum [DL3020]")
        if c.cmd.upper() != "RUN":
            continue
        text = " ".join(c.value)
        if "apt-get install" in text:
            if "--no-install-recommends" not in text:
                out.append("apt-get install without --no-install-recommends [DL3015]")
            if "rm -rf /var/lib/apt/lists" not in text:
                out.append("apt lists not removed in the same RUN [DL3009]")
            if not re.search(r"apt-get install\s+-y", text):
                out.append("apt-get install without -y [DL3014]")
        if re.search(r"\bpip3? install\b", text) and "--no-cache-dir" not in text \
                and not any(c2.cmd.upper() == "ENV" and "PIP_NO_CACHE_DIR" in c2.value
                            for c2 in cmds):
            out.append("pip install keeps its cache [DL3042]")
        if "|" in text and not any(c2.cmd.upper() == "SHELL" and "pipefail" in " ".join(c2.value)
                                   for c2 in cmds):
            out.append("a pipe without SHELL pipefail [DL4006]")
        if re.search(r"\bsudo\b", text):
            out.append("sudo in RUN [DL3004]")
    users = [c.value[0] for c in cmds if c.cmd.upper() == "USER"]
    if not users or users[-1] in ("root", "0"):
        out.append("the image runs as root: end with a USER [DL3002]")
    if not any(c.cmd.upper() in ("ENTRYPOINT", "CMD") for c in cmds):
        out.append("no ENTRYPOINT or CMD")
    return out


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfiles_are_lint_clean(path):
    assert problems(path) == []


def test_the_rules_catch_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get update && apt-get install git\n"
                   "RUN pip install torch | tee log\nADD https://example.com/x /x\n")
    found = problems(bad)
    for rule in ("DL3006", "DL3015", "DL3009", "DL3014", "DL3042", "DL4006", "DL3020",
                 "DL3002"):
        assert any(rule in p for p in found), (rule, found)


def test_training_images_install_the_locked_dependencies_and_match_params():
    from modelops.settings import load_settings

    params = load_settings(ROOT / "params.yaml")
    wf = params.workflow
    for name in ("docker/train.Dockerfile", "docker/train-cuda.Dockerfile"):
        text = (ROOT / name).read_text()
        assert "requirements.lock" in text and "torch==2.13.0" in text
        # the suite itself is in the image: the tasks run `modelops-gitops workflow task`
        assert "pip wheel" in text and "/tmp/wheels/*.whl" in text
        # the image's user is the one the pods run as, with /work (the tasks' working
        # directory) writable by it
        cmds = _parse(ROOT / name)
        users = [c.value[0] for c in cmds if c.cmd.upper() == "USER"]
        assert users[-1] == f"{wf.run_as_user}:{wf.run_as_group}"
        assert f"--uid {wf.run_as_user} --gid {wf.run_as_group}" in text
        assert f"groupadd --gid {wf.fs_group}" in text
        assert "chown 10001:10001 /work" in text
        assert [c.value[0] for c in cmds if c.cmd.upper() == "WORKDIR"][-1] == "/work"
    # the compile stage runs in the CUDA image, which must be able to build TensorRT engines
    assert re.search(r"tensorrt-cu12==[0-9.]+", (ROOT / "docker/train-cuda.Dockerfile")
                     .read_text())
    assert wf.gpu_image.split("@")[0] == wf.image.split("@")[0] + "-cuda"
    assert "@sha256:" in wf.image and "@sha256:" in wf.gpu_image
