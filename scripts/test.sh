#!/usr/bin/env bash
# The whole check, as CI runs it (.ci/run calls this and nothing else):
# installs what is missing, makes test certificates (scripts/lib/certs.sh),
# starts two throwaway PostgreSQL servers with TLS on - 15 from Debian
# (scripts/lib/cluster.sh) and 18 from npm (scripts/lib/pg18.sh) - and a
# PgBouncer in transaction mode in front of the 15 (scripts/lib/pgbouncer.sh;
# tests/pgbouncer.rs runs through it), then runs fmt,
# clippy (native + wasm32-wasip2), unit tests, doctests, integration tests
# (native + wasm32-wasip2), fuzz/bench checks and the wasm examples build.
#
# Every step runs even when an earlier one failed; the script exits non-zero
# if any failed. Its last two lines are the integration-test counts:
#   native: N passed, M failed
#   wasm32-wasip2: N passed, M failed
# A panic aborts a whole wasm test binary and its captured panic message is
# lost: such a binary counts as one failed test, and the test that died is
# run again alone with --nocapture so its message shows (not counted).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
# shellcheck source=scripts/lib/install.sh
source scripts/lib/install.sh
# shellcheck source=scripts/lib/certs.sh
source scripts/lib/certs.sh
# shellcheck source=scripts/lib/cluster.sh
source scripts/lib/cluster.sh
# shellcheck source=scripts/lib/pg18.sh
source scripts/lib/pg18.sh
# shellcheck source=scripts/lib/pgbouncer.sh
source scripts/lib/pgbouncer.sh

export RUST_BACKTRACE=1

SCRIPT_START=$SECONDS
WASM=wasm32-wasip2

OUT_DIR=$(mktemp -d -t pgc-test.XXXXXXXX)
# shellcheck disable=SC2016 # expanded when the hook runs
on_exit 'rm -rf "$OUT_DIR"'

FAILED_STEPS=()
STEP_TIMES=()
STEP_NO=0

header() {
    printf '\n==> %s\n' "$*"
}

record_time() { # NAME SECONDS RC
    local line
    line=$(printf '%4ds  %s' "$2" "$1")
    if [[ $3 -ne 0 ]]; then
        line+="  (FAILED, exit $3)"
    fi
    STEP_TIMES+=("$line")
}

# run_step NAME CMD...: runs CMD, shows and keeps its output (in $STEP_OUT,
# exit code in $STEP_OUT.rc), records its time and whether it failed.
run_step() {
    local name="$1" t0=$SECONDS rc=0
    shift
    STEP_NO=$((STEP_NO + 1))
    STEP_OUT="$OUT_DIR/step-$STEP_NO.txt"
    header "$name"
    printf '$'
    printf ' %q' "$@"
    printf '\n'
    "$@" 2>&1 | tee "$STEP_OUT" || rc=${PIPESTATUS[0]}
    echo "$rc" >"$STEP_OUT.rc"
    record_time "$name" $((SECONDS - t0)) "$rc"
    if [[ $rc -ne 0 ]]; then
        FAILED_STEPS+=("$name")
    fi
    return 0
}

# count_results FILE: prints "PASSED FAILED CRASHED" summed over the
# "test result:" lines. CRASHED counts test binaries that started running
# ("Running ...") but never printed their result line; their tests already
# reported "... ok" count as passed.
count_results() {
    [[ -f "$1" ]] || {
        echo "0 0 0"
        return
    }
    awk '
        function close_bin() {
            if (open && !seen) { crashed++; passed += oks }
            open = 0; seen = 0; oks = 0
        }
        /^[[:space:]]+Running / { close_bin(); open = 1; next }
        /^[[:space:]]+Doc-tests / { close_bin(); open = 1; next }
        /^test .* \.\.\. ok$/ { oks++; next }
        /^test result: / {
            seen = 1
            for (i = 2; i <= NF; i++) {
                if ($(i) ~ /^passed;?$/) passed += $(i - 1)
                if ($(i) ~ /^failed;?$/) failed += $(i - 1)
            }
        }
        END { close_bin(); printf "%d %d %d\n", passed, failed, crashed }
    ' "$1"
}

