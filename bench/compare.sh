#!/usr/bin/env bash
# durably beside the reference peers, in one run of the shared peer benchmark.
#
#   bench/compare.sh                       # W1, W2, W3 on every store; 1 repetition
#   REPS=3 bench/compare.sh                # medians of 3, as RESULTS.md
#   PEERS=huey,dbos_fastpoll STORE=sqlite WORKLOADS=w1,w2 bench/compare.sh
#
# Runs peerbench's run.py (../shared/peerbench, or $PEERBENCH) for durably (bench/durably_peer.py,
# installed editable from this checkout into its own venv) and the peers, writes the raw
# figures to bench/results/ (git-ignored), then prints durably's figures beside the best
# peer's with ratios (bench/compare.py). A full run with 1 repetition takes 20-40 minutes.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERBENCH=${PEERBENCH:-$ROOT/../shared/peerbench}
RESULTS=${RESULTS:-$ROOT/bench/results}
REPS=${REPS:-1}
WORKLOADS=${WORKLOADS:-w1,w2,w3}
PEERS=${PEERS:-pgqueuer,oban,absurd,huey,dbos_fastpoll}
export DURABLY_SRC=$ROOT PEERBENCH_ADAPTERS=$ROOT/bench
args=(--peer "durably,$PEERS" --workload "$WORKLOADS" --reps "$REPS" --results-dir "$RESULTS")
if [ -n "${STORE:-}" ]; then args+=(--store "$STORE"); fi
mkdir -p "$RESULTS"
# The peers run from installed packages, whose bytecode pip compiled at install time; durably
# runs from this checkout (editable), so compile it too, or with PYTHONDONTWRITEBYTECODE set
# every worker process would compile durably's modules from source as it starts.
python -m compileall -q "$ROOT/durably" >/dev/null
# peerbench installs durably into its venv once; bring that venv up to this checkout's
# dependencies (uvloop, say), or a new dependency would be missing from every figure.
VENV_PY="${PEERBENCH_VENVS:-$(python -c 'import tempfile; print(tempfile.gettempdir())')/peerbench-venvs}/durably/bin/python"
if [ -x "$VENV_PY" ] && ! "$VENV_PY" -m pip install -q -e "$ROOT" >/dev/null 2>&1; then
  echo "compare.sh: could not update durably in $VENV_PY; its figures may miss a new dependency" >&2
fi
python "$PEERBENCH/run.py" "${args[@]}"
echo
python "$ROOT/bench/compare.py" "$RESULTS"
