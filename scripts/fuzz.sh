#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for FUZZ_SECONDS each (default 60).
#
#   scripts/fuzz.sh                      # all four targets, 60 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh     # longer
#   FUZZ_TARGETS="decode_pg_types" scripts/fuzz.sh
#
# Installs what is missing (a nightly toolchain, cargo-fuzz: building
# cargo-fuzz takes a few minutes the first time), copies the seed corpus
# (fuzz/corpus/seed/<target>/, real server messages) into the working corpus
# fuzz/corpus/<target>/, runs each target and prints one summary line per
# target. Crash inputs land in fuzz/artifacts/<target>/; logs in
# fuzz/target/fuzz-logs/<target>.log. Exits non-zero if any target crashed.
# Safe to run again: the corpora grow, nothing else changes.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
FUZZ_TARGETS="${FUZZ_TARGETS:-decode_message decode_message_persistent decode_message_bounded decode_pg_types}"
RSS_LIMIT_MB="${RSS_LIMIT_MB:-2048}"

log() { printf '==> %s\n' "$*" >&2; }

# --- Tools -------------------------------------------------------------------

if ! rustup toolchain list 2>/dev/null | grep '^nightly' >/dev/null; then
    log "installing the nightly toolchain (cargo fuzz needs -Z flags)"
    rustup toolchain install nightly --profile minimal
fi

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz (a one-time build of a few minutes)"
    start=$SECONDS
    cargo +nightly install cargo-fuzz --locked
    log "cargo-fuzz installed in $((SECONDS - start)) s"
fi

# --- Corpora -----------------------------------------------------------------

for t in $FUZZ_TARGETS; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    if [[ -d "fuzz/corpus/seed/$t" ]]; then
        for f in "fuzz/corpus/seed/$t"/*; do
            [[ -f "$f" ]] || continue
            dest="fuzz/corpus/$t/seed-$(basename "$f")"
            [[ -e "$dest" ]] || cp "$f" "$dest"
        done
    fi
done

# --- Build once, then run ----------------------------------------------------

# Release with debug assertions (overflow checks on) and AddressSanitizer.
log "building the fuzz targets"
cargo +nightly fuzz build --debug-assertions

LOG_DIR="fuzz/target/fuzz-logs"
mkdir -p "$LOG_DIR"
STAMP="$LOG_DIR/.start"
touch "$STAMP"

SUMMARY=()
CRASHED=0
for t in $FUZZ_TARGETS; do
    log "fuzzing $t for ${FUZZ_SECONDS} s"
    logfile="$LOG_DIR/$t.log"
    rc=0
    cargo +nightly fuzz run --debug-assertions "$t" "$ROOT/fuzz/corpus/$t" -- \
        -max_total_time="$FUZZ_SECONDS" -rss_limit_mb="$RSS_LIMIT_MB" \
        -print_final_stats=1 >"$logfile" 2>&1 || rc=$?

    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$logfile" | tail -n 1)
    if [[ -z "$execs" ]]; then
        # No final stats (a crash prints them too, but be safe): last status line.
        execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$logfile" | tail -n 1)
    fi
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    new_artifacts=$(find "fuzz/artifacts/$t" -type f -newer "$STAMP" 2>/dev/null | sort)
    if [[ $rc -ne 0 || -n "$new_artifacts" ]]; then
        CRASHED=1
        kind=$(grep -m1 -oE 'ERROR: (libFuzzer|AddressSanitizer): [^:]*|panicked at [^ ]+' "$logfile" || true)
        SUMMARY+=("$t: ${execs:-?} executions, corpus $corpus, CRASH (exit $rc; ${kind:-see log}) artifacts: ${new_artifacts//$'\n'/ } log: $logfile")
        grep -m1 -A3 'panicked at' "$logfile" >&2 || true
    else
        SUMMARY+=("$t: ${execs:-?} executions, corpus $corpus, no crash")
    fi
done

printf '\n'
printf 'fuzz summary (%s s per target):\n' "$FUZZ_SECONDS"
printf '  %s\n' "${SUMMARY[@]}"
exit "$CRASHED"
