"""The precision vocabulary: names, aliases and which framework runs which (standard library).

This module is the one owner of these facts. The launcher, the TensorFlow and PyTorch training
code, the shell quickstarts (through the command line below) and the packager (which checks
each spec's ``precision`` against it) all read it.

Canonical names:

- ``fp32``     float32 everywhere (oneDNN may pick AMX/bf16 kernels on its own: no limit set);
- ``avx-fp32`` float32 with oneDNN limited to AVX-512 (``DNNL_MAX_CPU_ISA`` unset by the
               launcher, so no AMX), as Intel's PyTorch scripts mean it;
- ``bf16``     bfloat16 compute with float32 variables (Keras ``mixed_bfloat16``, torch autocast);
- ``bf32``     float32 tensors with bfloat16 matmul math (oneDNN "fp32 math mode bf16");
- ``fp16``, ``int8``: names reserved for inference packages; no training code runs them.

Aliases are spellings users and Intel's documents write: ``bfloat16`` (the TF package and
script names), ``float32``, ``mixed_bfloat16``. ``canonical()`` maps any of them to its
canonical name; ``script_name()`` is the spelling Intel's quickstart file names use.

Command line (for shell scripts; prints the canonical name, or one line on stderr and exit 2)::

    python3 models/common/precisions.py resolve VALUE [--framework tensorflow|pytorch]
        [--package-dir DIR] [--what PRECISION]
    python3 models/common/precisions.py list [--framework F] [--package-dir DIR]

``--package-dir`` reads the precisions the package was built for from ``DIR/package_info.json``
(written by ``modelpkg build``); without that file the framework's list applies.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, Optional, Sequence, Tuple

CANONICAL: Tuple[str, ...] = ("fp32", "avx-fp32", "bf16", "bf32", "fp16", "int8")
ALIASES: Dict[str, str] = {
    "float32": "fp32",
    "bfloat16": "bf16",
    "mixed_bfloat16": "bf16",
    "float16": "fp16",
}
# What the shipped training code of each framework runs (in this order in messages).
SUPPORTED: Dict[str, Tuple[str, ...]] = {
    "tensorflow": ("fp32", "bf16"),
    "pytorch": ("fp32", "avx-fp32", "bf16", "bf32"),
}
# Precisions that compute in bfloat16 (the launcher warns when the CPU has no native bf16).
BF16_MATH: Tuple[str, ...] = ("bf16", "bf32")
# The spelling in Intel's quickstart script names (bfloat16_squad_training.sh).
_SCRIPT_NAMES = {"bf16": "bfloat16"}
PACKAGE_INFO = "package_info.json"
USAGE_EXIT = 2


class PrecisionError(ValueError):
    """An unknown or unsupported precision; the message says what is allowed."""


def canonical(value: str) -> str:
    """``value`` (any known spelling, any case) as its canonical name; ``PrecisionError`` else."""
    text = str(value).strip().lower()
    text = ALIASES.get(text, text)
    if text not in CANONICAL:
        known = ", ".join(CANONICAL + tuple(ALIASES))
        raise PrecisionError(f"unknown precision {value!r}; known: {known}")
    return text


def spellings(name: str) -> Tuple[str, ...]:
    """Every accepted spelling of canonical ``name`` (itself first)."""
    return (name, *(alias for alias, target in ALIASES.items() if target == name))


def script_name(name: str) -> str:
    """The spelling Intel's quickstart file names use for canonical ``name`` (``bfloat16``)."""
    return _SCRIPT_NAMES.get(canonical(name), canonical(name))


def supported(framework: str) -> Tuple[str, ...]:
    try:
        return SUPPORTED[framework]
    except KeyError:
        raise PrecisionError(
            f"unknown framework {framework!r}; known: {', '.join(SUPPORTED)}") from None


def human_list(names: Sequence[str]) -> str:
    """``fp32, avx-fp32, bf16 or bf32`` (as written in help texts)."""
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " or " + names[-1]


def resolve(value: str, allowed: Sequence[str], what: str = "precision") -> str:
    """Canonical name of ``value`` if it is one of ``allowed`` (canonical names), else
    ``PrecisionError`` naming ``what`` (a flag or variable) and the allowed values."""
    try:
        name = canonical(value)
    except PrecisionError:
        name = None
    if name is None or name not in allowed:
        raise PrecisionError(
            f"{what}={value} is not supported here; use one of: {', '.join(allowed)}")
    return name


def package_precisions(package_dir: str) -> Optional[Tuple[str, ...]]:
    """The precisions recorded in ``package_dir/package_info.json``, or None without the file."""
    path = os.path.join(package_dir, PACKAGE_INFO)
    try:
        with open(path, encoding="utf-8") as handle:
            info = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise PrecisionError(f"{path} is unreadable ({exc}); extract the package again") from None
    names = info.get("precisions") if isinstance(info, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise PrecisionError(f"{path} has no 'precisions' list; extract the package again")
    return tuple(canonical(n) for n in names)


def allowed_for(framework: Optional[str], package_dir: Optional[str]) -> Tuple[str, ...]:
    """The package's own list when ``package_dir`` has one, else the framework's, else all."""
    if package_dir:
        names = package_precisions(package_dir)
        if names is not None:
            return names
    if framework:
        return supported(framework)
    return CANONICAL


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="precisions.py", description="Resolve or list precision names (see the module docstring).")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("resolve", "print the canonical name of VALUE, or exit 2 naming the allowed ones"),
                       ("list", "print the allowed canonical names, one per line")):
        cmd = sub.add_parser(name, help=text)
        if name == "resolve":
            cmd.add_argument("value")
            cmd.add_argument("--what", default="PRECISION", help="variable or flag named in the error")
        cmd.add_argument("--framework", choices=sorted(SUPPORTED))
        cmd.add_argument("--package-dir")
    args = parser.parse_args(argv)
    try:
        allowed = allowed_for(args.framework, args.package_dir)
        if args.command == "list":
            print("\n".join(allowed))
        else:
            print(resolve(args.value, allowed, args.what))
    except PrecisionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())
