#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# BERT Large BFloat16 SQuAD demo: 0.01 epochs on mini-dev-v1.1.json, then prediction and evaluation on it.
# Usage: CHECKPOINT_DIR=... DATASET_DIR=... OUTPUT_DIR=... ./quickstart/bfloat16_squad_training_demo.sh [--flag=value ...]
# Optional: MPI_NUM_PROCESSES (MPI ranks), BATCH_SIZE (per-rank batch size). Extra arguments go
# to the Python script. Shared logic: bert_large_tf_common.sh.
set -euo pipefail

# shellcheck source=bert_large_tf_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/bert_large_tf_common.sh"

bert_tf_quickstart bfloat16 squad_demo "$@"
