"""Download and extract a google-research pretrained BERT model (Habana's command line).

    python download/download_pretrained_model.py URL NAME UNZIP [--output-dir DIR]

downloads ``URL + NAME + ".zip"`` and leaves ``NAME/bert_config.json``, ``NAME/vocab.txt`` and
``NAME/bert_model.ckpt.*`` in the current directory (or DIR). UNZIP has the meaning of the
third argument of Habana's script (its ``flatten_archive``): it says how the zip is laid out.

  False  the files are at the zip's root (google's 2020_02_20 models, e.g.
         uncased_L-12_H-768_A-12): they are extracted into a new NAME/ folder.
  True   the zip has its own top folder (google's 2019_05_30 models, e.g.
         wwm_uncased_L-24_H-1024_A-16.zip holds wwm_uncased_L-24_H-1024_A-16/...): the folder
         is extracted as it is (and named NAME/).

A zip whose layout does not match UNZIP is an error that says which value to pass.

Where: Habana's script always extracts into the package root (the folder holding download/);
its README runs it from there (``cd .../bert``). This one uses the current directory, so run it
from the package root as the README does, or pass ``--output-dir`` (the package's data scripts
look for ``wwm_uncased_L-24_H-1024_A-16/vocab.txt`` in the package root by default).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import zipfile
import zlib
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fetch  # noqa: E402

MODEL_FILES = ("bert_config.json", "vocab.txt", "bert_model.ckpt.index")
TRUE_WORDS = {"true": True, "1": True, "false": False, "0": False}


class UsageError(Exception):
    pass


class WorkError(Exception):
    pass


def parse_bool(value: str) -> bool:
    try:
        return TRUE_WORDS[value.strip().lower()]
    except KeyError:
        raise UsageError(f"UNZIP={value!r}: expected True or False (also true/false/1/0)") \
            from None


def missing_model_files(folder: Path) -> list[str]:
    """Files of a google BERT model folder that FOLDER lacks (empty: complete)."""
    missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
    if not any(folder.glob("bert_model.ckpt.data-*")):
        missing.append("bert_model.ckpt.data-*")
    return missing


def model_url(base: str, name: str) -> str:
    if base and not base.endswith("/"):
        base += "/"
    return f"{base}{name}.zip"


def _file_members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    return [m for m in zf.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")]


def model_root_in_zip(zf: zipfile.ZipFile, has_top_folder: bool, source: str) -> str:
    """The folder inside the zip ('' = root, else 'TOP/') that holds bert_config.json."""
    members = _file_members(zf)
    configs = [m.filename for m in members if m.filename.rsplit("/", 1)[-1] == "bert_config.json"]
    if not configs:
        raise WorkError(f"{source}: the zip has no bert_config.json (not a google BERT model "
                        f"archive); its files: {', '.join(m.filename for m in members[:5])}"
                        + (" ..." if len(members) > 5 else ""))
    config = min(configs, key=lambda p: p.count("/"))
    root = config[: -len("bert_config.json")]
    if has_top_folder and not root:
        raise WorkError(f"{source}: bert_config.json is at the zip's root, not in a top "
                        "folder: pass False as the third argument (UNZIP)")
    if not has_top_folder and root:
        raise WorkError(f"{source}: the zip keeps its files in a top folder {root}: pass True "
                        "as the third argument (UNZIP)")
    return root


def extract_model(zip_path: Path, name: str, has_top_folder: bool, dest_dir: Path,
                  source: str) -> Path:
    """Extract the model of ZIP_PATH to DEST_DIR/NAME atomically; returns that folder."""
    final = dest_dir / name
    tmp = fetch.temp_path_beside(final)
    tmp.unlink()
    tmp.mkdir()
    try:
        try:
            with zipfile.ZipFile(zip_path) as zf:
                root = model_root_in_zip(zf, has_top_folder, source)
                members = [m for m in _file_members(zf) if m.filename.startswith(root)]
                total = sum(m.file_size for m in members)
                print(f"extracting {len(members)} files ({fetch.human_bytes(total)}) "
                      f"from {zip_path.name}", file=sys.stderr, flush=True)
                for member in members:
                    zf.extract(member, tmp)
        except (zipfile.BadZipFile, EOFError, zlib.error) as err:
            raise WorkError(f"{source}: not a valid zip archive ({err})") from None
        folder = tmp / root.rstrip("/") if root else tmp
        missing = missing_model_files(folder)
        if missing:
            raise WorkError(f"{source}: the zip lacks {', '.join(missing)} (not a complete "
                            "google BERT model)")
        if folder != tmp:
            moved = fetch.temp_path_beside(final)
            moved.unlink()
            os.replace(folder, moved)
            shutil.rmtree(tmp)
            tmp = moved
        os.replace(tmp, final)
        return final
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def usable_zip(path: Path) -> bool:
    if not path.is_file() or path.stat().st_size == 0:
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.testzip() is None
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError):
        return False


def run(url_base: str, name: str, has_top_folder: bool, dest_dir: Path) -> Path:
    final = dest_dir / name
    if final.exists():
        if not final.is_dir():
            raise UsageError(f"{final} exists and is not a folder: move it away")
        missing = missing_model_files(final)
        if not missing:
            print(f"{final}/ is already complete (bert_config.json, vocab.txt, "
                  "bert_model.ckpt.*): not downloading it again", file=sys.stderr)
            return final
        raise UsageError(f"{final}/ exists but lacks {', '.join(missing)}: remove it (or move "
                         "it away) to download the model again")
    url = model_url(url_base, name)
    fetch.remove_stale_temps(dest_dir, name)
    fetch.remove_stale_temps(dest_dir, f"{name}.zip")
    local_zip = dest_dir / f"{name}.zip"
    if usable_zip(local_zip):
        print(f"using the existing {local_zip} (not downloading it again)", file=sys.stderr)
        return extract_model(local_zip, name, has_top_folder, dest_dir, str(local_zip))
    try:
        try:
            fetch.download(url, local_zip)
        except fetch.FetchError as err:
            raise WorkError(str(err)) from None
        return extract_model(local_zip, name, has_top_folder, dest_dir, fetch.mask_url(url))
    finally:
        local_zip.unlink(missing_ok=True)  # downloaded here: not kept once extracted


def build_parser() -> argparse.ArgumentParser:
    doc = (__doc__ or "").split("\n\n", 1)[1].strip()
    parser = fetch.OneLineParser(
        prog="download_pretrained_model.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Download and extract a google-research pretrained BERT model.\n\n" + doc,
        epilog="examples:\n"
               "  python download/download_pretrained_model.py \\\n"
               "      https://storage.googleapis.com/bert_models/2020_02_20/ "
               "uncased_L-12_H-768_A-12 False\n"
               "  python download/download_pretrained_model.py \\\n"
               "      https://storage.googleapis.com/bert_models/2019_05_30/ "
               "wwm_uncased_L-24_H-1024_A-16 True\n\n"
               "The zip is downloaded to a temp file beside NAME/ and extracted into a temp "
               "folder that is renamed to NAME/ when complete: an error or Ctrl-C leaves "
               "nothing half-written. A complete NAME/ is not downloaded again; an existing "
               "valid NAME.zip is used instead of downloading.\n"
               "Exit status: 0 done (or already there), 2 bad arguments (or an incomplete "
               "NAME/ in the way), 1 the download or extraction failed, 130 interrupted.")
    parser.add_argument("url", metavar="URL", help="base URL; the zip is URL + NAME + '.zip'")
    parser.add_argument("name", metavar="NAME", help="model name, e.g. uncased_L-12_H-768_A-12")
    parser.add_argument("unzip", metavar="UNZIP",
                        help="True: the zip has its own top folder; False: its files are at "
                             "its root and go into a new NAME/ (true/false/1/0 also accepted)")
    parser.add_argument("--output-dir", "--output_dir", dest="output_dir", default=".",
                        help="where NAME/ is created (default: the current directory)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    fetch.install_signal_handlers()
    try:
        has_top_folder = parse_bool(args.unzip)
        dest_dir = Path(args.output_dir)
        if not dest_dir.is_dir():
            raise UsageError(f"--output-dir={dest_dir}: no such folder")
        if not args.name or "/" in args.name or args.name in (".", ".."):
            raise UsageError(f"NAME={args.name!r}: expected a model name such as "
                             "uncased_L-12_H-768_A-12")
        folder = run(args.url, args.name, has_top_folder, dest_dir)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except WorkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"error: {err.filename or ''}: {err.strerror or err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; nothing half-written was left", file=sys.stderr)
        return 130
    print(f"pretrained model ready: {folder}/ (bert_config.json, vocab.txt, bert_model.ckpt)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
