"""Search configuration: a JSON file (or dict) of :class:`SearchConfig` fields.

Example (the paper's setting, on the data of ``/path/to/data``)::

    {"seed": 0, "generations": 20, "children": 64, "parents": 4,
     "input_hw": [256, 192], "ancestor_epochs": 30, "child_epochs": 5,
     "train_config": "s",
     "train_overrides": ["data.root=/path/to/data", "train.batch_size=64"]}
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from evopose_sdk.errors import EvoPoseError, did_you_mean
from evopose_sdk.training import config as cfgmod
from evopose_sdk.training import genotype as gt
from evopose_sdk.training.search.mutation import MutationSpace, scale_filters


class SearchConfigError(EvoPoseError, ValueError):
    """A search config field is unknown or out of range."""


@dataclass
class SearchConfig:
    """Everything a search needs; stored in ``search.json`` so a resume uses the same one.

    Attributes:
        seed: seed of the mutations and of every child's training.
        generations: generations after generation 0 (the ancestor).
        children: lambda, children trained per generation (paper: 64).
        parents: mu, parents kept per generation (paper: 4); child j has parent j mod mu.
        selection: ``"comma"`` (mu, lambda): parents from the last generation's children only;
            ``"plus"``: from every child trained so far.
        target_params, fitness_exponent: fitness = val loss x (params / target) ** exponent.
        input_hw: input (h, w) of every network of the search.
        ancestor: genotype (list or ``"k3r1f2s1_..."``); default EfficientNet-B0.
        ancestor_filter_scale: multiply the ancestor's filters/8 (narrow ancestors for tests).
        mutation: :class:`MutationSpace` fields (kernels, max_repeats, filter_step, ...).
        ancestor_epochs, child_epochs: training length of generation 0 and of later ones.
        train_config: base training config (bundled name, JSON path or dict).
        train_overrides: ``section.key=value`` applied to every child (data.root, batch...).
        ancestor_overrides, child_overrides: extra overrides for generation 0 / later ones.
        val_max_people: validate on the first n people of the validation split (None: all).
        val_batch_size: batch size of validation forward passes.
        keep_checkpoints: keep a finished child's run/checkpoints (else deleted; the child's
            ``model.keras`` always stays).
        eager: run TensorFlow functions eagerly (no graph tracing). Only for tiny test
            searches of a few steps per child, where tracing costs more than training.
    """

    seed: int = 0
    generations: int = 10
    children: int = 64
    parents: int = 4
    selection: str = "comma"
    target_params: float = 5e6
    fitness_exponent: float = 0.07
    input_hw: list[int] = field(default_factory=lambda: [256, 192])
    ancestor: list[list[int]] | str | None = None
    ancestor_filter_scale: float = 1.0
    mutation: dict = field(default_factory=dict)
    ancestor_epochs: int = 30
    child_epochs: int = 5
    train_config: str | dict = "s"
    train_overrides: list[str] = field(default_factory=list)
    ancestor_overrides: list[str] = field(default_factory=list)
    child_overrides: list[str] = field(default_factory=list)
    val_max_people: int | None = None
    val_batch_size: int = 32
    keep_checkpoints: bool = False
    eager: bool = False

    def __post_init__(self) -> None:
        if self.generations < 0 or self.children < 1 or self.parents < 1:
            raise SearchConfigError(
                f"need generations >= 0, children >= 1, parents >= 1; received "
                f"{self.generations}, {self.children}, {self.parents}")
        if self.parents > self.children:
            raise SearchConfigError(f"parents ({self.parents}) cannot exceed children "
                                    f"({self.children})")
        if self.selection not in ("comma", "plus"):
            raise SearchConfigError(f"selection must be comma or plus; received "
                                    f"{self.selection!r}")
        if self.target_params <= 0:
            raise SearchConfigError(f"target_params must be > 0; received {self.target_params}")
        if len(self.input_hw) != 2 or min(self.input_hw) < 1:
            raise SearchConfigError(f"input_hw must be [h, w]; received {self.input_hw}")
        if self.ancestor_epochs < 1 or self.child_epochs < 1:
            raise SearchConfigError("ancestor_epochs and child_epochs must be >= 1")
        self.input_hw = [int(v) for v in self.input_hw]
        try:
            self.ancestor = self.ancestor_genotype()
            self.ancestor_filter_scale = 1.0  # folded into the stored ancestor
            self.mutation_space()
        except (gt.GenotypeError, ValueError) as exc:
            raise SearchConfigError(str(exc)) from exc
        stride = max([gt.backbone_stride(self.ancestor),
                      *self.mutation_space().backbone_strides])
        if self.input_hw[0] % stride or self.input_hw[1] % stride:
            raise SearchConfigError(f"input_hw {self.input_hw} must be divisible by the largest "
                                    f"backbone stride of the search, {stride}")

    def ancestor_genotype(self) -> list[list[int]]:
        """The (validated, filter-scaled) ancestor genotype."""
        a = self.ancestor
        if a is None:
            a = copy.deepcopy(gt.EFFICIENTNET_B0)
        elif isinstance(a, str):
            a = gt.decode(a)
        return scale_filters(a, self.ancestor_filter_scale)

    def mutation_space(self) -> MutationSpace:
        unknown = set(self.mutation) - set(MutationSpace.__dataclass_fields__) | (
            {"ancestor"} & set(self.mutation))
        if unknown:
            raise SearchConfigError(f"unknown mutation fields {sorted(unknown)}")
        mut = dict(self.mutation)
        if {"width_coefficient", "depth_coefficient"} & set(mut):
            raise SearchConfigError("width/depth coefficients follow input_hw; do not set them")
        d, w = 1.0, 1.0
        if self.compound_scaling():
            d, w, _ = gt.scaling_parameters(tuple(self.input_hw))
        return MutationSpace(ancestor=self.ancestor_genotype(), width_coefficient=w,
                             depth_coefficient=d, **mut)

    def compound_scaling(self) -> bool:
        """Whether the children's builder scales depth and width by input size (the training
        config's ``model.compound_scaling``, default true)."""
        try:
            tc = cfgmod.load_config(copy.deepcopy(self.train_config), self.train_overrides)
        except cfgmod.ConfigError as exc:
            raise SearchConfigError(f"train_config / train_overrides: {exc}") from exc
        return bool(tc["model"].get("compound_scaling", True))

    @classmethod
    def from_any(cls, source: SearchConfig | dict | str | os.PathLike,
                 overrides: list[str] | tuple[str, ...] = ()) -> SearchConfig:
        """From a config object, a dict or a JSON file, plus ``field=value`` overrides."""
        if isinstance(source, SearchConfig):
            data = asdict(source)
        elif isinstance(source, dict):
            data = copy.deepcopy(source)
        else:
            path = Path(source)
            if not path.is_file():
                raise SearchConfigError(f"search config {path} does not exist")
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise SearchConfigError(f"search config {path} is not valid JSON: {exc}") from exc
        data.pop("comment", None)
        for item in overrides:
            key, sep, text = item.partition("=")
            if not sep:
                raise SearchConfigError(f"override {item!r} must look like field=value")
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = text
            data[key.strip()] = value
        known = set(cls.__dataclass_fields__)
        unknown = [k for k in data if k not in known]
        if unknown:
            msg = ", ".join(f"{k!r}" + (f" ({h})" if (h := did_you_mean(k, known)) else "")
                            for k in unknown)
            raise SearchConfigError(f"unknown search config fields: {msg}")
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)
