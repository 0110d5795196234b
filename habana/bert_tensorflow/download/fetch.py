"""Download one URL to a file, atomically, with progress lines (standard library only).

Used by ``download_pretrained_model.py``, ``download_dataset.py`` and the pretraining-data
pipeline (``data_preprocessing/create_datasets_from_start.sh`` calls this file's command line):

    python download/fetch.py URL OUTPUT_FILE [--force] [--quiet]

The data goes to a temp file beside OUTPUT_FILE (``.<name>.<pid>.<random>.tmp``) that is renamed
to OUTPUT_FILE once the whole body has arrived (checked against ``Content-Length`` when the
server sends one); on an error, Ctrl-C or SIGTERM the temp file is removed, so OUTPUT_FILE is
either complete or absent. An existing OUTPUT_FILE is not downloaded again (unless --force).

Exit status: 0 done (or already there); 2 bad arguments; 1 the download failed (HTTP error,
unreachable host, short body), with one ``error: ...`` line naming the URL; 130 interrupted.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

CHUNK = 1 << 20
PROGRESS_SECONDS = 5.0
USER_AGENT = "modelpkg-bert-download/1.0 (urllib)"


class OneLineParser(argparse.ArgumentParser):
    """argparse with a one-line ``PROG: error: ...`` (exit 2) instead of usage + error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def format_help(self):
        return super().format_help().replace("``", "")  # docstrings' literal markup


class FetchError(Exception):
    """A download that failed; the message is one line naming the URL."""


def mask_url(url: str) -> str:
    """URL with the password of its userinfo replaced by ``***`` (for printing)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def temp_path_beside(target: Path, suffix: str = ".tmp") -> Path:
    """A fresh, empty temp file beside TARGET, named ``.<target>.<pid>.<random>.tmp``."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=suffix,
                                dir=str(target.parent))
    os.close(fd)
    return Path(name)


def _terminate(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


def install_signal_handlers() -> None:
    """SIGTERM (and SIGHUP) end the program like Ctrl-C, so ``finally`` clean-ups run."""
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, _terminate)


def _describe_http_error(url: str, err: urllib.error.HTTPError) -> str:
    reason = err.reason or ""
    hint = {
        403: "the server refused access",
        404: "no such file on the server: check the URL and the name",
        503: "the server is overloaded or down: try again later",
    }.get(err.code, "")
    return (f"HTTP {err.code} {reason}".rstrip() + f" for {mask_url(url)}"
            + (f" ({hint})" if hint else ""))


def download(url: str, target: Path | str, *, quiet: bool = False, timeout: float = 60.0,
             out=None) -> Path:
    """Download URL to TARGET atomically; returns TARGET. Raises FetchError on any failure."""
    target = Path(target)
    out = out or sys.stderr
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_beside(target)
    shown = mask_url(url)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        try:
            response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310
        except urllib.error.HTTPError as err:
            raise FetchError(_describe_http_error(url, err)) from None
        except urllib.error.URLError as err:
            raise FetchError(f"cannot download {shown}: {err.reason}") from None
        except (OSError, ValueError, http.client.HTTPException) as err:
            raise FetchError(f"cannot download {shown}: {err}") from None
        with response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if not quiet:
                size = human_bytes(total) if total is not None else "unknown size"
                print(f"downloading {shown} ({size}) -> {target}", file=out, flush=True)
            received = 0
            start = last = time.monotonic()
            try:
                with open(tmp, "wb") as f:
                    while True:
                        chunk = response.read(CHUNK)
                        if not chunk:
                            break
                        f.write(chunk)
                        received += len(chunk)
                        now = time.monotonic()
                        if not quiet and now - last >= PROGRESS_SECONDS:
                            last = now
                            print("  " + _progress_line(received, total, now - start),
                                  file=out, flush=True)
                    f.flush()
                    os.fsync(f.fileno())
            except (OSError, ValueError, http.client.HTTPException) as err:  # reset, short read
                raise FetchError(f"download of {shown} failed after "
                                 f"{human_bytes(received)}: {err}") from None
        if total is not None and received != total:
            raise FetchError(f"download of {shown} ended after {received} of {total} bytes "
                             "(connection closed early): try again")
        os.replace(tmp, target)
        if not quiet:
            print("  " + _progress_line(received, total, time.monotonic() - start) + ", done",
                  file=out, flush=True)
        return target
    finally:
        if tmp.exists():
            tmp.unlink()


def _progress_line(received: int, total: int | None, seconds: float) -> str:
    rate = received / seconds if seconds > 0 else 0.0
    if total:
        return (f"{human_bytes(received)} / {human_bytes(total)} "
                f"({100.0 * received / total:.0f}%), {human_bytes(rate)}/s")
    return f"{human_bytes(received)}, {human_bytes(rate)}/s"


def remove_stale_temps(directory: Path, name: str) -> None:
    """Remove ``.<name>.<pid>.*.tmp`` files (and folders) left by killed (SIGKILL) writers
    whose process is gone."""
    if not directory.is_dir():
        return
    for path in directory.glob(f".{name}.*.tmp"):
        parts = path.name[len(name) + 2:].split(".")
        if not parts or not parts[0].isdigit():
            continue
        pid = int(parts[0])
        if pid != os.getpid() and _pid_alive(pid):
            continue
        if path.is_dir():
            import shutil  # noqa: PLC0415
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="fetch.py",
        description="Download URL to OUTPUT_FILE atomically (temp file beside it, renamed when "
                    "complete), printing progress lines (bytes received / total). An existing "
                    "OUTPUT_FILE is kept unless --force.",
        epilog="Exit status: 0 done or already present, 2 bad arguments, 1 download failed, "
               "130 interrupted.")
    parser.add_argument("url", help="http(s):// or file:// URL")
    parser.add_argument("output", help="the file to write")
    parser.add_argument("--force", action="store_true", help="download even if OUTPUT exists")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the server (connect and each read; default 60)")
    args = parser.parse_args(argv)
    install_signal_handlers()
    scheme = urllib.parse.urlsplit(args.url).scheme
    if scheme not in ("http", "https", "file", "ftp"):
        print(f"error: {mask_url(args.url)}: not a URL (expected http://, https://, ftp:// or "
              "file://)", file=sys.stderr)
        return 2
    target = Path(args.output)
    if target.is_dir():
        print(f"error: {target} is a folder; pass the file to write", file=sys.stderr)
        return 2
    try:
        if target.exists() and not args.force:
            print(f"{target} already exists ({human_bytes(target.stat().st_size)}): not "
                  "downloading again (--force to replace it)", file=sys.stderr)
            return 0
        remove_stale_temps(target.parent, target.name)
        download(args.url, target, quiet=args.quiet, timeout=args.timeout)
    except FetchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"error: cannot write {target}: {err.strerror or err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"error: interrupted; nothing written to {target}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
