#!/usr/bin/env bash
# Benchmarks wasi-pg-client against tokio-postgres on a throwaway PostgreSQL,
# natively (tokio current-thread and multi-thread) and as a wasm32-wasip2
# component under wasmtime, and prints a markdown table of medians.
# Workloads (bench/src/main.rs has the details): latency (also run by
# pgbench, PostgreSQL's libpq client, and by "floor", the bench's own loop
# with no client library, natively and under wasmtime: the most any client
# could do on this machine), pipeline (implicit:
# concurrent queries on one connection), pipeline_batch (ours: explicit atomic
# pipelines of IN_FLIGHT statements; tokio-postgres: as pipeline), fetch_many,
# transaction (sequential BEGIN, SELECT, COMMIT), insert_batch (sequential
# INSERTs), insert_pipeline (ours: all INSERTs in one atomic pipeline;
# tokio-postgres: IN_FLIGHT concurrent executes in flight),
# copy_in_binary and copy_in_csv (rows into a temp table with COPY FROM STDIN,
# binary and CSV), copy_out (rows read back with a binary COPY TO STDOUT),
# notify_1 and notify_100 (notifications fanned out to 1 or 100 subscribers),
# cache, concurrent (8 tasks through a pool of 4 connections; ours: exclusive
# acquire/release per query; tokio-postgres: deadpool-postgres; floor: 4 bare
# sockets, each running its share of the round trips, all at once) and
# concurrent_shared (the same, ours with get_shared per query; floor: 8
# queries kept in flight on bare sockets, successors batched per read).
#
# Every cell (client, runtime, workload) runs in its own process. Rounds
# interleave our client and tokio-postgres, so drift on the shared VM hits
# both alike. The server and every client are pinned to CPU 0: unpinned
# round trips between vCPUs vary far more than the differences we measure.
# So wall time is client plus server CPU: a second table gives, per workload,
# the client process's own CPU time per operation (ours and tokio-postgres,
# current-thread) and the ceiling that leaves: the most any client could gain
# over tokio-postgres when only the client's share of the wall time can go.
#
# Environment:
#   BENCH_ROUNDS   runs per cell, median reported (default 3)
#   BENCH_SCALE    divides every N, for a quick smoke run (default 1)
#   BENCH_WORKLOADS  workloads to run, space- or comma-separated, in table
#                  order (default all: latency pipeline pipeline_batch fetch_many
#                  transaction insert_batch insert_pipeline copy_in_binary copy_in_csv copy_out
#                  notify_1 notify_100 cache concurrent concurrent_shared)
#   BENCH_TIMEOUT  seconds one cell may take before it counts as hung (default 600)
#   BENCH_INSTRUCTIONS  1: also count, with callgrind, the CPU instructions the
#                  client itself executes per operation (ours and tokio-postgres,
#                  natively, current-thread runtime), steady state: the
#                  instructions of N/10 operations minus those of N/20, over
#                  N/20. Unlike wall clock on a shared VM, these do not vary
#                  between runs (default 0)
#   CARGO_TARGET_DIR  where the bench is built (default bench/target)
#
# Exits non-zero if any cell failed; the failing command and its output are
# printed where it happened and the cell shows FAIL in the table.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=lib/common.sh
source scripts/lib/common.sh
# shellcheck source=lib/install.sh
source scripts/lib/install.sh
# shellcheck source=lib/cluster.sh
source scripts/lib/cluster.sh

ROUNDS="${BENCH_ROUNDS:-3}"
SCALE="${BENCH_SCALE:-1}"
CELL_TIMEOUT="${BENCH_TIMEOUT:-600}"
for v in ROUNDS SCALE CELL_TIMEOUT; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done
INSTRUCTIONS="${BENCH_INSTRUCTIONS:-0}"
[[ "$INSTRUCTIONS" =~ ^[01]$ ]] || die "BENCH_INSTRUCTIONS must be 0 or 1, got '$INSTRUCTIONS'"

declare -A WORKLOAD_N=([latency]=20000 [pipeline]=100000 [pipeline_batch]=100000 [fetch_many]=1000000
    [transaction]=10000 [insert_batch]=10000 [insert_pipeline]=10000 [copy_in_binary]=1000000 [copy_in_csv]=1000000
    [copy_out]=1000000 [notify_1]=100000 [notify_100]=100000 [cache]=20000
    [concurrent]=50000 [concurrent_shared]=50000)
