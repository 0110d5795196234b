"""Bad input and stuck ranks in PyTorch pretraining: one ``error: ...`` line naming the file (or
the rank) and what is wrong, exit 2 when found before any work and 1 during it, no traceback,
no hang (issue "Hardening")."""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from models.bert_large.config import BertConfig, ConfigError
from models.bert_large.pytorch import collectives, run_pretraining
from models.bert_large.pytorch import tfrecord_reader as tr
from models.bert_large.pytorch.data import (PHASE_GLOBS, DatasetError, PretrainingBatches,
                                            RecordValueError, find_files)
from models.common.dist_env import DistEnv
from tests.pytorch.conftest import REPO, child_env
from tests.pytorch.pretraining_data import (TINY_CONFIG, VOCAB, encode_example, make_dataset,
                                            make_examples, write_tfrecord)

TRAIN = REPO / "models" / "bert_large" / "pytorch" / "run_pretraining.py"
FREEZE_SCRIPT = REPO / "tests" / "pytorch" / "freeze_rank_script.py"


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, Path]:
    """(DATASET_DIR, bert_config.json) of a few records, this test's own to break."""
    return make_dataset(tmp_path, n128=8, n512=4), tmp_path / "bert_config.json"


def _phase1(dataset: Path, config: Path, out: Path, *extra: str) -> list[str]:
    return ["--phase=1", f"--input_dir={dataset}", f"--output_dir={out}",
            f"--bert_config_file={config}", *extra]


def _one_error_line(capsys, *parts: str) -> str:
    """stderr is exactly one ``error: ...`` line holding every one of ``parts``."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in err
    for part in parts:
        assert part in err, err
    return err


def _header(length: int) -> bytes:
    raw = struct.pack("<Q", length)
    return raw + struct.pack("<I", tr.masked_crc32c(raw))


# ----------------------------------------------------------------------------- 1. record lengths

@pytest.mark.parametrize("length", [2**40, 2**63, 2**64 - 1])
@pytest.mark.parametrize("verify", [True, False])
def test_record_length_beyond_the_file_is_refused(tmp_path: Path, length: int, verify: bool):
    """A header (with a valid CRC) claiming more bytes than the file holds: no MemoryError or
    OverflowError, the file and the record's offset named."""
    good = encode_example({"input_ids": [1, 2, 3]})
    path = tmp_path / "huge"
    write_tfrecord(path, [good])
    with open(path, "ab") as f:
        f.write(_header(length) + b"\0" * 20)
    offset = 16 + len(good)
    with pytest.raises(tr.TFRecordError) as exc:
        list(tr.iter_records(path, verify=verify))
    message = str(exc.value)
    assert message.startswith(f"{path}: truncated record at byte {offset}: its header claims "
                              f"{length} bytes of data, but the file ({offset + 32} bytes) holds "
                              "at most 16 more"), message


def test_huge_record_length_in_the_first_shard_is_a_usage_error(dataset, tmp_path: Path, capsys):
    data, config = dataset
    first = sorted((data / "seq_128").iterdir())[0]
    first.write_bytes(_header(2**40) + first.read_bytes()[12:])
    code = run_pretraining.run_main(_phase1(data, config, tmp_path / "out"))
    assert code == 2
    _one_error_line(capsys, f"{first}: truncated record at byte 0", f"claims {2**40} bytes")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- 2. token ids

def _records_with(path: Path, feature: str, value: int, index: int = 3) -> Path:
    examples = make_examples(6, 128, 20, seed=7)
    examples[index][feature][1] = value
    write_tfrecord(path, [encode_example(e) for e in examples])
    return path


