# shellcheck shell=bash
# A throwaway PgBouncer (Debian's package, 1.18) in transaction pooling mode in
# front of the test cluster. Source it, then, after cluster.sh's cluster_start:
#
#   pgbouncer_start  writes a pgbouncer.ini into a fresh directory, starts
#                    PgBouncer on a free 127.0.0.1 port, waits until it serves
#                    a query, exports PGTEST_BOUNCER_*; registers pgbouncer_stop
#                    to run at shell exit (also on failure and on INT/TERM/HUP).
#   pgbouncer_stop   stops that PgBouncer (by its PID) and deletes its
#                    directory. Safe to call more than once.
#
# Exported by pgbouncer_start:
#   PGTEST_BOUNCER_HOST=127.0.0.1  PGTEST_BOUNCER_PORT=<port>
#
# Settings: pool_mode=transaction, max_client_conn=200, default_pool_size=4
# (many client connections share a few server connections, so a client's
# consecutive transactions land on different server connections). Databases:
#   pgtest           the cluster's pgtest, pool of 4 server connections
#   pgtest_single    the cluster's pgtest again, a pool of ONE server
#                    connection: every client of it shares that connection's
#                    session state (named prepared statements, say), which
#                    makes pooling effects deterministic for a test
# Server connections are not closed for idleness (server_idle_timeout=0) nor
# age (server_lifetime one day), so each pool keeps the same backends.
# Only the role scram_user (password scram_secret) can log in: auth_type
# scram-sha-256 with an auth_file holding its SCRAM secret, copied from the
# cluster's pg_authid. With that secret PgBouncer also logs in to the server
# as scram_user (over TCP, SCRAM), on behalf of a client that authenticated
# with SCRAM. server_reset_query is PgBouncer's default (DISCARD ALL), which
# transaction pooling does not run (server_reset_query_always=0).
#
# Runs as the OS user postgres when we are root (PgBouncer refuses root).
# Needs PG_BIN (install.sh's install_postgres_path) and pgbouncer installed
# (install.sh's PGC_APT_PACKAGES).

[[ -n "${_PGC_PGBOUNCER_SH:-}" ]] && return 0
_PGC_PGBOUNCER_SH=1

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=scripts/lib/install.sh
source "$(dirname "${BASH_SOURCE[0]}")/install.sh"
# shellcheck source=scripts/lib/cluster.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"

PGC_BOUNCER_DIR=""
PGC_BOUNCER_PID=""

_pgc_pgbouncer_bin() {
    local p
    p=$(command -v pgbouncer 2>/dev/null) || p=/usr/sbin/pgbouncer
    [[ -x "$p" ]] || return 1
    printf '%s\n' "$p"
}

# True when PID is a running pgbouncer started with our DIR's ini.
_pgc_is_our_bouncer() {
    local pid="$1" dir="$2"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
        grep -qF -- "$dir/pgbouncer.ini" "/proc/$pid/cmdline" 2>/dev/null
}

# _pgc_bouncer_ini DIR PORT: the configuration, on stdout.
_pgc_bouncer_ini() {
    local dir="$1" port="$2"
    cat <<EOF
; Written by scripts/lib/pgbouncer.sh for the test suite.
[databases]
pgtest = host=$PGTEST_HOST port=$PGTEST_PORT dbname=$PGTEST_DB
pgtest_single = host=$PGTEST_HOST port=$PGTEST_PORT dbname=$PGTEST_DB pool_size=1

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = transaction
max_client_conn = 200
default_pool_size = 4
reserve_pool_size = 0
; Server connections live as long as this PgBouncer: the pools' sizes stay
; observable (backend PIDs) and pgtest_single keeps its one connection.
server_lifetime = 86400
server_idle_timeout = 0
; PgBouncer's defaults, spelled out: transaction pooling never resets a
; server connection between clients.
server_reset_query = DISCARD ALL
server_reset_query_always = 0
EOF
}

