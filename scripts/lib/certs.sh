# shellcheck shell=bash
# Test certificates, made afresh with openssl at every run. Source it, then:
#
#   certs_make   makes the files below in a new temporary directory, exports
#                PGTEST_CERT_DIR=<that directory> and registers its removal at
#                shell exit. Takes a fraction of a second (ECDSA keys).
#
# Every key is ECDSA P-256 in PKCS#8 PEM ("BEGIN PRIVATE KEY"); every
# certificate is X.509 v3, signed with ecdsa-with-SHA256 (so the
# tls-server-end-point channel binding hashes with SHA-256).
#
#   ca.crt ca.key            root CA "pgtest CA" (CA:TRUE, keyCertSign)
#   server.crt server.key    CN=localhost, signed by ca; SAN DNS:localhost,
#                            IP:127.0.0.1, IP:::1 (not 127.0.0.2); EKU serverAuth;
#                            valid from a day ago for 10 years
#   client.crt client.key    CN=cert_user, signed by ca; EKU clientAuth (for the
#                            `cert` auth method)
#   wrong_client.key         a key that does not match client.crt
#   other_ca.crt             an unrelated self-signed CA (did not sign anything here)
#   selfsigned.crt .key      self-signed (not from ca) CN=localhost, same SAN as
#                            server.crt, CA:FALSE, EKU serverAuth
#   expired.crt expired.key  signed by ca, same subject and SAN as server.crt,
#                            valid 2020-01-01 .. 2021-01-01 only
#
# Permissions: the directory and the certificates are world-readable. Keys:
# when we are root they are owned by root, group postgres, mode 0640 -
# PostgreSQL (server and libpq) accepts a key that is either owned by the user
# who reads it with mode 0600, or owned by root with mode 0640; the server runs
# as postgres and the tests as root, so this one file serves both. Not root:
# mode 0600, owned by us (the server then runs as us too).

[[ -n "${_PGC_CERTS_SH:-}" ]] && return 0
_PGC_CERTS_SH=1

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PGC_CERTS_DIR=""

# _pgc_openssl ARGS...: runs openssl, its chatter kept unless it fails.
_pgc_openssl() {
    local out
    if ! out=$(openssl "$@" 2>&1); then
        printf '%s\n' "$out" >&2
        die "openssl $1 failed (openssl $*)"
    fi
}

# _pgc_certs_key FILE: a new ECDSA P-256 key, PKCS#8 PEM.
_pgc_certs_key() {
    _pgc_openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
}

