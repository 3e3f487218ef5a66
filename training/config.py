"""Training configuration: nested dicts (JSON files), defaults, ``key.path=value`` overrides.

A config is a plain dict with the sections of :data:`DEFAULT_CONFIG`. Config files may name
a ``"base"`` config (a bundled name such as ``"s"`` or a path) that they override.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

from evopose_sdk.errors import EvoPoseError, did_you_mean

#: Every known field with its default. Unknown fields are rejected with a suggestion.
DEFAULT_CONFIG: dict = {
    "name": "evopose2d-s",
    "model": {
        "size": "S",              # XS | S | M | L (genotype and input size), or null
        "genotype": None,         # 7 x [kernel, repeats, filters/8, stride] overrides size
        "input_hw": None,         # [h, w] overrides the size's input
        "head_channels": 128,
        "compound_scaling": True,
        "activation": "swish",
        "drop_connect_rate": None,
        "weight_decay": 1e-5,     # L2 on kernels (the paper's 1e-5)
    },
    "data": {
        "root": None,             # folder of <source>/annotations.json + images/
        "sources": None,          # list of {annotations, images, weight, split} or names in root
        "split": "train",
        "val_root": None,         # default: data.root
        "val_sources": None,      # default: every source of val_root with images of val_split
        "val_split": "dev_val",
        "flip_pairs": None,       # default: from the keypoint names
        "sigma": None,            # heatmap sigma in cells; default 2 at 64x48, scaled
        "min_keypoints": 1,
        "max_people": None,       # use only the first N people (smoke tests)
        "augment": {
            "enabled": True, "scale_factor": 0.3, "rotation": 40.0, "rotation_prob": 0.6,
            "flip_prob": 0.5, "half_body_prob": 0.3, "half_body_min_joints": 8,
            "color_jitter": 0.2, "truncate_prob": 0.0, "paste_person_prob": 0.0,
            "occlude_prob": 0.0, "blur_prob": 0.0, "lowres_prob": 0.0,
        },
        "pipeline": None,         # list of {"step": NAME, ...} (training.pipeline); default:
                                  # the steps of "augment" in their fixed order
        "workers": 2,
        "use_multiprocessing": True,
        "prefetch": 4,
    },
    "train": {
        "epochs": 200,
        "batch_size": 512,
        "lr": 2.5e-4,             # Adam peak LR at lr_reference_batch; scaled linearly
        "lr_reference_batch": 32,
        "warmup_epochs": 5,
        "min_lr_fraction": 0.0,
        "loss": "heatmap_mse",    # a name of training.losses.LOSSES
        "loss_options": None,     # {argument: value} for the loss class
        "seed": 0,
        "precision": "auto",      # auto | float32 | mixed_bfloat16 | mixed_float16
        "devices": 1,             # int or "all": data parallel over local accelerators
        "steps_per_epoch": None,  # default: all samples of the epoch
        "max_steps": None,        # stop (with a checkpoint) at this global step
        "checkpoint_every_steps": 0,  # 0: at the end of every epoch only
        "keep_checkpoints": 2,
        "log_every_steps": 10,
        "eval_every_epochs": 0,   # 0: no validation during training
        "eval_flip": True,
        "eval_max_images": None,
        "tensorboard": True,      # only with the TensorFlow backend
        "progress": "auto",       # auto | true | false (tqdm bar)
        "jit_compile": "auto",
        "threads": None,          # CPU threads per op for TensorFlow (null: all cores)
    },
    "quantize": {
        "aware": False,           # fine-tune through simulated TFLite int8 (training.quantize)
        "calib_batches": 2,       # training batches whose crops set the fixed int8 ranges
        "freeze_batch_norm": True,
    },
    "init": {
        "from": None,             # null | "imagenet-lite0" | path .keras | path .pth
    },
    "output": {
        "dir": "runs/evopose2d-s",
    },
}

#: Fields that may change when a run is resumed (the rest come from the saved run).
RUNTIME_FIELDS = {
    "train.max_steps", "train.log_every_steps", "train.checkpoint_every_steps",
    "train.keep_checkpoints", "train.progress", "train.eval_every_epochs", "train.eval_flip",
    "train.eval_max_images", "train.tensorboard", "data.workers", "data.use_multiprocessing",
    "data.prefetch", "data.root", "data.sources", "data.val_root", "data.val_sources",
    "output.dir", "init.from", "train.devices", "train.precision", "train.threads",
}

BUNDLED = ("xs", "s", "m", "l")


class ConfigError(EvoPoseError, ValueError):
    """A config file or override is invalid (unknown key, bad value)."""


def _flatten(d: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and k != "augment":
            out.update(_flatten(v, key + "."))
        elif isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def known_keys() -> list[str]:
    return sorted(_flatten(DEFAULT_CONFIG))


def _suggest(key: str) -> str:
    hint = did_you_mean(key, known_keys(), n=3, cutoff=0.5, quote=False)
    return f"; {hint}" if hint else ""


def merge(base: dict, override: Mapping, path: str = "") -> dict:
    """Deep-merge ``override`` into a copy of ``base``; unknown keys raise ConfigError."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        key = f"{path}{k}"
        if k not in out:
            raise ConfigError(f"unknown config key {key!r}{_suggest(key)}")
        if isinstance(out[k], dict) and isinstance(v, Mapping):
            out[k] = merge(out[k], v, key + ".")
        else:
            out[k] = copy.deepcopy(v)
    return out


