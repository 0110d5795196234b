"""Habana's bf16 switch: ``TF_BF16_CONVERSION`` / ``--bf16_config_path`` and the mixed-precision
recipe file they name (``bf16_config/bert.json`` in the Gaudi package).

The file is the format Habana's TensorFlow bridge reads::

    {"allowlists": {
        "allowlist": ["BatchMatMulV2", "MatMul", ...],          # always run in bf16
        "conditional_list": ["AddV2", "BiasAdd", ...],          # bf16 when an input is
        "strict_conditional_list": [...],                       # bf16 when all inputs are
        "non_convertible_exceptions": [["name regex", ""], ...],  # never converted
        "convertible_exceptions": [["name regex", "bfloat16"], ...]}}

On a Gaudi the bridge applies it (the path is handed over in ``TF_BF16_CONVERSION`` before the
bridge loads). On the CPU the recipe cannot be applied op by op; a valid file (or
``TF_BF16_CONVERSION=1``) selects the project's bf16 policy instead (Keras
``mixed_bfloat16``: matmuls and activations in bf16, variables float32; see ``precision.py``).

Standard library only: it runs during flag checks, before TensorFlow is imported.
"""

from __future__ import annotations

import json
import os
from typing import Mapping

ENV = "TF_BF16_CONVERSION"
REQUIRED_LISTS = ("allowlist", "conditional_list")
OPTIONAL_LISTS = ("strict_conditional_list",)
EXCEPTION_LISTS = ("non_convertible_exceptions", "convertible_exceptions")
_OFF = {"", "0", "false", "no", "off"}
_ON = {"1", "true", "yes", "on"}


class Bf16ConfigError(ValueError):
    """A bf16 recipe that is missing or malformed; the message names the file and key."""


def load(path: str, source: str) -> dict:
    """The recipe at ``path`` (``source`` names where the path came from, e.g.
    ``--bf16_config_path`` or ``TF_BF16_CONVERSION``), checked; Bf16ConfigError otherwise."""
    where = f"{source}={path}"
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise Bf16ConfigError(f"{where}: file not found (the Gaudi package ships "
                              "bf16_config/bert.json)") from None
    except IsADirectoryError:
        raise Bf16ConfigError(f"{where}: is a folder; name the JSON file, e.g. "
                              "bf16_config/bert.json") from None
    except (OSError, UnicodeDecodeError) as err:
        raise Bf16ConfigError(f"{where}: cannot read it ({err})") from None
    except json.JSONDecodeError as err:
        raise Bf16ConfigError(f"{where}: not valid JSON (line {err.lineno}, column "
                              f"{err.colno}: {err.msg})") from None
    lists = data.get("allowlists") if isinstance(data, dict) else None
    if not isinstance(lists, dict):
        raise Bf16ConfigError(f"{where}: expected an object with key \"allowlists\" holding "
                              f"{', '.join(REQUIRED_LISTS)} (Habana's bf16 recipe format)")
    for key in REQUIRED_LISTS + OPTIONAL_LISTS:
        if key not in lists:
            if key in REQUIRED_LISTS:
                raise Bf16ConfigError(f"{where}: allowlists.{key} is missing (a list of op "
                                      "names)")
            continue
        ops = lists[key]
        if not isinstance(ops, list) or not all(isinstance(o, str) and o for o in ops):
            raise Bf16ConfigError(f"{where}: allowlists.{key} must be a list of op names "
                                  "(strings)")
    for key in EXCEPTION_LISTS:
        for i, pair in enumerate(lists.get(key, [])):
            if not (isinstance(pair, list) and len(pair) == 2
                    and all(isinstance(p, str) for p in pair)):
                raise Bf16ConfigError(f"{where}: allowlists.{key}[{i}] must be a pair "
                                      "[\"op name regex\", \"dtype or empty\"]")
    unknown = sorted(set(lists) - set(REQUIRED_LISTS + OPTIONAL_LISTS + EXCEPTION_LISTS))
    if unknown:
        raise Bf16ConfigError(f"{where}: unknown key(s) allowlists.{', allowlists.'.join(unknown)}"
                              f" (allowed: {', '.join(REQUIRED_LISTS + OPTIONAL_LISTS + EXCEPTION_LISTS)})")
    return data


def summary(recipe: dict) -> str:
    lists = recipe["allowlists"]
    return ", ".join(f"{len(lists.get(k, []))} {k}" for k in REQUIRED_LISTS + OPTIONAL_LISTS
                     + EXCEPTION_LISTS if k in lists)


def resolve(precision_flag: str | None, config_path: str | None,
            environ: Mapping[str, str] | None = None) -> tuple[str, str | None, str]:
    """(precision, recipe path or None, why) from ``--precision``, ``--bf16_config_path`` and
    ``TF_BF16_CONVERSION``, in that order of priority. A recipe that is named is checked
    (Bf16ConfigError) even when ``--precision`` decides."""
    environ = os.environ if environ is None else environ
    if config_path:
        load(config_path, "--bf16_config_path")
        recipe, why = config_path, f"--bf16_config_path={config_path}"
    else:
        value = environ.get(ENV, "").strip()
        if value.lower() in _OFF:
            recipe, why = None, None
        elif value.lower() in _ON:
            recipe, why = None, f"{ENV}={value}"
        else:
            load(value, ENV)
            recipe, why = value, f"{ENV}={value}"
    if precision_flag:
        return precision_flag, recipe, f"--precision={precision_flag}"
    if why:
        return "bf16", recipe, why
    return "fp32", None, f"default (no --precision, no {ENV})"