certs_make() {
    [[ -z "$PGC_CERTS_DIR" ]] || die "certs_make: certificates already made ($PGC_CERTS_DIR)"
    command -v openssl >/dev/null 2>&1 || die "openssl not found (install.sh's install_openssl installs it)"

    local dir
    dir=$(mktemp -d -t pgtest-certs.XXXXXXXX)
    PGC_CERTS_DIR="$dir"
    on_exit certs_remove
    chmod 755 "$dir"

    local cnf="$dir/.openssl.cnf" db="$dir/.ca-db"
    mkdir "$db"
    : >"$db/index.txt"
    # Random serials: a client that caches anything by issuer+serial never
    # sees two of our runs' certificates collide.
    openssl rand -hex 16 >"$db/serial"

    # Our own config, so the system's openssl.cnf adds nothing. `openssl ca`
    # signs everything from ca: it alone can set a validity in the past
    # (OpenSSL 3.0's `x509 -req` has no negative -days and no -not_after).
    cat >"$cnf" <<EOF
[ req ]
distinguished_name = req_dn
prompt             = no
[ req_dn ]
CN = unused

[ ca ]
default_ca = pgtest_ca
[ pgtest_ca ]
database        = $db/index.txt
new_certs_dir   = $db
serial          = $db/serial
certificate     = $dir/ca.crt
private_key     = $dir/ca.key
default_md      = sha256
policy          = policy_any
unique_subject  = no
copy_extensions = none
email_in_dn     = no
[ policy_any ]
commonName = supplied

[ v3_ca ]
basicConstraints       = critical, CA:TRUE
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash

[ v3_server ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid

[ v3_client ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = clientAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid

# Self-signed leaf: no keyUsage, so OpenSSL still sees it as self-issued when
# it is given as its own trust anchor (sslrootcert=selfsigned.crt).
[ v3_selfsigned ]
basicConstraints       = critical, CA:FALSE
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier   = hash
EOF

    local since
    since=$(date -u -d '1 day ago' +%Y%m%d%H%M%SZ)

    # Root CAs (self-signed, 20 years).
    _pgc_certs_key "$dir/ca.key"
    _pgc_openssl req -config "$cnf" -new -x509 -sha256 -days 7300 -key "$dir/ca.key" \
        -subj "/CN=pgtest CA" -extensions v3_ca -out "$dir/ca.crt"
    _pgc_certs_key "$dir/other_ca.key"
    _pgc_openssl req -config "$cnf" -new -x509 -sha256 -days 7300 -key "$dir/other_ca.key" \
        -subj "/CN=pgtest other CA" -extensions v3_ca -out "$dir/other_ca.crt"
    rm -f "$dir/other_ca.key"

    # _sign NAME CN EXTENSIONS START END: NAME.key + a certificate from ca.
    _sign() {
        _pgc_certs_key "$dir/$1.key"
        _pgc_openssl req -config "$cnf" -new -key "$dir/$1.key" -subj "/CN=$2" -out "$db/$1.csr"
        _pgc_openssl ca -config "$cnf" -batch -notext -md sha256 -extensions "$3" \
            -startdate "$4" -enddate "$5" -in "$db/$1.csr" -out "$dir/$1.crt"
    }
    _sign server localhost v3_server "$since" "$(date -u -d '10 years' +%Y%m%d%H%M%SZ)"
    _sign client cert_user v3_client "$since" "$(date -u -d '10 years' +%Y%m%d%H%M%SZ)"
    _sign expired localhost v3_server 20200101000000Z 20210101000000Z
    unset -f _sign

    _pgc_certs_key "$dir/wrong_client.key"

    _pgc_certs_key "$dir/selfsigned.key"
    _pgc_openssl req -config "$cnf" -new -x509 -sha256 -days 3650 -key "$dir/selfsigned.key" \
        -subj "/CN=localhost" -extensions v3_selfsigned -out "$dir/selfsigned.crt"

    rm -rf "$db" "$cnf"

    # Sanity: what the tests rely on.
    _pgc_openssl verify -CAfile "$dir/ca.crt" -purpose sslserver "$dir/server.crt"
    _pgc_openssl verify -CAfile "$dir/ca.crt" -purpose sslclient "$dir/client.crt"
    _pgc_openssl verify -CAfile "$dir/selfsigned.crt" -purpose sslserver "$dir/selfsigned.crt"
    if openssl verify -CAfile "$dir/ca.crt" "$dir/expired.crt" >/dev/null 2>&1; then
        die "certs_make: expired.crt verifies as valid"
    fi
    if openssl verify -CAfile "$dir/other_ca.crt" "$dir/server.crt" >/dev/null 2>&1; then
        die "certs_make: server.crt verifies against other_ca.crt"
    fi
    [[ "$(openssl pkey -in "$dir/client.key" -pubout 2>/dev/null)" != \
    "$(openssl pkey -in "$dir/wrong_client.key" -pubout 2>/dev/null)" ]] ||
        die "certs_make: wrong_client.key matches client.key"

    chmod 644 "$dir"/*.crt
    if [[ $(id -u) -eq 0 ]] && id postgres >/dev/null 2>&1; then
        chown root:postgres "$dir"/*.key
        chmod 640 "$dir"/*.key
    else
        chmod 600 "$dir"/*.key
    fi

    export PGTEST_CERT_DIR="$dir"
}

certs_remove() {
    local dir="${PGC_CERTS_DIR:-}"
    [[ -n "$dir" ]] || return 0
    PGC_CERTS_DIR=""
    rm -rf "$dir"
}
