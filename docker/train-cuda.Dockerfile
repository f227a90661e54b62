# The training image for stages that ask for a GPU (params.yaml workflow.gpu_image, e.g.
# `train`). CUDA variant of docker/train.Dockerfile. Build from the repository root:
#   docker build -f docker/train-cuda.Dockerfile -t ghcr.io/example/modelops-train:0.1.0-cuda .
# Needs a node with the NVIDIA driver and device plugin (nvidia.com/gpu resources).
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
# CUDA 12.8 index, matching the base image's CUDA runtime.
COPY requirements.lock /tmp/requirements.lock
RUN python3 -m venv /opt/venv \
    && pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cu128 torch==2.13.0 \
    && pip install --no-cache-dir -r /tmp/requirements.lock \
    && rm /tmp/requirements.lock

RUN useradd --create-home --uid 10001 train
USER 10001
WORKDIR /src
ENTRYPOINT ["bash", "-c"]
