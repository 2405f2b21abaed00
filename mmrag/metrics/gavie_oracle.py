"""The world-oracle GAVIE judge: reads the claims an answer makes and checks each against the scene graph.

The synthetic world has a closed vocabulary (object words, entity names, colours, patterns, shapes,
part words, number words, fact values), so the claims of a free-form answer can be found by rule:

    exists       "a teal dotted creature", "there is a tree"      some object of that kind, with those looks
    count        "two creatures", "five objects"                  exactly that many objects of that kind
    parts        "the vehicle has four wheels", "with two legs"   an object of that kind with that many parts
    naming       "the creature is a skouris"                      an object of that kind is that entity
    relation     "the house is to the right of the vehicle"       centres ordered that way for some pair
    fact         "it is hunted by sand vipers"                    the subject's entity has that fact value

A clause with a negation ("there is no cloud", "the creature is not purple") claims the opposite of
what it names. A yes/no answer to a yes/no question asserts (yes) or denies (no) what the question
asks (its relation, fact or count, else its first object; what it takes for granted is not a claim).

Accuracy = 10 x (true claims / checkable claims); an answer with no checkable claim gets no accuracy
(reported, not scored as zero). Relevancy: for a question with a slot (a number for "how many", a
colour for "what colour", yes/no or a stated rejection for a yes/no question, a side for "which
side", a fact value for a knowledge question), 10 if the answer fills it (or rejects the question's
premise), else 5 x the share of the asked objects it talks about; for an instruction without a slot
("Describe ..."), 10 x the share of the asked objects it talks about (any object when none is named).

Scenes and the vocabulary are plain dicts (written by mmrag.datasets.world.gavie):
    scene      {"width", "height", "objects": [{"id", "label", "word", "box": [x, y, w, h],
                "colour", "pattern", "shape", "parts", "facts": {attribute: value}}]}
    vocabulary {"colours", "patterns", "shapes", "generic", "numbers": [...],
                "categories": {category: [part singular, part plural]}, "names": {name: category},
                "fact_values": {attribute: [values]}}
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

NEGATIONS = frozenset({"no", "not", "none", "never", "nothing", "nowhere", "neither", "nor", "isn't", "aren't",
                       "doesn't", "don't", "cannot", "can't", "wasn't", "weren't", "hasn't", "haven't", "without"})
AUXILIARIES = frozenset({"is", "are", "can", "does", "do", "was", "were", "has", "have", "could", "will", "would",
                         "did", "should", "am"})
COPULAS = frozenset({"is", "are", "was", "were", "looks", "look", "appears", "appear", "seems", "seem"})
ARTICLES = frozenset({"a", "an", "the", "another", "this", "that", "its"})
SIDES = ("left", "right", "middle")
ADVERBS = frozenset({"here", "there", "also", "itself", "clearly", "really", "actually"})
OBJECT_WORDS = frozenset({"object", "objects", "thing", "things", "item", "items"})
CLAUSE_SPLIT = re.compile(r"[.;:!?]+|,\s*(?=(?:but|not|while|whereas)\b)|\bbut\b|\bwhereas\b|\bwhile\b")
# what a knowledge question about an entity asks (eat, live, hunted, made of, used for, ...)
KNOWLEDGE_CUES = re.compile(r"\b(eats?|food|lives?|home|hunts?|hunted|predator|preys?|comes? from|region|soil|ground|"
                            r"grows?|pollen|pollinat\w*|used for|job|made (?:of|from|for)|material|works? with|"
                            r"craftspeople|use the|runs? on|powers?|travels?|terrain|make with)\b")
TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


# ----------------------------------------------------------------------------- vocabulary
class Lexicon:
    """Token lookups built once from the world's vocabulary dict."""

    def __init__(self, vocabulary: Mapping[str, Any]) -> None:
        self.colours = set(vocabulary["colours"])
        self.patterns = set(vocabulary["patterns"])
        self.shapes = set(vocabulary["shapes"])
        self.numbers = {w: i for i, w in enumerate(vocabulary["numbers"])}
        self.names = dict(vocabulary["names"])                      # entity name -> category
        self.heads: Dict[str, Tuple[str, bool]] = {}               # token -> (kind word, plural?)
        for word in list(vocabulary["categories"]) + list(vocabulary["generic"]):
            self.heads[word], self.heads[word + "s"] = (word, False), (word, True)
        for name in self.names:
            self.heads.setdefault(name, (name, False))
        for word in OBJECT_WORDS:
            self.heads[word] = ("object", word.endswith("s"))
        self.part_words: Dict[str, str] = {}                      # part token -> category
        for category, (single, plural) in vocabulary["categories"].items():
            self.part_words[single] = self.part_words[plural] = category
        # fact values as token tuples, longest first so "sand vipers" wins over a shorter value inside it
        values = {v for vs in vocabulary["fact_values"].values() for v in vs}
        self.fact_values = sorted(((tuple(TOKEN.findall(v.lower())), v) for v in values), key=lambda p: -len(p[0]))

    def number(self, token: str) -> Optional[int]:
        if token.isdigit():
            return int(token)
        return self.numbers.get(token)

    def is_attribute(self, token: str) -> bool:
        return token in self.colours or token in self.patterns or token in self.shapes

    def attribute_of(self, token: str) -> Tuple[str, str]:
        kind = "colour" if token in self.colours else "pattern" if token in self.patterns else "shape"
        return kind, token


