#!/usr/bin/env bash
# BERT-Large pretraining phase 2: max_seq_len 512 (DATASET_DIR/seq_512/part-*), starting from
# phase 1's model (CHECKPOINT_DIR = phase 1's OUTPUT_DIR/model_save); saves OUTPUT_DIR/model_save.
#
#   ./run_bert_pretrain_phase2.sh [PRECISION] [run_pretraining.py flags ...]
#
# Required: PRECISION (the variable, or the first argument; ./run_bert_pretrain_phase2.sh --help
#           lists the precisions this package supports), OUTPUT_DIR, DATASET_DIR, CHECKPOINT_DIR.
# Optional: BATCH_SIZE (sequences per process per step, default 28), MAX_STEPS (default 1563),
#           GRADIENT_ACCUMULATION_STEPS (default 1), LEARNING_RATE (default 4e-3),
#           MPI_NUM_PROCESSES (ranks; see the launcher), DEVICE (auto, cuda or cpu; auto: the
#           NVIDIA GPUs, one rank each, when torch sees them). Further arguments go to
#           run_pretraining.py. Defaults follow the LAMB recipe of NVIDIA's BERT pretraining
#           (bert_pt_set_phase in bert_large_pt_common.sh, the shared logic, holds them).
# Exit status: 0 done or --help, 2 a variable or argument to fix (before any work), else the
# training's.
set -euo pipefail

# shellcheck source=bert_large_pt_common.sh disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/bert_large_pt_common.sh"

# --- validate everything before any work ---------------------------------------------------
bert_pt_start 2 "$@"
require_dir CHECKPOINT_DIR "the model_save directory in phase 1's OUTPUT_DIR"
if [[ ! -f "${CHECKPOINT_DIR}/config.json" && -f "${CHECKPOINT_DIR}/model_save/config.json" ]]; then
    qs_usage_error "CHECKPOINT_DIR=${CHECKPOINT_DIR} is phase 1's OUTPUT_DIR. Set CHECKPOINT_DIR to the model_save directory in it: export CHECKPOINT_DIR=${CHECKPOINT_DIR%/}/model_save"
fi
if [[ ! -f "${CHECKPOINT_DIR}/config.json" ]] && compgen -G "${CHECKPOINT_DIR}/*.index" >/dev/null; then
    qs_usage_error "CHECKPOINT_DIR=${CHECKPOINT_DIR} holds a TensorFlow checkpoint. Phase 2 starts from the PyTorch model_save directory that phase 1 writes (config.json + model.safetensors); a TF checkpoint must be converted to a PyTorch model file first"
fi
for name in config.json model.safetensors; do
    require_file CHECKPOINT_DIR "${CHECKPOINT_DIR}/${name}" "the model_save directory written by phase 1 (it holds config.json and model.safetensors)"
done
if [[ -n "${OUTPUT_DIR:-}" && -d "${OUTPUT_DIR}/model_save" && "${OUTPUT_DIR}/model_save" -ef "${CHECKPOINT_DIR}" ]]; then
    qs_usage_error "OUTPUT_DIR=${OUTPUT_DIR} is phase 1's OUTPUT_DIR (CHECKPOINT_DIR is its model_save): phase 2 would overwrite it. Set OUTPUT_DIR to a new directory for phase 2"
fi
bert_pt_check_output_dir "a new directory where log and model files of phase 2 will be written"

bert_pt_pretrain --init_checkpoint="${CHECKPOINT_DIR}"