@pytest.mark.parametrize("feature, value, limit", [
    ("input_ids", VOCAB, f"vocab_size={VOCAB}"),
    ("input_ids", -1, f"vocab_size={VOCAB}"),
    ("masked_lm_ids", VOCAB + 55, f"vocab_size={VOCAB}"),
    ("masked_lm_ids", -7, f"vocab_size={VOCAB}"),
    ("segment_ids", 2, "type_vocab_size=2"),
    ("masked_lm_positions", 128, "sequence length 128"),
])
def test_ids_beyond_the_model_are_named(tmp_path: Path, feature: str, value: int, limit: str):
    path = _records_with(tmp_path / "part-00000-of-00001_128", feature, value)
    batches = iter(PretrainingBatches([str(path)], 2, 128, 20, shuffle_buffer=1,
                                      vocab_size=VOCAB, type_vocab_size=2))
    with pytest.raises(RecordValueError) as exc:
        for _ in range(4):
            next(batches)
    message = str(exc.value)
    bound = 128 if feature == "masked_lm_positions" else 2 if feature == "segment_ids" else VOCAB
    assert message.startswith(f"{path}: record index 3 has {feature} value {value}, outside "
                              f"[0, {bound}) allowed by "), message
    assert limit in message


def test_ids_unchecked_without_a_vocab_size(tmp_path: Path):
    path = _records_with(tmp_path / "part", "input_ids", VOCAB + 1)
    assert next(iter(PretrainingBatches([str(path)], 6, 128, 20)))["input_ids"].max() == VOCAB + 1


def test_token_id_beyond_the_vocab_stops_training_with_exit_1(dataset, tmp_path: Path):
    """Found during the work (the first shard's first record is fine): exit 1, one line."""
    data, config = dataset
    for shard in (data / "seq_128").iterdir():
        shard.unlink()
    _records_with(data / "seq_128" / "part-00000-of-00001_128", "input_ids", VOCAB + 3)
    proc = subprocess.run(
        [sys.executable, TRAIN, *_phase1(data, config, tmp_path / "out", "--train_batch_size=2",
                                         "--max_steps=3", "--no_ipex")],
        env=child_env(), text=True, capture_output=True, timeout=240)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"error: {data / 'seq_128' / 'part-00000-of-00001_128'}: record "
                                  f"index 3 has input_ids value {VOCAB + 3}, outside [0, {VOCAB}) "
                                  f"allowed by the model's vocab_size={VOCAB}"), proc.stderr


# ----------------------------------------------------------------------------- 3. non-regular shards

