"""Segment ids are remembered per tokenizer: the same ids as the tokenizer's own, never shared lists."""
import pytest

from mmrag.processors import tokenization
from mmrag.processors.tokenizers import load_tokenizer


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer({})  # the bundled LLaMA tokenizer


def test_remembered_ids_equal_the_tokenizers(tok):
    texts = ["Is there a red cube in the image?", " Yes", "", "ASSISTANT:", "Is there a red cube in the image?"]
    for _ in range(2):  # the second pass reads the memo
        for text in texts:
            assert tokenization._text_ids(tok, text) == (tok(text, add_special_tokens=False)["input_ids"] if text else [])
    first = tokenization._text_ids(tok, "a blue sphere")
    first.append(-1)  # a caller's list is its own
    assert tokenization._text_ids(tok, "a blue sphere") == tok("a blue sphere", add_special_tokens=False)["input_ids"]


def test_tokenizers_without_weak_references_still_encode():
    class Slotted:
        __slots__ = ()

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [len(w) for w in text.split()]}

    assert tokenization._text_ids(Slotted(), "ab c def") == [2, 1, 3]
