"""Fixtures shared by the decoding tests: a five-passage corpus index and a tiny random LLaMA."""
import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from mmrag.common.assets import llama_tokenizer_dir
from mmrag.retrieval.corpus_index import CorpusIndex

EOS, PAD, HIDDEN = 2, 0, 32
TEXTS = ["The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
         "Bananas are elongated edible fruits produced by flowering plants.",
         "Zebras are African equines with distinctive black-and-white striped coats.",
         "A fire hydrant is a connection point by which firefighters can tap into a water supply.",
         "Surfing is a surface water sport in which an individual rides a wave on a board."]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    tokenizer = AutoTokenizer.from_pretrained(str(llama_tokenizer_dir()))
    rows = [(f"p{i}", t) for i, t in enumerate(TEXTS)]
    return CorpusIndex.build(rows, tokenizer, tmp_path_factory.mktemp("index"), progress=False)


@pytest.fixture(scope="module")
def model():
    """LLaMA of the real 32k vocabulary, hidden 32, 2 layers, random weights."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32000, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, bos_token_id=1, eos_token_id=EOS,
                         pad_token_id=PAD)
    return LlamaForCausalLM(config).eval()
