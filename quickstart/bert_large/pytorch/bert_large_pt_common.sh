# shellcheck shell=bash source-path=SCRIPTDIR source-path=SCRIPTDIR/../../common
# Shared part of the PyTorch BERT-Large pretraining quickstarts run_bert_pretrain_phase{1,2}.sh:
# sourced by them, never run. It sources lib.sh and sets pkg_dir (the package root, or the
# repository root in a source checkout); its functions check the environment both phases read
# and start run_pretraining.py through the launcher.

# In a package: <pkg>/quickstart/{this,lib.sh}; in the repository: quickstart/bert_large/pytorch/.
_bert_pt_qs_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -f "${_bert_pt_qs_dir}/lib.sh" ]]; then
    pkg_dir="$(cd "${_bert_pt_qs_dir}/.." && pwd)"
    # shellcheck source=lib.sh disable=SC1091
    source "${_bert_pt_qs_dir}/lib.sh"
else
    pkg_dir="$(cd "${_bert_pt_qs_dir}/../../.." && pwd)"
    # shellcheck source=../../common/lib.sh disable=SC1091
    source "${pkg_dir}/quickstart/common/lib.sh"
fi

# bert_pt_check_precision_and_dataset GLOB EXAMPLE: PRECISION is supported, and DATASET_DIR holds
# files matching DATASET_DIR/GLOB (EXAMPLE names one such file in the error message).
bert_pt_check_precision_and_dataset() {
    local glob="$1" example="$2"
    require_env PRECISION "one of fp32, avx-fp32, bf16, bf32" bf16
    require_one_of PRECISION fp32 avx-fp32 bf16 bf32
    require_dir DATASET_DIR "the preprocessed dataset directory that holds seq_128/ and seq_512/"
    if ! compgen -G "${DATASET_DIR}/${glob}" >/dev/null; then
        qs_die "no ${DATASET_DIR}/${glob} files. Set DATASET_DIR to the TF records directory (with ${example}, ...)"
    fi
}

# bert_pt_require_file VAR "what the file is" EXAMPLE: VAR is set and names an existing file (not a
# directory); EXAMPLE is a sample value for the message.
bert_pt_require_file() {
    local var="$1" what="$2" example="$3"
    require_env "${var}" "the path to ${what}" "${example}"
    if [[ -d "${!var}" ]]; then
        qs_die "${var}=${!var} is a directory. Set ${var} to the path to ${what} (the file itself)"
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

# bert_pt_pretrain PHASE WARMUP_PROPORTION MODEL_FLAG [ARGS...]: run run_pretraining.py for PHASE
# through the launcher with the quickstart's settings (BATCH_SIZE, MAX_STEPS,
# GRADIENT_ACCUMULATION_STEPS, LEARNING_RATE: the caller sets their defaults), MODEL_FLAG
# (--bert_config_file=... or --init_checkpoint=...) and ARGS; the output is also written to
# OUTPUT_DIR/bert_pretrain_phase<PHASE>.log (appended to, so a resumed run keeps the earlier
# part).
bert_pt_pretrain() {
    local phase="$1" warmup="$2" model_flag="$3"
    shift 3
    # the interpreter's real path: mpirun may put another python3 first on PATH
    local python_bin
    python_bin="$(python3 -c 'import sys; print(sys.executable)')"
    export PYTHONPATH="${pkg_dir}${PYTHONPATH:+:${PYTHONPATH}}"

    "${python_bin}" "${pkg_dir}/models/common/launch.py" --precision "${PRECISION}" -- \
        "${python_bin}" "${pkg_dir}/models/bert_large/pytorch/run_pretraining.py" \
        --phase="${phase}" \
        "${model_flag}" \
        --input_dir="${DATASET_DIR}" \
        --output_dir="${OUTPUT_DIR}" \
        --precision="${PRECISION}" \
        --train_batch_size="${BATCH_SIZE}" \
        --gradient_accumulation_steps="${GRADIENT_ACCUMULATION_STEPS}" \
        --max_steps="${MAX_STEPS}" \
        --learning_rate="${LEARNING_RATE}" \
        --warmup_proportion="${warmup}" \
        "$@" 2>&1 | tee -a "${OUTPUT_DIR}/bert_pretrain_phase${phase}.log"
}
