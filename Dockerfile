# Two images from one file:
#   docker build -t triage .                                              # web, beat, training (CPU torch)
#   docker build --target inference-cuda -t triage-inference .            # GPU inference worker
# docker-compose.yml builds both.
FROM python:3.11-slim AS base
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
COPY requirements.txt requirements-nodeps.txt ./

# The inference worker for a GPU: the CUDA build of the pinned torch first, so that `torch==2.13.0` in
# requirements.txt is already satisfied (a local version such as 2.13.0+cu128 matches ==2.13.0) and
# the rest installs from PyPI. TORCH_CUDA names the wheel index (cu126, cu128, ...) for the host's driver.
# The worker refuses to start when TRIAGE_INFERENCE_DEVICE=cuda finds no CUDA build or no GPU.
FROM base AS inference-cuda
ARG TORCH_CUDA=cu128
RUN pip install --index-url https://download.pytorch.org/whl/${TORCH_CUDA} torch==2.13.0 \
 && python -c "import torch, sys; sys.exit(0 if torch.version.cuda else 'torch is not a CUDA build')" \
 && pip install -r requirements.txt \
 && pip install --no-deps -r requirements-nodeps.txt
COPY . .
ENV TRIAGE_INFERENCE_DEVICE=cuda
CMD ["celery", "-A", "config", "worker", "-Q", "inference,default", "-P", "prefork", "-c", "1", "-n", "inference@%h", "--loglevel", "INFO"]

# Web server, beat, training and CPU workers (the default target, last): the CPU torch wheel keeps the
# image small.
FROM base AS app
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt \
 && pip install --no-deps -r requirements-nodeps.txt
COPY . .
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--config", "config/gunicorn.conf.py"]
