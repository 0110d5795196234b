#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# BERT Large SQuAD v1.1 Throughput inference: examples/sec at a large batch, one instance per socket.
# Usage: CHECKPOINT_DIR=... DATASET_DIR=... OUTPUT_DIR=... ./quickstart/inference_throughput.sh [--flag=value ...]
# Optional: BATCH_SIZE, CORES_PER_INSTANCE, PRECISION (default: the package's). Extra arguments
# go to run_inference.py. Shared logic: bert_large_tf_common.sh.
set -euo pipefail

# shellcheck source=bert_large_tf_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/bert_large_tf_common.sh"

bert_tf_inference throughput "$@"
