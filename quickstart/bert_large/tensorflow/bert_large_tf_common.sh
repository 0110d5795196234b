# shellcheck shell=bash source-path=SCRIPTDIR source-path=SCRIPTDIR/../../common
# Shared implementation of the BERT Large TensorFlow quickstarts. Sourced by the thin
# <precision>_<task>_training*.sh scripts beside it, which call
#
#     bert_tf_quickstart PRECISION TASK "$@"
#
# and by the inference packages' inference_realtime.sh, inference_throughput.sh and
# accuracy.sh, which call `bert_tf_inference KIND "$@"` (see that function).
#
# PRECISION: the script's precision as its name spells it (fp32, bfloat16), resolved through
# models/common/precisions.py against the precisions the package was built for; TASK: squad |
# squad_demo | classifier. Arguments after the script name are passed through to the Python
# script (later flags win, so `--max_seq_length=128` or `--mpi_workers_sync_gradients=True`
# override the defaults). -h/--help prints the usage and exits 0.
#
# Environment (checked before any work starts; a problem names the variable and exits 2; a
# failure of the training itself is its exit status):
#   CHECKPOINT_DIR     google-research BERT checkpoint folder: vocab.txt, bert_config.json,
#                      bert_model.ckpt.index, bert_model.ckpt.data-*
#   DATASET_DIR        squad: train-v1.1.json + dev-v1.1.json; squad_demo: mini-dev-v1.1.json;
#                      classifier: the GLUE MRPC folder (train.tsv, dev.tsv) or a GLUE folder
#                      holding MRPC/
#   OUTPUT_DIR         logs, checkpoints, predictions and metrics (created when missing)
#   MPI_NUM_PROCESSES  optional: number of MPI ranks (one per socket); read by the launcher
#   BATCH_SIZE         optional: per-rank training batch size
#   MPI_WORKERS_SYNC_GRADIENTS  optional: True = one model, gradients averaged across the
#                      ranks; False (default) = independent ranks, the best reported

# The folder holding this file: <package>/quickstart inside a package,
# quickstart/bert_large/tensorflow in the source tree.
_BERT_TF_QS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ -f "${_BERT_TF_QS_DIR}/lib.sh" ]]; then
    # shellcheck source=lib.sh
    source "${_BERT_TF_QS_DIR}/lib.sh"
elif [[ -f "${_BERT_TF_QS_DIR}/../../common/lib.sh" ]]; then
    # shellcheck source=lib.sh
    source "${_BERT_TF_QS_DIR}/../../common/lib.sh"
else
    echo "error: quickstart/lib.sh is missing next to ${BASH_SOURCE[0]}; extract the model package again" >&2
    exit 2
fi

# The package root (the repository in a source checkout), found once, before any cd.
_BERT_TF_PKG_DIR="$(qs_package_dir)"

# Name of the marker file that records which quickstart last used an OUTPUT_DIR.
BERT_TF_MARKER_FILE=".modelpkg_quickstart"

# bert_tf_check_checkpoint_dir: CHECKPOINT_DIR holds a google-research BERT checkpoint.
bert_tf_check_checkpoint_dir() {
    local what="the pretrained BERT model folder (vocab.txt, bert_config.json, bert_model.ckpt.*) from https://github.com/google-research/bert#pre-trained-models"
    require_dir CHECKPOINT_DIR "${what}"
    require_file CHECKPOINT_DIR "${CHECKPOINT_DIR}/vocab.txt" "${what}"
    require_file CHECKPOINT_DIR "${CHECKPOINT_DIR}/bert_config.json" "${what}"
    require_file CHECKPOINT_DIR "${CHECKPOINT_DIR}/bert_model.ckpt.index" "${what}"
    local data_files=("${CHECKPOINT_DIR}"/bert_model.ckpt.data-*)
    if [[ ! -f "${data_files[0]}" ]]; then
        qs_usage_error "${CHECKPOINT_DIR}/bert_model.ckpt.data-00000-of-00001 not found (no bert_model.ckpt.data-* file): CHECKPOINT_DIR must point to ${what}"
    fi
}

