#!/usr/bin/env bash
# The one script to run on a machine with an NVIDIA GPU; it finishes within about 15 minutes.
#
#   bash bench/gpu_check.sh            # from the repository root
#
# In one go, each step timed, all output also written to gpu_check.log (and to $OUT/ when the
# variable OUT names a folder):
#   1. the CUDA tests: tests/test_device_decode.py, tests/test_features.py and
#      tests/test_training_distributed.py (their CUDA tests skip on a machine without a GPU);
#   2. bench/bench_features.py on CUDA: resnet50 at 224 px in bf16, on ImageNet-size JPEGs,
#      extraction (nvjpeg decode on the GPU) against the pure forward, peak GPU memory;
#   3. python -m benchmark doctor --device cuda;
#   4. a small benchmark run on the GPU: the demo config with 200 episodes;
#   5. bench/bench_release_scale.py at scale 0.1 (2,480 release-shaped images: generate, prepare,
#      load, training-data passes, resnet50 extraction of the test split on CUDA; a few minutes).
# Its figures go in the README with the GPU named (doctor's first lines name it).
#
# Installing. With ./.venv present, the script uses it. Otherwise it runs the README's install
# command (`bash .ci/install`), which needs the package index (torch 2.14.1 and torchvision 0.29.1
# are pinned).
#
# Offline machines (no package index) that already hold a CUDA build of torch, torchvision, timm,
# numpy, pandas, scipy, pillow, matplotlib, pyyaml and tqdm (a cluster or cloud GPU image): run
#   PARTBENCH_SYSTEM_TORCH=1 bash bench/gpu_check.sh
# The script then makes .venv with --system-site-packages (the machine's torch, whatever its
# version) and installs partbench --no-deps plus the wheels it finds in ./.whl (nothing from the
# network). Carry in .whl the pure-Python or manylinux wheels that image lacks, fetched on a
# machine with internet access for the GPU machine's Python (3.12 here) and platform:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
#       -d .whl pycocotools shapely gym cloudpickle gym-notices easyfsl==1.5.0
# (a few MB; torch itself, ~1 GB, cannot travel that way). The doctor's output records the torch
# version that ran.
set -uo pipefail
cd "$(dirname "$0")/.."

log=gpu_check.log
: > "$log"
exec > >(tee -a "$log") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0

step() {  # step NAME COMMAND...: run, time and report one step; a failure does not stop the rest
    local name=$1; shift
    echo "=== $name: $*"
    local start=$SECONDS
    "$@"
    local rc=$?
    echo "=== $name: exit $rc after $((SECONDS - start)) s"
    [ $rc -eq 0 ] || status=1
}

if [ ! -x .venv/bin/python ]; then
    if [ "${PARTBENCH_SYSTEM_TORCH:-0}" = 1 ]; then
        python3 -m venv --system-site-packages .venv
        wheels=(.whl/*.whl)
        if [ -e "${wheels[0]}" ]; then
            .venv/bin/python -m pip install -q --no-index --no-deps "${wheels[@]}"
        fi
        .venv/bin/python -m pip install -q --no-index --no-deps --no-build-isolation -e . \
            || .venv/bin/python -m pip install -q --no-index --no-deps --no-build-isolation .
    else
        bash .ci/install
    fi
fi
py=.venv/bin/python

"$py" - <<'EOF' || { echo "no CUDA device visible to torch: this script needs a GPU"; exit 1; }
import torch
if not torch.cuda.is_available():
    raise SystemExit(1)
print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
EOF

step "cuda tests" timeout 240 "$py" -m pytest -q -x -rs \
    tests/test_device_decode.py tests/test_features.py tests/test_training_distributed.py
step "bench_features resnet50 224 bf16" timeout 240 "$py" bench/bench_features.py \
    --model resnet50 --image-size 224 --precision bf16 --device cuda --n-images 2048 \
    --batch-size 256 --num-workers "$(( $(nproc) > 12 ? 12 : $(nproc) ))" --json bench_features_cuda.json
step "doctor" timeout 120 "$py" -m benchmark doctor --device cuda --model resnet50 \
    --image-size 224 --n-images 512 --num-workers 8
step "benchmark run on the GPU" timeout 240 "$py" -m benchmark run --config configs/5way1shot.yaml \
    --set features.device=cuda --set episodes.n_episodes=200 --out "outputs/gpu-check-$(date +%Y%m%d-%H%M%S)" --quiet

step "bench_release_scale 0.1 on CUDA" timeout 420 "$py" bench/bench_release_scale.py \
    --scale 0.1 --workers "$(nproc)" --num-workers "$(( $(nproc) > 8 ? 8 : $(nproc) ))" \
    --device cuda --batch-size 128 --forward-batches 8 --quiet --json bench_release_scale_cuda.json

if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
    cp "$log" bench_features_cuda.json bench_release_scale_cuda.json "$OUT/" 2>/dev/null
fi
echo "gpu_check: $([ $status -eq 0 ] && echo 'all steps passed' || echo 'some steps FAILED') (log: $log)"
exit $status