def bundled_config_path(name: str) -> Path:
    """Path of a bundled config (``xs``, ``s``, ``m``, ``l``)."""
    return Path(str(resources.files("evopose_sdk.training") / "configs" / f"{name.lower()}.json"))


def load_config(source: str | os.PathLike | Mapping | None = None,
                overrides: Sequence[str] = ()) -> dict:
    """Resolve a config: defaults <- (base chain) <- file/dict <- ``key=value`` overrides.

    Args:
        source: a bundled name (``"s"``), a JSON path, a dict, or None (defaults).
        overrides: ``"train.epochs=3"`` strings; values are parsed as JSON when they parse
            (numbers, true/false/null, lists), else taken as strings.
    """
    cfg = copy.deepcopy(DEFAULT_CONFIG)
    if source is not None:
        cfg = merge(cfg, _read_chain(source, depth=0))
    for item in overrides:
        cfg = apply_override(cfg, item)
    return cfg


def _read_chain(source, depth: int) -> dict:
    if depth > 8:
        raise ConfigError("config 'base' chain is too deep (a cycle?)")
    if isinstance(source, Mapping):
        data = dict(source)
    else:
        text = str(source)
        path = Path(text)
        if not path.suffix and text.lower() in BUNDLED:
            path = bundled_config_path(text)
        if not path.is_file():
            raise ConfigError(f"config {text!r} is neither a file nor one of {BUNDLED}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config {path} is not valid JSON: {exc}") from exc
    base = data.pop("base", None)
    data.pop("comment", None)
    if base is None:
        return data
    return merge(_fill(_read_chain(base, depth + 1)), data)


def _fill(partial: dict) -> dict:
    return merge(copy.deepcopy(DEFAULT_CONFIG), partial)


def parse_value(text: str):
    """JSON value when it parses (``3``, ``1e-5``, ``true``, ``[256,192]``), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_override(cfg: dict, item: str) -> dict:
    """Apply one ``section.key=value`` override (dots walk nested sections)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    key, _, text = item.partition("=")
    key = key.strip()
    parts = key.split(".")
    nested: object = parse_value(text)
    for p in reversed(parts):
        nested = {p: nested}
    return merge(cfg, nested)  # type: ignore[arg-type]


def get(cfg: Mapping, dotted: str):
    cur = cfg
    for p in dotted.split("."):
        cur = cur[p]
    return cur


def diff_keys(a: Mapping, b: Mapping) -> list[str]:
    """Dotted keys whose values differ between two configs."""
    fa, fb = _flatten(a), _flatten(b)
    return sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))