# bert_tf_python: prints the absolute path of python3. mpirun puts its own bin folder (e.g.
# /usr/bin) first on the ranks' PATH, where a bare "python3" could be another Python than the
# one with TensorFlow.
bert_tf_python() {
    qs_require_python
    local python
    python="$(python3 -c 'import sys; print(sys.executable)')"
    [[ -x "${python}" ]] || qs_usage_error "python3 -c 'import sys; print(sys.executable)' gave '${python}', not an executable; check your Python installation"
    echo "${python}"
}

# bert_tf_lower_case DIR...: sets BERT_TF_LOWER_CASE to True, or to False (with a note) when
# one of the folders is named like google's cased checkpoints (cased_L-* / wwm_cased_L-*),
# which need do_lower_case=False.
bert_tf_lower_case() {
    local dir
    BERT_TF_LOWER_CASE="True"
    for dir in "$@"; do
        case "$(basename "${dir}")" in
            cased_L-* | *_cased_L-*)
                echo "note: ${dir} is a cased checkpoint; using --do_lower_case=False"
                BERT_TF_LOWER_CASE="False"
                return 0
                ;;
        esac
    done
}

# bert_tf_log_file SCRIPT OUT_DIR: prints the log file name for a run of SCRIPT.
bert_tf_log_file() {
    echo "${2}/${1%.sh}_$(date +%Y%m%d_%H%M%S).log"
}

# bert_tf_mrpc_dir: prints the MRPC folder for DATASET_DIR (MRPC itself, or GLUE holding MRPC/).
bert_tf_mrpc_dir() {
    local candidate
    for candidate in "${DATASET_DIR}" "${DATASET_DIR}/MRPC"; do
        if [[ -f "${candidate}/train.tsv" && -f "${candidate}/dev.tsv" ]]; then
            (cd "${candidate}" && pwd)
            return 0
        fi
    done
    qs_usage_error "DATASET_DIR=${DATASET_DIR} has no MRPC data: neither ${DATASET_DIR}/train.tsv and dev.tsv nor ${DATASET_DIR}/MRPC/train.tsv and dev.tsv exist. Set DATASET_DIR to the GLUE MRPC folder (or the GLUE folder holding MRPC/)"
}

# bert_tf_missing_mini_dev DATA_DIR SCRIPT: the demo's file is not part of the SQuAD download;
# say what it is and how to make one (from dev-v1.1.json when that is in DATA_DIR).
bert_tf_missing_mini_dev() {
    local data_dir="$1" script="$2" hint
    hint="the demo trains and predicts on this small SQuAD v1.1 file (a few articles of dev-v1.1.json; see the README's SQuAD data section)"
    if [[ -f "${data_dir}/dev-v1.1.json" ]]; then
        hint+=". To cut one from your dev-v1.1.json: python3 -c 'import json; d = json.load(open(\"${data_dir}/dev-v1.1.json\")); d[\"data\"] = d[\"data\"][:2]; json.dump(d, open(\"${data_dir}/mini-dev-v1.1.json\", \"w\"))'"
        hint+=" - or run ${script/_demo/} for the full SQuAD training"
    fi
    qs_usage_error "${data_dir}/mini-dev-v1.1.json not found: DATASET_DIR must point to the folder holding mini-dev-v1.1.json; ${hint}"
}

