"""habana/bert_tensorflow/download/: download_pretrained_model.py, download_dataset.py and the
shared atomic downloader fetch.py, against a local HTTP server (nothing leaves 127.0.0.1)."""

from __future__ import annotations

import http.server
import io
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from tests.packages.helpers import REPO, write_checkpoint_dir

DOWNLOAD = REPO / "habana" / "bert_tensorflow" / "download"
PRETRAINED = DOWNLOAD / "download_pretrained_model.py"
DATASET = DOWNLOAD / "download_dataset.py"
FETCH = DOWNLOAD / "fetch.py"


def tiny_google_model(tmp_path_factory) -> Path:
    """``write_checkpoint_dir`` once per session: both tests/gaudi/test_data_*.py use it."""
    folder = tmp_path_factory.getbasetemp() / "gaudi-data-google-model"
    if not (folder / "bert_config.json").is_file():
        tmp = tmp_path_factory.mktemp("google-model")
        write_checkpoint_dir(tmp / "model")
        os.replace(tmp / "model", folder)
    return folder


# --------------------------------------------------------------------------------------------
# A local server: path -> (status, body); "slow" bodies send half, then wait for release.
# --------------------------------------------------------------------------------------------

class Server:
    def __init__(self):
        self.routes: dict[str, tuple[int, bytes, str]] = {}
        self.requests: list[str] = []
        self.release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                server.requests.append(self.path)
                status, body, mode = server.routes.get(self.path, (404, b"not found", "full"))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "full":
                    self.wfile.write(body)
                elif mode == "short":  # promises len(body), sends half, closes
                    self.wfile.write(body[: len(body) // 2])
                elif mode == "slow":  # half now, the rest after release (or 20 s)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    server.release.wait(20)
                    try:
                        self.wfile.write(body[len(body) // 2:])
                    except OSError:
                        pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, path: str, body: bytes, status: int = 200, mode: str = "full") -> str:
        self.routes[path] = (status, body, mode)
        return self.url + path

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def zip_folder(folder: Path, top: str | None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if top:
            zf.writestr(zipfile.ZipInfo(f"{top}/"), b"")
        for path in sorted(folder.iterdir()):
            zf.write(path, f"{top}/{path.name}" if top else path.name)
    return buf.getvalue()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_google_model(tmp_path_factory)


@pytest.fixture(scope="module")
def server(checkpoint):
    srv = Server()
    flat = zip_folder(checkpoint, None)
    nested = zip_folder(checkpoint, "wwm_tiny")
    srv.add("/2020_02_20/uncased_tiny.zip", flat)
    srv.add("/2019_05_30/wwm_tiny.zip", nested)
    srv.add("/forbidden/m.zip", b"denied", status=403)
    srv.add("/busy/m.zip", b"overloaded", status=503)
    srv.add("/short/m.zip", flat, mode="short")
    srv.add("/cut/m.zip", flat[: len(flat) // 2])
    srv.add("/html/m.zip", b"<html><body>Sorry</body></html>" * 10)
    no_config = io.BytesIO()
    with zipfile.ZipFile(no_config, "w") as zf:
        zf.writestr("vocab.txt", "[PAD]\n[UNK]\n")
    srv.add("/noconfig/m.zip", no_config.getvalue())
    srv.add("/slow/m.zip", flat + b"\0" * (4 << 20), mode="slow")
    yield srv
    srv.close()


def run(script: Path, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert lines and lines[-1].startswith("error: "), proc.stderr
    return lines[-1]


# --------------------------------------------------------------------------------------------
# download_pretrained_model.py
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["False", "false", "0"])
def test_flat_zip_with_false_extracts_into_name_folder(server, tmp_path, flag):
    proc = run(PRETRAINED, server.url + "/2020_02_20/", "uncased_tiny", flag, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    model = tmp_path / "uncased_tiny"
    for name in ("bert_config.json", "vocab.txt", "bert_model.ckpt.index"):
        assert (model / name).is_file()
    assert list(model.glob("bert_model.ckpt.data-*"))
    assert leftovers(tmp_path) == ["uncased_tiny"]  # no zip, no temp files
    assert "/ " in proc.stderr and "100%" in proc.stderr  # bytes / total progress


@pytest.mark.parametrize("flag", ["True", "true", "1"])
def test_zip_with_top_folder_and_true(server, tmp_path, flag):
    proc = run(PRETRAINED, server.url + "/2019_05_30", "wwm_tiny", flag, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "wwm_tiny" / "bert_config.json").is_file()
    assert not (tmp_path / "wwm_tiny" / "wwm_tiny").exists()
    assert leftovers(tmp_path) == ["wwm_tiny"]


def test_complete_folder_is_not_downloaded_again(server, tmp_path):
    args = (server.url + "/2020_02_20/", "uncased_tiny", "False")
    assert run(PRETRAINED, *args, cwd=tmp_path).returncode == 0
    before = len(server.requests)
    proc = run(PRETRAINED, *args, cwd=tmp_path)
    assert proc.returncode == 0
    assert "not downloading it again" in proc.stderr
    assert len(server.requests) == before


def test_output_dir_flag(server, tmp_path):
    out = tmp_path / "models"
    out.mkdir()
    proc = run(PRETRAINED, server.url + "/2020_02_20/", "uncased_tiny", "False",
               "--output-dir", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (out / "uncased_tiny" / "vocab.txt").is_file()


@pytest.mark.parametrize("url_dir, name, flag, needle", [
    ("/missing/", "m", "False", "HTTP 404"),
    ("/forbidden/", "m", "False", "HTTP 403"),
    ("/busy/", "m", "False", "HTTP 503"),
    ("/short/", "m", "False", "ended after"),
    ("/cut/", "m", "False", "not a valid zip"),
    ("/html/", "m", "False", "not a valid zip"),
    ("/noconfig/", "m", "False", "no bert_config.json"),
    ("/2020_02_20/", "uncased_tiny", "True", "pass False"),
    ("/2019_05_30/", "wwm_tiny", "False", "pass True"),
])
def test_failures_are_one_line_exit_1_and_leave_nothing(server, tmp_path, url_dir, name, flag,
                                                        needle):
    proc = run(PRETRAINED, server.url + url_dir, name, flag, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    line = error_line(proc)
    assert needle in line
    if needle.startswith("HTTP"):
        assert f"{server.url}{url_dir}{name}.zip" in line
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("args, needle", [
    (["http://127.0.0.1:9/", "m", "maybe"], "UNZIP='maybe'"),
    (["http://127.0.0.1:9/", "m", "False", "--output-dir", "/nonexistent/x"], "no such folder"),
    (["http://127.0.0.1:9/", "m"], "UNZIP"),
])
def test_bad_arguments_exit_2(tmp_path, args, needle):
    proc = run(PRETRAINED, *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_incomplete_existing_folder_is_a_usage_error(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "vocab.txt").write_text("x\n")
    proc = run(PRETRAINED, "http://127.0.0.1:9/", "m", "False", cwd=tmp_path)
    assert proc.returncode == 2
    assert "lacks bert_config.json" in error_line(proc)


def test_help_explains_the_third_argument(tmp_path):
    proc = run(PRETRAINED, "--help", cwd=tmp_path)
    assert proc.returncode == 0
    assert "True" in proc.stdout and "top folder" in proc.stdout and "NAME/" in proc.stdout


def test_interrupt_leaves_nothing_half_written(server, tmp_path):
    server.release.clear()
    proc = subprocess.Popen([sys.executable, str(PRETRAINED), server.url + "/slow/", "m",
                             "False"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not any(p.stat().st_size > 0 for p in tmp_path.glob(".m.zip.*.tmp")):
            assert time.monotonic() < deadline, "the download never started"
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        server.release.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err.strip().splitlines()[-1] and "Traceback" not in err
    assert leftovers(tmp_path) == []


def test_fetch_cli_skips_existing_file_and_reports_404(server, tmp_path):
    url = server.add("/files/a.bin", b"x" * 1000)
    target = tmp_path / "a.bin"
    proc = run(FETCH, url, str(target), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert target.read_bytes() == b"x" * 1000
    proc = run(FETCH, url, str(target), cwd=tmp_path)
    assert proc.returncode == 0 and "not downloading again" in proc.stderr
    proc = run(FETCH, server.url + "/files/none.bin", str(tmp_path / "none.bin"), cwd=tmp_path)
    assert proc.returncode == 1 and "HTTP 404" in error_line(proc)
    assert leftovers(tmp_path) == ["a.bin"]


# --------------------------------------------------------------------------------------------
# download_dataset.py (MRPC)
# --------------------------------------------------------------------------------------------

MRPC_HEADER = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"


def mrpc_files(n_train: int = 12, n_test: int = 5) -> tuple[str, str, str]:
    train = MRPC_HEADER + "".join(
        f"{i % 2}\t{1000 + i}\t{2000 + i}\tThe cat saw house {i}.\tA dog liked house {i}.\n"
        for i in range(n_train))
    test = MRPC_HEADER + "".join(
        f"{(i + 1) % 2}\t{3000 + i}\t{4000 + i}\tMy friend went home {i}.\tThe bird {i} flew.\n"
        for i in range(n_test))
    dev_ids = "".join(f"{1000 + i}\t{2000 + i}\n" for i in (1, 4, 7))
    return train, test, dev_ids


@pytest.fixture()
def mrpc_server(server):
    train, test, dev_ids = mrpc_files()
    server.add("/senteval/msr_paraphrase_train.txt", train.encode())
    server.add("/senteval/msr_paraphrase_test.txt", test.encode())
    server.add("/glue/mrpc_dev_ids.tsv", dev_ids.encode())
    return server


def test_mrpc_glue_layout_read_by_classifier_data(mrpc_server, tmp_path):
    from models.bert_large.tensorflow import classifier_data

    out = tmp_path / "MRPC"
    proc = run(DATASET, "--dataset_path", str(out), "--mrpc_url", mrpc_server.url + "/senteval/",
               "--dev_ids_url", mrpc_server.url + "/glue/mrpc_dev_ids.tsv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "train.tsv 9 rows, dev.tsv 3 rows, test.tsv 5 rows" in proc.stdout
    processor = classifier_data.MrpcProcessor()
    train = processor.train_examples(str(out))
    dev = processor.dev_examples(str(out))
    test = processor.test_examples(str(out))
    assert (len(train), len(dev), len(test)) == (9, 3, 5)
    assert dev[0].text_a == "The cat saw house 1." and dev[0].label == "1"
    assert (out / "dev.tsv").read_text().splitlines()[0] == MRPC_HEADER[1:].strip()
    assert (out / "test.tsv").read_text().splitlines()[1].startswith("0\t3000\t4000\t")
    assert sorted(p.name for p in out.iterdir()) == [
        "dev.tsv", "dev_ids.tsv", "msr_paraphrase_test.txt", "msr_paraphrase_train.txt",
        "test.tsv", "train.tsv"]
    before = len(mrpc_server.requests)
    proc = run(DATASET, "--dataset_path", str(out), "--mrpc_url", "http://127.0.0.1:9/",
               cwd=tmp_path)
    assert proc.returncode == 0 and "not downloading again" in proc.stderr
    assert len(mrpc_server.requests) == before


def test_mrpc_404_names_url_and_leaves_no_partial_output(mrpc_server, tmp_path):
    out = tmp_path / "MRPC"
    proc = run(DATASET, "--dataset_path", str(out), "--mrpc_url", mrpc_server.url + "/senteval/",
               "--dev_ids_url", mrpc_server.url + "/glue/missing.tsv", cwd=tmp_path)
    assert proc.returncode == 1
    line = error_line(proc)
    assert "HTTP 404" in line and "/glue/missing.tsv" in line
    assert not (out / "train.tsv").exists() and not (out / "dev_ids.tsv").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_mrpc_wrong_file_is_one_line_error(server, tmp_path):
    server.add("/bad/msr_paraphrase_train.txt", b"<html>moved</html>\n")
    server.add("/bad/msr_paraphrase_test.txt", b"<html>moved</html>\n")
    server.add("/bad/ids.tsv", b"1\t2\n")
    proc = run(DATASET, "--dataset_path", str(tmp_path / "M"), "--mrpc_url",
               server.url + "/bad", "--dev_ids_url", server.url + "/bad/ids.tsv", cwd=tmp_path)
    assert proc.returncode == 1
    assert "expected the MRPC header" in error_line(proc)


def test_mrpc_default_path_is_in_the_package(tmp_path):
    proc = run(DATASET, "--help", cwd=tmp_path)
    assert proc.returncode == 0
    assert os.path.join("bert_tensorflow", "dataset", "MRPC") in proc.stdout.replace("\n", "")
