"""The knowledge corpus: passages that name an entity and state its facts, plus distractor passages.

Passages never describe what an entity looks like, so text alone cannot link a caption to an entity:
the image must identify the entity and the corpus must supply the fact. Two kinds of distractors share
surface words with the real passages without stating any fact value: (a) general remarks that use a
category, an attribute's verb and single words taken from fact values ("Many creatures eat reeds,
moths or seeds"), (b) remarks that name two entities of a category without giving facts.
"""
from __future__ import annotations

import random
from types import MappingProxyType
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

from mmrag.datasets.world.entities import Entity
from mmrag.datasets.world.vocabulary import (
    ATTRIBUTE_VERBS, CATEGORIES, FACT_SENTENCES, FACT_VALUES, FILLER_SENTENCES, INTRO_SENTENCES, attributes_of,
)

MIN_WORDS, MAX_WORDS = 30, 80  # passage length bounds, in whitespace-separated words
_NOUNS = MappingProxyType({"diet": "diet", "habitat": "home range", "predator": "enemies", "origin": "origin", "soil": "soil",
          "pollinator": "pollinators", "used_for": "uses", "material": "material", "user": "users",
          "fuel": "fuel", "terrain": "terrain"})


@dataclass(frozen=True)
class DraftPassage:
    text: str
    entity_id: str  # '' for a distractor


def _pad(sentences: List[str], rng: random.Random) -> str:
    """Join sentences, adding lore sentences until the passage has at least MIN_WORDS words."""
    fillers = list(FILLER_SENTENCES)
    rng.shuffle(fillers)
    text = " ".join(sentences)
    while len(text.split()) < MIN_WORDS and fillers:
        text += " " + fillers.pop()
    if len(text.split()) > MAX_WORDS:
        raise ValueError(f"passage longer than {MAX_WORDS} words: {text}")
    return text


def entity_passages(entity: Entity, n_passages: int, rng: random.Random) -> List[str]:
    """`n_passages` texts; together they state every fact, each passage two facts (facts cycle)."""
    attrs = list(attributes_of(entity.category))
    rng.shuffle(attrs)
    texts = []
    for p in range(n_passages):
        intro = rng.choice(INTRO_SENTENCES).format(name=entity.name, Name=entity.name.capitalize(),
                                                   category=entity.category)
        stated = [attrs[(2 * p) % len(attrs)], attrs[(2 * p + 1) % len(attrs)]]
        facts = [rng.choice(FACT_SENTENCES[a]).format(name=entity.name, value=entity.facts[a]) for a in stated]
        sentences = [intro] + facts + [rng.choice(FILLER_SENTENCES)]
        texts.append(_pad(sentences, rng))
    return texts


def _value_words(category: str, attribute: str) -> List[str]:
    """Single words of the multi-word values of an attribute, excluding any word that holds a whole value."""
    all_values = [v.lower() for values in FACT_VALUES.values() for v in values]
    words = {w for v in FACT_VALUES[(category, attribute)] if " " in v for w in v.split() if w != "the"}
    return sorted(w for w in words if not any(value in w.lower() for value in all_values))


def general_distractor(category: str, attribute: str, rng: random.Random) -> str:
    words = rng.sample(_value_words(category, attribute), 3)
    first = (f"Many kinds of {category} {ATTRIBUTE_VERBS[attribute]} {words[0]}, {words[1]} or {words[2]}, "
             f"or so travellers claim, but such claims are rarely checked.")
    second = f"Field guides warn that the {_NOUNS[attribute]} of a {category} is easy to get wrong."
    return _pad([first, second], rng)


def naming_distractor(a: Entity, b: Entity, rng: random.Random) -> str:
    attribute = rng.choice(attributes_of(a.category))
    first = f"Travellers sometimes confuse the {a.name} with the {b.name}, although the two are not related."
    second = f"Older catalogues even mix up the {_NOUNS[attribute]} of the {a.name} with that of the {b.name}."
    return _pad([first, second], rng)


def distractor_passages(entities: Sequence[Entity], n: int, rng: random.Random) -> List[str]:
    """`n` distractors, alternating general remarks and remarks that name two entities."""
    by_category = {c: [e for e in entities if e.category == c] for c in CATEGORIES}
    texts = []
    for i in range(n):
        category = CATEGORIES[i % len(CATEGORIES)]
        if i % 2 == 0 or len(by_category[category]) < 2:
            texts.append(general_distractor(category, rng.choice(attributes_of(category)), rng))
        else:
            a, b = rng.sample(by_category[category], 2)
            texts.append(naming_distractor(a, b, rng))
    return texts


def build_corpus(entities: Sequence[Entity], passages_per_entity: int, n_distractors: int,
                 rng: random.Random) -> Tuple[List[Tuple[str, str]], Dict[str, List[str]]]:
    """Shuffled (passage id, text) rows and entity id -> ids of that entity's passages."""
    drafts = [DraftPassage(text, e.id) for e in entities for text in entity_passages(e, passages_per_entity, rng)]
    drafts += [DraftPassage(text, "") for text in distractor_passages(entities, n_distractors, rng)]
    rng.shuffle(drafts)
    rows, by_entity = [], {}
    for i, draft in enumerate(drafts):
        pid = f"p{i:07d}"
        rows.append((pid, draft.text))
        if draft.entity_id:
            by_entity.setdefault(draft.entity_id, []).append(pid)
    return rows, by_entity


def gold_passages(answers: Sequence[str], passage_ids: Sequence[str], text_of: Dict[str, str]) -> List[str]:
    """The entity's passages that contain any answer (case-insensitive substring), in id order."""
    lowered = [a.lower() for a in answers]
    return [pid for pid in passage_ids if any(a in text_of[pid].lower() for a in lowered)]
