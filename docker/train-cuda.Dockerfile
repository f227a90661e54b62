# The training image for stages that ask for a GPU and for the TensorRT compile stage
# (params.yaml modelops.workflow.gpu_image, by digest). CUDA variant of
# docker/train.Dockerfile. Build from the repository root:
#   docker build -f docker/train-cuda.Dockerfile -t ghcr.io/example/modelops-train-cuda:0.2.0 .
# Needs a node with the NVIDIA driver and device plugin (nvidia.com/gpu resources); the
# Workflow puts these stages on the GPU pool (node selector and tolerations).
FROM python:3.11-slim AS wheel
WORKDIR /build
COPY pyproject.toml README.md ./
COPY core core
COPY ci ci
COPY gitops gitops
COPY serve serve
RUN pip install --no-cache-dir setuptools==84.2.1 \
    && pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DVC_NO_ANALYTICS=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

RUN apt-get update \
    && apt-get install -y --no-install-recommends git python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# Ubuntu 24.04's python3 is 3.12; the lock pins wheels that support it. torch from PyTorch's
# CUDA 12.8 index, matching the base image's CUDA runtime; TensorRT (NVIDIA's wheel for CUDA
# 12) for the compile stage's engines; then the suite itself.
COPY requirements.lock /tmp/requirements.lock
COPY --from=wheel /wheels /tmp/wheels
RUN python3 -m venv /opt/venv \
    && pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cu128 torch==2.13.0 \
    && pip install --no-cache-dir -r /tmp/requirements.lock \
    && pip install --no-cache-dir tensorrt-cu12==11.4.0.106 \
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
