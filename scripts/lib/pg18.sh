# shellcheck shell=bash
# A second throwaway cluster: PostgreSQL 18 (with OpenSSL) from the npm package
# that install.sh's install_pg18 caches, for what PostgreSQL 15 lacks: direct
# SSL negotiation (sslnegotiation=direct, TLS first with ALPN "postgresql")
# and protocol 3.2. Source it, then, after certs.sh's certs_make:
#
#   pg18_init    optional first half: makes the cluster directory and runs
#                initdb in the background, so that it overlaps other work (the
#                main cluster's initdb); registers pg18_stop. Needs no certificates.
#   pg18_start   initdb (or waits for pg18_init's), starts the server on a free
#                loopback port with TLS on (server.crt, server.key and
#                ssl_ca_file=ca.crt from PGTEST_CERT_DIR), creates the roles and
#                database, checks a verify-full connection through SSLRequest
#                and a direct TLS handshake with ALPN, and exports
#                PGTEST_PG18_HOST=127.0.0.1 and PGTEST_PG18_PORT=<port>.
#                Registers pg18_stop to run at shell exit (via pg18_init).
#   pg18_stop    stop the server (immediate) and delete its directory. Safe to
#                call more than once.
#
# tests/pool.rs restarts this server mid-run (a superuser's COPY TO PROGRAM
# runs <dir>/pg/bin/pg_ctl restart on <dir>/data, logging to <dir>/postgres.log),
# so keep the server's binaries at <dir>/pg/bin; the port and settings live in
# <dir>/data and survive the restart.
#
# Listens on 127.0.0.1 and (when IPv6 loopback works) ::1. Database pgtest, owned
# by trust_user. Roles and pg_hba.conf, for 127.0.0.1/32 and ::1/128, first
# match wins - the same as the main cluster's for these roles:
#   tls_user        'tls_secret'         hostssl scram-sha-256; hostnossl reject
#   cert_user       no password          hostssl cert
#   scram_plus_user 'scram_plus_secret'  hostssl scram-sha-256
#   trust_user      SUPERUSER            host trust
#   any other role                       host scram-sha-256
#   local (Unix socket)                  trust

[[ -n "${_PGC_PG18_SH:-}" ]] && return 0
_PGC_PG18_SH=1

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=scripts/lib/install.sh
source "$(dirname "${BASH_SOURCE[0]}")/install.sh"
# shellcheck source=scripts/lib/cluster.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"

PGC_PG18_DIR=""
_PGC_PG18_INITDB_PID=""

pg18_init() {
    [[ -z "$PGC_PG18_DIR" ]] || die "pg18_init: a PostgreSQL 18 cluster directory exists already ($PGC_PG18_DIR)"
    [[ -n "${PG18_BIN:-}" ]] || install_pg18
    id postgres >/dev/null 2>&1 || [[ $(id -u) -ne 0 ]] ||
        die "no OS user 'postgres' (install the postgresql package)"

    local dir
    dir=$(_pgc_cluster_dir pgtest18) || die "could not make a cluster directory"
    PGC_PG18_DIR="$dir"
    on_exit pg18_stop

    # The cache is usually under root's 0700 home, where the postgres user
    # cannot reach: run a copy from inside the cluster directory. Hard links
    # where the file system is the same; else (the cluster in /dev/shm) a real
    # copy, ~60 MB of RAM in 0.2 s. The binaries find share/ and lib/ relative
    # to themselves.
    if ! cp -al "$PG18_BIN/.." "$dir/pg" 2>/dev/null; then
        rm -rf "$dir/pg"
        cp -a "$PG18_BIN/.." "$dir/pg" || die "could not copy $PG18_BIN/.. to $dir/pg"
    fi

    # A subshell: its `die` ends only itself (it has no exit hooks); the
    # waiting side reports. pg18_stop waits for it before removing $dir.
    (_pgc_initdb "$dir/pg/bin" "$dir") >"$dir/initdb-bg.log" 2>&1 &
    _PGC_PG18_INITDB_PID=$!
}

# Waits for pg18_init's background initdb; dies with its output if it failed.
_pgc_pg18_initdb_wait() {
    local pid="$_PGC_PG18_INITDB_PID"
    [[ -n "$pid" ]] || return 0
    _PGC_PG18_INITDB_PID=""
    if ! wait "$pid"; then
        sed 's/^/[initdb 18] /' "$PGC_PG18_DIR/initdb-bg.log" >&2
        die "PostgreSQL 18 initdb failed"
    fi
}