# bert_tf_check_output_dir SCRIPT: warn when OUTPUT_DIR was used by another quickstart, or holds
# checkpoints/results of an unknown run; then record SCRIPT as its user.
bert_tf_check_output_dir() {
    local script="$1" marker="${OUTPUT_DIR}/${BERT_TF_MARKER_FILE}" previous=""
    if [[ -f "${marker}" ]]; then
        previous="$(head -n 1 "${marker}")"
        if [[ "${previous}" != "${script}" ]]; then
            qs_warn "OUTPUT_DIR=${OUTPUT_DIR} was used by ${previous}; its checkpoints or results may be picked up by ${script} or overwritten. Use a new empty OUTPUT_DIR for each kind of run."
        fi
    elif compgen -G "${OUTPUT_DIR}/checkpoint" >/dev/null \
        || compgen -G "${OUTPUT_DIR}/*.ckpt*" >/dev/null \
        || compgen -G "${OUTPUT_DIR}/*.weights.h5" >/dev/null \
        || compgen -G "${OUTPUT_DIR}/predictions.json" >/dev/null \
        || compgen -G "${OUTPUT_DIR}/eval_results*" >/dev/null; then
        qs_warn "OUTPUT_DIR=${OUTPUT_DIR} already holds checkpoints or results from an earlier run; they may be picked up by ${script} or overwritten. Use a new empty OUTPUT_DIR for each kind of run."
    fi
    printf '%s\n' "${script}" >"${marker}"
}

# bert_tf_usage SCRIPT PRECISION TASK PKG: what the script does and needs, for -h/--help.
bert_tf_usage() {
    local script="$1" precision="$2" task="$3" pkg="$4" data does supported
    case "${task}" in
        squad)
            data="the SQuAD v1.1 folder holding train-v1.1.json and dev-v1.1.json"
            does="fine-tunes BERT Large on SQuAD v1.1 (train-v1.1.json), then predicts and scores dev-v1.1.json"
            ;;
        squad_demo)
            data="the folder holding mini-dev-v1.1.json (SQuAD v1.1 format)"
            does="runs a short SQuAD demo: 0.01 epochs of fine-tuning on mini-dev-v1.1.json, then predicts and scores it"
            ;;
        *)
            data="the GLUE MRPC folder (train.tsv, dev.tsv) or the GLUE folder holding MRPC/"
            does="fine-tunes BERT Large on GLUE MRPC (train.tsv), then evaluates on dev.tsv"
            ;;
    esac
    supported="$(qs_precision_list tensorflow "${pkg}")"
    cat <<EOF
Usage: CHECKPOINT_DIR=... DATASET_DIR=... OUTPUT_DIR=... ./quickstart/${script} [--flag=value ...]

${script} ${does}.
Precision: ${precision} (this package's precisions: ${supported:-see models/common/precisions.py}).
It runs through models/common/launch.py (numactl binding; MPI ranks when MPI_NUM_PROCESSES > 1).

Required environment:
  CHECKPOINT_DIR     google-research BERT folder: vocab.txt, bert_config.json, bert_model.ckpt.*
  DATASET_DIR        ${data}
  OUTPUT_DIR         where checkpoints, predictions, metrics and logs go (created when missing)
Optional:
  MPI_NUM_PROCESSES  number of MPI processes, one per socket
  BATCH_SIZE         training batch size per process
Arguments after the script name go to the Python training script and override its defaults,
e.g. --num_train_epochs=1 --max_seq_length=128 --mpi_workers_sync_gradients=True
Exit status: 0 done, 2 a variable or argument to fix (nothing was started), else the training's.
EOF
}

