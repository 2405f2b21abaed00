"""POPE builder on a hand-written COCO file whose expected questions were worked out by hand.

Images (objects): 1 dog cat ball | 2 dog cat tree | 3 dog ball tree | 4 car bird | 5 dog cat |
6 dog cat ball | 7 car road | 8 car road bird.
Images per object: dog 5, cat 4, ball 3, car 3, tree 2, bird 2, road 2.
Co-occurrence: dog-cat 4, dog-ball 3, dog-tree 2, cat-ball 2, car-bird 2, car-road 2, cat-tree 1,
ball-tree 1, bird-road 1, all others 0.
"""
import pytest

from mmrag.datasets.pope_builder import build_pope, co_occurrence, image_frequency, objects_by_image

OBJECTS = {1: ["dog", "cat", "ball"], 2: ["dog", "cat", "tree"], 3: ["dog", "ball", "tree"], 4: ["car", "bird"],
           5: ["dog", "cat"], 6: ["dog", "cat", "ball"], 7: ["car", "road"], 8: ["car", "road", "bird"]}
NAMES = ["ball", "bird", "car", "cat", "dog", "road", "tree"]
# absent objects sorted by (images holding them desc, name)
EXPECTED_POPULAR = {1: ["car", "bird"], 2: ["ball", "car"], 3: ["cat", "car"], 4: ["dog", "cat"],
                    5: ["ball", "car"], 6: ["car", "bird"], 7: ["dog", "cat"], 8: ["dog", "cat"]}
# absent objects sorted by (sum of co-occurrence with the image's objects desc, frequency desc, name)
EXPECTED_ADVERSARIAL = {1: ["tree", "car"], 2: ["ball", "car"], 3: ["cat", "car"], 4: ["road", "dog"],
                        5: ["ball", "tree"], 6: ["tree", "car"], 7: ["bird", "dog"], 8: ["dog", "cat"]}


@pytest.fixture()
def instances():
    cat_id = {name: i + 1 for i, name in enumerate(NAMES)}
    annotations = []
    for image_id, objs in OBJECTS.items():
        for name in objs:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat_id[name],
                                "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0})
    # a second box of the same kind must not count twice
    annotations.append({"id": 99, "image_id": 1, "category_id": cat_id["dog"], "bbox": [9, 9, 5, 5]})
    return {"images": [{"id": i, "file_name": f"img{i}.jpg", "width": 20, "height": 20} for i in OBJECTS],
            "annotations": annotations,
            "categories": [{"id": i, "name": n, "supercategory": "x"} for n, i in cat_id.items()]}


def _by_image(questions):
    by_file = {}
    for q in questions:
        name = q["text"][len("Is there a "):-len(" in the image?")]
        by_file.setdefault(q["image"], {"yes": [], "no": []})[q["label"]].append(name)
    return {int(f[3:-4]): v for f, v in by_file.items()}


def test_statistics_match_hand_counts(instances):
    objects = objects_by_image(instances)
    assert objects[1] == ["ball", "cat", "dog"]
    assert dict(image_frequency(objects)) == {"dog": 5, "cat": 4, "ball": 3, "car": 3, "tree": 2, "bird": 2, "road": 2}
    pairs = co_occurrence(objects)
    assert pairs["dog"]["cat"] == 4 and pairs["car"]["road"] == 2 and pairs["bird"]["road"] == 1
    assert pairs["dog"]["car"] == 0


@pytest.mark.parametrize("strategy,expected", [("popular", EXPECTED_POPULAR), ("adversarial", EXPECTED_ADVERSARIAL)])
def test_deterministic_strategies_give_the_hand_computed_negatives(instances, strategy, expected):
    got = _by_image(build_pope(instances, strategy, n_per_image=2, seed=3))
    assert {i: v["no"] for i, v in got.items()} == expected


@pytest.mark.parametrize("strategy", ["random", "popular", "adversarial"])
def test_positives_are_annotated_objects_and_labels_balance(instances, strategy):
    questions = build_pope(instances, strategy, n_per_image=2, seed=0)
    assert len(questions) == 8 * 4
    assert [q["question_id"] for q in questions] == list(range(1, 33))
    assert [q["label"] for q in questions] == ["yes", "no"] * 16
    for image_id, answers in _by_image(questions).items():
        assert len(set(answers["yes"])) == 2 and set(answers["yes"]) <= set(OBJECTS[image_id])
        assert len(set(answers["no"])) == 2 and not set(answers["no"]) & set(OBJECTS[image_id])
    got = _by_image(questions)
    assert sorted(got[4]["yes"]) == ["bird", "car"] and sorted(got[5]["yes"]) == ["cat", "dog"]


def test_random_negatives_are_uniform_over_absent_objects(instances):
    seen = {}
    for seed in range(60):
        for name in _by_image(build_pope(instances, "random", n_per_image=2, seed=seed))[4]["no"]:
            seen[name] = seen.get(name, 0) + 1
    assert set(seen) == {"ball", "cat", "dog", "road", "tree"}  # every absent object is drawn sometimes
    assert max(seen.values()) < 3 * min(seen.values())


def test_images_with_too_few_objects_are_skipped_and_sampling_is_seeded(instances):
    questions = build_pope(instances, "popular", n_per_image=3, seed=0)
    assert sorted(_by_image(questions)) == [1, 2, 3, 6, 8]
    assert build_pope(instances, "random", 2, seed=5) == build_pope(instances, "random", 2, seed=5)
    sampled = build_pope(instances, "popular", 2, seed=1, max_images=3)
    assert len(_by_image(sampled)) == 3


def test_unknown_strategy_is_rejected(instances):
    with pytest.raises(ValueError, match="unknown POPE strategy 'frequent'"):
        build_pope(instances, "frequent")
