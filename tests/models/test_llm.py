"""load_llm: `keep_layers` keeps the first N decoder layers of a saved LLaMA with their saved weights."""
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from mmrag.models.llm import LLM_DEFAULTS, load_llm


def test_keep_layers_loads_the_first_layers_with_their_weights(tmp_path):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                         num_attention_heads=2, num_key_value_heads=2)
    saved = LlamaForCausalLM(config)
    saved.save_pretrained(tmp_path / "llm")
    model = load_llm({**LLM_DEFAULTS, "path": str(tmp_path / "llm"), "keep_layers": 1}, vocab_size=64)
    assert len(model.model.layers) == 1 and model.config.num_hidden_layers == 1
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, saved.state_dict()[name], msg=name)
    whole = load_llm({**LLM_DEFAULTS, "path": str(tmp_path / "llm")}, vocab_size=64)
    assert len(whole.model.layers) == 3