# ----------------------------------------------------------------------------- claims
@dataclass
class Mention:
    """An object a clause talks about: its kind ('creature', 'tree', an entity name, 'object') and looks."""

    position: int
    word: str                               # category / generic word, or "object"
    label: Optional[str] = None             # entity name when the text names it
    attrs: Dict[str, Any] = field(default_factory=dict)
    count: Optional[int] = None             # "two creatures": how many the text says there are
    side: Optional[str] = None              # "the tool on the left": the leftmost of those that fit

    def describe(self) -> str:
        looks = " ".join(str(self.attrs[k]) for k in sorted(self.attrs))
        return " ".join(p for p in (looks, self.label or self.word) if p)


@dataclass
class Claim:
    kind: str                 # exists | count | relation | fact
    text: str                 # readable form, for the judge's reasons
    holds: bool               # what the scene says about the positive form
    negated: bool = False

    @property
    def true(self) -> bool:
        return self.holds != self.negated


def _matches(obj: Mapping[str, Any], mention: Mention) -> bool:
    if mention.label is not None and obj.get("label") != mention.label:
        return False
    if mention.word != "object" and obj.get("word") != mention.word:     # "the ball is a molor": no such ball
        return False
    return all(str(obj.get(key)) == str(value) for key, value in mention.attrs.items())


def _centre(obj: Mapping[str, Any]) -> float:
    x, _, w, _ = obj["box"]
    return float(x) + float(w) / 2.0


