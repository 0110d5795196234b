# shellcheck shell=bash source-path=SCRIPTDIR source-path=SCRIPTDIR/../../common
# Shared part of the PyTorch BERT-Large pretraining quickstarts run_bert_pretrain_phase{1,2}.sh:
# sourced by them, never run. It sources lib.sh and sets pkg_dir (the package root, or the
# repository root in a source checkout, found by lib.sh's qs_package_dir); its functions read the
# arguments (-h/--help; the precision as the first argument), check the environment both phases
# read and start run_pretraining.py through the launcher.
#
# Exit status: 0 done (or -h/--help); 2 a variable or argument to fix, found before any work
# starts; otherwise the training's own status (1 for a failure while it runs).

# In a package: <pkg>/quickstart/{this,lib.sh}; in the repository: quickstart/bert_large/pytorch/
# and quickstart/common/lib.sh.
_bert_pt_qs_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -f "${_bert_pt_qs_dir}/lib.sh" ]]; then
    # shellcheck source=lib.sh disable=SC1091
    source "${_bert_pt_qs_dir}/lib.sh"
elif [[ -f "${_bert_pt_qs_dir}/../../common/lib.sh" ]]; then
    # shellcheck source=../../common/lib.sh disable=SC1091
    source "${_bert_pt_qs_dir}/../../common/lib.sh"
else
    echo "error: quickstart/lib.sh is missing next to ${BASH_SOURCE[0]}; extract the model package again" >&2
    exit 2
fi
pkg_dir="$(qs_package_dir)"

# Pass-through arguments for run_pretraining.py (the script's arguments after the precision).
bert_pt_args=()

# bert_pt_set_phase PHASE: the phase's settings. The defaults of the optional variables follow the
# LAMB recipe of NVIDIA's BERT pretraining (phase 1: 7038 steps, lr 6e-3, 28.43% warmup; phase 2:
# 1563 steps, lr 4e-3, 12.8% warmup; the predictions per sequence come from the data).
bert_pt_set_phase() {
    bert_pt_phase="$1"
    bert_pt_default_accumulation=1
    case "$1" in
        1)
            bert_pt_default_batch_size=224
            bert_pt_default_max_steps=7038
            bert_pt_default_learning_rate=6e-3
            bert_pt_warmup=0.2843
            ;;
        2)
            bert_pt_default_batch_size=28
            bert_pt_default_max_steps=1563
            bert_pt_default_learning_rate=4e-3
            bert_pt_warmup=0.128
            ;;
        *) qs_usage_error "unknown pretraining phase '$1' (expected 1 or 2)" ;;
    esac
}

# bert_pt_example_precision LIST: bf16 when the comma-separated LIST has it, else its first name.
bert_pt_example_precision() {
    local list="$1"
    if [[ ", ${list}, " == *", bf16, "* || -z "${list}" ]]; then
        echo bf16
    else
        echo "${list%%,*}"
    fi
}

# bert_pt_usage SCRIPT: what the script does and which variables it reads, for -h/--help.
bert_pt_usage() {
    local script="$1" precisions example does model_var model_line
    precisions="$(qs_precision_list pytorch "${pkg_dir}")"
    example="$(bert_pt_example_precision "${precisions}")"
    if [[ "${bert_pt_phase}" == 1 ]]; then
        does="BERT-Large pretraining phase 1: max_seq_len 128 (DATASET_DIR/seq_128/part-*_128), a new model from CONFIG_FILE; saves OUTPUT_DIR/model_save for phase 2"
        model_var=CONFIG_FILE
        model_line="CONFIG_FILE        bert_config.json, the model's configuration (see the README's Datasets section)"
    else
        does="BERT-Large pretraining phase 2: max_seq_len 512 (DATASET_DIR/seq_512/part-*), starting from phase 1's model; saves OUTPUT_DIR/model_save"
        model_var=CHECKPOINT_DIR
        model_line="CHECKPOINT_DIR     the model_save directory in phase 1's OUTPUT_DIR (config.json, model.safetensors)"
    fi
    cat <<EOF
Usage: ./quickstart/${script} [PRECISION] [run_pretraining.py flags ...]
       PRECISION=... OUTPUT_DIR=... DATASET_DIR=... ${model_var}=... ./quickstart/${script}

${does}.
It runs models/bert_large/pytorch/run_pretraining.py through models/common/launch.py (numactl
binding; MPI ranks when MPI_NUM_PROCESSES > 1; on NVIDIA GPUs one rank per GPU, DDP over NCCL).

Required:
  PRECISION          ${precisions:-see models/common/precisions.py} (aliases such as bfloat16 are accepted);
                     or give it as the first argument: ./quickstart/${script} ${example}
  OUTPUT_DIR         a new directory for the log and the model files (created when missing)
  DATASET_DIR        the preprocessed TF records directory holding seq_128/ and seq_512/
  ${model_line}
Optional:
  BATCH_SIZE         sequences per process per step (default ${bert_pt_default_batch_size})
  MAX_STEPS          training steps (default ${bert_pt_default_max_steps})
  GRADIENT_ACCUMULATION_STEPS  steps per optimizer update (default ${bert_pt_default_accumulation})
  LEARNING_RATE      peak learning rate of the LAMB schedule (default ${bert_pt_default_learning_rate})
  MPI_NUM_PROCESSES  number of MPI processes (see models/common/launch.py --help); on GPUs
                     default: one per GPU
  DEVICE             auto (default: the NVIDIA GPUs when torch sees one, else the CPU), cuda or cpu
Further arguments go to run_pretraining.py and override its defaults, e.g. --log_freq=10.
Exit status: 0 done, 2 a variable or argument to fix (nothing was started), else the training's.
EOF
}

