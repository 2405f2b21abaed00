"""World sizes. `tiny` serves tests, `small` the default CPU run, `large` GPU runs."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Tuple

from mmrag.common.errors import UnknownNameError
from mmrag.datasets.world.vocabulary import CATEGORIES


@dataclass(frozen=True)
class WorldPreset:
    """All knobs of one world size. Sizes in pixels; fractions in [0, 1]."""

    name: str
    entities_per_category: int
    n_images: int
    image_size: int  # square images, pixels per side
    test_fraction: float = 0.2
    passages_per_entity: int = 3
    distractors_per_entity: float = 1.0  # distractor passages per entity (rounded over the corpus)
    min_question_ambiguity: int = 5  # K: entities the question text alone must fit
    questions_per_image: int = 2
    objects_per_image: Tuple[int, int] = (1, 5)
    zipf_exponent: float = 1.0  # popularity of entity/object rank r is proportional to 1/(r+2)**exponent
    partner_probability: float = 0.55  # chance an entity's usual companion is drawn next to it
    pope_per_image: int = 3  # positives (and as many negatives) per test image, as in POPE
    detector_miss_rate: float = 0.05
    detector_false_positive_rate: float = 0.15  # expected false boxes per image

    @property
    def n_entities(self) -> int:
        return self.entities_per_category * len(CATEGORIES)

    def as_dict(self) -> Dict[str, object]:
        return asdict(self)


def _presets() -> Dict[str, WorldPreset]:
    return {
        "tiny": WorldPreset("tiny", entities_per_category=6, n_images=60, image_size=64,
                            test_fraction=0.25, min_question_ambiguity=3, passages_per_entity=3),
        "small": WorldPreset("small", entities_per_category=60, n_images=3000, image_size=96,
                             passages_per_entity=3),
        "large": WorldPreset("large", entities_per_category=750, n_images=40000, image_size=224,
                             passages_per_entity=4, distractors_per_entity=1.5),
    }


def preset_names() -> Tuple[str, ...]:
    return tuple(_presets())


def get_preset(name: str) -> WorldPreset:
    """The preset called `name`; an unknown name raises UnknownNameError listing the known ones."""
    presets = _presets()
    if name not in presets:
        raise UnknownNameError(f"unknown world preset '{name}'; known: {', '.join(presets)}")
    return presets[name]
