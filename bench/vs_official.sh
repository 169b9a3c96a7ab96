#!/usr/bin/env bash
# vs_official.sh - our JEM against the official code (github.com/wgrathwohl/JEM at 3d01161, unmodified), both
# run here, one after the other, on the same machine. Prints two comparisons:
#   1. speed: seconds per JEM iteration at the JEM README's CIFAR-10 command with WRN-16-2 (batch 64, K=20,
#      64 chains, buffer 10,000), and the ratio official / ours (> 1: ours is faster);
#   2. time to accuracy on the project's CIFAR-10 subset (data.cifar10 of params.yaml, 5,000 / 1,000 images
#      of the local JPEG copy) with the default network (model: of params.yaml): the official code at its
#      README settings for 8 epochs (624 iterations), against params.yaml's own JEM (its steps, its recipe).
#      It passes when ours reaches at least the official test accuracy in at most half its training time.
#
# Usage (from the repository root, environment installed):  bench/vs_official.sh [speed] [accuracy]
# Environment (defaults in brackets):
#   SHARED [../shared/bench]   the harness that runs the official code (its README says how)
#   MIRRORS                    folder of fetched OWNER+NAME/repo mirrors (github:wgrathwohl/JEM), or JEM_SRC
#   CIFAR_SRC [../shared/datasets/cifar10-jpeg]   train.tar.gz, test.tar.gz, SHA256SUMS
#   WORK [/tmp/vs_official]    PYTHON [.venv/bin/python]   WARMUP [3]   ITERS [10]
#   BF16 [auto]   the bf16-autocast rows (for comparison only: not equal precision): auto runs them where
#                 oneDNN has bf16 instructions on this CPU and skips them elsewhere (emulated bf16 took
#                 over 25 minutes for the speed row alone on an AVX2-only CPU); 1 always, 0 never
# Takes 15-30 minutes on a 2-core CPU (speed: 4-6 min; the official 624 iterations: 8-15 min), bf16 rows
# included. Run it on an otherwise idle machine: both sides are timed.
set -euo pipefail

die() { echo "vs_official.sh: $*" >&2; exit 1; }
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SHARED="$(cd "${SHARED:-../shared/bench}" 2>/dev/null && pwd)" || die "no harness at ${SHARED:-../shared/bench} (set SHARED)"
CIFAR_SRC="${CIFAR_SRC:-../shared/datasets/cifar10-jpeg}"
WORK="${WORK:-/tmp/vs_official}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
export WARMUP="${WARMUP:-3}" ITERS="${ITERS:-10}"
WHAT=("$@"); [ ${#WHAT[@]} -eq 0 ] && WHAT=(speed accuracy)
for w in "${WHAT[@]}"; do [[ "$w" == speed || "$w" == accuracy ]] || die "unknown part '$w' (speed, accuracy)"; done
[ -x "$PYTHON" ] || die "no Python at $PYTHON (run make install, or set PYTHON)"
BF16="${BF16:-auto}"
case "$BF16" in
  1|0) ;;
  auto) BF16=$("$PYTHON" -c "import torch; print(int(torch.ops.mkldnn._is_mkldnn_bf16_supported()))" 2>/dev/null) \
          || die "could not ask PyTorch whether this CPU has bf16 instructions (set BF16=1 or BF16=0)" ;;
  *) die "BF16 must be auto, 1 or 0 (got '$BF16')" ;;
esac
bf16_row() {  # bf16_row CMD...: CMD's JSON, or a skipped row where BF16 is 0
  if [ "$BF16" = 1 ]; then "$@"; else echo '{"skipped": "no bf16 instructions on this CPU (BF16=1 runs it anyway)"}'; fi
}
for f in train.tar.gz test.tar.gz SHA256SUMS; do [ -f "$CIFAR_SRC/$f" ] || die "missing $CIFAR_SRC/$f (set CIFAR_SRC)"; done
mkdir -p "$WORK"; WORK="$(cd "$WORK" && pwd)"

# the project's CIFAR-10 subset, made by the data stage from the local copy
SUBSET="$WORK/project_cifar10"  # not $WORK/cifar10: the shared harness builds its pickles there
if [ ! -f "$SUBSET/manifest.json" ]; then
  mkdir -p "$WORK/raw/cifar10"
  cp "$CIFAR_SRC"/{train.tar.gz,test.tar.gz,SHA256SUMS} "$WORK/raw/cifar10/"
  EBM_OFFLINE=1 "$PYTHON" -m pipeline.data --dataset cifar10 --raw-root "$WORK/raw" --out "$SUBSET" >/dev/null
fi
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -m), $(nproc) CPUs, $("$PYTHON" -c 'import torch; print("torch", torch.__version__, torch.get_num_threads(), "threads")')"

