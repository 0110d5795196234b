#!/usr/bin/env bash
# create_datasets_from_start.sh [wiki_only|wiki_books]
#
# Downloads and preprocesses the BERT pretraining corpus (English Wikipedia, and with
# wiki_books also BookCorpus) into TFRecords for both pretraining phases:
#
#   $BERT_PREP_WORKING_DIR/tfrecord/seq_len_128/books_wiki_en_corpus/{training,test}/*.tfrecord
#   $BERT_PREP_WORKING_DIR/tfrecord/seq_len_512/books_wiki_en_corpus/{training,test}/*.tfrecord
#
# Stages (each one's output appears only when complete, and a rerun skips what is done, so an
# interrupted run is resumed by running the same command again):
#   1. download the Wikipedia dump (download/fetch.py: atomic, progress lines)
#   2. Wikipedia XML -> text, one sentence per line (wiki_to_text.py: lbzip2 when present,
#      the wikiextractor library, the blingfire sentence splitter)
#   3. (wiki_books) download and format BookCorpus (books_to_text.py)
#   4. split the documents into training and test shards (sharding.py)
#   5. shards -> TFRecords with create_pretraining_data.py, seq 128 (20 predictions) and
#      seq 512 (80 predictions), in parallel (make_tfrecords.py)
#
# This script only orchestrates; the Python modules beside it do the work (each has --help).
set -euo pipefail

PROG="create_datasets_from_start.sh"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PKG="$(dirname "${HERE}")"

