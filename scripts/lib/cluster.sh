# shellcheck shell=bash
# A throwaway PostgreSQL cluster for the tests. Source it, then:
#
#   cluster_start   initdb + start on a free loopback port, create the test roles
#                   and database, export PGTEST_*; registers cluster_stop to run
#                   at shell exit (also on failure and on INT/TERM/HUP).
#                   With PGTEST_CERT_DIR set (certs.sh's certs_make, called
#                   first), the server has TLS on and the TLS roles below work.
#   cluster_stop    stop the server (immediate) and delete its directory. Safe to
#                   call more than once.
#
# Exported by cluster_start:
#   PGTEST_HOST=127.0.0.1  PGTEST_PORT=<port>  PGTEST_SOCKET_DIR=<dir>
#   PGTEST_DB=pgtest       PGTEST_IPV6=1|0 (server also listens on ::1)
#   PGTEST_WRONG_HOST=127.0.0.2  the same server, reached by an address that is
#                   not in server.crt's SAN (verify-full must fail there,
#                   verify-ca must pass)
#
# The server listens on 127.0.0.1, 127.0.0.2 and (when PGTEST_IPV6=1) ::1, one
# port. Roles (all LOGIN); pg_hba.conf lines for each of 127.0.0.1/32,
# 127.0.0.2/32 and ::1/128, first match wins, in this order:
#   tls_user        password 'tls_secret'  hostssl   ... scram-sha-256 (TLS only:
#                                           hostnossl ... reject)
#   cert_user       no password            hostssl   ... cert (client.crt, CN=cert_user)
#   scram_plus_user password 'scram_plus_secret'
#                                          hostssl   ... scram-sha-256 (the server
#                                           offers SCRAM-SHA-256-PLUS over TLS)
#   trust_user  SUPERUSER, no password     host ... trust
#   pass_user   password 'pass_secret'     host ... password (cleartext)
#   md5_user    password 'md5_secret'      host ... md5 (stored as md5)
#   scram_user  password 'scram_secret'    host ... scram-sha-256
#   any other role                         host ... scram-sha-256
#   local (Unix socket)                    trust for everyone
# A client that connects to 127.0.0.2 still comes from 127.0.0.1 (the kernel
# picks lo's primary address as the source), so the 127.0.0.1/32 lines are the
# ones that match it; the 127.0.0.2/32 lines are there for completeness.
# `host` lines accept TLS and plaintext alike. The hostssl lines exist only with
# TLS on; then ssl=on with server.crt/server.key and ssl_ca_file=ca.crt (the
# server asks for a client certificate but does not require one).
# Database pgtest is owned by trust_user; schema public is open to PUBLIC.
#
# The cluster directory is in /dev/shm when that is a roomy tmpfs (initdb is
# twice as fast in RAM here), else in $TMPDIR; PGC_CLUSTER_TMPDIR overrides.
#
# Needs PG_BIN (install.sh's install_postgres_path); finds it itself otherwise.
#
# Helpers for other clusters (pg18.sh): _pgc_cluster_dir, _pgc_initdb,
# _pgc_launch, _pgc_stop_dir, _pgc_check_tls.

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

# _pgc_free_port ADDR...: a TCP port free on every given loopback address
# (IPv4 or IPv6), picked by the kernel on the first one.
_pgc_free_port() {
    python3 - "$@" <<'EOF'
import errno, socket, sys
addrs = sys.argv[1:]
def sock(addr):
    if ":" in addr:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        return s
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
for _ in range(100):
    first = sock(addrs[0])
    first.bind((addrs[0], 0))
    port = first.getsockname()[1]
    ok = True
    others = []
    for a in addrs[1:]:
        t = sock(a)
        others.append(t)
        try:
            t.bind((a, port))
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:
                sys.exit("cannot bind %s on this machine: %s" % (a, e))
            ok = False
            break
    for t in others:
        t.close()
    first.close()
    if ok:
        print(port)
        sys.exit(0)
sys.exit("no free loopback port found")
EOF
}