official() {  # the shared harness, at its defaults but for WORK, WARMUP and ITERS
  WORK="$WORK" PYTHON="$PYTHON" CIFAR_SRC="$CIFAR_SRC" "$SHARED/jem_official_cpu.sh" "$@"
}
json() { "$PYTHON" -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$@"; }

if [[ " ${WHAT[*]} " == *" speed "* ]]; then
  official jem_wrn16x2 >"$WORK/official_speed.txt" || die "the official run failed (see $WORK/official_speed.txt)"
  off=$(json "$WORK/jem_official_runs/jem_wrn16x2.json" s_per_iter_median)
  ours_speed() {  # ours_speed NAME [FLAGS...]: our iteration at the official config; JSON to stdout and $WORK/NAME.json
    local name=$1; shift
    "$PYTHON" bench/vs_official.py speed --data "$SUBSET" --depth 16 --width 2 --sgld-steps 20 \
      --warmup "$WARMUP" --iters "$ITERS" "$@" | tee "$WORK/$name.json"
  }
  ours=$(ours_speed ours_speed)
  ours_cl=$(ours_speed ours_speed_channels_last --channels-last)
  ours_bf16=$(bf16_row ours_speed ours_speed_channels_last_bf16 --channels-last --bf16)
  "$PYTHON" - "$off" "$ours" "$ours_cl" "$ours_bf16" <<'EOF'
import json, os, sys
off = float(sys.argv[1])
print(f"| JEM iteration, WRN-16-2, batch 64, K=20 (median of {os.environ['ITERS']} after "
      f"{os.environ['WARMUP']} warm-up) | s/iter | official / ours |")
print("| --- | --- | --- |")
print(f"| official train_wrn_ebm.py | {off:.3f} | 1.00× |")
for name, arg in (("ours (fp32)", sys.argv[2]), ("ours, --channels-last (fp32)", sys.argv[3]),
                  ("ours, --channels-last --bf16 (bf16 autocast: not equal precision)", sys.argv[4])):
    row = json.loads(arg)
    if "skipped" in row:
        print(f"| {name} | skipped: {row['skipped']} | - |")
        continue
    s = row["s_per_iter_median"]
    print(f"| {name} | {s:.3f} | **{off / s:.2f}×** |")
EOF
fi

if [[ " ${WHAT[*]} " == *" accuracy "* ]]; then
  # the official code is exported (and verified) by the harness; one short run does that if speed did not
  [ -f "$WORK/jem_official/train_wrn_ebm.py" ] || ITERS=1 WARMUP=1 official jem_wrn10x1 >/dev/null
  "$PYTHON" "$SHARED/npy_to_cifar_pickles.py" --arrays "$SUBSET" --root "$WORK/subset_pickles" >/dev/null
  read -r DEPTH WIDTH < <("$PYTHON" -c "import yaml; m = yaml.safe_load(open('params.yaml'))['model']; print(m['depth'], m['width'])")
  rm -rf "$WORK/curve_run"
  (cd "$WORK/jem_official" && "$PYTHON" "$SHARED/jem_official_curve.py" --jem-dir "$WORK/jem_official" \
     --json "$WORK/official_curve.json" -- --dataset cifar10 --data_root "$WORK/subset_pickles" --lr .0001 \
     --optimizer adam --sigma .03 --warmup_iters 1000 --batch_size 64 --n_steps 20 --buffer_size 10000 \
     --reinit_freq 0.05 --sgld_lr 1.0 --sgld_std 0.01 --p_x_weight 1.0 --p_y_given_x_weight 1.0 \
     --p_x_y_weight 0.0 --depth "$DEPTH" --width "$WIDTH" --n_valid 0 --n_epochs 8 --ckpt_every 100 \
     --save_dir "$WORK/curve_run") >"$WORK/official_curve.log" 2>&1 \
    || die "the official curve run failed (see $WORK/official_curve.log)"
  ours=$("$PYTHON" bench/vs_official.py accuracy --data "$SUBSET")
  ours_bf16=$(bf16_row "$PYTHON" bench/vs_official.py accuracy --data "$SUBSET" --bf16)
  echo "$ours" >"$WORK/ours_accuracy.json"; echo "$ours_bf16" >"$WORK/ours_accuracy_bf16.json"
  "$PYTHON" - "$WORK/official_curve.json" "$ours" "$ours_bf16" <<'EOF'
import json, sys
off, ours, ours_bf16 = json.load(open(sys.argv[1])), json.loads(sys.argv[2]), json.loads(sys.argv[3])
acc = off["test_acc_by_epoch"][-1]["acc"] * 100 if off["test_acc_by_epoch"] else float("nan")
train_s = off["s_per_iter_median"] * off["iterations"]
ok = ours["test_acc"] >= acc and ours["train_s"] <= train_s / 2
print(f"| CIFAR-10 subset, {ours['network']} | steps | test acc % | train s |")
print("| --- | --- | --- | --- |")
print(f"| official (README settings, K=20) | {off['iterations']} | {acc:.1f} | {train_s:.0f} "
      f"(median s/iter × iterations; whole run with its evaluations: {off['wall_s']:.0f}) |")
print(f"| ours (params.yaml's jem) | {ours['steps']} | {ours['test_acc']:.1f} | {ours['train_s']:.0f} |")
if "skipped" in ours_bf16:
    print(f"| ours, --bf16 in NCHW (not counted below) | - | skipped: {ours_bf16['skipped']} | - |")
else:
    print(f"| ours, --bf16 in NCHW (not counted below) | {ours_bf16['steps']} | {ours_bf16['test_acc']:.1f} | "
          f"{ours_bf16['train_s']:.0f} |")
print(f"time to accuracy: ours {'PASSES' if ok else 'FAILS'} (needs >= {acc:.1f} % in <= {train_s / 2:.0f} s)")
EOF
fi