usage() {
    cat <<EOF
usage: bash ${PROG} [wiki_only|wiki_books]

Builds the BERT pretraining TFRecords from Wikipedia (wiki_only, the default) or from
Wikipedia and BookCorpus (wiki_books) under \$BERT_PREP_WORKING_DIR:
  tfrecord/seq_len_128/books_wiki_en_corpus/{training,test}/*.tfrecord   (20 predictions)
  tfrecord/seq_len_512/books_wiki_en_corpus/{training,test}/*.tfrecord   (80 predictions)
Intermediate results stay under download/, wiki/, formatted/ and sharded/ there; a rerun
skips every stage whose output is complete (remove a folder to redo its stage).

Environment (all optional):
  BERT_PREP_WORKING_DIR  output folder (default /data/tensorflow/bert/books_wiki_en_corpus)
  WIKI_DUMP_URL          the dump to download (default
                         https://dumps.wikimedia.org/enwiki/latest/enwiki-latest-pages-articles.xml.bz2)
  WIKI_DUMP_FILE         a dump already on disk (.xml or .xml.bz2): no download
  BOOKS_URL              wiki_books: archive (.tar.gz/.tar.bz2/.zip) or .txt of books to
                         download (default: books_to_text.py's, see its --help)
  BOOKS_DIR              wiki_books: folder of .txt books already on disk: no download
  PRETRAINED_MODEL_DIR   BERT model folder whose vocab.txt is used (default
                         ${PKG}/wwm_uncased_L-24_H-1024_A-16, where
                         download/download_pretrained_model.py puts BERT Large)
  VOCAB_FILE             the vocab.txt itself (default \$PRETRAINED_MODEL_DIR/vocab.txt)
  DO_LOWER_CASE          true (uncased vocab, default) or false
  NUM_PROCESSES          parallel processes (default: nproc)
  NUM_TRAINING_SHARDS    default 1472
  NUM_TEST_SHARDS        default 1472
  FRACTION_TEST          fraction of documents for the test set (default 0.1)
  DUPE_FACTOR            masking passes per shard (default 5)
  PYTHON                 the Python interpreter (default python3)

Python packages: pip install -r ${HERE}/requirements.txt (wikiextractor, blingfire; the
TFRecord writer needs tensorflow and tokenizers). lbzip2 (apt-get install lbzip2) makes the
decompression parallel; without it Python's bz2 is used.
Exit status: 0 done, 2 bad argument or environment (checked before any work), 1 a stage
failed, 130 interrupted.
EOF
}

usage_error() {
    echo "${PROG}: error: $*" >&2
    exit 2
}

die() {
    echo "${PROG}: error: $*" >&2
    exit 1
}

STAGE=0
TOTAL_STAGES=4
stage() {
    STAGE=$((STAGE + 1))
    echo "[$(date +%H:%M:%S)] stage ${STAGE}/${TOTAL_STAGES}: $*"
}

require_positive_int() {
    local name="$1" value="$2"
    [[ "${value}" =~ ^[1-9][0-9]*$ ]] || usage_error "${name}=${value}: expected a positive integer"
}

on_interrupt() {
    trap - INT TERM
    echo "${PROG}: error: interrupted in stage ${STAGE}; run the same command again to resume" >&2
    exit 130
}

# run_stage DESCRIPTION COMMAND...: runs a stage's command; its failure ends the script (1).
run_stage() {
    local what="$1" rc=0
    shift
    "$@" || rc=$?
    if ((rc == 130)); then
        on_interrupt
    elif ((rc != 0)); then
        die "${what} failed (exit ${rc}); see the lines above. Fix the cause and run the same command again to resume"
    fi
}

case "${1:-}" in
    -h | --help)
        usage
        exit 0
        ;;
esac
(($# <= 1)) || usage_error "expected at most one argument (wiki_only or wiki_books), got $#: $*"
MODE="${1:-wiki_only}"
case "${MODE}" in
    wiki_only) ;;
    wiki_books) TOTAL_STAGES=5 ;;
    *) usage_error "unknown dataset '${MODE}': expected wiki_only or wiki_books (see --help)" ;;
esac

PYTHON="${PYTHON:-python3}"
command -v "${PYTHON}" >/dev/null || usage_error "PYTHON=${PYTHON}: not found on PATH"
WORK="${BERT_PREP_WORKING_DIR:-/data/tensorflow/bert/books_wiki_en_corpus}"
WIKI_DUMP_URL="${WIKI_DUMP_URL:-https://dumps.wikimedia.org/enwiki/latest/enwiki-latest-pages-articles.xml.bz2}"
PRETRAINED_MODEL_DIR="${PRETRAINED_MODEL_DIR:-${PKG}/wwm_uncased_L-24_H-1024_A-16}"
VOCAB_FILE="${VOCAB_FILE:-${PRETRAINED_MODEL_DIR}/vocab.txt}"
DO_LOWER_CASE="${DO_LOWER_CASE:-true}"
NUM_PROCESSES="${NUM_PROCESSES:-$(nproc 2>/dev/null || echo 1)}"
NUM_TRAINING_SHARDS="${NUM_TRAINING_SHARDS:-1472}"
NUM_TEST_SHARDS="${NUM_TEST_SHARDS:-1472}"
FRACTION_TEST="${FRACTION_TEST:-0.1}"
DUPE_FACTOR="${DUPE_FACTOR:-5}"

require_positive_int NUM_PROCESSES "${NUM_PROCESSES}"
require_positive_int NUM_TRAINING_SHARDS "${NUM_TRAINING_SHARDS}"
require_positive_int NUM_TEST_SHARDS "${NUM_TEST_SHARDS}"
require_positive_int DUPE_FACTOR "${DUPE_FACTOR}"
[[ "${FRACTION_TEST}" =~ ^0?\.[0-9]+$|^0$ ]] || usage_error "FRACTION_TEST=${FRACTION_TEST}: expected a number in [0, 1), e.g. 0.1"
case "${DO_LOWER_CASE}" in
    true | false | True | False | 1 | 0) ;;
    *) usage_error "DO_LOWER_CASE=${DO_LOWER_CASE}: expected true or false" ;;
esac
[[ -f "${VOCAB_FILE}" ]] || usage_error "vocab file ${VOCAB_FILE} not found: download the pretrained model first (python ${PKG}/download/download_pretrained_model.py https://storage.googleapis.com/bert_models/2019_05_30/ wwm_uncased_L-24_H-1024_A-16 True --output-dir ${PKG}) or set PRETRAINED_MODEL_DIR or VOCAB_FILE"
if [[ -n "${WIKI_DUMP_FILE:-}" ]]; then
    [[ -f "${WIKI_DUMP_FILE}" ]] || usage_error "WIKI_DUMP_FILE=${WIKI_DUMP_FILE}: no such file"
fi
if [[ "${MODE}" == wiki_books && -n "${BOOKS_DIR:-}" ]]; then
    [[ -d "${BOOKS_DIR}" ]] || usage_error "BOOKS_DIR=${BOOKS_DIR}: no such folder"
fi
missing_modules="$("${PYTHON}" - <<'EOF'
import importlib.util
print(" ".join(m for m in ("wikiextractor", "blingfire", "tensorflow", "tokenizers")
               if importlib.util.find_spec(m) is None))
EOF
)" || usage_error "${PYTHON} cannot run"
[[ -z "${missing_modules}" ]] || usage_error "Python packages missing for ${PYTHON}: ${missing_modules} (pip install -r ${HERE}/requirements.txt)"
mkdir -p "${WORK}" 2>/dev/null || usage_error "BERT_PREP_WORKING_DIR=${WORK}: cannot create it"
[[ -w "${WORK}" ]] || usage_error "BERT_PREP_WORKING_DIR=${WORK}: not writable"

trap on_interrupt INT TERM

echo "${PROG}: ${MODE} into ${WORK} (vocab ${VOCAB_FILE}, ${NUM_PROCESSES} processes)"

# 1. the Wikipedia dump
if [[ -n "${WIKI_DUMP_FILE:-}" ]]; then
    DUMP="${WIKI_DUMP_FILE}"
    stage "Wikipedia dump: using ${DUMP} (WIKI_DUMP_FILE)"
else
    dump_name="$(basename "${WIKI_DUMP_URL%%\?*}")"
    [[ "${dump_name}" == *.xml* ]] || dump_name="enwiki-pages-articles.xml.bz2"
    DUMP="${WORK}/download/wikicorpus_en/${dump_name}"
    stage "Wikipedia dump: ${WIKI_DUMP_URL} -> ${DUMP}"
    mkdir -p "$(dirname "${DUMP}")"
    run_stage "downloading the Wikipedia dump" "${PYTHON}" "${PKG}/download/fetch.py" "${WIKI_DUMP_URL}" "${DUMP}"
fi

# 2. Wikipedia text
stage "Wikipedia XML -> one sentence per line in ${WORK}/formatted/wiki"
mkdir -p "${WORK}/formatted" "${WORK}/wiki"
run_stage "extracting the Wikipedia text" "${PYTHON}" "${HERE}/wiki_to_text.py" "${DUMP}" "${WORK}/formatted/wiki" \
    --work_dir "${WORK}/wiki" --processes "${NUM_PROCESSES}"
TEXT_DIRS=("${WORK}/formatted/wiki")

# 3. BookCorpus
if [[ "${MODE}" == wiki_books ]]; then
    books_args=()
    if [[ -n "${BOOKS_DIR:-}" ]]; then
        books_args+=(--input_dir "${BOOKS_DIR}")
        stage "BookCorpus: formatting the books in ${BOOKS_DIR} (BOOKS_DIR)"
    else
        if [[ -n "${BOOKS_URL:-}" ]]; then books_args+=(--url "${BOOKS_URL}"); fi
        stage "BookCorpus: download and format (${BOOKS_URL:-books_to_text.py default URL})"
    fi
    run_stage "preparing BookCorpus" "${PYTHON}" "${HERE}/books_to_text.py" "${books_args[@]}" "${WORK}/formatted/books" \
        --download_dir "${WORK}/download/books" --processes "${NUM_PROCESSES}"
    TEXT_DIRS+=("${WORK}/formatted/books")
fi

# 4. shards
stage "sharding into ${NUM_TRAINING_SHARDS} training / ${NUM_TEST_SHARDS} test shards in ${WORK}/sharded"
run_stage "sharding" "${PYTHON}" "${HERE}/sharding.py" "${TEXT_DIRS[@]}" --output_dir "${WORK}/sharded" \
    --num_training_shards "${NUM_TRAINING_SHARDS}" --num_test_shards "${NUM_TEST_SHARDS}" \
    --fraction_test "${FRACTION_TEST}" --name books_wiki_en_corpus

# 5. TFRecords
stage "TFRecords for seq 128 (20 predictions) and seq 512 (80 predictions) in ${WORK}/tfrecord"
run_stage "writing the TFRecords" "${PYTHON}" "${HERE}/make_tfrecords.py" --input_dir "${WORK}/sharded" \
    --output_dir "${WORK}/tfrecord" --vocab_file "${VOCAB_FILE}" --seq_configs 128:20,512:80 \
    --dataset_name books_wiki_en_corpus --processes "${NUM_PROCESSES}" \
    --dupe_factor "${DUPE_FACTOR}" --do_lower_case "${DO_LOWER_CASE}"

echo "[$(date +%H:%M:%S)] done: ${WORK}/tfrecord/seq_len_{128,512}/books_wiki_en_corpus/{training,test}"