def candidates(objects: Sequence[Mapping[str, Any]], mention: Mention) -> List[Mapping[str, Any]]:
    """The scene objects a mention can mean; "on the left / right / in the middle" picks one of them."""
    fitting = sorted((o for o in objects if _matches(o, mention)), key=_centre)
    if mention.side is None or not fitting:
        return fitting
    return [fitting[{"left": 0, "right": -1}.get(mention.side, len(fitting) // 2)]]


class ClaimReader:
    """Finds the claims of a text (an answer, or a question) over the world's vocabulary."""

    def __init__(self, lexicon: Lexicon) -> None:
        self.lex = lexicon

    def clauses(self, text: str) -> List[List[str]]:
        return [TOKEN.findall(part.lower()) for part in CLAUSE_SPLIT.split(text or "") if part and part.strip()]

    def mentions(self, tokens: Sequence[str]) -> List[Mention]:
        """Object mentions with the looks written before them, then 'is <looks>' / 'is a <name>' after them."""
        found: List[Mention] = []
        for i, tok in enumerate(tokens):
            if tok not in self.lex.heads:
                continue
            word, plural = self.lex.heads[tok]
            mention = Mention(i, word) if tok not in self.lex.names else Mention(i, self.lex.names[tok], label=tok)
            j = i - 1
            while j >= 0 and self.lex.is_attribute(tokens[j]):      # "a teal dotted creature"
                key, value = self.lex.attribute_of(tokens[j])
                mention.attrs.setdefault(key, value)
                j -= 1
            n = self.lex.number(tokens[j]) if j >= 0 else None      # "two creatures", "one tree"
            if n is not None and (plural or n == 1):
                mention.count = n
            found.append(mention)
        return self._merge_identities(tokens, found)

    def _merge_identities(self, tokens: Sequence[str], found: List[Mention]) -> List[Mention]:
        """'X is (a) <looks>' gives X those looks; 'X is a Y' makes X and Y one object."""
        merged: List[Mention] = []
        for mention in found:
            prev = merged[-1] if merged else None
            between = self._after_side(tokens[prev.position + 1:mention.position]) if prev else []
            if prev is not None and between and between[0] in COPULAS and all(
                    t in COPULAS or t in ARTICLES or self.lex.is_attribute(t) or t == "and" for t in between) \
                    and mention.count is None and prev.count is None:
                if mention.label and not prev.label:          # "the plant (on the left) is a broulil"
                    prev.label = mention.label
                    prev.word = mention.word if prev.word == "object" else prev.word
                elif prev.label and not mention.label and mention.word != prev.word:
                    merged.append(mention)
                    continue
                for key, value in mention.attrs.items():
                    prev.attrs.setdefault(key, value)
                prev.position = mention.position
                continue
            merged.append(mention)
        for mention in merged:   # "the tool on the left" (not "on the left of ..."): a position among its kind
            after = list(tokens[mention.position + 1:mention.position + 5])
            if after[:2] in (["on", "the"], ["in", "the"]) and len(after) > 2 and after[2] in SIDES \
                    and after[3:4] != ["of"]:
                mention.side = after[2]
        for mention in merged:   # "is teal", "is teal and dotted", "here is grey" after the object
            k = mention.position + 1
            while k < len(tokens) and tokens[k] in ADVERBS:
                k += 1
            if k < len(tokens) and tokens[k] in COPULAS:
                k += 1
                while k < len(tokens) and (tokens[k] in ("not", "and") or self.lex.is_attribute(tokens[k])):
                    if self.lex.is_attribute(tokens[k]):
                        key, value = self.lex.attribute_of(tokens[k])
                        mention.attrs.setdefault(key, value)
                    k += 1
        return merged

    @staticmethod
    def _after_side(between: Sequence[str]) -> List[str]:
        """The tokens between two mentions without a leading "on the left" / "in the middle"."""
        if list(between[:2]) in (["on", "the"], ["in", "the"]) and len(between) > 2 and between[2] in SIDES \
                and list(between[3:4]) != ["of"]:
            return list(between[3:])
        return list(between)

    def _parts(self, tokens: Sequence[str], mentions: List[Mention]) -> None:
        """'<number> <part words>' gives the nearest object of that category a part count."""
        for i in range(1, len(tokens)):
            category = self.lex.part_words.get(tokens[i])
            n = self.lex.number(tokens[i - 1])
            if category is None or n is None:
                continue
            near = sorted((abs(m.position - i), m.position, m) for m in mentions if m.word in (category, "object"))
            if near:
                near[0][2].attrs["parts"] = n

    def _facts(self, tokens: Sequence[str]) -> List[Tuple[int, str]]:
        found, used = [], set()
        for seq, value in self.lex.fact_values:
            for i in range(len(tokens) - len(seq) + 1):
                span = set(range(i, i + len(seq)))
                if tuple(tokens[i:i + len(seq)]) == seq and not span & used:
                    found.append((i, value))
                    used |= span
        return sorted(found)

    def _relations(self, tokens: Sequence[str], mentions: List[Mention]) -> List[Tuple[Mention, Mention]]:
        """(left object, right object) pairs from 'A ... left/right (side) of ... B'."""
        pairs = []
        for i, tok in enumerate(tokens):
            if tok not in ("left", "right") or "of" not in tokens[i + 1:i + 3]:
                continue
            before = [m for m in mentions if m.position < i]
            after = [m for m in mentions if m.position > i]
            if before and after:
                a, b = before[-1], after[0]
                pairs.append((a, b) if tok == "left" else (b, a))
        return pairs

    def claims(self, text: str, scene: Mapping[str, Any], subject: Optional[Mention] = None,
               negate_all: bool = False) -> Tuple[List[Claim], Optional[Mention]]:
        """The claims of `text` checked against `scene`; `subject` is who a bare fact is about."""
        objects = list(scene["objects"])
        out: List[Claim] = []
        for tokens in self.clauses(text):
            negated = negate_all != any(t in NEGATIONS or t.endswith("n't") for t in tokens)
            mentions = self.mentions(tokens)
            self._parts(tokens, mentions)
            # an object a relation or a fact is about makes no claim of its own: the relation / fact
            # is false when no object fits the description ("the purple creature is hunted by ...")
            referenced = set()
            for a, b in self._relations(tokens, mentions):
                referenced |= {id(a), id(b)}
                holds = any(_centre(x) < _centre(y) for x in candidates(objects, a)
                            for y in candidates(objects, b) if y is not x)
                out.append(Claim("relation", f"{a.describe()} left of {b.describe()}", holds, negated))
            for position, value in self._facts(tokens):
                before = [m for m in mentions if m.position < position and m.word != "object"]
                who = before[-1] if before else (mentions[0] if mentions else subject)
                holders = objects if who is None else candidates(objects, who)
                holds = any(value in (o.get("facts") or {}).values() for o in holders)
                out.append(Claim("fact", f"{who.describe() if who else 'something'}: {value}", holds, negated))
                if who is not None:
                    referenced.add(id(who))
            for m in mentions:
                matching = candidates(objects, m)
                if m.count is not None:
                    out.append(Claim("count", f"{m.count} x {m.describe()}", len(matching) == m.count, negated))
                elif id(m) not in referenced:
                    out.append(Claim("exists", f"there is a {m.describe()}", bool(matching), negated))
            named = [m for m in mentions if m.word != "object"]
            if named:   # who a later bare fact ("it lives in ...") is about: the last entity named, else the last object
                subject = next((m for m in reversed(named) if m.label), named[-1])
        return out, subject


# ----------------------------------------------------------------------------- the judge
def _is_yes_no_question(question: str) -> bool:
    tokens = TOKEN.findall((question or "").lower())
    return bool(tokens) and tokens[0] in AUXILIARIES and question.strip().endswith("?") and "or" not in tokens


def _slot(question: str, lex: Lexicon) -> Optional[str]:
    q = (question or "").lower()
    if q.startswith("how many") or " how many " in q:
        return "number"
    for word, slot in (("colour", "colour"), ("color", "colour"), ("pattern", "pattern"), ("shape", "shape")):
        if re.search(rf"\bwhat {word}\b|\bwhich {word}\b", q):
            return slot
    if "which side" in q or "left or" in q or "right or" in q:
        return "side"
    if _is_yes_no_question(question):
        return "yes_no"
    if q.rstrip().endswith("?") and KNOWLEDGE_CUES.search(q):
        return "fact"
    return None


def asked(claims: List[Claim]) -> List[Claim]:
    """The claims a yes/no question asks about, without what it takes for granted: its relation /
    fact / count if it has one ("Is the tool left of the cup?": the tool and the cup are presupposed),
    else its first object ("Is there a creature next to the cup?": the cup is presupposed)."""
    predicates = [c for c in claims if c.kind != "exists"]
    return predicates or claims[:1]


def denied(claims: List[Claim]) -> List[Claim]:
    return [Claim(c.kind, c.text, c.holds, not c.negated) for c in claims]


@dataclass
class OracleVerdict:
    relevancy: float
    accuracy: Optional[float]        # None: the answer makes no checkable claim
    claims: List[Claim]
    reason: str


class WorldOracle:
    """Scores an answer to an instruction from the scene graph: no language model involved."""

    def __init__(self, vocabulary: Mapping[str, Any]) -> None:
        self.lex = Lexicon(vocabulary)
        self.reader = ClaimReader(self.lex)

    def _slot_filled(self, slot: Optional[str], answer: str, answer_tokens: List[str], claims: List[Claim]) -> bool:
        if slot == "number":
            return any(self.lex.number(t) is not None for t in answer_tokens)
        if slot in ("colour", "pattern", "shape"):
            pool = {"colour": self.lex.colours, "pattern": self.lex.patterns, "shape": self.lex.shapes}[slot]
            return any(t in pool for t in answer_tokens) or any(c.negated for c in claims)
        if slot == "side":
            return "left" in answer_tokens or "right" in answer_tokens
        if slot == "yes_no":
            return answer_tokens[:1] in (["yes"], ["no"]) or any(c.negated for c in claims)
        if slot == "fact":
            return bool(self.reader._facts(answer_tokens)) or any(c.negated for c in claims)
        return True

    def _coverage(self, question: str, answer_mentions: List[Mention]) -> float:
        asked = [m for tokens in self.reader.clauses(question) for m in self.reader.mentions(tokens)]
        asked = [m for m in asked if m.word != "object"] or asked
        if not asked:
            return 1.0 if answer_mentions else 0.0
        said_words = {m.word for m in answer_mentions} | {"object"}
        said_labels = {m.label for m in answer_mentions if m.label}
        covered = [m for m in asked if (m.label in said_labels if m.label else m.word in said_words)
                   or (m.label is not None and m.word in {a.word for a in answer_mentions})]
        return len(covered) / len(asked)

    def judge(self, question: str, answer: str, scene: Mapping[str, Any]) -> OracleVerdict:
        answer = answer or ""
        answer_tokens = TOKEN.findall(answer.lower())
        if not answer_tokens:
            return OracleVerdict(0.0, None, [], "empty answer")
        _, subject = self.reader.claims(question, scene)
        claims, _ = self.reader.claims(answer, scene, subject=subject)
        yes_no = _is_yes_no_question(question) and answer_tokens[0] in ("yes", "no")
        if yes_no:
            question_claims = asked(self.reader.claims(question, scene)[0])
            claims = (question_claims if answer_tokens[0] == "yes" else denied(question_claims)) + claims
        mentions = [m for tokens in self.reader.clauses(answer) for m in self.reader.mentions(tokens)]
        slot = _slot(question, self.lex)
        coverage = 1.0 if yes_no else self._coverage(question, mentions)
        if slot is None:
            relevancy = 10.0 * coverage
        elif self._slot_filled(slot, answer, answer_tokens, claims):
            relevancy = 10.0          # what was asked is answered (the object is then implied: "Sand vipers.")
        else:
            relevancy = 5.0 * coverage   # talks about the asked object without answering what was asked
        n_true = sum(c.true for c in claims)
        accuracy = 10.0 * n_true / len(claims) if claims else None
        lines = [f"{'not ' if c.negated else ''}{c.text}: {'true' if c.true else 'false'}" for c in claims]
        reason = f"{n_true}/{len(claims)} claims true" + (f" ({'; '.join(lines)})" if lines else "") + \
            f"; covers {coverage:.0%} of the asked objects" + (f", slot {slot}" if slot else "")
        return OracleVerdict(round(relevancy, 2), None if accuracy is None else round(accuracy, 2), claims, reason)
