#!/usr/bin/env bash
# Runs examples/quickstart.rs against a throwaway PostgreSQL, natively (tokio)
# and as a wasm32-wasip2 component under wasmtime. Installs what is missing;
# the server is stopped and removed when the script ends, however it ends.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
# shellcheck source=scripts/lib/install.sh
source scripts/lib/install.sh
# shellcheck source=scripts/lib/cluster.sh
source scripts/lib/cluster.sh

export RUST_BACKTRACE=1
WASM=wasm32-wasip2

[[ -f examples/quickstart.rs || -f examples/quickstart/main.rs ]] ||
    die "examples/quickstart.rs does not exist yet"

install_all
cluster_start

export DATABASE_URL="postgresql://scram_user:scram_secret@127.0.0.1:${PGTEST_PORT}/pgtest?sslmode=disable"
echo "DATABASE_URL=$DATABASE_URL"

status=0

echo
echo "== native =="
cargo run --quiet --example quickstart --features tokio-transport,pool || status=1

echo
echo "== $WASM =="
if cargo build --quiet --example quickstart --target "$WASM" --features pool; then
    # Artifacts live under cargo's target dir (honours CARGO_TARGET_DIR).
    target_dir="${CARGO_TARGET_DIR:-target}"
    scripts/wasm-runner.sh "$target_dir/$WASM/debug/examples/quickstart.wasm" || status=1
else
    status=1
fi

exit "$status"
