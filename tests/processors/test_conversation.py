"""Each conversation template against the reference format, written out by hand."""
from mmrag.processors import get_template

TURNS = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A cat."},
         {"from": "human", "value": "Colour?"}, {"from": "gpt", "value": "Black."}]
VICUNA_SYS = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
              "detailed, and polite answers to the user's questions.")


def rendered(name, turns=TURNS, eos="</s>"):
    """The text with each target followed by the EOS string, as the model is trained on it."""
    return "".join(text + (eos if target else "") for text, target in get_template(name).segments(turns))


def test_vicuna_v1_reference_format():
    # Vicuna v1.1: "<system> USER: <q> ASSISTANT: <a></s>USER: <q> ASSISTANT: <a></s>"
    assert rendered("vicuna_v1") == (VICUNA_SYS + " USER: <image>\nWhat is it? ASSISTANT: A cat.</s>"
                                     "USER: Colour? ASSISTANT: Black.</s>")


def test_llama2_chat_reference_format():
    # LLaMA-2 chat: "[INST] <<SYS>>\n<system>\n<</SYS>>\n\n<q> [/INST] <a> </s>[INST] <q> [/INST] <a> </s>"
    system = "You are a helpful, honest assistant that answers questions about images."
    assert rendered("llama2_chat") == (f"[INST] <<SYS>>\n{system}\n<</SYS>>\n\n<image>\nWhat is it? [/INST] A cat. </s>"
                                       "[INST] Colour? [/INST] Black. </s>")


def test_generation_prompt_ends_with_the_assistant_prefix():
    assert get_template("vicuna_v1").prompt(TURNS[:1]) == VICUNA_SYS + " USER: <image>\nWhat is it? ASSISTANT:"
    assert get_template("llama2_chat").prompt(TURNS[:1]).endswith("<image>\nWhat is it? [/INST]")


def test_only_answers_are_targets():
    for name in ["vicuna_v1", "llama2_chat", "alpaca", "knowledge_completion"]:
        targets = [text for text, target in get_template(name).segments(TURNS) if target]
        assert [t.strip() for t in targets] == ["A cat.", "Black."]


def test_chatml_renders_like_smollm2s_own_chat_template():
    """Oracle: the chat template shipped in the SmolLM2 folder (jinja), same system text, EOS <|im_end|>."""
    from pathlib import Path

    import jinja2
    import pytest

    from mmrag.processors import get_template

    jinja_file = Path("assets/smollm2-135m-instruct/chat_template.jinja")
    if not jinja_file.is_file():
        pytest.skip("assets/smollm2-135m-instruct absent (mmrag-prepare-assets smollm2)")
    template = get_template("chatml")
    turns = [{"from": "human", "value": "<image>\nList the objects in the image."},
             {"from": "gpt", "value": "a rock and a tree."},
             {"from": "human", "value": "Is there a rock in the image?"}]
    ours = "".join(text + ("<|im_end|>" if is_answer else "") for text, is_answer in template.segments(turns))
    system = template.system[len("<|im_start|>system\n"):-len("<|im_end|>\n")]
    messages = [{"role": "system", "content": system}, {"role": "user", "content": turns[0]["value"]},
                {"role": "assistant", "content": turns[1]["value"]}, {"role": "user", "content": turns[2]["value"]}]
    theirs = jinja2.Template(jinja_file.read_text()).render(messages=messages, add_generation_prompt=True)
    assert ours == theirs