ALL_WORKLOADS=(latency pipeline pipeline_batch fetch_many transaction insert_batch insert_pipeline
    copy_in_binary copy_in_csv copy_out notify_1 notify_100 cache concurrent concurrent_shared)
selected="${BENCH_WORKLOADS:-${ALL_WORKLOADS[*]}}"
read -r -a WORKLOADS <<<"${selected//,/ }"
((${#WORKLOADS[@]} > 0)) || die "BENCH_WORKLOADS selects no workload"
for w in "${WORKLOADS[@]}"; do
    [[ -n "${WORKLOAD_N[$w]:-}" ]] || die "unknown workload '$w' in BENCH_WORKLOADS (known: ${ALL_WORKLOADS[*]})"
done
IN_FLIGHT=1000
WASM=wasm32-wasip2

# ---------------------------------------------------------------- setup
PGC_APT_PACKAGES+=(time) # GNU time, for peak RSS (%M)
((INSTRUCTIONS)) && PGC_APT_PACKAGES+=(valgrind)
install_all
[[ -x /usr/bin/time ]] || die "/usr/bin/time missing after installing the time package"
if ((INSTRUCTIONS)); then
    command -v valgrind >/dev/null || die "valgrind missing after installing the valgrind package"
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/bench/target}"
note "building the bench (native and $WASM, release)"
cargo build --quiet --release --manifest-path bench/Cargo.toml
cargo build --quiet --release --manifest-path bench/Cargo.toml --target "$WASM"
NATIVE_BIN="$CARGO_TARGET_DIR/release/wasi-pg-client-bench"
WASM_BIN="$CARGO_TARGET_DIR/$WASM/release/wasi-pg-client-bench.wasm"

OUT_DIR=$(mktemp -d -t pgc-bench.XXXXXXXX)
on_exit 'rm -rf "$OUT_DIR"'

cluster_start
postmaster=$(head -n1 "$PGC_CLUSTER_DIR/data/postmaster.pid")
[[ "$postmaster" =~ ^[0-9]+$ ]] || die "no postmaster PID in $PGC_CLUSTER_DIR/data/postmaster.pid"
# Backends forked later inherit the postmaster's affinity; its background
# workers already exist, so pin them too.
for pid in "$postmaster" $(pgrep -P "$postmaster" || true); do
    taskset -a -p -c 0 "$pid" >/dev/null
done
export BENCH_URL="postgresql://trust_user@$PGTEST_HOST:$PGTEST_PORT/$PGTEST_DB?sslmode=disable"
PGBENCH_SCRIPT="$OUT_DIR/select.sql"
printf '%s\n' '\set x random(1, 1000000)' 'SELECT :x::int4;' >"$PGBENCH_SCRIPT"

note "$(cargo --version); wasmtime: $("$WASMTIME" --version); rounds=$ROUNDS scale=1/$SCALE"

WASMTIME_RUN=("$WASMTIME" run -S inherit-network=y -S allow-ip-name-lookup=y --env "BENCH_URL=$BENCH_URL")
# One untimed run fills wasmtime's compilation cache, so no measured wasm
# process pays for (or counts the memory of) compiling the component.
# A failure here shows again, with its output, in the wasm cells.
"${WASMTIME_RUN[@]}" "$WASM_BIN" --client ours --workload latency --n 1 >/dev/null 2>&1 ||
    note "warm-up run under wasmtime failed"

# ---------------------------------------------------------------- cells
# Results per cell key "workload|client|runtime": space-separated values, one
# per round. CPU and SECS stay in step round by round ("-" where a round's
# RESULT lacked the field), since the CPU share pairs them.
declare -A OPS RSS CPU SECS FAILED
FAILURES=0

# run_cell WORKLOAD CLIENT RUNTIME N: one process, pinned, timed, appended to
# OPS/RSS/CPU/SECS.
run_cell() {
    local workload="$1" client="$2" runtime="$3" n="$4"
    local key="$workload|$client|$runtime" out="$OUT_DIR/out" rss="$OUT_DIR/rss" rc=0
    local args=(--client "$client" --workload "$workload" --n "$n" --in-flight "$IN_FLIGHT")
    local cmd
    if [[ "$client" == pgbench ]]; then
        # PostgreSQL's own C client (libpq), one connection, the same
        # statement prepared with a parameter.
        cmd=("$PG_BIN/pgbench" -n -M prepared -c 1 -j 1 -t "$n" -f "$PGBENCH_SCRIPT"
            -h "$PGTEST_HOST" -p "$PGTEST_PORT" -U trust_user "$PGTEST_DB")
    elif [[ "$runtime" == wasm ]]; then
        cmd=("${WASMTIME_RUN[@]}" "$WASM_BIN" "${args[@]}")
    else
        cmd=("$NATIVE_BIN" "${args[@]}" --runtime "$runtime")
    fi
    : >"$rss"
    taskset -c 0 timeout -k 10 "$CELL_TIMEOUT" \
        /usr/bin/time -f '%M' -o "$rss" "${cmd[@]}" >"$out" 2>&1 || rc=$?
    if [[ "$client" == pgbench ]]; then
        # "tps = 21234.567 (without initial connection time)"
        local tps
        tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$out")
        [[ -n "$tps" ]] && echo "RESULT client=pgbench runtime=current workload=$workload n=$n ops_per_sec=$tps" >>"$out"
    fi
    local line ops cpu secs
    line=$(grep '^RESULT ' "$out" || true)
    ops=$(sed -n 's/.* ops_per_sec=\([0-9.]*\).*/\1/p' <<<"$line")
    # Only native clients know their CPU time; pgbench's line has no secs.
    cpu=$(sed -n 's/.* cpu_secs=\([0-9.]*\).*/\1/p' <<<"$line")
    secs=$(sed -n 's/.* secs=\([0-9.]*\).*/\1/p' <<<"$line")
    if [[ $rc -ne 0 || -z "$ops" ]]; then
        FAILURES=$((FAILURES + 1))
        FAILED[$key]=1
        note "FAILED ($([[ $rc -eq 124 ]] && echo "timed out after ${CELL_TIMEOUT}s" || echo "exit $rc")): BENCH_URL=$BENCH_URL taskset -c 0 ${cmd[*]}"
        sed 's/^/    /' "$out" >&2
        return 0
    fi
    printf '%s rss_kib=%s\n' "$line" "$(tail -n1 "$rss")"
    # Sanity checks: our statement cache's counters (cache workload), our
    # pool's connections (concurrent workloads).
    grep -E '^(statement cache|pool) ' "$out" | sed 's/^/    /' || true
    OPS[$key]+="$ops "
    RSS[$key]+="$(tail -n1 "$rss") "
    CPU[$key]+="${cpu:--} "
    SECS[$key]+="${secs:--} "
}

# cells WORKLOAD: the "client runtime" pairs it runs, in table order. The cache
# workload also runs our client without its statement cache.
cells() {
    if [[ "$1" == notify_* ]]; then
        # tokio-postgres has no subscribers to fan out to.
        printf '%s\n' "ours current" "ours multi" "ours wasm"
    elif [[ "$1" == latency ]]; then
        printf '%s\n' "ours current" "ours multi" "tokio-postgres current" "tokio-postgres multi" "ours wasm" \
            "pgbench current" "floor current" "floor wasm"
    elif [[ "$1" == concurrent || "$1" == concurrent_shared ]]; then
        printf '%s\n' "ours current" "ours multi" "tokio-postgres current" "tokio-postgres multi" "ours wasm" \
            "floor current" "floor wasm"
    elif [[ "$1" == cache ]]; then
        printf '%s\n' "ours current" "ours-nocache current" "ours multi" "ours-nocache multi" \
            "tokio-postgres current" "tokio-postgres multi" "ours wasm" "ours-nocache wasm"
    else
        printf '%s\n' "ours current" "ours multi" "tokio-postgres current" "tokio-postgres multi" "ours wasm"
    fi
}

# n_for WORKLOAD: its N after BENCH_SCALE.
n_for() {
    local n=$((WORKLOAD_N[$1] / SCALE))
    ((n > 0)) || n=1
    echo "$n"
}

for workload in "${WORKLOADS[@]}"; do
    n=$(n_for "$workload")
    mapfile -t CELLS < <(cells "$workload")
    for ((round = 1; round <= ROUNDS; round++)); do
        for cell in "${CELLS[@]}"; do
            read -r client runtime <<<"$cell"
            run_cell "$workload" "$client" "$runtime" "$n"
        done
    done
done

# ---------------------------------------------------------------- instructions
# count_instructions WORKLOAD CLIENT N: callgrind's count of the instructions
# one native current-thread run of N operations executes (the client only;
# the server is another process). Prints nothing if the run failed.
count_instructions() {
    local workload="$1" client="$2" n="$3" out="$OUT_DIR/callgrind" rc=0
    local cmd=("$NATIVE_BIN" --client "$client" --workload "$workload" --n "$n" --in-flight "$IN_FLIGHT"
        --runtime current)
    taskset -c 0 timeout -k 10 "$CELL_TIMEOUT" \
        valgrind --tool=callgrind --callgrind-out-file=/dev/null "${cmd[@]}" >"$out" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then
        note "FAILED under callgrind (exit $rc): BENCH_URL=$BENCH_URL ${cmd[*]}"
        sed 's/^/    /' "$out" >&2
        return 0
    fi
    sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p' "$out"
}

declare -A INSTR_PER_OP
if ((INSTRUCTIONS)); then
    note "counting client instructions per operation (callgrind)"
    for workload in "${WORKLOADS[@]}"; do
        full=$(($(n_for "$workload") / 10))
        half=$((full / 2))
        if ((half < 1)); then
            note "$workload: N too small to count instructions (BENCH_SCALE)"
            continue
        fi
        mapfile -t CELLS < <(cells "$workload")
        for cell in "${CELLS[@]}"; do
            read -r client runtime <<<"$cell"
            [[ "$runtime" == current && "$client" != pgbench ]] || continue
            at_full=$(count_instructions "$workload" "$client" "$full")
            at_half=$(count_instructions "$workload" "$client" "$half")
            if [[ -z "$at_full" || -z "$at_half" ]]; then
                FAILURES=$((FAILURES + 1))
                continue
            fi
            INSTR_PER_OP["$workload|$client"]=$(awk -v a="$at_full" -v b="$at_half" -v n="$((full - half))" \
                'BEGIN {printf "%.0f", (a - b) / n}')
        done
    done
fi

# ---------------------------------------------------------------- table
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
maximum() { tr ' ' '\n' | grep . | sort -g | tail -n1; }

echo
echo "| workload | client | runtime | ops/s (median) | ratio vs tokio-postgres | peak RSS MiB |"
echo "|---|---|---|---:|---:|---:|"
for workload in "${WORKLOADS[@]}"; do
    mapfile -t CELLS < <(cells "$workload")
    for cell in "${CELLS[@]}"; do
        read -r client runtime <<<"$cell"
        key="$workload|$client|$runtime"
        if [[ -n "${FAILED[$key]:-}" || -z "${OPS[$key]:-}" ]]; then
            echo "| $workload | $client | $runtime | FAIL | | |"
            continue
        fi
        ops=$(median <<<"${OPS[$key]}")
        # wasm has one runtime flavour; compare it with tokio's current-thread one.
        base_key="$workload|tokio-postgres|$([[ $runtime == wasm ]] && echo current || echo "$runtime")"
        ratio=""
        if [[ -z "${FAILED[$base_key]:-}" && -n "${OPS[$base_key]:-}" ]]; then
            ratio=$(awk -v a="$ops" -v b="$(median <<<"${OPS[$base_key]}")" 'BEGIN {printf "%.2f", a / b}')
        fi
        rss=$(awk -v k="$(maximum <<<"${RSS[$key]}")" 'BEGIN {printf "%.1f", k / 1024}')
        label="$runtime"
        [[ $runtime == wasm ]] && label="wasmtime (wstd)"
        printf '| %s | %s | %s | %.0f | %s | %s |\n' "$workload" "$client" "$label" "$ops" "$ratio" "$rss"
    done
done
# cell_ratio WORKLOAD WHAT A B: "WHAT: A/B" for two of the workload's cells ("client|runtime"), if both ran.
cell_ratio() {
    local a="${OPS[$1|$3]:-}" b="${OPS[$1|$4]:-}"
    [[ -n "$a" && -n "$b" && -z "${FAILED[$1|$3]:-}" && -z "${FAILED[$1|$4]:-}" ]] || return 0
    awk -v a="$(median <<<"$a")" -v b="$(median <<<"$b")" -v what="$2" 'BEGIN {printf "%s: %.2f\n", what, a / b}'
}
echo
cell_ratio latency "latency, ours (current-thread) vs pgbench (libpq, one client, -M prepared)" "ours|current" "pgbench|current"
for workload in latency concurrent concurrent_shared; do
    cell_ratio "$workload" "$workload, floor (no client library) vs tokio-postgres, current-thread: the most a client on this runtime could gain" \
        "floor|current" "tokio-postgres|current"
    cell_ratio "$workload" "$workload under wasmtime vs native, floor: the most any client could reach under wasmtime" \
        "floor|wasm" "floor|current"
    cell_ratio "$workload" "$workload, ours vs floor, current-thread" "ours|current" "floor|current"
    cell_ratio "$workload" "$workload, ours vs floor, under wasmtime" "ours|wasm" "floor|wasm"
done
echo
declare -A WORKLOAD_NOTE=(
    [latency]="sequential SELECT \$1::int4 (pgbench: the same statement, -M prepared, one client; floor: the bench's own Bind/Execute/Sync loop on a bare socket, no client library)"
    [pipeline]="SELECT \$1::int4 with $IN_FLIGHT in flight"
    [pipeline_batch]="SELECT \$1::int4, ours in explicit atomic pipelines of $IN_FLIGHT (one Sync each), tokio-postgres as pipeline"
    [fetch_many]="rows streamed from one query (int4 + md5 text per row; ops/s = rows/s)"
    [transaction]="sequential transactions of BEGIN, SELECT \$1::int4 and COMMIT (ours: transaction() and commit(); tokio-postgres: BEGIN and COMMIT by batch_execute, as its Transaction sends them)"
    [insert_batch]="sequential single-row parameterized INSERTs into a fresh temp table"
    [insert_pipeline]="single-row parameterized INSERTs into a fresh temp table, pipelined: ours all in one atomic pipeline, tokio-postgres $IN_FLIGHT concurrent executes in flight"
    [copy_in_binary]="rows (int4 + text) into a fresh temp table with one COPY FROM STDIN (FORMAT binary), each client's binary COPY writer (ops/s = rows/s)"
    [copy_in_csv]="the same rows with one COPY FROM STDIN (FORMAT csv), ours through CsvCopyInWriter, tokio-postgres CSV formatted by the bench into 64 KiB chunks"
    [copy_out]="rows (int4 + text, filled and indexed untimed) read back in id order with one COPY TO STDOUT (FORMAT binary), each client's binary COPY reader"
    [notify_1]="notifications sent on one channel by the connection that listens, $IN_FLIGHT per pg_notify statement, each checked by 1 subscriber (ours only: tokio-postgres has no subscribers)"
    [notify_100]="the same notifications, each delivered to 100 subscribers on that connection (ops/s = notifications sent; deliveries are 100 times that)"
    [cache]="sequential executions cycling over 20 distinct statements by SQL text (tokio-postgres prepares each time; ours-nocache: statement_cache_size(0), unnamed statements)"
    [concurrent]="SELECT \$1::int4 by 8 spawned tasks through a pool of 4 connections, each query taking a connection and giving it back: ours Pool::acquire + release, tokio-postgres deadpool-postgres (Fast recycling, prepare_cached); floor: 4 bare sockets, no pool and no tasks, each running its share one query at a time, all at once"
    [concurrent_shared]="the same, ours with Pool::get_shared per query (tasks sharing a connection pipeline on it), tokio-postgres deadpool-postgres as in concurrent; floor: 8 queries kept in flight on bare sockets (1, 2 or 4 of them, the fastest counts), each read's answers followed by their successors in one write"
)
notes=()
for w in "${WORKLOADS[@]}"; do
    notes+=("$w $(n_for "$w") ${WORKLOAD_NOTE[$w]}")
done
footnote="N: ${notes[0]}"
for note_text in "${notes[@]:1}"; do
    footnote+="; $note_text"
done
footnote+="."
if ((SCALE > 1)); then
    footnote+=" (N divided by BENCH_SCALE=$SCALE.)"
fi
echo "$footnote Median of $ROUNDS; server and clients on CPU 0; ratio: vs tokio-postgres on the same runtime (wasm vs current); RSS: max over rounds, whole process (wasmtime included for wasm)."

# cpu_known KEY: whether every round of the cell ran and gave its CPU and wall seconds.
cpu_known() {
    [[ -z "${FAILED[$1]:-}" && -n "${CPU[$1]:-}" && "${CPU[$1]} ${SECS[$1]:--}" != *-* ]]
}
# cpu_shares KEY: per round, the client's CPU seconds over the wall seconds;
# nothing if a round's wall time rounded to zero.
cpu_shares() {
    awk -v cpu="${CPU[$1]}" -v secs="${SECS[$1]}" 'BEGIN {
        n = split(cpu, c, " "); split(secs, s, " ")
        for (i = 1; i <= n; i++) { if (s[i] <= 0) exit; out = out sprintf("%.6f ", c[i] / s[i]) }
        printf "%s", out
    }'
}

echo
echo "| workload | client | CPU µs/op | tokio-postgres CPU µs/op | ratio (tokio-postgres / this) | tokio-postgres CPU share of wall | ceiling vs tokio-postgres |"
echo "|---|---|---:|---:|---:|---:|---:|"
for workload in "${WORKLOADS[@]}"; do
    base_key="$workload|tokio-postgres|current"
    # notify_*: no tokio-postgres cell.
    cpu_known "$base_key" || continue
    n=$(n_for "$workload")
    shares=$(cpu_shares "$base_key")
    [[ -n "$shares" ]] || continue
    # The cache workload's "ours" keeps its statement cache. The floor
    # (latency and the concurrent workloads) shows the CPU a round trip
    # costs with no client library.
    for client in ours floor; do
        key="$workload|$client|current"
        cpu_known "$key" || continue
        # CPU microseconds per operation: the median CPU seconds (every round runs the same N) * 1e6 / N.
        awk -v w="$workload" -v c="$client" -v n="$n" -v a="$(median <<<"${CPU[$key]}")" \
            -v b="$(median <<<"${CPU[$base_key]}")" -v share="$(median <<<"$shares")" 'BEGIN {
            ratio = a > 0 ? sprintf("%.2f", b / a) : ""
            ceiling = share < 1 ? sprintf("%.2f", 1 / (1 - share)) : ""
            printf "| %s | %s | %.3f | %.3f | %s | %.2f | %s |\n", w, c, a * 1e6 / n, b * 1e6 / n, ratio, share, ceiling
        }'
    done
