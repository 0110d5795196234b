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
# Shared logic: bert_large_pt_common.sh.
set -euo pipefail

# shellcheck source=bert_large_pt_common.sh disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/bert_large_pt_common.sh"

# --- validate everything before any work ---------------------------------------------------
bert_pt_check_precision_and_dataset "seq_128/part-*_128" "seq_128/part-00000-of-00500_128"
bert_pt_require_file CONFIG_FILE "bert_config.json (see the README's Datasets section)" /path/to/bert_config.json
bert_pt_check_output_dir "a directory where log and model files will be written"

BATCH_SIZE="${BATCH_SIZE:-224}"
MAX_STEPS="${MAX_STEPS:-7038}"
GRADIENT_ACCUMULATION_STEPS="${GRADIENT_ACCUMULATION_STEPS:-1}"
LEARNING_RATE="${LEARNING_RATE:-6e-3}"

bert_pt_pretrain 1 0.2843 --bert_config_file="${CONFIG_FILE}" "$@"
