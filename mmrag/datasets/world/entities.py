"""Fictitious entities: pronounceable names, a drawn visual signature, and facts from shared pools."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Set, Tuple

import numpy as np

from mmrag.datasets.world.vocabulary import (
    CATEGORIES, CATEGORY_PARTS, COLOURS, FACT_VALUES, GENERIC_OBJECTS, PATTERNS, SHAPES, attributes_of,
)

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gl", "kr",
           "pl", "st", "th", "sh", "qu", "tr", "sk", "gr")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou", "ee", "y")
_CODAS = ("", "", "n", "r", "l", "k", "m", "s", "x", "th")


@dataclass(frozen=True)
class Signature:
    """How an entity is drawn: body shape, main and accent colour, fill pattern, count of repeated parts."""

    shape: str
    colour: str
    accent: str
    pattern: str
    parts: int

    def as_dict(self) -> Dict[str, object]:
        return {"shape": self.shape, "colour": self.colour, "accent": self.accent,
                "pattern": self.pattern, "parts": self.parts}


@dataclass
class Entity:
    id: str
    name: str
    category: str
    signature: Signature
    facts: Dict[str, str]
    coco_category_id: int
    partner: str = ""  # the COCO category name that this entity is usually seen with
    popularity: float = 0.0  # relative sampling weight in scenes (Zipf-like)

    def as_dict(self) -> Dict[str, object]:
        return {"id": self.id, "name": self.name, "category": self.category,
                "signature": self.signature.as_dict(), "facts": dict(self.facts),
                "coco_category_id": self.coco_category_id, "usual_companion": self.partner}


@dataclass
class ObjectVocabulary:
    """Every object kind that can appear in a scene (COCO categories), with its sampling weight."""

    names: List[str]
    weights: np.ndarray  # sums to 1, aligned with names
    entity_by_name: Dict[str, Entity] = field(default_factory=dict)


def make_name(rng: random.Random) -> str:
    """A pronounceable made-up word of 2-3 syllables, e.g. 'zorblat'."""
    syllables = rng.choice((2, 2, 3))
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)]
    return "".join(parts) + rng.choice(_CODAS)


def make_unique_names(n: int, rng: random.Random, reserved: Set[str]) -> List[str]:
    """`n` distinct names; no name contains another or a reserved word, so string matching stays exact."""
    names: List[str] = []
    while len(names) < n:
        name = make_name(rng)
        if not 5 <= len(name) <= 11 or name in reserved:
            continue
        if any(name in other or other in name for other in names):
            continue
        names.append(name)
    return names


def make_signatures(category: str, n: int, rng: random.Random) -> List[Signature]:
    """`n` signatures that differ from each other in at least one visual trait."""
    colours = sorted(COLOURS)
    seen: Set[Signature] = set()
    out: List[Signature] = []
    while len(out) < n:
        colour = rng.choice(colours)
        accent = rng.choice([c for c in colours if c != colour])
        sig = Signature(rng.choice(SHAPES), colour, accent, rng.choice(PATTERNS),
                        rng.choice(CATEGORY_PARTS[category]))
        if sig not in seen:
            seen.add(sig)
            out.append(sig)
    return out


def make_facts(category: str, rng: random.Random) -> Dict[str, str]:
    return {attr: rng.choice(FACT_VALUES[(category, attr)]) for attr in attributes_of(category)}


def make_entities(entities_per_category: int, rng: random.Random) -> List[Entity]:
    """Entities interleaved over the categories; COCO ids start after the generic objects."""
    reserved = set(GENERIC_OBJECTS) | set(CATEGORIES)
    names = make_unique_names(entities_per_category * len(CATEGORIES), rng, reserved)
    signatures = {cat: make_signatures(cat, entities_per_category, rng) for cat in CATEGORIES}
    entities = []
    for i, name in enumerate(names):
        category = CATEGORIES[i % len(CATEGORIES)]
        entities.append(Entity(
            id=f"ent_{i:05d}", name=name, category=category,
            signature=signatures[category][i // len(CATEGORIES)], facts=make_facts(category, rng),
            coco_category_id=len(GENERIC_OBJECTS) + 1 + i))
    return entities


def zipf_weights(n: int, exponent: float) -> np.ndarray:
    """Weights of ranks 0..n-1 proportional to 1/(rank+2)**exponent, normalised to sum 1."""
    weights = 1.0 / np.power(np.arange(n, dtype=np.float64) + 2.0, exponent)
    return weights / weights.sum()


def object_vocabulary(entities: Sequence[Entity], exponent: float, rng: random.Random) -> ObjectVocabulary:
    """Ranks every object kind by popularity; generic objects take ranks among the most popular 12."""
    generic = list(GENERIC_OBJECTS)
    entity_names = [e.name for e in entities]
    rng.shuffle(generic)
    rng.shuffle(entity_names)
    head = generic + entity_names[:5]
    rng.shuffle(head)
    ranked = head + entity_names[5:]
    weights = zipf_weights(len(ranked), exponent)
    by_name = {e.name: e for e in entities}
    for name, weight in zip(ranked, weights):
        if name in by_name:
            by_name[name].popularity = float(weight)
    return ObjectVocabulary(names=ranked, weights=weights, entity_by_name=by_name)


def assign_partners(entities: Sequence[Entity], vocab: ObjectVocabulary, np_rng: np.random.Generator) -> None:
    """Give each entity a usual companion, drawn by popularity, so some pairs co-occur strongly."""
    for entity in entities:
        while True:
            name = vocab.names[int(np_rng.choice(len(vocab.names), p=vocab.weights))]
            if name != entity.name:
                entity.partner = name
                break


def coco_categories(entities: Sequence[Entity]) -> List[Dict[str, object]]:
    """COCO `categories`: generic objects (supercategory 'object') then one per entity."""
    cats = [{"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(GENERIC_OBJECTS)]
    cats += [{"id": e.coco_category_id, "name": e.name, "supercategory": e.category} for e in entities]
    return cats


def entity_counts_by_trait(entities: Sequence[Entity]) -> Dict[Tuple[str, str, str], int]:
    """(category, trait kind, trait value) -> how many entities have it; trait kinds 'colour', 'pattern', 'any'."""
    counts: Dict[Tuple[str, str, str], int] = {}
    for e in entities:
        for key in ((e.category, "colour", e.signature.colour), (e.category, "pattern", e.signature.pattern),
                    (e.category, "any", "")):
            counts[key] = counts.get(key, 0) + 1
    return counts
