"""habana/bert_tensorflow/data_preprocessing/: the pretraining-data pipeline
(create_datasets_from_start.sh and its modules) on a tiny generated Wikipedia dump and tiny
books served from 127.0.0.1, and the fixed ``overfit`` dataset. TFRecords are read in a
TensorFlow subprocess (TensorFlow stays out of the pytest process)."""

from __future__ import annotations

import bz2
import http.server
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from tests.packages.helpers import REPO, explain, write_checkpoint_dir

PREP = REPO / "habana" / "bert_tensorflow" / "data_preprocessing"
SCRIPT = PREP / "create_datasets_from_start.sh"
CORPUS = "books_wiki_en_corpus"


def tiny_google_model(tmp_path_factory) -> Path:
    """``write_checkpoint_dir`` once per session: both tests/gaudi/test_data_*.py use it."""
    folder = tmp_path_factory.getbasetemp() / "gaudi-data-google-model"
    if not (folder / "bert_config.json").is_file():
        tmp = tmp_path_factory.mktemp("google-model")
        write_checkpoint_dir(tmp / "model")
        os.replace(tmp / "model", folder)
    return folder

# --------------------------------------------------------------------------------------------
# Generated inputs
# --------------------------------------------------------------------------------------------

_SUBJECTS = ["The cat", "A dog", "The bird", "My friend", "The teacher", "A student"]
_VERBS = ["saw", "liked", "found", "visited", "painted", "followed"]
_OBJECTS = ["the red house", "a blue car", "the green tree", "an old boat", "the small river"]
_PLACES = ["paris", "london", "berlin", "rome", "madrid", "vienna"]


def sentence(rng: random.Random) -> str:
    return (f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} in "
            f"{rng.choice(_PLACES)} in {rng.randint(1900, 2020)}.")


SITEINFO = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="en">
  <siteinfo>
    <sitename>Wikipedia</sitename>
    <dbname>enwiki</dbname>
    <base>https://en.wikipedia.org/wiki/Main_Page</base>
    <generator>MediaWiki 1.41.0</generator>
    <case>first-letter</case>
    <namespaces>
      <namespace key="0" case="first-letter" />
      <namespace key="10" case="first-letter">Template</namespace>
      <namespace key="14" case="first-letter">Category</namespace>
    </namespaces>
  </siteinfo>