# crashed_tests FILE: for each test binary that died without its result line,
# prints "<cargo target selector><TAB><test that was running>" (the test name
# is empty if none had started), e.g. "--test query<TAB>select_works".
crashed_tests() {
    [[ -f "$1" ]] || return 0
    awk '
        function close_bin() {
            if (open && !seen && sel != "") printf "%s\t%s\n", sel, last
            open = 0; seen = 0; sel = ""; last = ""
        }
        /^[[:space:]]+Running / {
            close_bin(); open = 1
            if ($2 == "unittests") sel = "--lib"
            else if ($2 ~ /^tests\//) {
                f = $2; sub(/^tests\//, "", f); sub(/\/main\.rs$/, "", f); sub(/\.rs$/, "", f)
                sel = "--test " f
            }
            next
        }
        /^[[:space:]]+Doc-tests / { close_bin(); next }
        /^test result: / { seen = 1; next }
        /^test [^ ]+ \.\.\. / {
            rest = $0; sub(/^test [^ ]+ \.\.\. /, "", rest)
            if (rest !~ /^(ok|FAILED|ignored)/) last = $2
        }
        END { close_bin() }
    ' "$1"
}

# rerun_crashed FILE CARGO_ARGS...: runs each test that crashed its wasm
# test binary once more, alone and with --nocapture, to show its panic.
rerun_crashed() {
    local file="$1" sel name
    shift
    while IFS=$'\t' read -r sel name; do
        # shellcheck disable=SC2086 # $sel is "--lib" or "--test NAME"
        if [[ -n "$name" ]]; then
            header "rerun of the test that aborted its binary ($sel $name), with --nocapture; not counted"
            cargo test -q $sel "$@" -- --exact "$name" --nocapture 2>&1 | tail -n 200 || true
        else
            header "rerun of the test binary that aborted ($sel), with --nocapture; not counted"
            cargo test -q $sel "$@" -- --nocapture 2>&1 | tail -n 200 || true
        fi
    done < <(crashed_tests "$file")
}

have_integration_tests() {
    compgen -G 'tests/*.rs' >/dev/null || compgen -G 'tests/*/main.rs' >/dev/null ||
        grep -q '^\[\[test\]\]' Cargo.toml
}

# ---------------------------------------------------------------- setup
header "install"
t0=$SECONDS
install_all
install_openssl
install_pg18
echo "PG_BIN=$PG_BIN"
echo "PG18_BIN=$PG18_BIN"
echo "WASMTIME=$WASMTIME ($("$WASMTIME" --version))"
echo "$(cargo --version), $(rustc --version)"
record_time install $((SECONDS - t0)) 0

header "postgres"
t0=$SECONDS
pg18_init # PostgreSQL 18's initdb runs in the background meanwhile
certs_make
cluster_start
pg18_start
pgbouncer_start
env | grep '^PGTEST_' | sort
record_time "start postgres" $((SECONDS - t0)) 0

# ---------------------------------------------------------------- checks
# rustfmt colours its diff even into a log file; only colour a terminal.
fmt_color=never
[[ -t 1 ]] && fmt_color=auto
run_step "fmt" cargo fmt --all --check -- --color="$fmt_color"
run_step "clippy native" cargo clippy --all-targets --all-features -- -D warnings
run_step "clippy $WASM" cargo clippy --all-targets --target "$WASM" --features md5-auth,pool -- -D warnings

run_step "unit tests native" cargo test --lib --features tokio-transport,md5-auth,pool
run_step "unit tests $WASM" cargo test --lib --target "$WASM" --features md5-auth,pool
rerun_crashed "$STEP_OUT" --target "$WASM" --features md5-auth,pool
run_step "doctests native" cargo test --doc --features tokio-transport,pool

NATIVE_OUT=""
WASM_OUT=""
if have_integration_tests; then
    run_step "integration tests native" cargo test --no-fail-fast --test '*' --features tokio-transport,md5-auth,pool
    NATIVE_OUT="$STEP_OUT"
    run_step "integration tests $WASM" cargo test --no-fail-fast --test '*' --target "$WASM" --features md5-auth,pool
    WASM_OUT="$STEP_OUT"
    rerun_crashed "$WASM_OUT" --target "$WASM" --features md5-auth,pool
else
    header "integration tests"
    echo "no integration tests (tests/*.rs) yet"
fi

# fuzz/ and bench/ are workspaces of their own; checking them into our
# target/ reuses the dependencies already built above (a cold CI run saves
# about a minute). cargo-fuzz and scripts/bench.sh keep their own target dirs.
if [[ -f fuzz/Cargo.toml ]]; then
    run_step "fuzz check" cargo check --manifest-path fuzz/Cargo.toml --target-dir "${CARGO_TARGET_DIR:-target}"
fi
if [[ -f bench/Cargo.toml ]]; then
    run_step "bench check" cargo check --manifest-path bench/Cargo.toml --target-dir "${CARGO_TARGET_DIR:-target}"
fi

run_step "examples $WASM" cargo build --examples --target "$WASM" --features pool
# The COPY example loads a CSV file on both targets (under wasmtime through
# the directory wasm-runner.sh preopens at its own path).
export DATABASE_URL="postgresql://scram_user:scram_secret@$PGTEST_HOST:$PGTEST_PORT/$PGTEST_DB?sslmode=disable"
run_step "example load_csv native" cargo run --quiet --example load_csv --features tokio-transport -- "$PWD/examples/data/cities.csv"
run_step "example load_csv $WASM" scripts/wasm-runner.sh "${CARGO_TARGET_DIR:-target}/$WASM/debug/examples/load_csv.wasm" "$PWD/examples/data/cities.csv"

# ---------------------------------------------------------------- summary
header "summary"
printf '%s\n' "${STEP_TIMES[@]}"
printf '%4ds  total\n' $((SECONDS - SCRIPT_START))

read -r n_pass n_fail n_crash < <(count_results "$NATIVE_OUT")
read -r w_pass w_fail w_crash < <(count_results "$WASM_OUT")

explain_counts() { # LABEL FILE FAILED CRASHED
    local rc
    rc=$(cat "$2.rc" 2>/dev/null || true)
    if [[ $4 -ne 0 ]]; then
        echo "$1: $4 test binary(ies) ended without a result line (counted as failed)"
    fi
    if [[ -n "$rc" && "$rc" != 0 && $3 -eq 0 && $4 -eq 0 ]]; then
        echo "$1: cargo test exited $rc with no failing test counted (a build error?)"
    fi
}
explain_counts native "$NATIVE_OUT" "$n_fail" "$n_crash"
explain_counts "$WASM" "$WASM_OUT" "$w_fail" "$w_crash"

status=0
if [[ ${#FAILED_STEPS[@]} -gt 0 ]]; then
    echo "FAILED steps: ${FAILED_STEPS[*]}"
    status=1
else
    echo "all steps passed"
fi

pgbouncer_stop
pg18_stop
cluster_stop

echo "native: $n_pass passed, $((n_fail + n_crash)) failed"
echo "$WASM: $w_pass passed, $((w_fail + w_crash)) failed"
exit "$status"
