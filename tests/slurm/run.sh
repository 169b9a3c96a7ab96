#!/usr/bin/env bash
# make test-cluster: start a one-node SLURM cluster on this machine (munged, slurmctld, slurmd; root;
# Debian's slurm-wlm and munge), run the embedded default on it with `snakemake --profile` and short
# test params (tests/slurm/params.py), run the same params locally, compare (tests/slurm/check.py),
# and stop the cluster whatever happened. Everything lives in a temporary folder, except the link
# /etc/slurm/slurm.conf (the jobs' nested srun only finds the config there).
# Env: KEEP_WORK=1 keeps the temporary folder (logs, outputs) for inspection.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BIN=${BIN:-$REPO/.venv/bin}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ebm-slurm.XXXXXX")
export SLURM_TEST_DIR=$WORK/cluster SLURM_TEST_FAKE_GPUS=2   # fake GPUs: the rules keep gpu=1

cleanup() {
  [ -z "${local_pid:-}" ] || kill "$local_pid" 2>/dev/null || true
  "$HERE/stop_cluster.sh" || echo "test-cluster: stopping the cluster failed (see above)" >&2
  if [ "${KEEP_WORK:-0}" = 1 ]; then echo "test-cluster: kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$BIN/python" -c "import snakemake_executor_plugin_slurm" 2>/dev/null \
  || { echo "test-cluster: the SLURM executor plugin is missing: pip install -e '.[cluster]'" >&2; exit 1; }
"$HERE/start_cluster.sh"
source "$SLURM_TEST_DIR/env.sh"
# resume states every 5 steps; no progress bars in logs; evaluate never downloads Inception weights
export EBM_CHECKPOINT_EVERY=5 EBM_NO_PROGRESS=1 EBM_OFFLINE=1 PATH="$BIN:$PATH"

for run in slurm local; do
  mkdir -p "$WORK/$run/data/raw"
  cp -r "$REPO/Snakefile" "$REPO/ebm" "$REPO/pipeline" "$REPO/envs" "$WORK/$run/"
  cp -r "$REPO/data/raw/shapes" "$WORK/$run/data/raw/"  # the data stage's input (git-tracked)
  (cd "$REPO" && "$BIN/python" -m tests.slurm.params "$WORK/$run/params.yaml")
done

# the reference: the same params and thread count, run locally at a lower priority meanwhile
cd "$WORK/local"
targets=$("$BIN/python" -c "import yaml; p = yaml.safe_load(open('params.yaml'))
print(' '.join(f'data/evaluate/{o}/{d}/metrics.json' for o in p['objectives'] for d in p['datasets']))")
echo "test-cluster: the same params locally: snakemake $targets --cores 2 --max-threads 1 (in $WORK/local) ..."
nice -n 10 "$BIN/snakemake" $targets --cores 2 --max-threads 1 > snakemake.out 2>&1 &
local_pid=$!

cd "$WORK/slurm"
t0=$SECONDS
echo "test-cluster: snakemake all --profile tests/slurm/profile (in $WORK/slurm) ..."
if ! "$BIN/snakemake" all --profile "$HERE/profile" > snakemake.out 2>&1; then
  tail -n 60 snakemake.out; tail -n 30 logs/jobs/*/*/*.log logs/jobs/*/*.log 2>/dev/null || true
  echo "test-cluster: FAILED: snakemake on SLURM" >&2; exit 1
fi
echo "test-cluster: SLURM run finished in $((SECONDS - t0)) s"

wait "$local_pid" || { tail -n 60 "$WORK/local/snakemake.out"; echo "test-cluster: FAILED: the local run" >&2; exit 1; }
echo "test-cluster: local run finished"

cd "$REPO"
"$BIN/python" -m tests.slurm.check --slurm "$WORK/slurm" --local "$WORK/local" \
  --jobcomp "$SLURM_TEST_DIR/log/jobcomp.txt"