# _pgc_print_log LOG [NAME]: LOG to stderr, each line tagged [NAME] (postgres).
_pgc_print_log() {
    local log="$1" name="${2:-postgres}"
    if [[ -s "$log" ]]; then
        note "---- $log ----"
        sed "s/^/[$name] /" "$log" >&2
        note "---- end of log ----"
    fi
}

# Where cluster directories go: $PGC_CLUSTER_TMPDIR if set, else /dev/shm when
# it is a tmpfs with 1 GiB free, else $TMPDIR or /tmp. On this project's VMs
# creating a file on disk costs ~0.4 ms, and initdb creates ~1000: initdb takes
# ~1.8 s on disk and ~0.9 s in RAM. The data is thrown away anyway.
_pgc_tmp_parent() {
    if [[ -n "${PGC_CLUSTER_TMPDIR:-}" ]]; then
        printf '%s\n' "$PGC_CLUSTER_TMPDIR"
        return 0
    fi
    local avail
    if [[ -d /dev/shm && -w /dev/shm && "$(stat -f -c %T /dev/shm 2>/dev/null)" == tmpfs ]]; then
        avail=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')
        if [[ "$avail" =~ ^[0-9]+$ && $avail -ge 1048576 ]]; then
            printf '/dev/shm\n'
            return 0
        fi
    fi
    printf '%s\n' "${TMPDIR:-/tmp}"
}

# _pgc_cluster_dir PREFIX: makes a new directory for a cluster (0755, with
# data/ 0700, sock/ and postgres.log owned by postgres when we are root) and
# prints its path. The caller registers its removal.
_pgc_cluster_dir() {
    local dir
    dir=$(mktemp -d -p "$(_pgc_tmp_parent)" "$1.XXXXXXXX") || return 1
    chmod 755 "$dir"
    mkdir -m 700 "$dir/data"
    mkdir -m 755 "$dir/sock"
    : >"$dir/postgres.log"
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres:postgres "$dir/data" "$dir/sock" "$dir/postgres.log"
    fi
    printf '%s\n' "$dir"
}

# _pgc_initdb BIN_DIR DIR: initdb into DIR/data as postgres.
_pgc_initdb() {
    local bin="$1" dir="$2"
    if [[ $(id -u) -eq 0 ]]; then
        as_postgres test -x "$dir" ||
            die "user postgres cannot enter $dir (a parent directory is not traversable; set PGC_CLUSTER_TMPDIR)"
    fi
    # cd: the postgres user may not be allowed into the caller's directory.
    if ! (cd "$dir" && as_postgres "$bin/initdb" -D "$dir/data" -U postgres \
        --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1); then
        _pgc_print_log "$dir/initdb.log"
        die "initdb failed ($bin/initdb)"
    fi
    echo "include 'pgtest.conf'" >>"$dir/data/postgresql.conf"
}

# _pgc_launch BIN_DIR DIR LISTEN EXTRA_CONF: writes DIR/data/pgtest.conf
# (listen_addresses=LISTEN, a free port, the socket dir, fast-and-unsafe
# durability, then EXTRA_CONF) and starts the server with pg_ctl -w. Sets
# _PGC_PORT. Retries with another port when one is taken meanwhile.
_pgc_launch() {
    local bin="$1" dir="$2" listen="$3" extra="$4"
    local data="$dir/data" log="$dir/postgres.log" port attempt started=0
    local -a addrs
    IFS=, read -r -a addrs <<<"$listen"
    _PGC_PORT=""
    # The port is free when picked but someone may take it before the server
    # binds it: retry with a new port when that happens.
    for attempt in 1 2 3 4 5; do
        : >"$log"
        port=$(_pgc_free_port "${addrs[@]}") || die "could not find a free loopback port"
        cat >"$data/pgtest.conf" <<EOF
listen_addresses = '$listen'
port = $port
unix_socket_directories = '$dir/sock'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
$extra
EOF
        [[ $(id -u) -eq 0 ]] && chown postgres:postgres "$data/pg_hba.conf" "$data/pgtest.conf"
        if (cd "$dir" && as_postgres "$bin/pg_ctl" -D "$data" -w -t 60 -l "$log" start >/dev/null 2>&1); then
            # The server starts if any one address binds: a port taken on
            # 127.0.0.1 but free on ::1 still "succeeds". Treat as taken.
            if ! grep -q 'could not create listen socket' "$log"; then
                started=1
                break
            fi
            (cd "$dir" && as_postgres "$bin/pg_ctl" -D "$data" -m immediate -w -t 30 stop >/dev/null 2>&1) ||
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
        die "PostgreSQL ($bin) did not start"
    fi

    # pg_ctl -w returns once the server accepts connections; confirm TCP too (bounded).
    if ! "$PG_BIN/pg_isready" -q -h "${addrs[0]}" -p "$port" -t 30; then
        _pgc_print_log "$log"
        die "PostgreSQL is not accepting TCP connections on ${addrs[0]}:$port"
    fi
    _PGC_PORT="$port"
}

