"""What a nolb model file says about itself: :class:`ModelDescription` and :class:`Preprocessing`.

The description is plain JSON inside the model file (see :mod:`nolb.deploy.model_file`):
how to rebuild the network (``nolb.models.build_model`` arguments), exactly how an image
must be prepared (the evaluation transform the run was measured with), the class names in
index order, the training class counts, the heads (one, or the original and the re-trained
head with their temperatures and averaging space), where it came from (run directory,
commit, commands) and a SHA-256 checksum verified on load.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from nolb.errors import NolbError

FORMAT = "nolb-model-1"
KINDS = ("single", "ensemble")


@dataclass(frozen=True)
class Preprocessing:
    """How one image becomes the network's input (nolb's evaluation transform).

    Steps, in order: decode and convert to ``color`` ("L": 1 channel, "RGB": 3);
    if ``resize`` is set, resize the shorter side to ``resize`` (bilinear, antialiased);
    if ``center_crop`` is set, crop the centre ``center_crop`` x ``center_crop``; an image
    whose size then differs from ``input_size`` x ``input_size`` is resized to it (nolb's
    own evaluation never needs this step: its images already have that size); scale the
    uint8 pixels to [0, 1] (``/ 255``); per channel ``(x - mean) / std``.  Layout NCHW float32.
    """

    color: str
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: int | None = None
    center_crop: int | None = None
    preset: str = ""

    @property
    def channels(self) -> int:
        return 1 if self.color == "L" else 3

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std), "channels": self.channels,
                "scale": "1/255", "layout": "NCHW float32"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessing":
        return cls(color=d["color"], input_size=int(d["input_size"]), mean=tuple(d["mean"]), std=tuple(d["std"]),
                   resize=d.get("resize"), center_crop=d.get("center_crop"), preset=d.get("preset", ""))

    @classmethod
    def from_data(cls, data: Any) -> "Preprocessing":
        """The evaluation transform of an ``LTData`` (see :mod:`nolb.data.transforms`)."""
        size = int(data.image_size)
        color = "L" if int(data.in_channels) == 1 else "RGB"
        if data.preset == "imagenet":
            return cls(color, size, tuple(data.mean), tuple(data.std), resize=int(round(size * 256 / 224)),
                       center_crop=size, preset=data.preset)
        return cls(color, size, tuple(data.mean), tuple(data.std), preset=data.preset)


@dataclass
class ModelDescription:
    """Everything needed to use a model file (stored as JSON inside it).

    Attributes:
        kind: "single" (one head) or "ensemble" (original + re-trained head).
        stage: which candidate of the run this is ("stage1", "retrain", "ensemble").
        architecture: ``{"model", "num_classes", "in_channels", "head", "options", "classifier"}``.
        preprocessing: the :class:`Preprocessing`.
        class_names: one name per class index.
        train_counts: training images per class.
        heads: ``{"original": {"temperature": T1}, "new": {"temperature": T2, ...}, "space": ...}``
            for an ensemble, ``{"original": {...}}`` for a single head.
        provenance: ``{"run_dir", "commit", "commands", ...}``.
        checksum: SHA-256 of the tensors and this description (without the checksum).
    """

    kind: str
    stage: str
    architecture: dict[str, Any]
    preprocessing: Preprocessing
    class_names: list[str]
    train_counts: list[int]
    heads: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)
    checksum: str = ""

    @property
    def num_classes(self) -> int:
        return int(self.architecture["num_classes"])

    def to_dict(self, with_checksum: bool = True) -> dict[str, Any]:
        d = {"format": FORMAT, **asdict(self), "preprocessing": self.preprocessing.to_dict()}
        if not with_checksum:
            d.pop("checksum")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "model file") -> "ModelDescription":
        if d.get("format") != FORMAT:
            raise NolbError(f"{source}: not a nolb model file (format {d.get('format')!r}, expected {FORMAT!r})")
        try:
            description = cls(kind=d["kind"], stage=d["stage"], architecture=d["architecture"],
                              preprocessing=Preprocessing.from_dict(d["preprocessing"]), class_names=list(d["class_names"]),
                              train_counts=[int(n) for n in d["train_counts"]], heads=d["heads"],
                              provenance=d.get("provenance", {}), checksum=d.get("checksum", ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise NolbError(f"{source}: incomplete model description ({type(exc).__name__}: {exc})") from None
        if description.kind not in KINDS:
            raise NolbError(f"{source}: unknown model kind {description.kind!r}, expected one of {KINDS}")
        return description
