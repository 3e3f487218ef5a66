"""Run exported files and compare them with the Keras model on real person crops.

Parity figures: heatmap differences (absolute and relative to the reference heatmap range)
and keypoint disagreement in input (crop) pixels after decoding both sides the same way
(:func:`evopose_sdk.decode.decode_heatmaps` + :func:`evopose_sdk.geometry.heatmap_to_crop`).

A random-weight network gives near-flat heatmaps whose peak is noise: its keypoint
disagreement can be large even when the heatmaps agree to 1e-6 of their range. Judge those
files on the heatmap figures; the keypoint figures are meaningful for trained weights.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from evopose_sdk import geometry
from evopose_sdk.decode import decode_heatmaps

log = logging.getLogger(__name__)


class OnnxRunner:
    """onnxruntime session over NHWC float32 batches (any batch size)."""

    def __init__(self, model: str | os.PathLike | bytes, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        src = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) float32 RGB 0-255 -> heatmaps (N, h, w, K) float32."""
        return self.session.run(None, {self.input_name: np.asarray(batch, np.float32)})[0]


class TFLiteRunner:
    """ai_edge_litert interpreter (batch 1, looped); quantises uint8 input when needed."""

    def __init__(self, model: str | os.PathLike | bytes, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        if isinstance(model, bytes):
            self.interpreter = Interpreter(model_content=model, num_threads=threads)
        else:
            self.interpreter = Interpreter(model_path=str(model), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        dtype = self.input["dtype"]
        if dtype == np.float32:
            return x.astype(np.float32)
        scale, zero = self.input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) float32 RGB 0-255 -> heatmaps (N, h, w, K) float32."""
        out = []
        for x in np.asarray(batch, np.float32):
            self.interpreter.set_tensor(self.input["index"], self._quantize(x[None]))
            self.interpreter.invoke()
            y = self.interpreter.get_tensor(self.output["index"])
            if self.output["dtype"] != np.float32:
                scale, zero = self.output["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            out.append(y[0].astype(np.float32))
        return np.stack(out)


def runner_for(path: str | os.PathLike, threads: int | None = None):
    """An :class:`OnnxRunner` or :class:`TFLiteRunner` for a file, by suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        return OnnxRunner(path, threads)
    if suffix == ".tflite":
        return TFLiteRunner(path, threads)
    raise ValueError(f"no runner for {path}: expected .onnx or .tflite")


def keras_heatmaps(model, crops: np.ndarray, batch: int = 8) -> np.ndarray:
    """Reference heatmaps (N, h, w, K) float32 from the Keras model (inference mode)."""
    outs = [np.asarray(model(crops[i:i + batch], training=False), np.float32)
            for i in range(0, len(crops), batch)]
    return np.concatenate(outs)


def compare_heatmaps(reference: np.ndarray, candidate: np.ndarray, stride: int,
                     decode: str = "dark") -> dict:
    """Parity figures between two heatmap batches (N, h, w, K).

    Returns:
        dict with ``heatmap`` (max/mean absolute difference, reference min/max/range/std and the
        differences relative to the range) and ``keypoints_px`` (mean/median/max distance in
        crop pixels between decoded peaks, fraction of peaks within 1 px).
    """
    ref = np.asarray(reference, np.float64)
    cand = np.asarray(candidate, np.float64)
    if ref.shape != cand.shape:
        raise ValueError(f"heatmap shapes differ: reference {ref.shape}, candidate {cand.shape}")
    diff = np.abs(ref - cand)
    lo, hi = float(ref.min()), float(ref.max())
    rng = max(hi - lo, 1e-30)
    k_ref, _ = decode_heatmaps(ref.astype(np.float32), method=decode)
    k_cand, _ = decode_heatmaps(cand.astype(np.float32), method=decode)
    dist = np.linalg.norm(geometry.heatmap_to_crop(k_ref, stride)
                          - geometry.heatmap_to_crop(k_cand, stride), axis=-1)
    return {
        "heatmap": {
            "max_abs_diff": float(diff.max()),
            "mean_abs_diff": float(diff.mean()),
            "ref_min": lo,
            "ref_max": hi,
            "ref_range": hi - lo,
            "ref_std": float(ref.std()),
            "max_abs_diff_rel_range": float(diff.max() / rng),
            "mean_abs_diff_rel_range": float(diff.mean() / rng),
            "candidate_min": float(cand.min()),
            "candidate_max": float(cand.max()),
        },
        "keypoints_px": {
            "decode": decode,
            "mean": float(dist.mean()),
            "median": float(np.median(dist)),
            "max": float(dist.max()),
            "within_1px": float((dist <= 1.0).mean()),
        },
    }
