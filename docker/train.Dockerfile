# The training image the Argo Workflow runs each dvc stage in (params.yaml
# modelops.workflow.image, by digest). CPU variant. Build from the repository root:
#   docker build -f docker/train.Dockerfile -t ghcr.io/example/modelops-train:0.2.0 .
#   docker buildx imagetools inspect ghcr.io/example/modelops-train:0.2.0   # -> the digest
# The model's code is not baked in: each task checks out the source commit into /work/src (an
# Argo git input artifact) and runs `modelops-gitops workflow task` there, which runs
# `dvc repro --pull --single-item <stage>` with its upstream results merged in.
FROM python:3.11-slim AS wheel
WORKDIR /build
COPY pyproject.toml README.md ./
COPY core core
COPY ci ci
COPY gitops gitops
COPY serve serve
RUN pip install --no-cache-dir setuptools==84.2.1 \
    && pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DVC_NO_ANALYTICS=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# git: the tasks commit and push the results; dvc reads the repository's history
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

# The same pinned dependency tree as CI; torch from PyTorch's CPU index (the PyPI wheel for
# Linux is the CUDA build, several GB the CPU image does not need); then the suite itself.
COPY requirements.lock /tmp/requirements.lock
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && pip install --no-cache-dir -r /tmp/requirements.lock \
    && pip install --no-cache-dir --no-deps /tmp/wheels/*.whl \
    && rm -rf /tmp/requirements.lock /tmp/wheels

# The user the Workflow's pods run as (modelops.workflow.run_as_user / run_as_group / fs_group)
RUN groupadd --gid 10001 train \
    && useradd --create-home --uid 10001 --gid 10001 train \
    && mkdir /work \
    && chown 10001:10001 /work
USER 10001:10001
WORKDIR /work
CMD ["modelops-gitops", "workflow", "--help"]