def _call_with_deadline(fn, *args, seconds: float = 20, fifo: Path | None = None):
    """``fn(*args)`` in a thread: fails the test instead of hanging when it blocks (on
    opening ``fifo``, which is then opened for writing to let the reader go)."""
    box: dict = {}

    def work():
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if fifo is not None:
            with open(fifo, "wb"):
                pass
        pytest.fail(f"{getattr(fn, '__name__', fn)} blocked for {seconds} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_matching_the_shard_glob_is_named_not_opened(dataset, tmp_path: Path, capsys):
    data, config = dataset
    fifo = data / "seq_128" / "part-00009-of-00010_128"
    os.mkfifo(fifo)
    with pytest.raises(DatasetError, match=rf"{fifo} matches DATASET_DIR/seq_128/part-\*_128 but "
                                           r"is not a regular file \(it is a FIFO \(named pipe\)\)"):
        _call_with_deadline(find_files, data, PHASE_GLOBS[1], fifo=fifo)
    with pytest.raises(tr.TFRecordError, match=rf"{fifo} is not a regular file \(it is a FIFO"):
        _call_with_deadline(lambda: list(tr.iter_records(fifo)), fifo=fifo)
    code = _call_with_deadline(run_pretraining.run_main, _phase1(data, config, tmp_path / "out"),
                               fifo=fifo)
    assert code == 2
    _one_error_line(capsys, str(fifo), "is not a regular file (it is a FIFO (named pipe))",
                    "only regular TFRecord files may match it")


def test_directory_matching_the_shard_glob_is_named(dataset, tmp_path: Path, capsys):
    data, config = dataset
    folder = data / "seq_128" / "part-00005_128"
    folder.mkdir()
    code = run_pretraining.run_main(_phase1(data, config, tmp_path / "out"))
    assert code == 2
    _one_error_line(capsys, f"{folder} matches DATASET_DIR/seq_128/part-*_128 but is not a regular "
                            "file (it is a directory)")
    with pytest.raises(tr.TFRecordError, match=rf"{folder} is not a regular file \(it is a directory\)"):
        list(tr.iter_records(folder))
    folder.rmdir()
    # a symbolic link to a regular shard is a regular file; a broken one is named
    first = sorted((data / "seq_128").iterdir())[0]
    (data / "seq_128" / "part-00007_128").symlink_to(first)
    assert len(find_files(data, PHASE_GLOBS[1])) == 3
    (data / "seq_128" / "part-00008_128").symlink_to(tmp_path / "gone")
    with pytest.raises(DatasetError, match="part-00008_128 matches .* but is a broken symbolic link"):
        find_files(data, PHASE_GLOBS[1])


# ----------------------------------------------------------------------------- 4. config types

@pytest.mark.parametrize("key, value, expected", [
    ("hidden_size", "big", "'hidden_size' must be an integer >= 1, got \"big\" (a string)"),
    ("hidden_size", [768], "'hidden_size' must be an integer >= 1, got [768] (a list)"),
    ("hidden_size", None, "'hidden_size' must be an integer >= 1, got null"),
    ("vocab_size", True, "'vocab_size' must be an integer >= 1, got true (a boolean)"),
    ("num_attention_heads", 0, "'num_attention_heads' must be an integer >= 1, got 0"),
    ("num_hidden_layers", 2.5, "'num_hidden_layers' must be an integer >= 1, got 2.5 (a number)"),
    ("hidden_dropout_prob", "0.1", "'hidden_dropout_prob' must be a number within [0, 1], got \"0.1\""),
    ("layer_norm_eps", {"v": 1}, "'layer_norm_eps' must be a finite number > 0, got {\"v\": 1} (an object)"),
    ("hidden_act", ["gelu"], "'hidden_act' must be a string (one of gelu, "),
])
def test_config_types_name_the_file_and_the_key(tmp_path: Path, key, value, expected):
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps(dict(TINY_CONFIG, **{key: value})))
    with pytest.raises(ConfigError) as exc:
        BertConfig.from_json_file(path)
    assert isinstance(exc.value, ValueError)
    assert str(exc.value).startswith(f"{path}: {expected}"), str(exc.value)
    with pytest.raises(ConfigError, match=f"^{key!r}"):  # from_dict / the constructor: no file
        BertConfig.from_dict(dict(TINY_CONFIG, **{key: value}))


def test_config_that_is_not_an_object(tmp_path: Path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="has no 'vocab_size'"):
        BertConfig.from_json_file(path)
    with pytest.raises(ConfigError, match="must be a JSON object, got \\[1, 2\\] \\(a list\\)"):
        BertConfig.from_dict([1, 2])


def test_bad_phase1_config_is_a_usage_error(dataset, tmp_path: Path, capsys):
    data, config = dataset
    config.write_text(json.dumps(dict(TINY_CONFIG, hidden_size="big")))
    assert run_pretraining.run_main(_phase1(data, config, tmp_path / "out")) == 2
    _one_error_line(capsys, f"{config}: 'hidden_size' must be an integer >= 1, got \"big\"")


def test_bad_phase2_model_save_config_is_a_usage_error(dataset, tmp_path: Path, capsys):
    data, _ = dataset
    save = tmp_path / "phase1" / "model_save"
    save.mkdir(parents=True)
    (save / "config.json").write_text(json.dumps(dict(TINY_CONFIG, num_attention_heads=[4])))
    (save / "model.safetensors").write_bytes(b"not read: the config is checked first")
    code = run_pretraining.run_main(["--phase=2", f"--input_dir={data}",
                                     f"--init_checkpoint={save}",
                                     f"--output_dir={tmp_path / 'phase2'}"])
    assert code == 2
    _one_error_line(capsys, f"{save / 'config.json'}: 'num_attention_heads' must be an integer "
                            ">= 1, got [4] (a list)", "--init_checkpoint")


# ----------------------------------------------------------------------------- 5. collective timeout

