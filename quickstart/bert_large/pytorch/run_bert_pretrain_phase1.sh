#!/usr/bin/env bash
# BERT-Large pretraining phase 1: max_seq_len 128 (DATASET_DIR/seq_128/part-*_128), a new model
# from CONFIG_FILE (bert_config.json); saves OUTPUT_DIR/model_save for phase 2.
#
# Required: PRECISION (fp32 | avx-fp32 | bf16 | bf32), OUTPUT_DIR, DATASET_DIR, CONFIG_FILE.
# Optional: BATCH_SIZE (sequences per process per step, default 224), MAX_STEPS (default 7038),
#           GRADIENT_ACCUMULATION_STEPS (default 1), LEARNING_RATE (default 6e-3),
#           MPI_NUM_PROCESSES (ranks; see the launcher), further run_pretraining.py flags as
#           arguments. Defaults follow the LAMB recipe of NVIDIA's BERT pretraining (phase 1:
#           7038 steps, lr 6e-3, 28.43% warmup, 20 predictions per sequence from the data).
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# In a package: <pkg>/quickstart/{this,lib.sh}; in the repository: quickstart/bert_large/pytorch/.
if [[ -f "${script_dir}/lib.sh" ]]; then
    pkg_dir="$(cd "${script_dir}/.." && pwd)"
    lib="${script_dir}/lib.sh"
else
    pkg_dir="$(cd "${script_dir}/../../.." && pwd)"
    lib="${pkg_dir}/quickstart/common/lib.sh"
fi
# shellcheck source=/dev/null
source "${lib}"

# --- validate everything before any work ---------------------------------------------------
require_env PRECISION "one of fp32, avx-fp32, bf16, bf32"
require_one_of PRECISION fp32 avx-fp32 bf16 bf32
require_dir DATASET_DIR "the preprocessed dataset directory that holds seq_128/ and seq_512/"
if ! compgen -G "${DATASET_DIR}/seq_128/part-*_128" >/dev/null; then
    qs_die "no ${DATASET_DIR}/seq_128/part-*_128 files. Set DATASET_DIR to the TF records directory (with seq_128/part-00000-of-00500_128, ...)"
fi
require_env CONFIG_FILE "the path to bert_config.json (see the README's Datasets section)"
require_file CONFIG_FILE "${CONFIG_FILE}" "bert_config.json (see the README's Datasets section)"
require_env OUTPUT_DIR "a directory where log and model files will be written"
for var in BATCH_SIZE MAX_STEPS GRADIENT_ACCUMULATION_STEPS; do
    require_positive_int_or_unset "${var}"
done
ensure_output_dir OUTPUT_DIR

BATCH_SIZE="${BATCH_SIZE:-224}"
MAX_STEPS="${MAX_STEPS:-7038}"
GRADIENT_ACCUMULATION_STEPS="${GRADIENT_ACCUMULATION_STEPS:-1}"
LEARNING_RATE="${LEARNING_RATE:-6e-3}"

# the interpreter's real path: mpirun may put another python3 first on PATH
python_bin="$(python3 -c 'import sys; print(sys.executable)')"
export PYTHONPATH="${pkg_dir}${PYTHONPATH:+:${PYTHONPATH}}"

"${python_bin}" "${pkg_dir}/models/common/launch.py" --precision "${PRECISION}" -- \
    "${python_bin}" "${pkg_dir}/models/bert_large/pytorch/run_pretraining.py" \
    --phase=1 \
    --bert_config_file="${CONFIG_FILE}" \
    --input_dir="${DATASET_DIR}" \
    --output_dir="${OUTPUT_DIR}" \
    --precision="${PRECISION}" \
    --train_batch_size="${BATCH_SIZE}" \
    --gradient_accumulation_steps="${GRADIENT_ACCUMULATION_STEPS}" \
    --max_steps="${MAX_STEPS}" \
    --learning_rate="${LEARNING_RATE}" \
    --warmup_proportion=0.2843 \
    "$@" 2>&1 | tee "${OUTPUT_DIR}/bert_pretrain_phase1.log"
