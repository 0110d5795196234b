#!/usr/bin/env bash
# BERT-Large pretraining phase 1: max_seq_len 128 (DATASET_DIR/seq_128/part-*_128), a new model
# from CONFIG_FILE (bert_config.json); saves OUTPUT_DIR/model_save for phase 2.
#
#   ./run_bert_pretrain_phase1.sh [PRECISION] [run_pretraining.py flags ...]
#
# Required: PRECISION (the variable, or the first argument; ./run_bert_pretrain_phase1.sh --help
#           lists the precisions this package supports), OUTPUT_DIR, DATASET_DIR, CONFIG_FILE.
# Optional: BATCH_SIZE (sequences per process per step, default 224), MAX_STEPS (default 7038),
#           GRADIENT_ACCUMULATION_STEPS (default 1), LEARNING_RATE (default 6e-3),
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
bert_pt_start 1 "$@"
bert_pt_require_file CONFIG_FILE "bert_config.json (see the README's Datasets section)" /path/to/bert_config.json
bert_pt_check_output_dir "a directory where log and model files will be written"

bert_pt_pretrain --bert_config_file="${CONFIG_FILE}"
