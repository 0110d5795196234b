#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# BERT Large BFloat16 fine-tuning on SQuAD v1.1 (train-v1.1.json), then prediction and evaluation on dev-v1.1.json.
# Usage: CHECKPOINT_DIR=... DATASET_DIR=... OUTPUT_DIR=... ./quickstart/bfloat16_squad_training.sh [--flag=value ...]
# Optional: MPI_NUM_PROCESSES (MPI ranks), BATCH_SIZE (per-rank batch size). Extra arguments go
# to the Python script. Shared logic: bert_large_tf_common.sh.
set -euo pipefail

# shellcheck source=bert_large_tf_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/bert_large_tf_common.sh"

bert_tf_quickstart bfloat16 squad "$@"
