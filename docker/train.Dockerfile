# The training image the Argo Workflow runs each dvc stage in (params.yaml workflow.image).
# CPU variant. Build from the repository root:
#   docker build -f docker/train.Dockerfile -t ghcr.io/example/modelops-train:0.1.0 .
# The code is not baked in: each task checks out the source commit into /src (an Argo git
# input artifact) and runs `dvc repro --pull --single-item <stage>` there.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DVC_NO_ANALYTICS=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# git: dvc reads the repository's history (params/metrics of the checked-out commit)
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

# The same pinned dependency tree as CI; torch from PyTorch's CPU index (the PyPI wheel for
# Linux is the CUDA build, several GB the CPU image does not need).
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && pip install --no-cache-dir -r /tmp/requirements.lock \
    && rm /tmp/requirements.lock

RUN useradd --create-home --uid 10001 train
USER 10001
WORKDIR /src
ENTRYPOINT ["bash", "-c"]