def test_collective_timeout_flag_and_variable(dataset, tmp_path: Path, monkeypatch, capsys):
    data, config = dataset
    argv = _phase1(data, config, tmp_path / "out")
    monkeypatch.delenv("COLLECTIVE_TIMEOUT", raising=False)
    assert run_pretraining.parse_args(argv).collective_timeout is None
    assert run_pretraining.parse_args(argv + ["--collective_timeout=2.5"]).collective_timeout == 2.5
    monkeypatch.setenv("COLLECTIVE_TIMEOUT", "30")
    assert run_pretraining.parse_args(argv).collective_timeout == 30
    assert run_pretraining.parse_args(argv + ["--collective_timeout=0"]).collective_timeout is None
    assert run_pretraining.run_main(argv + ["--collective_timeout=soon"]) == 2
    _one_error_line(capsys, "--collective_timeout='soon' is not a timeout in seconds")
    monkeypatch.setenv("COLLECTIVE_TIMEOUT", "-1")
    assert run_pretraining.run_main(argv) == 2
    _one_error_line(capsys, "COLLECTIVE_TIMEOUT='-1' is not a timeout in seconds")


def test_timeout_goes_to_init_process_group(monkeypatch):
    calls, met = [], []
    store = object()
    monkeypatch.setattr(run_pretraining.dist, "init_process_group", lambda **kw: calls.append(kw))
    monkeypatch.setattr(collectives, "open_store", lambda *a: met.append(("open", a)) or store)
    monkeypatch.setattr(collectives, "join", lambda *a: met.append(("join", a)))
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29998")
    env = DistEnv(rank=1, world_size=2, local_rank=1, local_size=2, source="torchrun")
    monitor = collectives.CollectiveMonitor(1, 2, 4.0)
    assert run_pretraining.setup_distributed(env, "gloo", 4.0, monitor) == "gloo"
    assert calls == [{"backend": "gloo", "store": store, "rank": 1, "world_size": 2,
                      "timeout": datetime.timedelta(seconds=4)}]
    assert met == [("open", (1, 2, "127.0.0.1", 29998, 4.0)), ("join", (store, 1, 2, 4.0))]
    assert monitor.store is store and monitor.store_address == "127.0.0.1:29998"
    calls.clear()
    assert run_pretraining.setup_distributed(env, "gloo") == "gloo"  # default: no limit
    assert "timeout" not in calls[0] and calls[0]["init_method"] == "env://"


class DictStore:
    """The part of a c10d store the monitor uses, in memory."""

    def __init__(self, values=None):
        self.values = {}
        for key, value in (values or {}).items():
            self.set(key, value)

    def set(self, key, value):
        self.values[key] = value.encode() if isinstance(value, str) else value

    def check(self, keys):
        return all(k in self.values for k in keys)

    def get(self, key):
        return self.values[key]


class FrozenStore:
    """A store whose host is frozen: every call blocks (until the test ends)."""

    def __init__(self):
        self.release = threading.Event()

    def set(self, key, value):
        self.release.wait()
        raise RuntimeError("store host gone")

    check = get = set


def _timeout_error():
    return RuntimeError("[/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] "
                        "Timed out waiting 3000ms for recv operation to complete")


def test_monitor_names_ranks_that_posted_nothing(monkeypatch):
    store = DictStore({"modelpkg/status/2": "timed out in step 3: the allreduce of the logged losses",
                       "modelpkg/status/3": "stopped: error: bad.tfrecord: truncated record"})
    monitor = collectives.CollectiveMonitor(0, 5, 3.0, store, "127.0.0.1:1", grace_s=0.3)
    monitor.at("step 3: forward/backward and the gradient allreduce (DDP)")
    started = time.monotonic()
    message = monitor.diagnose(_timeout_error())
    assert time.monotonic() - started < 3
    assert message == ("rank 0 timed out after 3 s (--collective_timeout) in step 3: "
                       "forward/backward and the gradient allreduce (DDP): ranks 1, 4 did not "
                       "answer (frozen, stuck or far slower than the others); rank 3 stopped: "
                       "error: bad.tfrecord: truncated record; rank 2 timed out in step 3: the "
                       "allreduce of the logged losses")
    assert store.values["modelpkg/status/0"].decode().startswith("timed out in step 3")


