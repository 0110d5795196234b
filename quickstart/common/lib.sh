#!/usr/bin/env bash
# Shared helpers for quickstart scripts. Sourced, never run. Every message names the
# variable and says what to set it to; every failure exits 1 before any work starts.
# shellcheck shell=bash

# Absolute path of the extracted model package (the folder holding quickstart/ and models/).
qs_package_dir() {
    local here
    here="$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)"
    # quickstart scripts live in <package>/quickstart/
    cd "${here}/.." && pwd
}

qs_die() {
    echo "error: $*" >&2
    exit 1
}

qs_warn() {
    echo "warning: $*" >&2
}

# qs_example_value VAR: a sample value for VAR in messages (by the name's suffix)
qs_example_value() {
    case "$1" in
        *_DIR) echo "/path/to/dir" ;;
        *_FILE) echo "/path/to/file" ;;
        *) echo "<value>" ;;
    esac
}

# require_env VAR "what it should point to" [EXAMPLE]
require_env() {
    local var="$1" what="$2" example="${3:-}"
    if [[ -z "${!var:-}" ]]; then
        [[ -n "${example}" ]] || example="$(qs_example_value "${var}")"
        qs_die "${var} is not set. Set ${var} to ${what}, e.g. export ${var}=${example}"
    fi
}

# require_dir VAR "what it should point to": set, and an existing directory
require_dir() {
    local var="$1" what="$2"
    require_env "${var}" "${what}"
    if [[ ! -d "${!var}" ]]; then
        qs_die "${var}=${!var} is not a directory. Set ${var} to ${what}"
    fi
}

# require_file VAR_OR_DESC PATH "what it is": an existing file
require_file() {
    local var="$1" path="$2" what="$3"
    if [[ -d "${path}" ]]; then
        qs_die "${path} is a directory, not a file: ${var} must point to ${what}"
    fi
    if [[ ! -f "${path}" ]]; then
        qs_die "${path} not found: ${var} must point to ${what}"
    fi
}

# require_int VAR: unset, or a positive integer
require_positive_int_or_unset() {
    local var="$1"
    if [[ -n "${!var:-}" && ! "${!var}" =~ ^[1-9][0-9]*$ ]]; then
        qs_die "${var}=${!var} is not a positive integer. Set ${var} to a number such as 2, or unset it"
    fi
}

# require_one_of VAR value... : set, and one of the listed values
require_one_of() {
    local var="$1"
    shift
    local allowed
    for allowed in "$@"; do
        if [[ "${!var:-}" == "${allowed}" ]]; then
            return 0
        fi
    done
    qs_die "${var}=${!var:-<unset>} is not supported. Set ${var} to one of: $*"
}

# ensure_output_dir VAR: create the directory when missing; fail when it cannot be created
ensure_output_dir() {
    local var="$1"
    require_env "${var}" "a directory where logs and checkpoints will be written"
    mkdir -p "${!var}" || qs_die "cannot create ${var}=${!var}; set ${var} to a writable directory"
}

# print_and_run CMD ARGS...: print the shell-quoted command, then run it
print_and_run() {
    printf '+'
    printf ' %q' "$@"
    printf '\n'
    "$@"
}
