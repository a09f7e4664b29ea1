#!/usr/bin/env bash
# The GPU path measured in one call, on a machine with CUDA (issue 12, item 5):
#   1. the default test suite with the engine tests' trainers on CUDA (GAMMA_TUI_TEST_DEVICE),
#   2. bench/engine.py --device cuda --model all (every model kind against its per-run loop),
#   3. the 21 γ × 25 η MLP grid (N 128, L 3, B 64) against the reference-style loop, eager,
#      torch.compile and CUDA graphs (bench/mlp_peak.py --grid big),
# then one table of speedups and TFLOP/s. Logs go to $OUT (default: gpu-check-logs/).
#
#   bash bench/gpu_check.sh            # everything (about 10 minutes on one H100-class GPU)
#   SKIP_TESTS=1 bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="${PYTHONPATH:-$PWD}"
logs="${OUT:-gpu-check-logs}"
mkdir -p "$logs"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
    echo "no CUDA device visible to torch: nothing to check" >&2
    exit 2
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$logs/gpu.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$logs/gpu.txt"

status=0
if [ -z "${SKIP_TESTS:-}" ]; then
    echo "== tests on CUDA"
    GAMMA_TUI_TEST_DEVICE=cuda timeout 1200 python -m pytest -m "not slow" -q -x \
        >"$logs/tests.txt" 2>&1 || status=1
    tail -n 3 "$logs/tests.txt"
fi

echo "== bench/engine.py --device cuda --model all"
timeout 1500 python bench/engine.py --device cuda --model all >"$logs/engine.txt" 2>&1 || status=1
tail -n 2 "$logs/engine.txt"

for mode in eager compile cuda-graphs; do
    echo "== 21 x 25 MLP grid, $mode"
    timeout 900 python bench/mlp_peak.py --device cuda --grid big --repeats 2 --loop-runs 20 \
        --mode "$mode" >"$logs/big-$mode.txt" 2>&1 || status=1
    tail -n 1 "$logs/big-$mode.txt"
done

echo
echo "== summary (speedup over the per-run loop; engine TFLOP/s where printed)"
python - "$logs" <<'EOF'
import re, sys
from pathlib import Path

logs = Path(sys.argv[1])
rows = []
engine = (logs / "engine.txt").read_text() if (logs / "engine.txt").exists() else ""
blocks = re.split(r"\n(?=grid: )", engine)
for block in blocks:
    speed = re.search(r"^(?:(\S+) )?speedup: ([\d.]+)$", block, re.M)
    rate = re.search(r"engine:.*?([\d.]+) GFLOP/s", block)
    if speed:
        tflops = f"{float(rate[1]) / 1e3:.3f}" if rate else "-"
        rows.append((speed[1] or "mlp", speed[2], tflops))
for mode in ("eager", "compile", "cuda-graphs"):
    file = logs / f"big-{mode}.txt"
    text = file.read_text() if file.exists() else ""
    speed = re.search(r"big-grid speedup: ([\d.]+)", text)
    rate = re.search(r"big-grid TFLOP/s: ([\d.]+)", text)
    rows.append((f"mlp 21x25 {mode}", speed[1] if speed else "failed", rate[1] if rate else "-"))
print(f"{'grid':24s} {'speedup':>9s} {'TFLOP/s':>9s}")
for name, speed, tflops in rows:
    print(f"{name:24s} {speed:>9s} {tflops:>9s}")
print("target: MLP 21x25 >= 100x over the per-run loop")
EOF
exit $status
