#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# BERT Large FP32 fine-tuning and evaluation on GLUE MRPC (train.tsv, dev.tsv).
# Usage: CHECKPOINT_DIR=... DATASET_DIR=... OUTPUT_DIR=... ./quickstart/fp32_classifier_training.sh [--flag=value ...]
# Optional: MPI_NUM_PROCESSES (MPI ranks), BATCH_SIZE (per-rank batch size). Extra arguments go
# to the Python script. Shared logic: bert_large_tf_common.sh.
set -euo pipefail

# shellcheck source=bert_large_tf_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/bert_large_tf_common.sh"

bert_tf_quickstart fp32 classifier "$@"
