#!/usr/bin/env bash
# One prepared, resumable GPU session for issue 18 (several candidates at once, candidates per
# GPU-hour in a real search, the full-scale search-quality run). See benchmarks/gpu_plan.md.
#
#   bash scripts/gpu_session.sh prepare           here, no GPU: wheels + Fashion-MNIST into .gpu/
#   bash scripts/gpu_session.sh device [SECONDS]  on the device machine, from the repository root:
#                                                 the steps below, in order of value, within SECONDS
#                                                 (default 540); results/...-gpu-DATE/ and a tarball
#                                                 of them in $OUT
#   bash scripts/gpu_session.sh collect FOLDER    here: unpack FOLDER/results-gpu.tar.gz into results/
#   bash scripts/gpu_session.sh dry-run [DIR]     here: the same steps on the CPU at toy sizes, into
#                                                 DIR (default a new temporary folder)
#
# Steps (each skipped when an earlier session finished it, so rerunning the same call resumes):
#   0. the CUDA-only tests of the concurrent training path (pytest -m gpu), output kept.
#   1. benchmarks/bench_concurrency.py: N = 1, 2, 4, 8 candidates at once vs one at a time.
#   2. benchmarks/bench_search.py: a real search with the default proxy, --parallel at the best N
#      of step 1 and --parallel 1, time-limited: evaluated candidates per hour, Optuna and
#      storage included.
#   3. benchmarks/fidelity.py --scale gpu (issue 11): the repeatable fidelity reference (16
#      configs, two reference seeds each) and the proxy table against it, about 6 minutes on an
#      H100/H200 (an estimate), resumed from results/fidelity-gpu-*/ (row by row) if unfinished;
#      no config is started that the time left cannot finish (--stop-after).
#   4. benchmarks/search_quality.py at full scale (30 trials per search, 30 epochs on all
#      training images, seeds 0 1 2), resumed from results/search-quality-gpu-*/ if there is one;
#      no training run is started that the time left cannot finish (--stop-after).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
DATE=$(date -u +%Y-%m-%d)
WHEELS=(optuna==5.0.0 sqlalchemy==2.1.9 alembic==1.20.1 colorlog==6.12.0 mako==1.4.3)

say() { echo "[gpu_session $(date -u +%H:%M:%S)] $*"; }