done
echo
echo "Client CPU: user + system time of the client process over the timed section (CLOCK_PROCESS_CPUTIME_ID), median over rounds; current-thread runtime. The server and the client share CPU 0, so a client that cost nothing would reach at most 1 / (1 - share) times tokio-postgres's throughput: the ceiling. Where the server does the same work whatever the client (sequential round trips, one streamed result, one COPY), a target ratio above the ceiling cannot be met on this machine by any client; pipelining can also cut the server's work (fewer, fuller reads), so there it is no bound."

if ((INSTRUCTIONS)); then
    echo
    echo "| workload | client | instructions/op | ratio (tokio-postgres / this) |"
    echo "|---|---|---:|---:|"
    for workload in "${WORKLOADS[@]}"; do
        mapfile -t CELLS < <(cells "$workload")
        for cell in "${CELLS[@]}"; do
            read -r client runtime <<<"$cell"
            key="$workload|$client"
            [[ "$runtime" == current && -n "${INSTR_PER_OP[$key]:-}" ]] || continue
            ratio=""
            base="${INSTR_PER_OP[$workload|tokio-postgres]:-}"
            [[ -n "$base" ]] && ratio=$(awk -v a="$base" -v b="${INSTR_PER_OP[$key]}" 'BEGIN {printf "%.2f", a / b}')
            echo "| $workload | $client | ${INSTR_PER_OP[$key]} | $ratio |"
        done
    done
    echo
    echo "Instructions: callgrind, native, current-thread runtime, the client process only; per operation in steady state: (count at N/10 - count at N/20) / (N/20). A ratio above 1 means this client executes fewer."
fi

if ((FAILURES > 0)); then
    die "$FAILURES cell run(s) failed"
fi