# _pgc_stop_dir BIN_DIR DIR: stops the server of DIR/data (immediate) and
# removes DIR.
_pgc_stop_dir() {
    local bin="$1" dir="$2"
    local data="$dir/data" pid=""
    if [[ -f "$data/postmaster.pid" ]]; then
        pid=$(head -n1 "$data/postmaster.pid" 2>/dev/null || true)
        if ! (cd "$dir" && as_postgres "$bin/pg_ctl" -D "$data" -m immediate -w -t 30 stop >/dev/null 2>&1); then
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

# _pgc_check_tls HOST PORT LOG: connects as tls_user with sslmode=verify-full
# against ca.crt (the SSLRequest path) and checks that the session is TLS.
# sslcert/sslkey name no file, so a ~/.postgresql/postgresql.crt is not sent.
_pgc_check_tls() {
    local host="$1" port="$2" log="$3" out
    if ! out=$("$PG_BIN/psql" -X -A -t -v ON_ERROR_STOP=1 \
        "host=$host port=$port dbname=pgtest user=tls_user password=tls_secret sslmode=verify-full sslrootcert=$PGTEST_CERT_DIR/ca.crt sslcert=$PGTEST_CERT_DIR/none.crt sslkey=$PGTEST_CERT_DIR/none.key" \
        -c "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()" 2>&1) || [[ "$out" != t ]]; then
        printf '%s\n' "$out" >&2
        _pgc_print_log "$log"
        die "TLS check failed: tls_user with sslmode=verify-full to $host:$port"
    fi
}

# _pgc_hba_tls_lines ADDR...: the pg_hba.conf lines of the TLS roles.
_pgc_hba_tls_lines() {
    local a
    for a in "$@"; do
        printf 'hostssl   all  tls_user         %-14s scram-sha-256\n' "$a"
        printf 'hostnossl all  tls_user         %-14s reject\n' "$a"
        printf 'hostssl   all  cert_user        %-14s cert\n' "$a"
        printf 'hostssl   all  scram_plus_user  %-14s scram-sha-256\n' "$a"
    done
}

# _pgc_tls_conf: the postgresql.conf lines for TLS with the test certificates.
_pgc_tls_conf() {
    cat <<EOF
ssl = on
ssl_cert_file = '$PGTEST_CERT_DIR/server.crt'
ssl_key_file = '$PGTEST_CERT_DIR/server.key'
ssl_ca_file = '$PGTEST_CERT_DIR/ca.crt'
EOF
}

cluster_start() {
    [[ -z "$PGC_CLUSTER_DIR" ]] || die "cluster_start: a cluster is already running ($PGC_CLUSTER_DIR)"
    [[ -n "${PG_BIN:-}" ]] || install_postgres_path
    id postgres >/dev/null 2>&1 || [[ $(id -u) -ne 0 ]] ||
        die "no OS user 'postgres' (install the postgresql package)"

    local tls=0
    if [[ -n "${PGTEST_CERT_DIR:-}" ]]; then
        [[ -f "$PGTEST_CERT_DIR/server.crt" && -f "$PGTEST_CERT_DIR/ca.crt" ]] ||
            die "PGTEST_CERT_DIR=$PGTEST_CERT_DIR has no server.crt/ca.crt (certs.sh's certs_make makes them)"
        tls=1
    fi

    local dir ipv6 listen addrs a extra=""
    dir=$(_pgc_cluster_dir pgtest) || die "could not make a cluster directory"
    PGC_CLUSTER_DIR="$dir"
    on_exit cluster_stop
    _pgc_initdb "$PG_BIN" "$dir"

    ipv6=$(_pgc_have_ipv6_loopback)
    # 127.0.0.2 needs no setup: Linux routes all of 127/8 to lo.
    listen="127.0.0.1,127.0.0.2"
    addrs=(127.0.0.1/32 127.0.0.2/32 ::1/128)
    [[ "$ipv6" == 1 ]] && listen+=",::1"

    {
        echo "# Written by scripts/lib/cluster.sh for the test suite."
        echo "# TYPE    DATABASE USER          ADDRESS        METHOD"
        echo "local     all  all                             trust"
        if [[ $tls -eq 1 ]]; then
            _pgc_hba_tls_lines "${addrs[@]}"
        else
            for a in "${addrs[@]}"; do
                printf 'host      all  tls_user         %-14s reject\n' "$a"
            done
        fi
        for a in "${addrs[@]}"; do
            printf 'host      all  trust_user       %-14s trust\n' "$a"
            printf 'host      all  pass_user        %-14s password\n' "$a"
            printf 'host      all  md5_user         %-14s md5\n' "$a"
            printf 'host      all  scram_user       %-14s scram-sha-256\n' "$a"
        done
        for a in "${addrs[@]}"; do
            printf 'host      all  all              %-14s scram-sha-256\n' "$a"
        done
    } >"$dir/data/pg_hba.conf"

    [[ $tls -eq 1 ]] && extra=$(_pgc_tls_conf)
    _pgc_launch "$PG_BIN" "$dir" "$listen" "$extra"
    local port="$_PGC_PORT"

    local psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir/sock" -p "$port" -U postgres)
    if ! "${psql[@]}" -d postgres >/dev/null <<'EOF'
CREATE ROLE trust_user LOGIN SUPERUSER;
CREATE ROLE pass_user LOGIN PASSWORD 'pass_secret';
SET password_encryption = 'md5';
CREATE ROLE md5_user LOGIN PASSWORD 'md5_secret';
SET password_encryption = 'scram-sha-256';
CREATE ROLE scram_user LOGIN PASSWORD 'scram_secret';
CREATE ROLE tls_user LOGIN PASSWORD 'tls_secret';
CREATE ROLE cert_user LOGIN;
CREATE ROLE scram_plus_user LOGIN PASSWORD 'scram_plus_secret';
CREATE DATABASE pgtest OWNER trust_user;
\connect pgtest
GRANT ALL ON SCHEMA public TO PUBLIC;
EOF
    then
        _pgc_print_log "$dir/postgres.log"
        die "creating the test roles and database failed"
    fi
    [[ $tls -eq 1 ]] && _pgc_check_tls 127.0.0.1 "$port" "$dir/postgres.log"

    export PGTEST_HOST=127.0.0.1
    export PGTEST_PORT="$port"
    export PGTEST_SOCKET_DIR="$dir/sock"
    export PGTEST_DB=pgtest
    export PGTEST_IPV6="$ipv6"
    export PGTEST_WRONG_HOST=127.0.0.2
    note "PostgreSQL $("$PG_BIN/postgres" -V | awk '{print $3}') on 127.0.0.1:$port, 127.0.0.2:$port$([[ $ipv6 == 1 ]] && echo " and [::1]:$port")$([[ $tls == 1 ]] && echo ", TLS on"), socket dir $dir/sock"
}

cluster_stop() {
    local dir="${PGC_CLUSTER_DIR:-}"
    [[ -n "$dir" ]] || return 0
    PGC_CLUSTER_DIR=""
    _pgc_stop_dir "$PG_BIN" "$dir"
}
