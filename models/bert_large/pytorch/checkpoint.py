"""The ``model_save`` folder of PyTorch BERT pretraining: ``config.json`` + ``model.safetensors``
(Hugging Face names, loadable by ``transformers``) + ``training_state.pt`` (phase, step,
samples, optimizer and scheduler state, for resuming).

``save`` writes it atomically (a temporary folder renamed into place; the old copy is renamed
away first and removed last), ``recover_interrupted_save`` puts the old copy back after a crash
between the two renames. ``check_start`` checks, before any work, that a run's
``--init_checkpoint`` / ``--output_dir`` make sense for its phase.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

from models.bert_large.pytorch.modeling import BertConfig, BertForPreTraining

MODEL_SAVE = "model_save"
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
STATE = "training_state.pt"


class CheckpointError(ValueError):
    """A model_save folder that cannot be loaded; the message names it and what to point to."""


# ----------------------------------------------------------------------------- state

def saved_phase(model_save: Path) -> int | None:
    """The phase whose training state ``model_save`` holds (None: no readable state)."""
    state = model_save / STATE
    if not state.is_file():
        return None
    try:
        return torch.load(state, map_location="cpu", weights_only=True).get("phase")
    except Exception:  # noqa: BLE001 - truncated/foreign file: not a state to resume from
        return None


def has_state(model_save: Path, phase: int) -> bool:
    """``model_save`` holds ``phase``'s training state: a run of that phase resumes from it."""
    return saved_phase(model_save) == phase


def load_state(model_save: Path, map_location="cpu") -> dict:
    """The training state (``phase``, ``step``, ``samples``, ``optimizer``, ``scheduler``), its
    tensors on ``map_location`` (``optimizer.load_state_dict`` then moves them to the weights'
    device, so a state saved on a GPU resumes on a CPU and the other way round)."""
    try:
        return torch.load(model_save / STATE, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file: one line naming it
        raise CheckpointError(f"cannot read the training state {model_save / STATE}: {exc}; "
                              "remove it to start this phase again") from None


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def check_start(phase: int, output_dir: Path, init_checkpoint: Path | None,
                has_config_file: bool) -> None:
    """Before any work: the folders a run of ``phase`` reads and writes fit together.
    Raises ``ValueError`` naming the flag (and the quickstart variable) to change."""
    own_save = output_dir / MODEL_SAVE
    if init_checkpoint is not None:
        ckpt = init_checkpoint
        if not (ckpt / CONFIG).is_file() and (ckpt / MODEL_SAVE / CONFIG).is_file():
            raise ValueError(f"--init_checkpoint={ckpt} is phase 1's OUTPUT_DIR, not its model; "
                             f"use --init_checkpoint={ckpt / MODEL_SAVE} (CHECKPOINT_DIR=<phase 1 "
                             f"OUTPUT_DIR>/{MODEL_SAVE})")
        for name in (CONFIG, WEIGHTS):
            if not (ckpt / name).is_file():
                raise ValueError(f"--init_checkpoint={ckpt} has no {name}; use the model_save "
                                 "folder that phase 1 wrote to its OUTPUT_DIR")
        if _same_path(ckpt, own_save):
            raise ValueError(f"--output_dir={output_dir} is the folder of --init_checkpoint={ckpt}: "
                             f"this run would overwrite the {MODEL_SAVE} it starts from; set "
                             f"OUTPUT_DIR (--output_dir) to a new directory for phase {phase}")
        try:  # a config.json with wrong types or values fails now, not after the set-up
            BertConfig.from_json_file(ckpt / CONFIG)
        except ValueError as exc:
            raise ValueError(f"{exc}; point CHECKPOINT_DIR (--init_checkpoint) to a model_save "
                             "folder written by run_pretraining.py") from None
    elif phase == 2 and not has_state(own_save, 2):
        raise ValueError("phase 2 needs --init_checkpoint (CHECKPOINT_DIR): phase 1's "
                         "OUTPUT_DIR/model_save")
    elif phase == 1 and not has_config_file:
        raise ValueError("phase 1 needs --bert_config_file (CONFIG_FILE): the bert_config.json "
                         "of the model")
    if own_save.exists() and saved_phase(own_save) != phase:
        other = saved_phase(own_save)
        held = f"phase {other}'s model" if other else "a model"
        raise ValueError(f"{own_save} already holds {held}, which this phase {phase} run would "
                         "overwrite; set OUTPUT_DIR (--output_dir) to a new, empty directory")


# ----------------------------------------------------------------------------- save / load

def recover_interrupted_save(output_dir: Path) -> None:
    """A crash between the two renames of ``save`` leaves only the old copy: put it back."""
    target = output_dir / MODEL_SAVE
    if target.exists():
        return
    olds = sorted(output_dir.glob(f".{MODEL_SAVE}.old-*"))
    if olds:
        olds[-1].rename(target)


def _on_cpu(obj):
    """``obj`` (a state dict: dicts, lists, tensors) with every tensor copied to the CPU, so the
    file holds no device it cannot be loaded without (a model trained on a GPU saves CPU data)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _on_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_on_cpu(v) for v in obj)
    return obj


def save(output_dir: Path, model: BertForPreTraining, optimizer, scheduler, step: int, phase: int,
         samples: int) -> Path:
    """Write model_save/ (config.json, model.safetensors, training_state.pt) atomically."""
    from safetensors.torch import save_file

    target = output_dir / MODEL_SAVE
    tmp = output_dir / f".{MODEL_SAVE}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / CONFIG).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
    save_file(model.hf_state_dict(), str(tmp / WEIGHTS), metadata={"format": "pt"})
    torch.save(
        {"phase": phase, "step": step, "samples": samples,
         "optimizer": _on_cpu(optimizer.state_dict()), "scheduler": scheduler.state_dict()},
        tmp / STATE,
    )
    old = output_dir / f".{MODEL_SAVE}.old-{os.getpid()}"
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def load_model(model_save: Path) -> BertForPreTraining:
    """The model in ``model_save``; ``CheckpointError`` naming the folder when it does not load."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        config = BertConfig.from_json_file(model_save / CONFIG)
        model = BertForPreTraining(config)
        model.load_hf_state_dict(load_file(str(model_save / WEIGHTS)),
                                 source=str(model_save / WEIGHTS))
    except (OSError, ValueError, SafetensorError) as exc:
        raise CheckpointError(f"cannot load the model in {model_save}: {exc}; point "
                              "CHECKPOINT_DIR (--init_checkpoint) to a model_save folder written "
                              "by run_pretraining.py") from None
    return model


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over every parameter's bytes: equal digests mean bit-identical weights."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