# bert_tf_quickstart PRECISION TASK [PASS-THROUGH ARGS...]
bert_tf_quickstart() {
    local precision="$1" task="$2"
    shift 2
    local script
    script="$(basename "${BASH_SOURCE[1]}")"
    local pkg="${_BERT_TF_PKG_DIR}"
    if qs_wants_help "$@"; then
        bert_tf_usage "${script}" "${precision}" "${task}" "${pkg}"
        exit 0
    fi

    # --- validate everything before doing any work ---
    local model_precision
    model_precision="$(qs_resolve_precision "${precision}" tensorflow "${pkg}" precision \
        "${script} trains in ${precision}, which this package was not built for; run the quickstart of one of the precisions above")"
    bert_tf_check_checkpoint_dir
    require_dir DATASET_DIR "the dataset folder (see the Datasets section of the README)"
    require_env OUTPUT_DIR "a directory where checkpoints and log files will be saved"
    require_positive_int_or_unset MPI_NUM_PROCESSES
    require_positive_int_or_unset BATCH_SIZE
    local sync="${MPI_WORKERS_SYNC_GRADIENTS:-False}"
    case "${sync,,}" in
        true | 1) sync="True" ;;
        false | 0) sync="False" ;;
        *) qs_usage_error "MPI_WORKERS_SYNC_GRADIENTS=${sync} is not supported. Set it to True (one model, gradients averaged across the MPI ranks) or False (independent ranks), or unset it" ;;
    esac
    local python
    python="$(bert_tf_python)"

    local model_dir="${pkg}/models/bert_large/tensorflow"
    local ckpt_dir
    ckpt_dir="$(cd "${CHECKPOINT_DIR}" && pwd)"
    local data_dir
    data_dir="$(cd "${DATASET_DIR}" && pwd)"

    local python_script
    local -a task_args
    case "${task}" in
        squad | squad_demo)
            local train_file predict_file epochs
            if [[ "${task}" == "squad" ]]; then
                train_file="${data_dir}/train-v1.1.json"
                predict_file="${data_dir}/dev-v1.1.json"
                epochs=2
            else
                train_file="${data_dir}/mini-dev-v1.1.json"
                predict_file="${train_file}"
                epochs=0.01
            fi
            if [[ "${task}" == "squad_demo" && ! -f "${train_file}" ]]; then
                bert_tf_missing_mini_dev "${data_dir}" "${script}"
            fi
            require_file DATASET_DIR "${train_file}" "the folder holding the SQuAD v1.1 json files"
            require_file DATASET_DIR "${predict_file}" "the folder holding the SQuAD v1.1 json files"
            python_script="${model_dir}/run_squad.py"
            task_args=(
                "--do_train=True"
                "--train_file=${train_file}"
                "--do_predict=True"
                "--predict_file=${predict_file}"
                "--train_batch_size=${BATCH_SIZE:-24}"
                "--learning_rate=3e-5"
                "--num_train_epochs=${epochs}"
                "--max_seq_length=384"
                "--doc_stride=128"
                "--max_query_length=64"
            )
            ;;
        classifier)
            local mrpc_dir
            mrpc_dir="$(bert_tf_mrpc_dir)"
            python_script="${model_dir}/run_classifier.py"
            task_args=(
                "--task_name=MRPC"
                "--do_train=True"
                "--do_eval=True"
                "--data_dir=${mrpc_dir}"
                "--train_batch_size=${BATCH_SIZE:-32}"
                "--learning_rate=2e-5"
                "--num_train_epochs=3"
                "--max_seq_length=128"
            )
            ;;
        *) qs_usage_error "unknown task '${task}' in ${script} (expected squad, squad_demo or classifier)" ;;
    esac

    # A pass-through --do_lower_case=... still wins.
    bert_tf_lower_case "${ckpt_dir}"

    # --- work starts here ---
    ensure_output_dir OUTPUT_DIR
    local out_dir
    out_dir="$(cd "${OUTPUT_DIR}" && pwd)"
    bert_tf_check_output_dir "${script}"

    export PYTHONPATH="${pkg}${PYTHONPATH:+:${PYTHONPATH}}"
    local log_file
    log_file="$(bert_tf_log_file "${script}" "${out_dir}")"
    echo "Running ${script}: log in ${log_file}"

    print_and_run "${python}" "${pkg}/models/common/launch.py" --precision "${model_precision}" -- \
        "${python}" "${python_script}" \
        "--vocab_file=${ckpt_dir}/vocab.txt" \
        "--bert_config_file=${ckpt_dir}/bert_config.json" \
        "--init_checkpoint=${ckpt_dir}/bert_model.ckpt" \
        "--do_lower_case=${BERT_TF_LOWER_CASE}" \
        "${task_args[@]}" \
        "--warmup_proportion=0.1" \
        "--output_dir=${out_dir}" \
        "--precision=${model_precision}" \
        "--mpi_workers_sync_gradients=${sync}" \
        "$@" 2>&1 | tee -a "${log_file}"
    echo "${script} finished: outputs in ${out_dir}, log in ${log_file}"
}