def test_monitor_names_a_frozen_rank_0_whose_store_does_not_answer(monkeypatch):
    monkeypatch.setattr(collectives, "STORE_ANSWER_S", 0.5)
    store = FrozenStore()
    try:
        monitor = collectives.CollectiveMonitor(1, 2, 3.0, store, "10.0.0.1:29500", grace_s=0.2)
        monitor.at("the start-up barrier")
        started = time.monotonic()
        message = monitor.diagnose(_timeout_error())
        assert time.monotonic() - started < 2
        assert message == ("rank 1 timed out after 3 s (--collective_timeout) in the start-up "
                           "barrier: rank 0 did not answer, nor did the rendezvous store it hosts "
                           "at 10.0.0.1:29500; rank 0 is frozen, stuck or overloaded")
        started = time.monotonic()
        monitor.report("stopped: error: x")  # bounded too
        assert time.monotonic() - started < 1
    finally:
        store.release.set()


def test_failed_collective_without_timeout_is_one_line():
    monitor = collectives.CollectiveMonitor(1, 2, None)
    monitor.at("step 2: the allreduce of the logged losses")
    gone = RuntimeError("[../gloo/transport/tcp/pair.cc:534] Connection closed by peer "
                        "[127.0.0.1]:4242. This is typically caused by a remote worker. GLHF!")
    assert collectives.is_collective_failure(gone)
    assert not collectives.is_collective_failure(RuntimeError("mat1 and mat2 shapes cannot be "
                                                              "multiplied"))
    message = monitor.diagnose(gone)
    assert message.startswith("rank 1: step 2: the allreduce of the logged losses failed "
                              "(Connection closed by peer [127.0.0.1]:4242): another rank has "
                              "stopped or does not answer"), message
    assert "\n" not in message and "--collective_timeout=SECONDS" in message


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "?"


@pytest.mark.slow
def test_frozen_rank_is_named_and_the_other_exits_1(tmp_path: Path):
    """Two real ranks (torchrun-style environment); rank 1 SIGSTOPs itself in the forward of
    step 2. Rank 0 must leave with exit 1 within timeout + grace (+ margin), naming rank 1."""
    data = make_dataset(tmp_path, n128=16, n512=4)
    timeout = 3
    port = _free_port()
    procs, outs = [], []
    try:
        for rank in (0, 1):
            out = tmp_path / f"rank{rank}.out"
            outs.append(out)
            env = child_env(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                            LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                            FREEZE_RANK="1", FREEZE_AT="2", FREEZE_HOW="stop")
            env.pop("COLLECTIVE_TIMEOUT", None)
            with open(out, "w") as stdout, open(tmp_path / f"rank{rank}.err", "w") as stderr:
                procs.append(subprocess.Popen(
                    [sys.executable, FREEZE_SCRIPT,
                     *_phase1(data, tmp_path / "bert_config.json", tmp_path / "run",
                              "--train_batch_size=2", "--max_steps=6", "--log_freq=1",
                              "--dist_backend=gloo", "--no_ipex", f"--collective_timeout={timeout}")],
                    env=env, stdout=stdout, stderr=stderr))
        frozen_at = None
        deadline = time.monotonic() + 150  # start-up (two torch imports on 2 shared cores)
        while procs[0].poll() is None and time.monotonic() < deadline:
            if frozen_at is None and "freezes" in outs[1].read_text():
                frozen_at = time.monotonic()
                deadline = min(deadline, frozen_at + timeout + timeout + 20)
            time.sleep(0.1)
        ended = time.monotonic()
        err0 = (tmp_path / "rank0.err").read_text()
        assert procs[0].returncode is not None, f"rank 0 still waits {ended - (frozen_at or 0):.0f} s " \
                                                f"after rank 1 froze:\n{outs[0].read_text()}{err0}"
        assert frozen_at is not None, outs[1].read_text() + (tmp_path / "rank1.err").read_text()
        assert procs[1].poll() is None and _state(procs[1].pid) in ("T", "t", "?")  # frozen, not dead
        assert procs[0].returncode == 1, err0
        assert err0.count("\n") == 1 and "Traceback" not in err0, err0
        assert err0.startswith(f"error: rank 0 timed out after {timeout} s (--collective_timeout) "
                               "in step 2: forward/backward and the gradient allreduce (DDP): "
                               "rank 1 did not answer"), err0
        assert ended - frozen_at < timeout + timeout + 15
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
