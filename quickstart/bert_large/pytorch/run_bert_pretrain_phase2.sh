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
# Shared logic: bert_large_pt_common.sh.
set -euo pipefail

# shellcheck source=bert_large_pt_common.sh disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/bert_large_pt_common.sh"

# --- validate everything before any work ---------------------------------------------------
bert_pt_check_precision_and_dataset "seq_512/part-*" "seq_512/part-00000-of-00500"
require_dir CHECKPOINT_DIR "the model_save directory in phase 1's OUTPUT_DIR"
if [[ ! -f "${CHECKPOINT_DIR}/config.json" && -f "${CHECKPOINT_DIR}/model_save/config.json" ]]; then
    qs_die "CHECKPOINT_DIR=${CHECKPOINT_DIR} is phase 1's OUTPUT_DIR. Set CHECKPOINT_DIR to the model_save directory in it: export CHECKPOINT_DIR=${CHECKPOINT_DIR%/}/model_save"
fi
if [[ ! -f "${CHECKPOINT_DIR}/config.json" ]] && compgen -G "${CHECKPOINT_DIR}/*.index" >/dev/null; then
    qs_die "CHECKPOINT_DIR=${CHECKPOINT_DIR} holds a TensorFlow checkpoint. Phase 2 starts from the PyTorch model_save directory that phase 1 writes (config.json + model.safetensors); a TF checkpoint must be converted to a PyTorch model file first"
fi
for name in config.json model.safetensors; do
    require_file CHECKPOINT_DIR "${CHECKPOINT_DIR}/${name}" "the model_save directory written by phase 1 (it holds config.json and model.safetensors)"
done
if [[ -n "${OUTPUT_DIR:-}" && -d "${OUTPUT_DIR}/model_save" && "${OUTPUT_DIR}/model_save" -ef "${CHECKPOINT_DIR}" ]]; then
    qs_die "OUTPUT_DIR=${OUTPUT_DIR} is phase 1's OUTPUT_DIR (CHECKPOINT_DIR is its model_save): phase 2 would overwrite it. Set OUTPUT_DIR to a new directory for phase 2"
fi
bert_pt_check_output_dir "a new directory where log and model files of phase 2 will be written"

BATCH_SIZE="${BATCH_SIZE:-28}"
MAX_STEPS="${MAX_STEPS:-1563}"
GRADIENT_ACCUMULATION_STEPS="${GRADIENT_ACCUMULATION_STEPS:-1}"
LEARNING_RATE="${LEARNING_RATE:-4e-3}"

bert_pt_pretrain 2 0.128 --init_checkpoint="${CHECKPOINT_DIR}" "$@"
