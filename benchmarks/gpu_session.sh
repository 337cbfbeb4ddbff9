#!/usr/bin/env bash
# Every GPU-side measurement of the speed work, each step under its own time limit:
#   bash benchmarks/gpu_session.sh [train|hmc|all] [OUTPUT_DIR]
# train: at most 7.5 minutes (typically 3), hmc: at most 4.5 (typically 1.5); run them as two calls where
# one call may last 10 minutes at most. Writes one log per step into OUTPUT_DIR (default: $OUT when set,
# else runs/gpu_session) and summary.txt with each step's last line (train_throughput: "images/s: N").
#   train: training images/s of the OASIS paper VAE (208 x 176, batch 100; goal >= 10 x its 1.1 s per
#          epoch of about 220 images, i.e. >= 2000 images/s) and of the MNIST paper VAE: float32 with
#          the images copied per batch (the trainer before data_on_device), float32 resident, bf16,
#          channels-last, bf16 + channels-last, bf16 + channels-last + torch.compile;
#   hmc:   HMC for 1000 latents (d 64, k 1000, 100 x 10), easy and hard regimes (benchmarks/hmc_speed.py;
#          goal <= 0.1 s each), and the regime table (accuracy, acceptance) on the GPU (hmc_regimes.py).
# DEVICE=cpu STEPS=2 WARMUP=1 PART=... runs the same steps as a dry run on a machine without a GPU.
set -u
cd "$(dirname "$0")/.."
part="${1:-all}"
out="${2:-${OUT:-runs/gpu_session}}"
device="${DEVICE:-cuda}"
python="${PYTHON:-python}"
mkdir -p "$out"
summary="$out/summary.txt"
touch "$summary"

step() {  # step NAME LIMIT_S COMMAND...: run COMMAND under a time limit, log it, keep its last line
  local name="$1" limit="$2"
  shift 2
  echo "== $name (limit ${limit} s): $*" | tee -a "$summary"
  local start=$SECONDS
  timeout --kill-after=10 "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "   rc $rc, $((SECONDS - start)) s: $(tail -n 1 "$out/$name.log")" | tee -a "$summary"
}

{ nvidia-smi -L 2>&1; "$python" -c "import torch; print(torch.__version__, torch.cuda.is_available() and \
torch.cuda.get_device_name(0))"; } > "$out/device.txt" 2>&1
cat "$out/device.txt" >> "$summary"

if [[ "$part" == train || "$part" == all ]]; then
  for config in oasis_paper mnist_paper; do
    args=(benchmarks/train_throughput.py --device "$device" --config "configs/$config.yaml"
          --steps "${STEPS:-50}" --warmup "${WARMUP:-10}")
    step "train_${config}_fp32_host" 45 "$python" "${args[@]}" --host-data
    step "train_${config}_fp32" 45 "$python" "${args[@]}"
    step "train_${config}_bf16_channels_last" 45 "$python" "${args[@]}" --bf16 --channels-last
    if [[ "$config" == oasis_paper ]]; then
      step "train_${config}_bf16" 45 "$python" "${args[@]}" --bf16
      step "train_${config}_channels_last" 45 "$python" "${args[@]}" --channels-last
      step "train_${config}_bf16_channels_last_compile" 90 "$python" "${args[@]}" --bf16 --channels-last --compile
    fi
  done
fi
if [[ "$part" == hmc || "$part" == all ]]; then
  step hmc_speed 150 "$python" benchmarks/hmc_speed.py --device "$device" --skip-large --repeats 3
  step hmc_regimes 120 "$python" benchmarks/hmc_regimes.py --device "$device"
fi
echo "logs in $out" | tee -a "$summary"
