# shellcheck shell=bash
# A throwaway PostgreSQL cluster for the tests. Source it, then:
#
#   cluster_start   initdb + start on a free loopback port, create the test roles
#                   and database, export PGTEST_*; registers cluster_stop to run
#                   at shell exit (also on failure and on INT/TERM/HUP).
#   cluster_stop    stop the server (immediate) and delete its directory. Safe to
#                   call more than once.
#
# Exported by cluster_start:
#   PGTEST_HOST=127.0.0.1  PGTEST_PORT=<port>  PGTEST_SOCKET_DIR=<dir>
#   PGTEST_DB=pgtest       PGTEST_IPV6=1|0 (server also listens on ::1)
#
# Roles (all LOGIN; pg_hba.conf for both 127.0.0.1/32 and ::1/128):
#   trust_user  SUPERUSER, no password    host ... trust
#   pass_user   password 'pass_secret'     host ... password (cleartext)
#   md5_user    password 'md5_secret'      host ... md5 (stored as md5)
#   scram_user  password 'scram_secret'    host ... scram-sha-256
#   any other role                         host ... scram-sha-256
#   local (Unix socket)                    trust for everyone
# Database pgtest is owned by trust_user; schema public is open to PUBLIC.
#
# Needs PG_BIN (install.sh's install_postgres_path); finds it itself otherwise.

[[ -n "${_PGC_CLUSTER_SH:-}" ]] && return 0
_PGC_CLUSTER_SH=1

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=scripts/lib/install.sh
source "$(dirname "${BASH_SOURCE[0]}")/install.sh"

PGC_CLUSTER_DIR=""

# 1 if this machine can bind the IPv6 loopback, else 0.
_pgc_have_ipv6_loopback() {
    python3 - <<'EOF' 2>/dev/null || echo 0
import socket
try:
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.bind(("::1", 0))
    s.close()
    print(1)
except OSError:
    print(0)
EOF
}

# A TCP port free on 127.0.0.1 (and on ::1 too when $1 is 1).
_pgc_free_port() {
    python3 - "$1" <<'EOF'
import socket, sys
want_v6 = sys.argv[1] == "1"
for _ in range(100):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    ok = True
    if want_v6:
        t = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            t.bind(("::1", port))
        except OSError:
            ok = False
        finally:
            t.close()
    s.close()
    if ok:
        print(port)
        sys.exit(0)
sys.exit("no free loopback port found")
EOF
}

_pgc_print_log() {
    local log="$1"
    if [[ -s "$log" ]]; then
        note "---- $log ----"
        sed 's/^/[postgres] /' "$log" >&2
        note "---- end of log ----"
    fi
}

