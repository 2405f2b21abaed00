"""Text about a scene: captions (never an entity's name), references to objects, questions, LLaVA turns, regions.

A reference says which object is meant using only what the image shows: its place ("the creature on
the left"), its colour ("the blue creature") or its pattern ("the striped creature"), and only when that
picks out one object of the scene.
"""
from __future__ import annotations

import random
from types import MappingProxyType
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from mmrag.datasets.world.entities import Entity
from mmrag.datasets.world.scenes import Scene, SceneObject
from mmrag.datasets.world.vocabulary import (
    CATEGORIES, GENERIC_OBJECTS, NUMBER_WORDS, PATTERNS, QUESTION_TEMPLATES, SHAPES,
)

# category -> (one part, several parts): the repeated parts an entity of that category is drawn with
PART_WORDS = MappingProxyType({"creature": ("leg", "legs"), "plant": ("leaf", "leaves"), "tool": ("band", "bands"),
              "vehicle": ("wheel", "wheels")})
CAPTION_PROMPTS = ("Describe the image briefly.", "Write a short caption for this picture.",
                   "What is shown in this image? Answer in one sentence.")
MC_SUFFIX = "Answer with the option's letter from the given choices directly."


@dataclass(frozen=True)
class Reference:
    kind: str  # 'only', 'left', 'right', 'middle', 'colour' or 'pattern'
    phrase: str  # e.g. 'creature on the left' (no article)


def with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def object_phrase(obj: SceneObject) -> str:
    """What a caption calls the object: 'blue striped creature', 'orange creature', 'tree'."""
    if obj.entity is None:
        return obj.word
    sig = obj.entity.signature
    pattern = "" if sig.pattern == "plain" else sig.pattern + " "
    return f"{sig.colour} {pattern}{obj.word}"


def detailed_phrase(obj: SceneObject) -> str:
    """A region phrase with the visible detail: 'blue striped round creature with four legs'."""
    if obj.entity is None:
        return obj.word
    sig = obj.entity.signature
    parts = NUMBER_WORDS[sig.parts] if sig.parts < len(NUMBER_WORDS) else str(sig.parts)
    word = PART_WORDS[obj.entity.category][1 if sig.parts > 1 else 0]
    return f"{object_phrase(obj).rsplit(' ', 1)[0]} {sig.shape} {obj.word} with {parts} {word}"


def left_to_right(scene: Scene) -> List[SceneObject]:
    return sorted(scene.objects, key=lambda o: (o.centre_x, o.box[1]))