prepare() {
    local py=${PYTHON:-.venv/bin/python}
    mkdir -p .gpu/whl .gpu/data
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .gpu/whl "${WHEELS[@]}" || { echo "gpu_session: pip download failed" >&2; exit 1; }
    cp /usr/share/datasets/fashion-mnist/*-ubyte.gz .gpu/data/ || {
        echo "gpu_session: Fashion-MNIST not found in /usr/share/datasets/fashion-mnist" >&2; exit 1; }
    local commit dirty
    commit=$(git rev-parse HEAD)
    dirty=$(git status --porcelain --untracked-files=no | head -c1)
    echo "$commit" > .gpu/COMMIT
    [ -n "$dirty" ] && say "WARNING: the tree has uncommitted changes; commit first so COMMIT names what runs"
    say "prepared .gpu/ ($(du -sh .gpu | cut -f1)) for commit $commit"
    say "now call the device tool: run(command='bash scripts/gpu_session.sh device 540', carry=['.gpu'], timeout_s=600)"
}

# Seconds left of this call's budget.
left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# The folder of a step: an existing one from an earlier session, or a new one dated today.
step_dir() {
    local name=$1 found
    found=$(ls -d "$RESULTS"/"$name"-"$KIND"-* 2>/dev/null | sort | tail -1)
    echo "${found:-$RESULTS/$name-$KIND-$DATE}"
}

# Append what ran to the step folder's sessions.txt: command, commit, machine, exit status.
record() {
    local dir=$1 rc=$2; shift 2
    mkdir -p "$dir"
    {
        echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) exit $rc: $*"
        echo "  commit ${GHOSTNAS_GIT_COMMIT:-unknown}; machine: $MACHINE"
    } >> "$dir/sessions.txt"
}

run_steps() {
    local conc rate sq n t rc stop
    # 1. candidates at once (first the CUDA-only tests of that path, their output kept beside it)
    conc=$(step_dir concurrency)
    if [ -n "$GPU_TESTS" ] && [ ! -f "$conc/results.json" ] && [ "$(left)" -gt 200 ]; then
        mkdir -p "$conc"
        say "0. CUDA tests of the concurrent path -> $conc/gpu-tests.txt"
        timeout 150 "$PY" -m pytest -q -m gpu -p no:cacheprovider $GPU_TESTS 2>&1 | tee "$conc/gpu-tests.txt"
        record "$conc" "${PIPESTATUS[0]}" "$(basename "$PY") -m pytest -q -m gpu -p no:cacheprovider $GPU_TESTS"
    fi
    if [ -f "$conc/results.json" ]; then
        say "1. concurrency: done in $conc (skipped)"
    elif [ "$(left)" -gt 60 ]; then
        say "1. concurrency -> $conc"
        mkdir -p "$conc"
        t=$(( $(left) < 240 ? $(left) : 240 ))
        timeout "$t" "$PY" benchmarks/bench_concurrency.py --device "$DEV" $CONC_ARGS --out "$conc" 2>&1 | tee "$conc/stdout.txt"
        rc=${PIPESTATUS[0]}
        record "$conc" "$rc" "$(basename "$PY") benchmarks/bench_concurrency.py --device $DEV $CONC_ARGS --out $conc"
    fi
    n=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['best']['n'])" "$conc/results.json" 2>/dev/null || echo 4)

    # 2. candidates per hour in a real search (a measurement: an unfinished folder is redone)
    rate=$(step_dir search-rate)
    for par in "$n" 1; do
        local d="$rate/parallel$par"
        if [ -f "$d/bench.json" ]; then
            say "2. search rate, --parallel $par: done in $d (skipped)"
            continue
        fi
        t=$([ "$par" = 1 ] && echo "$RATE_T1" || echo "$RATE_TN")
        if [ "$(left)" -lt $(( t + 60 )) ]; then
            say "2. search rate, --parallel $par: not enough time left ($(left) s)"
            continue
        fi
        rm -rf "$d"
        mkdir -p "$rate"
        say "2. search rate, --parallel $par, ${t} s of search -> $d"
        timeout $(( t + 120 )) "$PY" benchmarks/bench_search.py --device "$DEV" --parallel "$par" --timeout "$t" \
            $RATE_ARGS --out "$d" 2>&1 | tee "$rate/stdout-parallel$par.txt"
        rc=${PIPESTATUS[0]}
        record "$rate" "$rc" "$(basename "$PY") benchmarks/bench_search.py --device $DEV --parallel $par --timeout $t $RATE_ARGS --out $d"
    done

    # 3. the repeatable fidelity reference (issue 11), resumed across sessions row by row
    local fid
    fid=$(step_dir fidelity)
    if "$PY" -c "import json,sys; r=json.load(open(sys.argv[1])); sys.exit(r['stopped_early'])" \
        "$fid/fidelity.json" 2>/dev/null && [ ! -f "$fid/rows.partial.json" ]; then
        say "3. fidelity: done in $fid (skipped)"
    elif [ $(( $(left) - 30 )) -lt $(( FID_ROW_S + 60 )) ]; then
        say "3. fidelity: not enough time left ($(left) s); next session resumes $fid"
    else
        t=$(( $(left) - 30 ))
        stop=$("$PY" -c "import sys; print(round(max(float(sys.argv[1]) - float(sys.argv[2]), 0.5) / 60, 2))" "$t" "$FID_ROW_S")
        say "3. fidelity -> $fid (no new config after $stop min; killed at $t s)"
        mkdir -p "$fid"
        timeout "$t" "$PY" benchmarks/fidelity.py --device "$DEV" $FID_ARGS --resume --stop-after "$stop" \
            --out "$fid" 2>&1 | tee -a "$fid/stdout.txt"
        rc=${PIPESTATUS[0]}
        record "$fid" "$rc" "$(basename "$PY") benchmarks/fidelity.py --device $DEV $FID_ARGS --resume --stop-after $stop --out $fid"
    fi

    # 4. the full-scale search-quality run, resumed across sessions
    sq=$(step_dir search-quality)
    t=$(( $(left) - 30 ))
    if [ "$t" -lt 120 ]; then
        say "4. search quality: not enough time left ($(left) s); next session resumes $sq"
        return
    fi
    stop=$("$PY" -c "import sys; print(round(max(float(sys.argv[1]) - float(sys.argv[2]), 0.5) / 60, 2))" "$t" "$SQ_RUN_S")
    say "4. search quality -> $sq (no new training run after $stop min; killed at $t s)"
    mkdir -p "$sq"
    timeout "$t" "$PY" benchmarks/search_quality.py --device "$DEV" --out "$sq" $SQ_ARGS --seeds 0 1 2 \
        --stop-after "$stop" 2>&1 | tee -a "$sq/stdout.txt"
    rc=${PIPESTATUS[0]}
    record "$sq" "$rc" "$(basename "$PY") benchmarks/search_quality.py --device $DEV --out $sq $SQ_ARGS --seeds 0 1 2 --stop-after $stop"
}

pack() {
    local dest=$1
    mkdir -p "$dest"
    local dirs=()
    for name in concurrency search-rate fidelity search-quality; do
        local d
        d=$(step_dir "$name")
        [ -d "$d" ] && dirs+=("${d#"$RESULTS"/}")
    done
    if [ ${#dirs[@]} -gt 0 ]; then
        tar -C "$RESULTS" --exclude=weights.pt -czf "$dest/results-gpu.tar.gz" "${dirs[@]}"
        say "packed ${dirs[*]} into $dest/results-gpu.tar.gz ($(du -h "$dest/results-gpu.tar.gz" | cut -f1))"
    fi
}

device() {
    BUDGET=${1:-540}
    START=$(date +%s)
    KIND=gpu
    DEV=cuda
    RESULTS=results
    PY=${PYTHON:-python3}
    CONC_ARGS="--n 1,2,4,8 --steps 96 --rounds 2"
    RATE_ARGS="--trials 100000"
    RATE_TN=90
    RATE_T1=45
    FID_ARGS="--scale gpu"
    FID_ROW_S=60  # one config (proxies and two reference seeds) on an H100/H200, with margin
    SQ_ARGS="--trials 30 --train-epochs 30"
    SQ_RUN_S=150  # one full-recipe training run of ghostnet_100 on an H100/H200, with margin
    GPU_TESTS="tests/training/test_train_many.py tests/search/test_search_batches.py"
    if ls .gpu/whl/*.whl > /dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .gpu/whl/*.whl || { echo "gpu_session: installing the carried wheels failed" >&2; exit 1; }
        export PYTHONPATH="$ROOT:/tmp/site"
    else
        export PYTHONPATH="$ROOT"
    fi
    [ -d .gpu/data ] && export GHOSTNAS_DATA="$ROOT/.gpu/data"
    [ -f .gpu/COMMIT ] && export GHOSTNAS_GIT_COMMIT=$(cat .gpu/COMMIT)
    export PYTHONUNBUFFERED=1
    "$PY" -c "import torch, optuna; assert torch.cuda.is_available(), 'no CUDA device'" || {
        echo "gpu_session: no CUDA device or optuna missing (did 'prepare' run and carry .gpu?)" >&2; exit 1; }
    MACHINE=$("$PY" -c "import torch, os; print(torch.cuda.get_device_name(0), '|', os.cpu_count(), 'cores | torch', torch.__version__)")
    say "device session on $MACHINE, budget $BUDGET s, commit ${GHOSTNAS_GIT_COMMIT:-unknown}"
    run_steps
    pack "${OUT:-$ROOT/results/_scratch/gpu-out}"
    say "done in $(( $(date +%s) - START )) s"
}

dry_run() {
    local dir=${1:-$(mktemp -d /tmp/gpu-session-dry.XXXXXX)}
    BUDGET=${DRY_BUDGET:-900}
    START=$(date +%s)
    KIND=dry
    DEV=cpu
    RESULTS="$dir/results"
    PY=${PYTHON:-$ROOT/.venv/bin/python}
    CONC_ARGS="--n 1,2 --steps 2 --rounds 1 --model-scale tiny"
    RATE_ARGS="--space tiny --budget 10M --data synthetic --epochs 1 --trials 3"
    RATE_TN=30
    RATE_T1=20
    FID_ARGS="--scale cpu-quick --data synthetic --limit 2 --threads 1 --ref-seeds 1 2 --proxy-images 128 --proxy-val-images 64"
    FID_ARGS+=" --ref-images 64 --ref-epochs 1 --val-images 128 --ref-validate end"
    FID_ROW_S=0
    SQ_ARGS="--space tiny --budget 10M --evaluator fake --data synthetic --trials 3 --train-epochs 1 --train-images 128"
    SQ_RUN_S=0
    GPU_TESTS=""  # they need CUDA
    export PYTHONPATH="$ROOT"
    export GHOSTNAS_GIT_COMMIT=dry-run
    MACHINE="CPU dry run"
    mkdir -p "$RESULTS"
    say "dry run on the CPU into $dir"
    run_steps
    pack "$dir/out"
    say "done in $(( $(date +%s) - START )) s"
}

collect() {
    local from=${1:?give the folder the device tool put the files in (files_at)}
    local tarball="$from/results-gpu.tar.gz"
    [ -f "$tarball" ] || { echo "gpu_session: $tarball not found" >&2; exit 2; }
    tar -C results -xzf "$tarball" && say "unpacked into results/:" && tar -tzf "$tarball" | cut -d/ -f1 | sort -u
    say "review, then: git add results/ && git commit"
}

case "${1:-}" in
    prepare) prepare ;;
    device) device "${2:-540}" ;;
    dry-run) dry_run "${2:-}" ;;
    collect) collect "${2:-}" ;;
    *) sed -n '2,26p' "$0"; exit 2 ;;
esac