pg18_start() {
    [[ -n "${PGTEST_CERT_DIR:-}" && -f "$PGTEST_CERT_DIR/server.crt" ]] ||
        die "pg18_start: PGTEST_CERT_DIR is not set or has no server.crt (call certs_make first)"
    [[ -n "${PG_BIN:-}" ]] || install_postgres_path
    command -v openssl >/dev/null 2>&1 || install_openssl
    if [[ -z "$PGC_PG18_DIR" ]]; then
        pg18_init
    elif [[ -z "$_PGC_PG18_INITDB_PID" ]]; then
        die "pg18_start: a PostgreSQL 18 cluster is already running ($PGC_PG18_DIR)"
    fi
    _pgc_pg18_initdb_wait
    local dir="$PGC_PG18_DIR" ipv6 listen a
    local bin="$dir/pg/bin"

    ipv6=$(_pgc_have_ipv6_loopback)
    listen="127.0.0.1"
    [[ "$ipv6" == 1 ]] && listen+=",::1"
    {
        echo "# Written by scripts/lib/pg18.sh for the test suite."
        echo "# TYPE    DATABASE USER          ADDRESS        METHOD"
        echo "local     all  all                             trust"
        _pgc_hba_tls_lines 127.0.0.1/32 ::1/128
        for a in 127.0.0.1/32 ::1/128; do
            printf 'host      all  trust_user       %-14s trust\n' "$a"
        done
        for a in 127.0.0.1/32 ::1/128; do
            printf 'host      all  all              %-14s scram-sha-256\n' "$a"
        done
    } >"$dir/data/pg_hba.conf"

    _pgc_launch "$bin" "$dir" "$listen" "$(_pgc_tls_conf)"
    local port="$_PGC_PORT" log="$dir/postgres.log"

    if ! "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir/sock" -p "$port" -U postgres -d postgres >/dev/null <<'EOF'
CREATE ROLE trust_user LOGIN SUPERUSER;
CREATE ROLE tls_user LOGIN PASSWORD 'tls_secret';
CREATE ROLE cert_user LOGIN;
CREATE ROLE scram_plus_user LOGIN PASSWORD 'scram_plus_secret';
CREATE DATABASE pgtest OWNER trust_user;
\connect pgtest
GRANT ALL ON SCHEMA public TO PUBLIC;
EOF
    then
        _pgc_print_log "$log"
        die "creating the PostgreSQL 18 test roles and database failed"
    fi

    # TLS through SSLRequest (what psql 15 does), with full verification.
    _pgc_check_tls 127.0.0.1 "$port" "$log"
    # Direct TLS (PostgreSQL 17+): a handshake straight away, ALPN "postgresql"
    # required. psql 15 cannot do it (no sslnegotiation); openssl can.
    local out
    out=$(timeout 30 openssl s_client -connect "127.0.0.1:$port" -alpn postgresql \
        -CAfile "$PGTEST_CERT_DIR/ca.crt" -verify_hostname localhost -verify_return_error \
        </dev/null 2>&1) || true
    if ! grep -q '^ALPN protocol: postgresql' <<<"$out" ||
        ! grep -q 'Verify return code: 0 (ok)' <<<"$out"; then
        printf '%s\n' "$out" | sed 's/^/[openssl] /' >&2
        _pgc_print_log "$log"
        die "PostgreSQL 18 on 127.0.0.1:$port did not complete a direct TLS handshake with ALPN postgresql"
    fi

    export PGTEST_PG18_HOST=127.0.0.1
    export PGTEST_PG18_PORT="$port"
    note "PostgreSQL $("$bin/postgres" -V | awk '{print $3}') on 127.0.0.1:$port$([[ $ipv6 == 1 ]] && echo " and [::1]:$port"), TLS on (SSLRequest and direct), socket dir $dir/sock"
}

pg18_stop() {
    local dir="${PGC_PG18_DIR:-}"
    [[ -n "$dir" ]] || return 0
    PGC_PG18_DIR=""
    # A background initdb still running (we are failing early): let it end
    # first (it takes seconds), so nothing writes into $dir while it goes.
    if [[ -n "$_PGC_PG18_INITDB_PID" ]]; then
        wait "$_PGC_PG18_INITDB_PID" 2>/dev/null || true
        _PGC_PG18_INITDB_PID=""
    fi
    _pgc_stop_dir "$dir/pg/bin" "$dir"
}
