"""Shipped model files and their cards (``<file>.json``), installed as ``evopose_sdk.models``."""

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent
