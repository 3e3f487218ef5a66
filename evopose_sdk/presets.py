"""Named presets: settings of :class:`~evopose_sdk.PoseEstimator` that go together.

One object per preset, read by everything that offers it: ``PoseEstimator(preset="fast")``,
``evopose-infer --fast`` / ``--accurate`` and the modes of ``benchmarks/bench_runtime.py``,
so the three cannot drift apart. A preset only fills options; an option given explicitly wins
(``PoseEstimator(preset="fast", threads=1)``, ``evopose-infer --fast --threads 1``).

A field left None is not set by the preset, so the estimator's default applies; for
``flip_test`` and ``detect_every`` that is the default by source: photos (an image, a list,
an image folder) get the flip test and the detector on every image, a video or webcam no
flip test and the detector every third frame.

| preset | model file | flip test | detector every | dev_val AP, detector boxes | vtest.avi fps (x SSD + Thunder) |
| --- | --- | --- | ---: | ---: | ---: |
| ``default`` | evopose2d-s int8 | photos only | 3 (video) | 0.191 (video), 0.207 (photos) | 3.9 (1.37x) |
| ``accurate`` | evopose2d-s fp32 | on | 1 | 0.210 | 0.8 (0.27x) |
| ``fast`` | evopose2d-s-160 int8 | off | 5 | 0.135 | 9.1 (3.17x) |

(one run of ``benchmarks/bench_runtime.py --frames 150 --skip pose,yolo`` on a 2-vCPU AMD VM
with AVX2, much slower than the machine of earlier runs: the default's pose network 240 vs 33 ms
per frame, the reference 2.9 vs 11.1 fps, the default then 25.6 fps and 2.30x the reference;
``docs/benchmarks.md``. Compare within a run. Each summary repeats its row's AP and speed, so
``--help`` says what a mode costs in accuracy.)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from evopose_sdk.errors import did_you_mean

__all__ = ["Preset", "PRESETS", "DEFAULT_PRESET", "get_preset"]


@dataclass(frozen=True)
class Preset:
    """A named set of estimator options; None fields are left to the estimator's defaults.

    Attributes:
        name: what users type (``PoseEstimator(preset=name)``, ``evopose-infer --name``).
        summary: one line for ``--help`` and the docs.
        model, precision, flip_test, threads: :class:`~evopose_sdk.PoseEstimatorOptions`
            fields of the same names.
        detect_every: the estimator's ``detect_every`` (the detector runs every k frames of a
            video or webcam; photos always get it on every image).
    """

    name: str
    summary: str
    model: str | None = None
    precision: str | None = None
    flip_test: bool | None = None
    detect_every: int | None = None
    threads: int | None = None

    def options(self) -> dict[str, Any]:
        """The estimator options this preset sets (its fields that are not None)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("name", "summary") and getattr(self, f.name) is not None}

    def flags(self) -> str:
        """The ``evopose-infer`` options this preset stands for (``--model ... --threads 2``)."""
        names = {"model": "--model", "precision": "--precision", "detect_every": "--detect-every",
                 "threads": "--threads"}
        out = []
        for key, value in self.options().items():
            if key == "flip_test":
                out.append("--flip" if value else "--no-flip")
            else:
                out.append(f"{names[key]} {value}")
        return " ".join(out)


#: The preset used when none is named: every option at the estimator's default.
DEFAULT_PRESET = "default"

#: The presets by name.
PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset(DEFAULT_PRESET, "evopose2d-s (int8 where within 1 AP of fp32); flip test on photos "
                           "only; on a video the detector every 3rd frame. dev_val AP 0.191 "
                           "(video) / 0.207 (photos) with detector boxes; 1.4x the fps of SSD "
                           "+ MoveNet Thunder"),
    # Two pose threads: the detector (one thread, every 5th frame) and decoding leave the
    # second core mostly idle, and the pose network takes it (on the 2-vCPU AVX2 VM of the
    # latest run one thread was as fast, 9.8 vs 9.1 fps; on the earlier machine two were faster).
    Preset("fast", "the 160x128 model in int8, no flip test, the detector every 5th frame. "
                   "dev_val AP 0.135 with detector boxes (the default: 0.191); 2.3x the "
                   "default's fps, 3.2x SSD + MoveNet Thunder's",
           model="evopose2d-s-160", precision="int8", flip_test=False, detect_every=5,
           threads=2),
    Preset("accurate", "the fp32 model, the flip test and the detector on every frame. "
                       "dev_val AP 0.210 with detector boxes; 0.27x the fps of SSD + MoveNet "
                       "Thunder",
           precision="fp32", flip_test=True, detect_every=1),
)}


def get_preset(preset: str | Preset | None) -> Preset:
    """A :class:`Preset` by name (None: :data:`DEFAULT_PRESET`); a Preset is returned as is.

    Raises:
        ValueError: an unknown name, naming the nearest known one.
    """
    if isinstance(preset, Preset):
        return preset
    name = DEFAULT_PRESET if preset is None else str(preset)
    if name not in PRESETS:
        hint = f" ({h})" if (h := did_you_mean(name, PRESETS)) else ""
        raise ValueError(f"unknown preset {name!r}{hint}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
