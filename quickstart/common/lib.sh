#!/usr/bin/env bash
# Shared helpers for quickstart scripts. Sourced, never run. Every message names the
# variable and says what to set it to.
#
# Exit status (the same convention as the Python scripts):
#   0  success, and -h/--help
#   2  usage error, found before any work starts: a variable or argument missing or invalid,
#      a precision the package does not support, a variable naming a missing file or folder
#      (qs_usage_error; every require_* check and qs_resolve_precision use it)
#   1  a failure while the work runs (qs_die)
# shellcheck shell=bash

QS_USAGE_EXIT=2
QS_FAILURE_EXIT=1

# qs_usage_error MESSAGE: a problem the user fixes before running again; exit 2.
qs_usage_error() {
    echo "error: $*" >&2
    exit "${QS_USAGE_EXIT}"
}

# qs_die MESSAGE: a failure while the work runs; exit 1.
qs_die() {
    echo "error: $*" >&2
    exit "${QS_FAILURE_EXIT}"
}

qs_warn() {
    echo "warning: $*" >&2
}

# qs_package_dir: prints the package root, the nearest folder at or above the folder of the
# script that calls this function holding models/common/launch.py. That is the extracted package
# (lib.sh is <pkg>/quickstart/lib.sh) or, in a source checkout, the repository (lib.sh is
# quickstart/common/lib.sh). Use as: pkg="$(qs_package_dir)" (a separate assignment, so that a
# failure, exit 2, stops the script).
qs_package_dir() {
    local start dir
    start="$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)"
    dir="${start}"
    while [[ ! -f "${dir}/models/common/launch.py" ]]; do
        if [[ "${dir}" == "/" ]]; then
            qs_usage_error "models/common/launch.py not found in ${start} or any folder above it; run the quickstart from an extracted model package (its quickstart/ folder sits next to models/)"
        fi
        dir="$(dirname "${dir}")"
    done
    echo "${dir}"
}

# qs_require_python: python3 is on PATH (the precision query and the training need it).
qs_require_python() {
    command -v python3 >/dev/null \
        || qs_usage_error "python3 not found on PATH; install Python 3 with the framework the README names (see its Bare Metal section), or put it first on PATH"
}

# qs_resolve_precision VALUE FRAMEWORK PKG [WHAT [HINT]]: prints the canonical name of precision
# VALUE (aliases such as bfloat16 accepted) when the package PKG supports it (the "precisions" of
# PKG/package_info.json, else FRAMEWORK's list), asking PKG/models/common/precisions.py.
# Otherwise that script's error line (naming WHAT, default PRECISION, and the allowed values) and
# HINT are on stderr and the script exits 2. Use as: name="$(qs_resolve_precision ...)".
qs_resolve_precision() {
    local value="$1" framework="$2" pkg="$3" what="${4:-PRECISION}" hint="${5:-}" name rc=0
    qs_require_python
    name="$(python3 "${pkg}/models/common/precisions.py" resolve "${value}" \
        --framework "${framework}" --package-dir "${pkg}" --what "${what}")" || rc=$?
    if ((rc == QS_USAGE_EXIT)); then
        [[ -z "${hint}" ]] || echo "error: ${hint}" >&2
        exit "${QS_USAGE_EXIT}"
    elif ((rc != 0)) || [[ -z "${name}" ]]; then
        qs_usage_error "could not check ${what}=${value}: python3 ${pkg}/models/common/precisions.py exited ${rc}; check the Python installation and that the package is complete"
    fi
    echo "${name}"
}

# qs_precision_list FRAMEWORK PKG [SEPARATOR]: prints the precisions the package supports, joined
# by SEPARATOR (default ", "); prints nothing when python3 cannot answer (for help texts).
qs_precision_list() {
    local framework="$1" pkg="$2" sep="${3:-, }" names
    command -v python3 >/dev/null || return 0
    names="$(python3 "${pkg}/models/common/precisions.py" list --framework "${framework}" \
        --package-dir "${pkg}" 2>/dev/null)" || return 0
    local joined="" name
    while IFS= read -r name; do
        if [[ -n "${name}" ]]; then
            joined+="${joined:+${sep}}${name}"
        fi
    done <<<"${names}"
    echo "${joined}"
}

# qs_wants_help ARGS...: true when the first argument is -h or --help.
qs_wants_help() {
    [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]
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
        qs_usage_error "${var} is not set. Set ${var} to ${what}, e.g. export ${var}=${example}"
    fi
}

# require_dir VAR "what it should point to": set, and an existing directory
require_dir() {
    local var="$1" what="$2"
    require_env "${var}" "${what}"
    if [[ ! -d "${!var}" ]]; then
        qs_usage_error "${var}=${!var} is not a directory. Set ${var} to ${what}"
    fi
}

# require_file VAR_OR_DESC PATH "what it is": an existing file
require_file() {
    local var="$1" path="$2" what="$3"
    if [[ -d "${path}" ]]; then
        qs_usage_error "${path} is a directory, not a file: ${var} must point to ${what}"
    fi
    if [[ ! -f "${path}" ]]; then
        qs_usage_error "${path} not found: ${var} must point to ${what}"
    fi
}

# require_positive_int_or_unset VAR: unset, or a positive integer
require_positive_int_or_unset() {
    local var="$1"
    if [[ -n "${!var:-}" && ! "${!var}" =~ ^[1-9][0-9]*$ ]]; then
        qs_usage_error "${var}=${!var} is not a positive integer. Set ${var} to a number such as 2, or unset it"
    fi
}

# require_one_of VAR value... : set, and one of the listed values (not for precisions: use
# qs_resolve_precision, which knows the package's precisions and their aliases)
require_one_of() {
    local var="$1"
    shift
    local allowed
    for allowed in "$@"; do
        if [[ "${!var:-}" == "${allowed}" ]]; then
            return 0
        fi
    done
    qs_usage_error "${var}=${!var:-<unset>} is not supported. Set ${var} to one of: $*"
}

# ensure_output_dir VAR: create the directory when missing (the last check before the work);
# exit 2 when it cannot be created
ensure_output_dir() {
    local var="$1"
    require_env "${var}" "a directory where logs and checkpoints will be written"
    mkdir -p "${!var}" \
        || qs_usage_error "cannot create ${var}=${!var}; set ${var} to a writable directory"
}

# print_and_run CMD ARGS...: print the shell-quoted command (URL credentials hidden), then run it
print_and_run() {
    local line
    line="$(printf ' %q' "$@")"
    # hide the secret part of URLs (http://user:password@host -> http://user:***@host)
    printf '+%s\n' "$(sed -E -e 's#([A-Za-z][A-Za-z0-9+.-]*://)([^/@[:space:]:]*):([^/@[:space:]]*)@#\1\2:***@#g' \
        -e 's#([A-Za-z][A-Za-z0-9+.-]*://)([^/@[:space:]:]+)@#\1***@#g' <<<"${line}")"
    "$@"
}