pgbouncer_start() {
    [[ -z "$PGC_BOUNCER_DIR" ]] || die "pgbouncer_start: a PgBouncer is already running ($PGC_BOUNCER_DIR)"
    [[ -n "${PGTEST_HOST:-}" && -n "${PGTEST_PORT:-}" && -n "${PGTEST_DB:-}" && -n "${PGTEST_SOCKET_DIR:-}" ]] ||
        die "pgbouncer_start: PGTEST_HOST/PORT/DB/SOCKET_DIR are not set (call cluster_start first)"
    [[ -n "${PG_BIN:-}" ]] || install_postgres_path
    local bin
    bin=$(_pgc_pgbouncer_bin) || die "pgbouncer not found (install.sh's install_apt_packages installs it)"
    id postgres >/dev/null 2>&1 || [[ $(id -u) -ne 0 ]] ||
        die "no OS user 'postgres' (install the postgresql package)"

    local dir
    dir=$(mktemp -d -p "$(_pgc_tmp_parent)" pgbouncer.XXXXXXXX) || die "could not make a PgBouncer directory"
    PGC_BOUNCER_DIR="$dir"
    on_exit pgbouncer_stop
    chmod 755 "$dir"
    [[ $(id -u) -eq 0 ]] && chown postgres:postgres "$dir"

    # The SCRAM secret, as the server stores it (over the Unix socket, trust).
    local secret
    secret=$("$PG_BIN/psql" -X -A -t -q -v ON_ERROR_STOP=1 -h "$PGTEST_SOCKET_DIR" -p "$PGTEST_PORT" \
        -U postgres -d postgres -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'scram_user'") ||
        die "could not read scram_user's password from pg_authid"
    [[ "$secret" == SCRAM-SHA-256\$* ]] || die "scram_user's password is not stored as SCRAM-SHA-256"
    (
        umask 077
        printf '"scram_user" "%s"\n' "$secret" >"$dir/userlist.txt"
    )
    [[ $(id -u) -eq 0 ]] && chown postgres:postgres "$dir/userlist.txt"

    local log="$dir/pgbouncer.log" port attempt pid="" started=0 i
    # The port is free when picked but someone may take it before PgBouncer
    # binds it: retry with a new port when that happens.
    for attempt in 1 2 3 4 5; do
        port=$(_pgc_free_port 127.0.0.1) || die "could not find a free loopback port"
        _pgc_bouncer_ini "$dir" "$port" >"$dir/pgbouncer.ini"
        rm -f "$log" "$dir/pgbouncer.pid"
        # -d: the parent returns at once; the daemon then binds the port,
        # writes the pidfile and logs "process up", or logs FATAL and exits.
        if (cd "$dir" && as_postgres "$bin" -d -q "$dir/pgbouncer.ini") >"$dir/start.log" 2>&1; then
            for ((i = 0; i < 200; i++)); do
                grep -qs -e 'process up' -e 'FATAL' "$log" && break
                sleep 0.05
            done
            pid=$(cat "$dir/pgbouncer.pid" 2>/dev/null || true)
            if grep -qs 'process up' "$log" && _pgc_is_our_bouncer "$pid" "$dir"; then
                PGC_BOUNCER_PID="$pid"
                started=1
                break
            fi
        fi
        if grep -qs 'Address already in use' "$log" "$dir/start.log"; then
            note "port $port was taken meanwhile (attempt $attempt of 5)"
            continue
        fi
        break
    done
    if [[ $started -ne 1 ]]; then
        _pgc_print_log "$dir/start.log" pgbouncer
        _pgc_print_log "$log" pgbouncer
        die "PgBouncer ($bin) did not start"
    fi

    # Bounded wait until it answers on TCP (it usually does at once).
    for ((i = 0; i < 100; i++)); do
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -d pgtest -U scram_user -t 2 && break
        _pgc_is_our_bouncer "$PGC_BOUNCER_PID" "$dir" || break
        sleep 0.1
    done
    # A real round trip: client SCRAM to PgBouncer, PgBouncer's SCRAM to the server.
    local out
    if ! out=$(PGPASSWORD=scram_secret PGCONNECT_TIMEOUT=10 "$PG_BIN/psql" -X -A -t -v ON_ERROR_STOP=1 \
        "host=127.0.0.1 port=$port dbname=pgtest user=scram_user sslmode=disable" \
        -c "SELECT current_user" 2>&1) || [[ "$out" != scram_user ]]; then
        printf '%s\n' "$out" | sed 's/^/[psql] /' >&2
        _pgc_print_log "$log" pgbouncer
        die "PgBouncer on 127.0.0.1:$port does not serve queries as scram_user"
    fi

    export PGTEST_BOUNCER_HOST=127.0.0.1
    export PGTEST_BOUNCER_PORT="$port"
    note "PgBouncer $("$bin" --version | awk 'NR == 1 { print $2 }') on 127.0.0.1:$port (transaction pooling, pool size 4), PID $PGC_BOUNCER_PID, dir $dir"
}

pgbouncer_stop() {
    local dir="${PGC_BOUNCER_DIR:-}" pid="${PGC_BOUNCER_PID:-}" i
    [[ -n "$dir" ]] || return 0
    PGC_BOUNCER_DIR=""
    PGC_BOUNCER_PID=""
    if _pgc_is_our_bouncer "$pid" "$dir"; then
        # SIGINT: "safe shutdown", SIGTERM: immediate. Bounded wait, then KILL.
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            _pgc_is_our_bouncer "$pid" "$dir" || break
            sleep 0.05
        done
        if _pgc_is_our_bouncer "$pid" "$dir"; then
            note "PgBouncer $pid did not stop on TERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -rf "$dir"
}
