#!/bin/bash
# One GPU lease in one command: measure, size the run to the time left, train, and bring back what it made.
#
#     bash scripts/gpu_lease.sh SECONDS TRAIN-FLAGS...     (the device tool runs it in the repository root)
#
# 1. 60 steps measure the speed (steps/s, measured).
# 2. The run gets the steps that fit in what is left of SECONDS, less 90 s for the export.
# 3. While it trains, the EMA weights of each new checkpoint are copied to $OUT/ema.pt in the exported format
#    (`python -m minisora sample --ckpt ema.pt` loads it). A training checkpoint with AdamW's state is about four
#    times the weights, 32 MB for `tiny`, and a file over 16 MB does not come back from the machine.
# 4. At the end: $OUT/dit.pt and dit.json (`train --export`: manifest and digit check), log.jsonl, loss.png and
#    samples.gif. If the run is cut at the deadline, ema.pt is still there.
# Example (session 16's run, which the NaN guard and the chunked attention now let through):
#     bash scripts/gpu_lease.sh 560 --vae frame-se --init data/dit_packed_se.pt --batch-size 256 --lr 1e-3 \
#         --warmup 200 --ema-decay 0.9995 --p-known 0.5 --p-image 0.1 --device cuda --workers 12
set -u
T0=$(date +%s); SECONDS_ALL=$1; shift
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
: "${OUT:?set OUT to the folder that comes back}"
elapsed() { echo $(($(date +%s) - T0)); }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null

rm -rf /tmp/lease-bench /tmp/lease-run
timeout 120 python3 -m minisora train "$@" --steps 60 --log-every 20 --ckpt-every 1000 --sample-every 0 \
    --out /tmp/lease-bench --quiet 2>&1 | tail -5
cp /tmp/lease-bench/log.jsonl "$OUT/bench.jsonl" 2>/dev/null || { echo "the speed test failed"; exit 1; }
LEFT=$((SECONDS_ALL - $(elapsed) - 90))
STEPS=$(python3 -c "
import json, statistics
lines = [json.loads(x) for x in open('/tmp/lease-bench/log.jsonl')][1:]  # past the first 20 steps' warm-up
print(int(statistics.median(r['steps_per_s'] for r in lines) * $LEFT * 0.92))")
echo "speed test done at $(elapsed) s: $STEPS steps in the $LEFT s left"
[ "$STEPS" -ge 1 ] || { echo "no time left to train"; exit 1; }

python3 -m minisora train "$@" --steps "$STEPS" --log-every 20 --ckpt-every 250 --sample-every "$STEPS" \
    --out /tmp/lease-run --export "$OUT/dit.pt" --quiet > /tmp/lease-run.log 2>&1 &
RUN=$!
copied=0
while kill -0 $RUN 2>/dev/null; do
    sleep 10
    if [ -f /tmp/lease-run/ckpt.pt ] && [ "$(stat -c %Y /tmp/lease-run/ckpt.pt)" != "$copied" ]; then
        copied=$(stat -c %Y /tmp/lease-run/ckpt.pt)
        python3 -c "
import torch
from minisora.checkpoint import save_checkpoint
s = torch.load('/tmp/lease-run/ckpt.pt', map_location='cpu', weights_only=True)
save_checkpoint({k: s[k] for k in ('config', 'train', 'ema')}, '$OUT/ema.pt')
print('ema.pt: step', s['step'], 'at', $(elapsed), 's')"
    fi
    if [ "$(elapsed)" -gt $((SECONDS_ALL - 20)) ]; then
        echo "deadline: stopping the run"; kill $RUN; wait $RUN; break
    fi
done
tail -5 /tmp/lease-run.log
cp /tmp/lease-run/log.jsonl /tmp/lease-run/loss.png "$OUT/" 2>/dev/null
cp "$(ls /tmp/lease-run/samples_*.gif 2>/dev/null | tail -1)" "$OUT/samples.gif" 2>/dev/null
tail -2 /tmp/lease-run/log.jsonl 2>/dev/null
ls -la "$OUT"
echo "done at $(elapsed) s"