def _join(phrases: Sequence[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def captions(scene: Scene) -> Tuple[str, str]:
    """Two captions: a left-to-right listing and one built around the largest object."""
    ordered = [with_article(object_phrase(o)) for o in left_to_right(scene)]
    first = f"A picture of {_join(ordered)}."
    largest = max(scene.objects, key=lambda o: o.box[2] * o.box[3])
    others = [with_article(object_phrase(o)) for o in left_to_right(scene) if o is not largest]
    main = with_article(object_phrase(largest))
    if others:
        second = f"{main[0].upper()}{main[1:]} next to {_join(others)}."
    else:
        second = f"{main[0].upper()}{main[1:]} on its own."
    return first, second


def _position_reference(target: SceneObject, same: List[SceneObject], min_gap: float) -> Optional[Reference]:
    ordered = sorted(same, key=lambda o: o.centre_x)
    gaps = [b.centre_x - a.centre_x for a, b in zip(ordered, ordered[1:])]
    i = ordered.index(target)
    if i == 0 and gaps[0] >= min_gap:
        return Reference("left", f"{target.word} on the left")
    if i == len(ordered) - 1 and gaps[-1] >= min_gap:
        return Reference("right", f"{target.word} on the right")
    if len(ordered) == 3 and i == 1 and min(gaps) >= min_gap:
        return Reference("middle", f"{target.word} in the middle")
    return None


def references(scene: Scene, target: SceneObject, image_size: int) -> List[Reference]:
    """Every way of pointing at `target` that fits no other object of the scene."""
    same = [o for o in scene.objects if o.word == target.word]
    refs: List[Reference] = []
    if len(same) == 1:
        refs.append(Reference("only", target.word))
    else:
        ref = _position_reference(target, same, min_gap=0.1 * image_size)
        if ref is not None:
            refs.append(ref)
    if target.entity is not None:
        sig = target.entity.signature
        others = [o.entity.signature for o in same if o is not target]
        if all(s.colour != sig.colour for s in others):
            refs.append(Reference("colour", f"{sig.colour} {target.word}"))
        if sig.pattern != "plain" and all(s.pattern != sig.pattern for s in others):
            refs.append(Reference("pattern", f"{sig.pattern} {target.word}"))
    return refs


def entities_fitting(ref: Reference, entity: Entity, trait_counts: Dict[Tuple[str, str, str], int]) -> int:
    """How many entities the wording of `ref` could mean (the corpus never describes looks)."""
    if ref.kind == "colour":
        return trait_counts[(entity.category, "colour", entity.signature.colour)]
    if ref.kind == "pattern":
        return trait_counts[(entity.category, "pattern", entity.signature.pattern)]
    return trait_counts[(entity.category, "any", "")]


def answers_for(value: str) -> List[str]:
    """Accepted answers: the fact value, plus the form without a leading 'the' ('the Quessa Isles')."""
    return [value, value[4:]] if value.startswith("the ") else [value]


def make_questions(scene: Scene, image_size: int, per_image: int, min_ambiguity: int,
                   trait_counts: Dict[Tuple[str, str, str], int], rng: random.Random) -> List[Dict[str, object]]:
    """Up to `per_image` knowledge questions about distinct entities of the scene.

    Only references whose wording fits at least `min_ambiguity` entities are used, so the question text
    alone never singles out the entity.
    """
    targets = [o for o in scene.objects if o.entity is not None]
    rng.shuffle(targets)
    questions = []
    for target in targets[:per_image]:
        entity = target.entity
        refs = [r for r in references(scene, target, image_size)
                if entities_fitting(r, entity, trait_counts) >= min_ambiguity]
        if not refs:
            continue
        ref = rng.choice(refs)
        attribute = rng.choice(sorted(entity.facts))
        template = rng.choice(QUESTION_TEMPLATES[(entity.category, attribute)])
        questions.append({"question": template.format(ref=ref.phrase), "entity_id": entity.id,
                          "qtype": attribute, "output": answers_for(entity.facts[attribute]),
                          "reference": ref.kind})
    return questions


def _options(correct: str, pool: Sequence[str], rng: random.Random, n: int = 4) -> Tuple[str, str]:
    """Lettered options text and the correct letter."""
    choices = [correct] + rng.sample([p for p in pool if p != correct], n - 1)
    rng.shuffle(choices)
    letters = "ABCDEFGH"
    text = "\n".join(f"{letters[i]}. {c}" for i, c in enumerate(choices))
    return text, letters[choices.index(correct)]


def _human(value: str, first: bool) -> Dict[str, str]:
    return {"from": "human", "value": ("<image>\n" + value) if first else value}


def _qa_turns(pairs: Sequence[Tuple[str, str]]) -> List[Dict[str, str]]:
    turns = []
    for i, (question, answer) in enumerate(pairs):
        turns += [_human(question, i == 0), {"from": "gpt", "value": answer}]
    return turns


def short_vqa_pairs(scene: Scene, image_size: int, rng: random.Random,
                    presence_word: Optional[str] = None) -> List[Tuple[str, str]]:
    """Short questions answerable from the pixels: object count, an entity's colour, a yes/no presence.

    The presence question asks about `presence_word` (chosen for the whole split so answers balance,
    see grounding.presence_plan); a word is still drawn from `rng` so its later draws stay as they were.
    """
    pairs = [("How many objects are in the image? Answer with a single word.", NUMBER_WORDS[len(scene.objects)])]
    for obj in [o for o in scene.objects if o.entity is not None][:1]:
        refs = [r for r in references(scene, obj, image_size) if r.kind != "colour"]
        if refs:
            pairs.append((f"What colour is the {rng.choice(refs).phrase}? Answer with a single word.",
                          obj.entity.signature.colour))
    drawn = rng.choice(GENERIC_OBJECTS)
    generic = presence_word or drawn
    present = any(o.word == generic for o in scene.objects)
    pairs.append((f"Is there {with_article(generic)} in the image? Answer yes or no.", "yes" if present else "no"))
    return pairs


def multiple_choice_pair(scene: Scene, image_size: int, rng: random.Random) -> Tuple[str, str]:
    """One lettered multiple-choice question: an entity's pattern or shape, else the leftmost object."""
    for obj in [o for o in scene.objects if o.entity is not None]:
        refs = [r for r in references(scene, obj, image_size) if r.kind not in ("pattern",)]
        if refs:
            sig = obj.entity.signature
            if rng.random() < 0.5:
                question, correct, pool = "Which pattern covers the body of the {ref}?", sig.pattern, PATTERNS
            else:
                question, correct, pool = "What shape is the body of the {ref}?", sig.shape, SHAPES
            options, letter = _options(correct, pool, rng)
            return f"{question.format(ref=rng.choice(refs).phrase)}\n{options}\n{MC_SUFFIX}", letter
    leftmost = left_to_right(scene)[0].word
    pool = sorted(set(GENERIC_OBJECTS) | set(CATEGORIES))
    options, letter = _options(leftmost, pool, rng)
    return f"Which object is furthest to the left?\n{options}\n{MC_SUFFIX}", letter


def llava_records(scene: Scene, image_path: str, caption: str, image_size: int,
                  rng: random.Random, presence_word: Optional[str] = None) -> List[Dict[str, object]]:
    """Three LLaVA records for a scene: a caption, a short-VQA dialogue and a multiple-choice question."""
    mc_question, mc_answer = multiple_choice_pair(scene, image_size, rng)
    dialogues = {"caption": [(rng.choice(CAPTION_PROMPTS), caption)],
                 "vqa": short_vqa_pairs(scene, image_size, rng, presence_word), "mc": [(mc_question, mc_answer)]}
    return [{"id": f"{scene.image_id}_{kind}", "image": image_path, "conversations": _qa_turns(pairs)}
            for kind, pairs in dialogues.items()]


def region_records(scene: Scene, first_region_id: int) -> List[Dict[str, object]]:
    """Visual-Genome-like regions: one per object, plus the pair of the two leftmost objects."""
    regions = []
    for obj in left_to_right(scene):
        x, y, w, h = obj.box
        regions.append({"phrase": with_article(detailed_phrase(obj)), "x": x, "y": y, "width": w, "height": h})
    if len(scene.objects) >= 2:
        a, b = left_to_right(scene)[:2]
        x0, y0 = min(a.box[0], b.box[0]), min(a.box[1], b.box[1])
        x1 = max(a.box[0] + a.box[2], b.box[0] + b.box[2])
        y1 = max(a.box[1] + a.box[3], b.box[1] + b.box[3])
        phrase = f"{with_article(object_phrase(a))} to the left of {with_article(object_phrase(b))}"
        regions.append({"phrase": phrase, "x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0})
    for i, region in enumerate(regions):
        region["region_id"] = first_region_id + i
    return regions
