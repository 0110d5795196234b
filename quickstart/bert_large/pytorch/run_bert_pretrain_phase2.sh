#!/usr/bin/env bash
# BERT-Large pretraining phase 2: max_seq_len 512 (DATASET_DIR/seq_512/part-*), starting from
# phase 1's model (CHECKPOINT_DIR = phase 1's OUTPUT_DIR/model_save); saves OUTPUT_DIR/model_save.
#
# Required: PRECISION (fp32 | avx-fp32 | bf16 | bf32), OUTPUT_DIR, DATASET_DIR, CHECKPOINT_DIR.
# Optional: BATCH_SIZE (sequences per process per step, default 28), MAX_STEPS (default 1563),
#           GRADIENT_ACCUMULATION_STEPS (default 1), LEARNING_RATE (default 4e-3),
#           MPI_NUM_PROCESSES (ranks; see the launcher), further run_pretraining.py flags as
#           arguments. Defaults follow the LAMB recipe of NVIDIA's BERT pretraining (phase 2:
#           1563 steps, lr 4e-3, 12.8% warmup, 80 predictions per sequence from the data).
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
if ! compgen -G "${DATASET_DIR}/seq_512/part-*" >/dev/null; then
    qs_die "no ${DATASET_DIR}/seq_512/part-* files. Set DATASET_DIR to the TF records directory (with seq_512/part-00000-of-00500, ...)"
fi
require_dir CHECKPOINT_DIR "the model_save directory in phase 1's OUTPUT_DIR"
for name in config.json model.safetensors; do
    require_file CHECKPOINT_DIR "${CHECKPOINT_DIR}/${name}" "the model_save directory written by phase 1 (it holds config.json and model.safetensors)"
done
require_env OUTPUT_DIR "a new directory where log and model files of phase 2 will be written"
for var in BATCH_SIZE MAX_STEPS GRADIENT_ACCUMULATION_STEPS; do
    require_positive_int_or_unset "${var}"
done
ensure_output_dir OUTPUT_DIR

BATCH_SIZE="${BATCH_SIZE:-28}"
MAX_STEPS="${MAX_STEPS:-1563}"
GRADIENT_ACCUMULATION_STEPS="${GRADIENT_ACCUMULATION_STEPS:-1}"
LEARNING_RATE="${LEARNING_RATE:-4e-3}"

# the interpreter's real path: mpirun may put another python3 first on PATH
python_bin="$(python3 -c 'import sys; print(sys.executable)')"
export PYTHONPATH="${pkg_dir}${PYTHONPATH:+:${PYTHONPATH}}"

"${python_bin}" "${pkg_dir}/models/common/launch.py" --precision "${PRECISION}" -- \
    "${python_bin}" "${pkg_dir}/models/bert_large/pytorch/run_pretraining.py" \
    --phase=2 \
    --init_checkpoint="${CHECKPOINT_DIR}" \
    --input_dir="${DATASET_DIR}" \
    --output_dir="${OUTPUT_DIR}" \
    --precision="${PRECISION}" \
    --train_batch_size="${BATCH_SIZE}" \
    --gradient_accumulation_steps="${GRADIENT_ACCUMULATION_STEPS}" \
    --max_steps="${MAX_STEPS}" \
    --learning_rate="${LEARNING_RATE}" \
    --warmup_proportion=0.128 \
    "$@" 2>&1 | tee "${OUTPUT_DIR}/bert_pretrain_phase2.log"
