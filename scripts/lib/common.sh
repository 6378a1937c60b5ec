# shellcheck shell=bash
# Shared helpers for the scripts in scripts/. Source it; it defines functions only.
#
#   repo_root        prints the repository root (the parent of scripts/)
#   note MSG...      prints "[scripts] MSG" to stderr
#   die MSG...       note + exit 1
#   on_exit CMD      runs CMD (a string, eval'd) when the shell exits, in reverse
#                    order of registration; also on INT/TERM/HUP. One EXIT trap
#                    serves every hook, so libraries never clobber each other's.
#   as_postgres CMD  runs CMD as the OS user `postgres` when we are root
#                    (initdb and postgres refuse to run as root), else as ourselves.

[[ -n "${_PGC_COMMON_SH:-}" ]] && return 0
_PGC_COMMON_SH=1

repo_root() {
    (cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
}

note() {
    printf '[scripts] %s\n' "$*" >&2
}

die() {
    note "error: $*"
    exit 1
}

_PGC_EXIT_HOOKS=()

_pgc_run_exit_hooks() {
    local rc=$?
    local i
    # Each hook runs once, even if a signal arrives while they run.
    trap - EXIT INT TERM HUP
    for ((i = ${#_PGC_EXIT_HOOKS[@]} - 1; i >= 0; i--)); do
        eval "${_PGC_EXIT_HOOKS[$i]}" || true
    done
    _PGC_EXIT_HOOKS=()
    return "$rc"
}

on_exit() {
    _PGC_EXIT_HOOKS+=("$1")
    if [[ ${#_PGC_EXIT_HOOKS[@]} -eq 1 ]]; then
        trap _pgc_run_exit_hooks EXIT
        # A signal turns into a normal exit so the EXIT hooks run.
        trap 'exit 130' INT
        trap 'exit 143' TERM
        trap 'exit 129' HUP
    fi
}

as_postgres() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}