# bert_pt_resolve_precision ARG SCRIPT: sets and exports PRECISION to the canonical name of the
# precision from the environment or from the first argument ARG (empty: none given). Both given
# and different, unset, or not supported by the package: exit 2.
bert_pt_resolve_precision() {
    local arg="$1" script="$2" from_env="" from_arg=""
    if [[ -z "${PRECISION:-}" && -z "${arg}" ]]; then
        local precisions example
        precisions="$(qs_precision_list pytorch "${pkg_dir}")"
        example="$(bert_pt_example_precision "${precisions}")"
        qs_usage_error "PRECISION is not set. Set PRECISION to one of ${precisions:-the precisions of models/common/precisions.py}, e.g. export PRECISION=${example}, or give it as the first argument: ./quickstart/${script} ${example}"
    fi
    if [[ -n "${PRECISION:-}" ]]; then
        from_env="$(qs_resolve_precision "${PRECISION}" pytorch "${pkg_dir}" PRECISION)"
    fi
    if [[ -n "${arg}" ]]; then
        from_arg="$(qs_resolve_precision "${arg}" pytorch "${pkg_dir}" PRECISION)"
    fi
    if [[ -n "${from_env}" && -n "${from_arg}" && "${from_env}" != "${from_arg}" ]]; then
        qs_usage_error "PRECISION=${PRECISION} is set but the first argument is ${arg}: give the precision once, as PRECISION or as the first argument (unset PRECISION, or run ./quickstart/${script} ${PRECISION})"
    fi
    PRECISION="${from_env:-${from_arg}}"
    export PRECISION
}

# bert_pt_start PHASE ARGS...: -h/--help (first, or after the precision) prints the usage and
# exits 0. A first argument not starting with "-" is the precision; the rest go to
# run_pretraining.py (bert_pt_args). Then PRECISION is resolved and DATASET_DIR checked (it holds
# the phase's seq_<len> records).
bert_pt_start() {
    bert_pt_set_phase "$1"
    shift
    local script arg=""
    script="$(basename "${BASH_SOURCE[1]}")"
    if [[ $# -gt 0 && "$1" != -* ]]; then
        arg="$1"
        shift
    fi
    if qs_wants_help "$@"; then
        bert_pt_usage "${script}"
        exit 0
    fi
    bert_pt_args=("$@")
    bert_pt_resolve_precision "${arg}" "${script}"
    bert_pt_check_device

    local glob example
    if [[ "${bert_pt_phase}" == 1 ]]; then
        glob="seq_128/part-*_128" example="seq_128/part-00000-of-00500_128"
    else
        glob="seq_512/part-*" example="seq_512/part-00000-of-00500"
    fi
    require_dir DATASET_DIR "the preprocessed dataset directory that holds seq_128/ and seq_512/"
    if ! compgen -G "${DATASET_DIR}/${glob}" >/dev/null; then
        qs_usage_error "no ${DATASET_DIR}/${glob} files. Set DATASET_DIR to the TF records directory (with ${example}, ...)"
    fi
}

# bert_pt_check_device: DEVICE (default auto) is auto, cuda or cpu; cuda needs an NVIDIA GPU that
# models/common/gpus.py finds (nvidia-smi -L or /proc/driver/nvidia/gpus). Sets and exports DEVICE.
bert_pt_check_device() {
    DEVICE="${DEVICE:-auto}"
    case "${DEVICE}" in
        auto | cuda | cpu) ;;
        *) qs_usage_error "DEVICE=${DEVICE} is not a device. Set DEVICE to auto (the default: the NVIDIA GPUs when torch sees one, else the CPU), cuda or cpu" ;;
    esac
    if [[ "${DEVICE}" == cuda ]] && ! python3 "${pkg_dir}/models/common/gpus.py" --list >/dev/null 2>&1; then
        qs_usage_error "DEVICE=cuda but no NVIDIA GPU is visible on this host (nvidia-smi -L and /proc/driver/nvidia/gpus list none${CUDA_VISIBLE_DEVICES+, CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES}}). Check the driver and start containers with --gpus all, or set DEVICE=cpu"
    fi
    export DEVICE
}

