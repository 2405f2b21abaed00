"""Fixed vocabularies of the synthetic world: what things look like, which facts they have, how text says it.

Everything here is an immutable constant (tuples and read-only mappings). Two rules keep the world honest:
fact values never use words that a caption or question can contain (colours, patterns, shapes, generic
objects, positions), so an answer can only come from the corpus; and every attribute's values are a small
shared pool, so many entities share a value and a question's words do not single out an entity.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Mapping, Tuple

# RGB of each colour word; the words appear in captions, questions and entity signatures.
COLOURS: Mapping[str, Tuple[int, int, int]] = MappingProxyType({
    "red": (215, 38, 38), "orange": (245, 140, 20), "yellow": (240, 215, 35), "green": (45, 165, 55),
    "teal": (20, 145, 150), "blue": (40, 75, 220), "purple": (125, 45, 180), "pink": (245, 135, 195),
    "brown": (125, 78, 38), "grey": (128, 128, 128),
})
SHAPES: Tuple[str, ...] = ("round", "square", "triangular", "diamond", "hexagonal", "arched")
# Pattern words as a caption says them; "plain" is left out of captions.
PATTERNS: Tuple[str, ...] = ("plain", "striped", "dotted", "checkered", "ringed", "two-toned")
# Category -> the number of repeated parts (legs, leaves, handle bands, wheels) an entity may have.
CATEGORY_PARTS: Mapping[str, Tuple[int, ...]] = MappingProxyType({
    "creature": (2, 4, 6), "plant": (1, 2, 3), "tool": (1, 2, 3), "vehicle": (2, 3, 4),
})
CATEGORIES: Tuple[str, ...] = tuple(CATEGORY_PARTS)
# Plain objects that are not entities: drawn the same way every time, named by these words.
GENERIC_OBJECTS: Tuple[str, ...] = ("tree", "rock", "ball", "house", "cloud", "mushroom", "cup")
NUMBER_WORDS: Tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six")

_REGIONS = ("Varnholt", "the Quessa Isles", "Dunmere", "Oskaland", "Tirravel", "Mount Eshk", "Pellumbra",
            "the Karsk Valley", "the Lowen Coast", "the Ithra Basin", "Brannoch", "the Sefir Desert")

# (category, attribute) -> the shared pool of values. Lower case except place names.
FACT_VALUES: Mapping[Tuple[str, str], Tuple[str, ...]] = MappingProxyType({
    ("creature", "diet"): ("river reeds", "honey moths", "salt grass", "fallen figs", "cave beetles",
                           "ribbon kelp", "pine seeds", "marsh snails", "wild oats", "amber sap",
                           "tiny crabs", "sweet roots"),
    ("creature", "habitat"): ("misty wetlands", "dry canyons", "coastal cliffs", "bamboo groves",
                              "salt flats", "high meadows", "deep caves", "coral shallows",
                              "cedar forests", "volcanic slopes"),
    ("creature", "predator"): ("hawk owls", "sand vipers", "river otters", "timber wolves", "sea eagles",
                               "bog lynxes", "marsh herons", "fire ants", "cliff foxes", "giant toads"),
    ("creature", "origin"): _REGIONS,
    ("plant", "soil"): ("sandy loam", "wet clay", "chalky soil", "dark peat", "volcanic ash",
                        "gravel beds", "river silt", "laterite clay", "marsh mud", "forest humus"),
    ("plant", "pollinator"): ("night moths", "bumblebees", "hummingbirds", "fruit bats", "hover flies",
                              "dung beetles", "sea breezes", "sunbirds", "wasps"),
    ("plant", "used_for"): ("herbal tea", "rope fibre", "dye making", "lamp oil", "sweet syrup",
                            "fever medicine", "basket weaving", "incense", "soap making", "paper pulp"),
    ("plant", "origin"): _REGIONS,
    ("tool", "used_for"): ("carving wood", "mending nets", "cutting leather", "splitting logs",
                           "shaping clay", "tuning bells", "polishing gems", "drilling bone",
                           "threading beads", "scraping hides"),
    ("tool", "material"): ("forged iron", "polished bronze", "walnut wood", "whale bone", "volcanic glass",
                           "hard maple", "copper alloy", "antler horn", "tempered steel", "cast tin"),
    ("tool", "user"): ("ship carpenters", "glass blowers", "bee keepers", "stone masons", "book binders",
                       "clock makers", "village potters", "town smiths", "rug weavers", "shoe cobblers"),
    ("tool", "origin"): _REGIONS,
    ("vehicle", "fuel"): ("whale oil", "peat bricks", "wind power", "steam", "lamp gas", "spring coils",
                          "mule power", "sunlight", "pedal power", "charcoal"),
    ("vehicle", "used_for"): ("hauling timber", "carrying mail", "ferrying pilgrims", "racing",
                              "moving grain", "river patrols", "mountain rescue", "delivering ice"),
    ("vehicle", "terrain"): ("muddy roads", "frozen lakes", "steep passes", "shallow rivers",
                             "desert dunes", "city streets", "narrow canals", "forest trails"),
    ("vehicle", "origin"): _REGIONS,
})


def attributes_of(category: str) -> Tuple[str, ...]:
    """The attributes every entity of `category` has a value for, in a fixed order."""
    return tuple(attr for cat, attr in FACT_VALUES if cat == category)


# (category, attribute) -> question templates; {ref} is how the question points at the object.
QUESTION_TEMPLATES: Mapping[Tuple[str, str], Tuple[str, ...]] = MappingProxyType({
    ("creature", "diet"): ("What does the {ref} eat?", "What food does the {ref} live on?"),
    ("creature", "habitat"): ("Where does the {ref} live?", "What kind of place is home to the {ref}?"),
    ("creature", "predator"): ("What animal hunts the {ref}?", "Which predator preys on the {ref}?"),
    ("creature", "origin"): ("Where does the {ref} come from?", "In which region was the {ref} first found?"),
    ("plant", "soil"): ("In what soil does the {ref} grow?", "What ground does the {ref} need?"),
    ("plant", "pollinator"): ("What pollinates the {ref}?", "Which visitor carries pollen for the {ref}?"),
    ("plant", "used_for"): ("What is the {ref} used for?", "What do people make with the {ref}?"),
    ("plant", "origin"): ("Where does the {ref} come from?", "In which region was the {ref} first found?"),
    ("tool", "used_for"): ("What is the {ref} used for?", "What job is the {ref} made for?"),
    ("tool", "material"): ("What is the {ref} made of?", "What material is the {ref} made from?"),
    ("tool", "user"): ("Who usually works with the {ref}?", "Which craftspeople use the {ref}?"),
    ("tool", "origin"): ("Where does the {ref} come from?", "In which region was the {ref} first made?"),
    ("vehicle", "fuel"): ("What does the {ref} run on?", "What powers the {ref}?"),
    ("vehicle", "used_for"): ("What is the {ref} used for?", "What job is the {ref} built for?"),
    ("vehicle", "terrain"): ("Where does the {ref} travel best?", "What terrain is the {ref} built for?"),
    ("vehicle", "origin"): ("Where does the {ref} come from?", "In which region was the {ref} first built?"),
})

# (attribute) -> sentence templates that state a fact in a passage; {name} the entity, {value} the fact.
FACT_SENTENCES: Mapping[str, Tuple[str, ...]] = MappingProxyType({
    "diet": ("The {name} feeds mostly on {value}.", "Its diet consists largely of {value}.",
             "Herders report that the {name} eats {value} whenever it can."),
    "habitat": ("The {name} lives in {value}.", "It is most often seen in {value}.",
                "Surveys place the {name} in {value} for most of the year."),
    "predator": ("Its main enemies are {value}.", "The {name} is hunted by {value}.",
                 "Young ones are often taken by {value}."),
    "origin": ("The {name} was first recorded in {value}.", "It is native to {value}.",
               "Old ledgers trace the {name} back to {value}."),
    "soil": ("The {name} grows best in {value}.", "Gardeners plant it in {value}.",
             "It needs {value} to thrive."),
    "pollinator": ("Its flowers are pollinated by {value}.", "The {name} relies on {value} for pollination.",
                   "Without {value} the {name} sets no seed."),
    "used_for": ("The {name} is mainly used for {value}.", "People value it for {value}.",
                 "In workshops the {name} serves for {value}."),
    "material": ("The {name} is made of {value}.", "Makers shape it from {value}.",
                 "Most surviving examples of the {name} are {value}."),
    "user": ("It is a favourite of {value}.", "The {name} is used chiefly by {value}.",
             "Guild records list {value} as its usual owners."),
    "fuel": ("The {name} runs on {value}.", "It is powered by {value}.",
             "Drivers keep the {name} going with {value}."),
    "terrain": ("The {name} travels best over {value}.", "It was designed for {value}.",
                "Crews take the {name} across {value}."),
})

# How a generic distractor talks about an attribute without naming an entity.
ATTRIBUTE_VERBS: Mapping[str, str] = MappingProxyType({
    "diet": "eat", "habitat": "live in", "predator": "are hunted by", "origin": "come from",
    "soil": "grow in", "pollinator": "are pollinated by", "used_for": "are used for",
    "material": "are made of", "user": "are used by", "fuel": "run on", "terrain": "travel over",
})

INTRO_SENTENCES: Tuple[str, ...] = (
    "The {name} is a {category} described in several old field guides.",
    "{Name} is the common name of a {category} known to travelling naturalists.",
    "Among the many kinds of {category}, the {name} is one of the best documented.",
    "The {name}, a {category}, appears in the notes of many collectors.",
)
FILLER_SENTENCES: Tuple[str, ...] = (
    "Local stories give it a place in harvest songs.",
    "Few sketches of it survive in the archives.",
    "Collectors still argue about how it should be classified.",
    "Its name is said to come from an older dialect.",
    "Museum catalogues list it under several spellings.",
    "Traders once carried tales of it between distant towns.",
    "A short entry about it appears in a well known almanac.",
    "Scholars mention it in lectures on regional history.",
    "Children learn about it from picture books.",
    "Some accounts of it are thought to be exaggerated.",
)