"""


def _page(title: str, page_id: int, text: str, ns: int = 0) -> str:
    from xml.sax.saxutils import escape

    return (f"  <page>\n    <title>{escape(title)}</title>\n    <ns>{ns}</ns>\n"
            f"    <id>{page_id}</id>\n    <revision>\n      <id>{page_id + 1000}</id>\n"
            f"      <model>wikitext</model>\n      <format>text/x-wiki</format>\n"
            f'      <text bytes="{len(text)}" xml:space="preserve">{escape(text)}</text>\n'
            f"    </revision>\n  </page>\n")


def make_wiki_dump(path: Path, n_articles: int = 12, seed: int = 0) -> dict:
    """A pages-articles dump (bz2): articles with markup, a redirect, a template page.
    Returns {title: [the article's plain sentences]}."""
    rng = random.Random(seed)
    pages, expected = [], {}
    for i in range(n_articles):
        title = f"Place {i}"
        sents = [sentence(rng) for _ in range(rng.randint(4, 8))]
        first, rest = sents[:2], sents[2:]
        half = len(rest) // 2
        text = (f"'''{title}''' {first[0][0].lower()}{first[0][1:]} [[River|{first[1]}]]"
                f"<ref>{{{{cite web |title=Source {i} |url=http://example.org/{i}}}}}</ref>\n\n"
                f"== History ==\n{' '.join(rest[:half])}\n\n"
                f"=== Later years ===\n{' '.join(rest[half:])}\n\n"
                f"[[Category:Places]]")
        expected[title] = [f"{title} {first[0][0].lower()}{first[0][1:]}", first[1], *rest]
        pages.append(_page(title, 10 + i, text))
    pages.append(_page("Old place", 500, "#REDIRECT [[Place 0]]"))
    pages.append(_page("Template:Cite web", 501, "{{{title}}}", ns=10))
    xml = SITEINFO + "".join(pages) + "</mediawiki>\n"
    path.write_bytes(bz2.compress(xml.encode("utf-8")))
    return expected


def make_books_archive(path: Path, n_books: int = 2, seed: int = 1) -> None:
    rng = random.Random(seed)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for b in range(n_books):
            lines = [" ".join(sentence(rng) for _ in range(rng.randint(1, 3))) for _ in range(12)]
            data = ("\n".join(lines) + "\n").encode()
            info = tarfile.TarInfo(f"books/book_{b}.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())


class FileServer:
    """Serves a folder on 127.0.0.1 (404 for anything else)."""

    def __init__(self, root: Path):
        handler = lambda *a, **k: _QuietHandler(*a, directory=str(root), **k)  # noqa: E731
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


PARSE_RECORDS = r"""
import json, sys
import tensorflow as tf
out = {}
for path in sys.argv[1:]:
    shapes, n = set(), 0
    for rec in tf.data.TFRecordDataset(path):
        f = tf.train.Example.FromString(rec.numpy()).features.feature
        shapes.add((len(f["input_ids"].int64_list.value), len(f["input_mask"].int64_list.value),
                    len(f["segment_ids"].int64_list.value),
                    len(f["masked_lm_positions"].int64_list.value),
                    len(f["masked_lm_ids"].int64_list.value),
                    len(f["masked_lm_weights"].float_list.value),
                    len(f["next_sentence_labels"].int64_list.value)))
        n += 1
    out[path] = {"records": n, "shapes": sorted(shapes)}
print(json.dumps(out))
"""


def parse_records(paths: list[Path]) -> dict[str, dict]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", PARSE_RECORDS, *map(str, paths)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, explain(proc)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def script_env(work: Path, vocab: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WIKI_", "BOOKS_"))}
    env.update({"BERT_PREP_WORKING_DIR": str(work), "VOCAB_FILE": str(vocab),
                "NUM_PROCESSES": "2", "NUM_TRAINING_SHARDS": "2", "NUM_TEST_SHARDS": "1",
                "FRACTION_TEST": "0.25", "DUPE_FACTOR": "1", "PYTHON": sys.executable,
                "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""})
    env.update(extra)
    return env


def run_script(*args: str, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vocab(tmp_path_factory) -> Path:
    return tiny_google_model(tmp_path_factory) / "vocab.txt"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    (root / "dumps").mkdir()
    (root / "books").mkdir()
    expected = make_wiki_dump(root / "dumps" / "enwiki-test-pages-articles.xml.bz2")
    make_books_archive(root / "books" / "books.tar.gz")
    server = FileServer(root)
    yield server, root, expected
    server.close()


@pytest.fixture(scope="module")
def pipeline(served, vocab, tmp_path_factory):
    """One real wiki_books run of create_datasets_from_start.sh."""
    server, root, expected = served
    work = tmp_path_factory.mktemp("prep") / "books_wiki_en_corpus"
    env = script_env(work, vocab,
                     WIKI_DUMP_URL=f"{server.url}/dumps/enwiki-test-pages-articles.xml.bz2",
                     BOOKS_URL=f"{server.url}/books/books.tar.gz")
    proc = run_script("wiki_books", env=env)
    assert proc.returncode == 0, explain(proc)
    return work, env, proc, expected


# --------------------------------------------------------------------------------------------
# The whole pipeline
# --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_pipeline_writes_tfrecords_for_both_sequence_lengths(pipeline):
    work, _, proc, _ = pipeline
    for n in range(1, 6):
        assert f"stage {n}/5:" in proc.stdout
    files = {}
    for seq in (128, 512):
        for split in ("training", "test"):
            folder = work / "tfrecord" / f"seq_len_{seq}" / CORPUS / split
            found = sorted(folder.glob("*.tfrecord"))
            assert found, f"no TFRecords in {folder}"
            assert len(found) == (2 if split == "training" else 1)
            files.update({f: seq for f in found})
    assert not list((work / "tfrecord").rglob("*.tmp*"))
    parsed = parse_records(list(files))
    for path, seq in files.items():
        info = parsed[str(path)]
        preds = 20 if seq == 128 else 80
        assert info["records"] > 0, path
        assert info["shapes"] == [[seq, seq, seq, preds, preds, preds, 1]], (path, info)


@pytest.mark.slow
def test_text_stage_is_one_sentence_per_line_with_documents(pipeline):
    import blingfire

    work, _, _, expected = pipeline
    wiki = (work / "formatted" / "wiki")
    text = "".join(p.read_text() for p in sorted(wiki.glob("*.txt")))
    docs = [d.splitlines() for d in text.strip("\n").split("\n\n")]
    assert len(docs) == len(expected)  # the redirect and the template page are gone
    for doc, sents in zip(docs, expected.values()):
        assert doc == sents  # markup, headings and references removed, one sentence a line
    for line in text.splitlines():
        if line:
            assert blingfire.text_to_sentences(line) == line
            assert not any(m in line for m in ("[[", "]]", "{{", "'''", "<ref", "=="))
    books = "".join(p.read_text() for p in sorted((work / "formatted" / "books").glob("*.txt")))
    book_docs = books.strip("\n").split("\n\n")
    assert len(book_docs) == 2
    assert all(line.endswith(".") for d in book_docs for line in d.splitlines())
    shards = sorted((work / "sharded").rglob("*.txt"))
    assert [p.parent.name for p in shards] == ["test", "training", "training"]
    sharded_docs = sum(len(p.read_text().strip("\n").split("\n\n")) for p in shards)
    assert sharded_docs == len(docs) + len(book_docs)


@pytest.mark.slow
def test_rerun_skips_completed_stages(pipeline):
    work, env, _, _ = pipeline
    records = sorted((work / "tfrecord").rglob("*.tfrecord"))
    mtimes = [p.stat().st_mtime_ns for p in records]
    proc = run_script("wiki_books", env=env, timeout=120)
    assert proc.returncode == 0, explain(proc)
    assert "already exists" in proc.stderr and "nothing to do" in proc.stderr
    assert [p.stat().st_mtime_ns for p in records] == mtimes


@pytest.mark.slow
def test_python_bz2_fallback_gives_the_same_text(pipeline, served, tmp_path):
    work, _, _, _ = pipeline
    _, root, _ = served
    out = tmp_path / "formatted"
    proc = subprocess.run([sys.executable, str(PREP / "wiki_to_text.py"),
                           str(root / "dumps" / "enwiki-test-pages-articles.xml.bz2"), str(out),
                           "--decompressor", "python", "--processes", "1", "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, explain(proc)
    assert "lbzip2" not in proc.stderr
    ours = "".join(p.read_text() for p in sorted(out.glob("*.txt")))
    pipeline_text = sorted((work / "formatted" / "wiki").glob("*.txt"))
    assert ours == "".join(p.read_text() for p in pipeline_text)
    assert not list(tmp_path.glob("*.xml"))


# --------------------------------------------------------------------------------------------
# Errors of the script (checked before any work) and of its stages
# --------------------------------------------------------------------------------------------

def test_script_is_shellcheck_clean():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck not installed")
    proc = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_script_help():
    proc = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for needle in ("wiki_only", "wiki_books", "BERT_PREP_WORKING_DIR", "WIKI_DUMP_URL",
                   "BOOKS_URL", "VOCAB_FILE", "seq_len_512"):
        assert needle in proc.stdout


@pytest.mark.parametrize("args, extra, needle", [
    (["books_only"], {}, "unknown dataset 'books_only'"),
    (["wiki_only", "x"], {}, "at most one argument"),
    ([], {"NUM_PROCESSES": "zero"}, "NUM_PROCESSES=zero"),
    ([], {"VOCAB_FILE": "/nonexistent/vocab.txt"}, "vocab file /nonexistent/vocab.txt not found"),
    ([], {"WIKI_DUMP_FILE": "/nonexistent/dump.xml.bz2"}, "WIKI_DUMP_FILE"),
    (["wiki_books"], {"BOOKS_DIR": "/nonexistent/books"}, "BOOKS_DIR"),
])
def test_script_usage_errors_exit_2(tmp_path, args, extra, needle):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n")
    proc = run_script(*args, env=script_env(tmp_path / "work", vocab, **extra), timeout=60)
    assert proc.returncode == 2, explain(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("create_datasets_from_start.sh: error: ")
    assert needle in lines[0]
    assert not (tmp_path / "work").exists()


def test_script_download_404_fails_with_one_line_and_nothing_left(served, tmp_path):
    server, _, _ = served
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n")
    work = tmp_path / "work"
    env = script_env(work, vocab, WIKI_DUMP_URL=f"{server.url}/dumps/missing.xml.bz2")
    proc = run_script(env=env, timeout=60)
    assert proc.returncode == 1, explain(proc)
    assert "Traceback" not in proc.stderr
    assert "HTTP 404" in proc.stderr and "missing.xml.bz2" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("create_datasets_from_start.sh: "
                                                           "error: downloading")
    assert list((work / "download" / "wikicorpus_en").iterdir()) == []


# --------------------------------------------------------------------------------------------
# sharding.py
# --------------------------------------------------------------------------------------------

def write_docs(path: Path, n_docs: int, seed: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    docs = [[sentence(rng) for _ in range(rng.randint(1, 9))] for _ in range(n_docs)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\n".join(d) + "\n\n" for d in docs))
    return docs


def run_sharding(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PREP / "sharding.py"), *args],
                          capture_output=True, text=True, timeout=60)


def read_shards(folder: Path) -> dict[str, list[list[str]]]:
    return {p.name: [d.splitlines() for d in p.read_text().strip("\n").split("\n\n")]
            for p in sorted(folder.glob("*.txt"))}


def test_sharding_keeps_documents_whole_deterministic_and_balanced(tmp_path):
    docs = write_docs(tmp_path / "in" / "a.txt", 30, seed=1)
    docs += write_docs(tmp_path / "in" / "b.txt", 30, seed=2)
    args = ["--num_training_shards", "4", "--num_test_shards", "2", "--fraction_test", "0.2"]
    for out in ("s1", "s2"):
        proc = run_sharding(str(tmp_path / "in"), "--output_dir", str(tmp_path / out), *args)
        assert proc.returncode == 0, explain(proc)
    train, test = read_shards(tmp_path / "s1" / "training"), read_shards(tmp_path / "s1" / "test")
    assert len(train) == 4 and len(test) == 2
    assert all(d for shard in (*train.values(), *test.values()) for d in shard)
    got = [d for shard in (*train.values(), *test.values()) for d in shard]
    assert sorted(map(tuple, got)) == sorted(map(tuple, docs))  # every document once, whole
    sizes = [sum(map(len, s)) for s in train.values()]
    assert max(sizes) <= 2 * min(sizes)
    for split in ("training", "test"):
        for p in (tmp_path / "s1" / split).iterdir():
            assert p.read_bytes() == (tmp_path / "s2" / split / p.name).read_bytes()


def test_sharding_with_fewer_documents_than_shards(tmp_path):
    write_docs(tmp_path / "in" / "a.txt", 3)
    proc = run_sharding(str(tmp_path / "in"), "--output_dir", str(tmp_path / "out"),
                        "--num_training_shards", "8", "--num_test_shards", "8")
    assert proc.returncode == 0, explain(proc)
    assert "fewer than --num_training_shards=8" in proc.stderr
    n_train = len(list((tmp_path / "out" / "training").glob("*.txt")))
    n_test = len(list((tmp_path / "out" / "test").glob("*.txt")))
    assert n_train >= 1 and n_test >= 1 and n_train + n_test == 3


def test_sharding_refuses_shards_made_from_other_inputs(tmp_path):
    write_docs(tmp_path / "a" / "a.txt", 5)
    write_docs(tmp_path / "b" / "b.txt", 5)
    assert run_sharding(str(tmp_path / "a"), "--output_dir", str(tmp_path / "out")).returncode == 0
    proc = run_sharding(str(tmp_path / "a"), str(tmp_path / "b"), "--output_dir",
                        str(tmp_path / "out"))
    assert proc.returncode == 2 and "made from other inputs" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_sharding_errors(tmp_path):
    proc = run_sharding(str(tmp_path / "none"), "--output_dir", str(tmp_path / "out"))
    assert proc.returncode == 2 and "no such file or folder" in proc.stderr
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "e.txt").write_text("\n\n")
    proc = run_sharding(str(tmp_path / "empty"), "--output_dir", str(tmp_path / "out"))
    assert proc.returncode == 1 and "no documents" in proc.stderr
    assert not (tmp_path / "out").exists() and "Traceback" not in proc.stderr


def test_books_to_text_from_a_folder_cuts_long_books(tmp_path):
    rng = random.Random(3)
    sents = [sentence(rng) for _ in range(10)]
    books = tmp_path / "books" / "sub"
    books.mkdir(parents=True)
    (books / "long.txt").write_text(" ".join(sents[:4]) + "\n\n" + "\n".join(sents[4:]) + "\n")
    (books / "notes.md").write_text("Not a book.\n")
    out = tmp_path / "formatted"
    proc = subprocess.run([sys.executable, str(PREP / "books_to_text.py"), "--input_dir",
                           str(tmp_path / "books"), str(out), "--max_document_sentences", "4"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, explain(proc)
    docs = [d.splitlines() for d in
            "".join(p.read_text() for p in sorted(out.glob("*.txt"))).strip("\n").split("\n\n")]
    assert docs == [sents[0:4], sents[4:8], sents[8:10]]
    proc = subprocess.run([sys.executable, str(PREP / "books_to_text.py"), "--input_dir",
                           str(tmp_path / "none"), str(tmp_path / "o2")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--input_dir" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("module", ["wiki_to_text.py", "books_to_text.py", "sharding.py",
                                    "make_tfrecords.py", "make_overfit_dataset.py"])
def test_modules_have_help(module):
    proc = subprocess.run([sys.executable, str(PREP / module), "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "usage:" in proc.stdout and "Exit status" in proc.stdout


def test_wiki_to_text_missing_dump_is_usage_error(tmp_path):
    proc = subprocess.run([sys.executable, str(PREP / "wiki_to_text.py"), str(tmp_path / "x.bz2"),
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"wiki_to_text.py: error: {tmp_path / 'x.bz2'}: no such file " \
                                  "(the Wikipedia dump)"


# --------------------------------------------------------------------------------------------
# The overfit dataset
# --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_overfit_dataset_is_fixed_and_parses(vocab, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    procs = {name: subprocess.Popen([sys.executable, str(PREP / "make_overfit_dataset.py"),
                                     str(tmp_path / name), "--vocab_file", str(vocab)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=env)
             for name in ("a", "b")}  # two independent runs, side by side
    runs = []
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
        runs.append(sorted((tmp_path / name / "tfrecord").rglob("*.tfrecord")))
    rel = [p.relative_to(tmp_path / "a") for p in runs[0]]
    assert [str(p) for p in rel] == [
        f"tfrecord/seq_len_{s}/{CORPUS}/{split}/overfit_{split}.tfrecord"
        for s in (128, 512) for split in ("test", "training")]
    for a, b in zip(*runs):
        assert a.read_bytes() == b.read_bytes()  # same bytes every run
    parsed = parse_records(runs[0])
    for path in runs[0]:
        seq = 128 if "seq_len_128" in str(path) else 512
        preds = 20 if seq == 128 else 80
        info = parsed[str(path)]
        assert info["records"] > 0
        assert info["shapes"] == [[seq, seq, seq, preds, preds, preds, 1]]