# bert_pt_require_file VAR "what the file is" EXAMPLE: VAR is set and names an existing file (not a
# directory); EXAMPLE is a sample value for the message.
bert_pt_require_file() {
    local var="$1" what="$2" example="$3"
    require_env "${var}" "the path to ${what}" "${example}"
    if [[ -d "${!var}" ]]; then
        qs_usage_error "${var}=${!var} is a directory. Set ${var} to the path to ${what} (the file itself)"
    fi
    require_file "${var}" "${!var}" "${what}"
}

# bert_pt_check_output_dir "what OUTPUT_DIR should be": OUTPUT_DIR is set and the optional
# integers are valid; only then is OUTPUT_DIR created (the last check).
bert_pt_check_output_dir() {
    require_env OUTPUT_DIR "$1"
    local var
    for var in BATCH_SIZE MAX_STEPS GRADIENT_ACCUMULATION_STEPS; do
        require_positive_int_or_unset "${var}"
    done
    ensure_output_dir OUTPUT_DIR
}

# bert_pt_pretrain MODEL_FLAG: run run_pretraining.py for the phase through the launcher with the
# quickstart's settings (DEVICE, BATCH_SIZE, MAX_STEPS, GRADIENT_ACCUMULATION_STEPS, LEARNING_RATE, or
# the phase's defaults), MODEL_FLAG (--bert_config_file=... or --init_checkpoint=...) and the
# pass-through arguments; the output is also written to OUTPUT_DIR/bert_pretrain_phase<PHASE>.log
# (appended to, so a resumed run keeps the earlier part).
bert_pt_pretrain() {
    local model_flag="$1"
    BATCH_SIZE="${BATCH_SIZE:-${bert_pt_default_batch_size}}"
    MAX_STEPS="${MAX_STEPS:-${bert_pt_default_max_steps}}"
    GRADIENT_ACCUMULATION_STEPS="${GRADIENT_ACCUMULATION_STEPS:-${bert_pt_default_accumulation}}"
    LEARNING_RATE="${LEARNING_RATE:-${bert_pt_default_learning_rate}}"
    # the interpreter's real path: mpirun may put another python3 first on PATH
    local python_bin
    python_bin="$(python3 -c 'import sys; print(sys.executable)')"
    export PYTHONPATH="${pkg_dir}${PYTHONPATH:+:${PYTHONPATH}}"

    # --device: one rank per GPU on CUDA (DEVICE checked by bert_pt_check_device)
    "${python_bin}" "${pkg_dir}/models/common/launch.py" --precision "${PRECISION}" --device "${DEVICE}" -- \
        "${python_bin}" "${pkg_dir}/models/bert_large/pytorch/run_pretraining.py" \
        --phase="${bert_pt_phase}" \
        --device="${DEVICE}" \
        "${model_flag}" \
        --input_dir="${DATASET_DIR}" \
        --output_dir="${OUTPUT_DIR}" \
        --precision="${PRECISION}" \
        --train_batch_size="${BATCH_SIZE}" \
        --gradient_accumulation_steps="${GRADIENT_ACCUMULATION_STEPS}" \
        --max_steps="${MAX_STEPS}" \
        --learning_rate="${LEARNING_RATE}" \
        --warmup_proportion="${bert_pt_warmup}" \
        "${bert_pt_args[@]}" 2>&1 | tee -a "${OUTPUT_DIR}/bert_pretrain_phase${bert_pt_phase}.log"
}