# --- inference (bert-large-<precision>-inference packages) -------------------------------------

# bert_tf_inference_usage SCRIPT KIND PKG: what an inference quickstart does and needs.
bert_tf_inference_usage() {
    local script="$1" kind="$2" pkg="$3" does supported
    case "${kind}" in
        realtime) does="measures latency (p50/p90/p99) at batch size 1 with several instances of CORES_PER_INSTANCE cores each (default 4), and their aggregate throughput" ;;
        throughput) does="measures throughput (examples/sec) at a large batch (default 32) with one instance per socket (CORES_PER_INSTANCE cores each when set)" ;;
        *) does="predicts answers for dev-v1.1.json and reports exact match and F1 (official SQuAD v1.1 semantics)" ;;
    esac
    supported="$(qs_precision_list tensorflow "${pkg}")"
    cat <<USAGE
Usage: CHECKPOINT_DIR=... DATASET_DIR=... OUTPUT_DIR=... ./quickstart/${script} [--flag=value ...]

${script} ${does}, on SQuAD v1.1 with BERT Large.
Precision: PRECISION, default the package's (${supported:-see models/common/precisions.py}).
It runs models/bert_large/tensorflow/run_inference.py through models/common/launch.py
(numactl binding; instances pinned to their own cores).

Required environment:
  CHECKPOINT_DIR     a fine-tuned SQuAD checkpoint folder: run_squad.py's output (model.ckpt-N)
                     or a google/Intel-format TF1 checkpoint such as Intel's bert_large_checkpoints
  DATASET_DIR        the folder holding dev-v1.1.json
  OUTPUT_DIR         results (inference_results*.json), the SavedModel and logs (created when missing)
vocab.txt and bert_config.json are taken from CHECKPOINT_DIR, else DATASET_DIR.
Optional:
  BATCH_SIZE         windows per batch (realtime 1, throughput and accuracy 32)
  CORES_PER_INSTANCE physical cores per instance (realtime 4, or a socket's cores when fewer;
                     throughput: a whole socket)
  PRECISION          ${supported:-fp32 or bf16}
Arguments after the script name go to run_inference.py, e.g. --steps=50 --max_seq_length=384
Exit status: 0 done, 2 a variable or argument to fix (nothing was started), else the run's.
USAGE
}