cluster_start() {
    [[ -z "$PGC_CLUSTER_DIR" ]] || die "cluster_start: a cluster is already running ($PGC_CLUSTER_DIR)"
    [[ -n "${PG_BIN:-}" ]] || install_postgres_path
    id postgres >/dev/null 2>&1 || [[ $(id -u) -ne 0 ]] ||
        die "no OS user 'postgres' (install the postgresql package)"

    local dir data sock log ipv6 port listen attempt started=0
    dir=$(mktemp -d -t pgtest.XXXXXXXX)
    PGC_CLUSTER_DIR="$dir"
    on_exit cluster_stop
    chmod 755 "$dir"
    data="$dir/data"
    sock="$dir/sock"
    log="$dir/postgres.log"
    mkdir -m 700 "$data"
    mkdir -m 755 "$sock"
    : >"$log"
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres:postgres "$data" "$sock" "$log"
        as_postgres test -x "$dir" ||
            die "user postgres cannot enter $dir (a parent directory is not traversable; set TMPDIR)"
    fi

    # cd: the postgres user may not be allowed into the caller's directory.
    if ! (cd "$dir" && as_postgres "$PG_BIN/initdb" -D "$data" -U postgres \
        --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1); then
        _pgc_print_log "$dir/initdb.log"
        die "initdb failed"
    fi

    ipv6=$(_pgc_have_ipv6_loopback)
    listen="127.0.0.1"
    [[ "$ipv6" == 1 ]] && listen="127.0.0.1,::1"

    cat >"$data/pg_hba.conf" <<EOF
# Written by scripts/lib/cluster.sh for the test suite.
# TYPE  DATABASE  USER        ADDRESS        METHOD
local   all       all                        trust
host    all       trust_user  127.0.0.1/32   trust
host    all       trust_user  ::1/128        trust
host    all       pass_user   127.0.0.1/32   password
host    all       pass_user   ::1/128        password
host    all       md5_user    127.0.0.1/32   md5
host    all       md5_user    ::1/128        md5
host    all       scram_user  127.0.0.1/32   scram-sha-256
host    all       scram_user  ::1/128        scram-sha-256
host    all       all         127.0.0.1/32   scram-sha-256
host    all       all         ::1/128        scram-sha-256
EOF
    echo "include 'pgtest.conf'" >>"$data/postgresql.conf"

    # The port is free when picked but someone may take it before the server
    # binds it: retry with a new port when that happens.
    for attempt in 1 2 3 4 5; do
        : >"$log"
        port=$(_pgc_free_port "$ipv6") || die "could not find a free loopback port"
        cat >"$data/pgtest.conf" <<EOF
listen_addresses = '$listen'
port = $port
unix_socket_directories = '$sock'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
        [[ $(id -u) -eq 0 ]] && chown postgres:postgres "$data/pg_hba.conf" "$data/pgtest.conf"
        if (cd "$dir" && as_postgres "$PG_BIN/pg_ctl" -D "$data" -w -t 60 -l "$log" start >/dev/null 2>&1); then
            # The server starts if any one address binds: a port taken on
            # 127.0.0.1 but free on ::1 still "succeeds". Treat as taken.
            if ! grep -q 'could not create listen socket' "$log"; then
                started=1
                break
            fi
            (cd "$dir" && as_postgres "$PG_BIN/pg_ctl" -D "$data" -m immediate -w -t 30 stop >/dev/null 2>&1) ||
                die "could not stop the half-started server in $data"
        fi
        if grep -q 'Address already in use' "$log"; then
            note "port $port was taken meanwhile (attempt $attempt of 5)"
            continue
        fi
        break
    done
    if [[ $started -ne 1 ]]; then
        _pgc_print_log "$log"
        die "PostgreSQL did not start"
    fi

    # pg_ctl -w returns once the server accepts connections; confirm TCP too (bounded).
    if ! "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -t 30; then
        _pgc_print_log "$log"
        die "PostgreSQL is not accepting TCP connections on 127.0.0.1:$port"
    fi

    local psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$port" -U postgres)
    if ! "${psql[@]}" -d postgres >/dev/null <<'EOF'
CREATE ROLE trust_user LOGIN SUPERUSER;
CREATE ROLE pass_user LOGIN PASSWORD 'pass_secret';
SET password_encryption = 'md5';
CREATE ROLE md5_user LOGIN PASSWORD 'md5_secret';
SET password_encryption = 'scram-sha-256';
CREATE ROLE scram_user LOGIN PASSWORD 'scram_secret';
CREATE DATABASE pgtest OWNER trust_user;
\connect pgtest
GRANT ALL ON SCHEMA public TO PUBLIC;
EOF
    then
        _pgc_print_log "$log"
        die "creating the test roles and database failed"
    fi

    export PGTEST_HOST=127.0.0.1
    export PGTEST_PORT="$port"
    export PGTEST_SOCKET_DIR="$sock"
    export PGTEST_DB=pgtest
    export PGTEST_IPV6="$ipv6"
    note "PostgreSQL $("$PG_BIN/postgres" -V | awk '{print $3}') on 127.0.0.1:$port$([[ $ipv6 == 1 ]] && echo " and [::1]:$port"), socket dir $sock"
}

cluster_stop() {
    local dir="${PGC_CLUSTER_DIR:-}"
    [[ -n "$dir" ]] || return 0
    PGC_CLUSTER_DIR=""
    local data="$dir/data" pid=""
    if [[ -f "$data/postmaster.pid" ]]; then
        pid=$(head -n1 "$data/postmaster.pid" 2>/dev/null || true)
        if ! (cd "$dir" && as_postgres "$PG_BIN/pg_ctl" -D "$data" -m immediate -w -t 30 stop >/dev/null 2>&1); then
            # Last resort: the postmaster we started, by its PID from our own data dir.
            if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
                grep -qF -- "$data" "/proc/$pid/cmdline" 2>/dev/null; then
                note "pg_ctl stop failed; killing postmaster $pid"
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
    fi
    rm -rf "$dir"
}