# bert_tf_inference KIND [PASS-THROUGH ARGS...]: KIND realtime | throughput | accuracy.
bert_tf_inference() {
    local kind="$1"
    shift
    local script pkg="${_BERT_TF_PKG_DIR}"
    script="$(basename "${BASH_SOURCE[1]}")"
    if qs_wants_help "$@"; then
        bert_tf_inference_usage "${script}" "${kind}" "${pkg}"
        exit 0
    fi

    # --- validate everything before doing any work ---
    local precision="${PRECISION:-}" supported
    if [[ -z "${precision}" ]]; then
        supported="$(qs_precision_list tensorflow "${pkg}" " ")"
        if [[ "${supported}" == *" "* || -z "${supported}" ]]; then
            qs_usage_error "PRECISION is not set. Set PRECISION to one of: ${supported:-fp32 bf16} (a package built for one precision uses it by default)"
        fi
        precision="${supported}"
    fi
    local model_precision
    model_precision="$(qs_resolve_precision "${precision}" tensorflow "${pkg}")"
    local what="a fine-tuned SQuAD checkpoint folder (run_squad.py's output_dir, or Intel's bert_large_checkpoints)"
    require_dir CHECKPOINT_DIR "${what}"
    compgen -G "${CHECKPOINT_DIR}/*.index" >/dev/null \
        || qs_usage_error "CHECKPOINT_DIR=${CHECKPOINT_DIR} holds no checkpoint (no *.index file): set CHECKPOINT_DIR to ${what}"
    require_dir DATASET_DIR "the folder holding dev-v1.1.json"
    require_file DATASET_DIR "${DATASET_DIR}/dev-v1.1.json" "the folder holding the SQuAD v1.1 dev-v1.1.json"
    require_env OUTPUT_DIR "a directory where results and logs will be saved"
    require_positive_int_or_unset BATCH_SIZE
    if [[ -n "${CORES_PER_INSTANCE:-}" && "${CORES_PER_INSTANCE}" != "socket" && "${CORES_PER_INSTANCE}" != "auto" ]]; then
        require_positive_int_or_unset CORES_PER_INSTANCE
    fi
    local ckpt_dir data_dir vocab="" config="" dir
    ckpt_dir="$(cd "${CHECKPOINT_DIR}" && pwd)"
    data_dir="$(cd "${DATASET_DIR}" && pwd)"
    for dir in "${ckpt_dir}" "${data_dir}"; do
        [[ -n "${vocab}" || ! -f "${dir}/vocab.txt" ]] || vocab="${dir}/vocab.txt"
        [[ -n "${config}" || ! -f "${dir}/bert_config.json" ]] || config="${dir}/bert_config.json"
    done
    [[ -n "${vocab}" && -n "${config}" ]] \
        || qs_usage_error "vocab.txt and bert_config.json of the model were not found in CHECKPOINT_DIR=${CHECKPOINT_DIR} or DATASET_DIR=${DATASET_DIR}: copy them (from the pretrained model the checkpoint was fine-tuned from) into one of the two"
    local python
    python="$(bert_tf_python)"

    local -a launch_args=(--precision "${model_precision}") run_args
    case "${kind}" in
        realtime)
            # auto: Intel's 4 cores per instance, or a socket's cores when it has fewer
            launch_args+=(--numa-cores-per-instance "${CORES_PER_INSTANCE:-auto}")
            run_args=("--mode=benchmark" "--batch_size=${BATCH_SIZE:-1}")
            ;;
        throughput)
            launch_args+=(--numa-cores-per-instance "${CORES_PER_INSTANCE:-socket}")
            run_args=("--mode=benchmark" "--batch_size=${BATCH_SIZE:-32}")
            ;;
        accuracy)
            [[ -z "${CORES_PER_INSTANCE:-}" || "${CORES_PER_INSTANCE}" == "socket" ]] \
                || launch_args+=(--num-cores "${CORES_PER_INSTANCE}")
            run_args=("--mode=accuracy" "--batch_size=${BATCH_SIZE:-32}")
            ;;
        *) qs_usage_error "unknown inference kind '${kind}' in ${script} (expected realtime, throughput or accuracy)" ;;
    esac
    bert_tf_lower_case "${ckpt_dir}" "${data_dir}"

    # --- work starts here ---
    ensure_output_dir OUTPUT_DIR
    local out_dir log_file
    out_dir="$(cd "${OUTPUT_DIR}" && pwd)"
    [[ "${kind}" == "accuracy" ]] \
        || launch_args+=(--aggregate-file "${out_dir}/${script%.sh}_aggregate.json")
    export PYTHONPATH="${pkg}${PYTHONPATH:+:${PYTHONPATH}}"
    log_file="$(bert_tf_log_file "${script}" "${out_dir}")"
    echo "Running ${script}: log in ${log_file}"
    print_and_run "${python}" "${pkg}/models/common/launch.py" "${launch_args[@]}" -- \
        "${python}" "${pkg}/models/bert_large/tensorflow/run_inference.py" \
        "--vocab_file=${vocab}" \
        "--bert_config_file=${config}" \
        "--init_checkpoint=${ckpt_dir}" \
        "--predict_file=${data_dir}/dev-v1.1.json" \
        "--do_lower_case=${BERT_TF_LOWER_CASE}" \
        "--output_dir=${out_dir}" \
        "--precision=${model_precision}" \
        "${run_args[@]}" \
        "$@" 2>&1 | tee -a "${log_file}"
    echo "${script} finished: results in ${out_dir}, log in ${log_file}"
}
