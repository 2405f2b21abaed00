"""model.match_answer_bias: the logits of the first answer sub-tokens "▁Yes" / "▁No" get +d/2 / -d/2 with
d = a * m + b, m the highest name_match over the text tokens of the position's own turn (up to it).
Oracle: visual tokens built to match a known id (its embedding row made long, the cell pointing along it),
the plain LLM's logits (no bias) plus the bias written out per position, m by a loop over the turn's tokens."""
import pytest
import torch

import mmrag  # noqa: F401
from mmrag.common.errors import UserError
from mmrag.models.llm import base_causal_lm
from mmrag.models.multimodal_llm import MultimodalLLM
from mmrag.processors import build_processor
from mmrag.processors.tokenization import IGNORE_INDEX, IMAGE_PLACEHOLDER_ID
from tests.conftest import build_tiny_model, full_llm_cfg

SAMPLES = [  # one image each; row 0 asks about the object in the image, row 1 lists a rock, then asks about a tree
    [{"from": "human", "value": "<image> Is there a tree?"}, {"from": "gpt", "value": "Yes."}],
    [{"from": "human", "value": "<image> List the objects."}, {"from": "gpt", "value": "a rock."},
     {"from": "human", "value": "Is there a tree?"}, {"from": "gpt", "value": "No."}],
]


def _model(tiny_model_cfg, **keys):
    return build_tiny_model(full_llm_cfg(tiny_model_cfg, **keys))


def _first_id(tokenizer, word):
    return tokenizer(word, add_special_tokens=False)["input_ids"][0]


def _construct(model, processor):
    """Row 0's cell 0 reads as "tree", row 1's cell 0 as "rock" (the rows made long, the cells along them);
    every other cell is zero. Returns the visual tokens [2, cells, width]."""
    tok = processor.tokenizer
    tree, rock = _first_id(tok, "tree"), _first_id(tok, "rock")
    table = model.llm.get_input_embeddings().weight
    cells = model.num_visual_tokens
    visual = torch.zeros(2, cells, table.shape[1])
    with torch.no_grad():
        for row, token in ((0, tree), (1, rock)):
            table[token] = 40 * table[token] / table[token].norm()
            visual[row, 0] = table[token] / 4
    model.encode_images = lambda pixel_values, regions=None, image_keys=None: visual[: pixel_values.shape[0]]
    return visual


def _batch(processor, generation=False):
    gen = torch.Generator().manual_seed(3)
    samples = [{"conversations": turns[:-1] if generation else turns,
                "pixel_values": torch.randn(1, 3, 32, 32, generator=gen)} for turns in SAMPLES]
    return processor.collate(samples, generation=generation)


def _oracle_m(model, visual, ids, mask, eos, readable=None):
    """m[b, t] by loops: the max over s <= t of t's turn (turns end at an EOS) of max-over-cells softmax prob
    (over the `readable` ids only, when given)."""
    table = model.llm.get_input_embeddings().weight
    m = torch.zeros(ids.shape)
    for b in range(ids.shape[0]):
        probs = torch.softmax(visual[b] @ table.t(), dim=-1)
        for t in range(ids.shape[1]):
            best = 0.0
            for s in range(t, -1, -1):
                if s < t and int(ids[b, s]) == eos:
                    break
                if int(ids[b, s]) >= 0 and int(mask[b, s]) and (readable is None or int(ids[b, s]) in readable):
                    best = max(best, float(probs[:, int(ids[b, s])].max()))
            m[b, t] = best
    return m


def _biased_plain_logits(model, batch, m, a, b, yes, no):
    embeds = model.embed(batch["input_ids"], batch["pixel_values"])
    logits = base_causal_lm(model.llm)(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits.float()
    d = a * m + b
    logits[..., yes] += d / 2
    logits[..., no] -= d / 2
    return logits


def test_off_by_default_and_zero_start_is_the_baseline(tiny_model_cfg):
    assert MultimodalLLM.DEFAULTS["match_answer_bias"] is False
    plain, biased = _model(tiny_model_cfg), _model(tiny_model_cfg, match_answer_bias=True)
    assert plain.answer_bias is None and torch.equal(biased.answer_bias.detach(), torch.zeros(2))
    processor = build_processor(plain.cfg, plain)
    batch = _batch(processor)
    with torch.no_grad():
        assert torch.equal(plain(batch)["loss_sum"], biased(batch)["loss_sum"])
        prompt = _batch(processor, generation=True)
        kw = dict(max_new_tokens=3, do_sample=False, num_beams=1, output_scores=True, return_dict_in_generate=True)
        a, b = plain.generate(prompt, **kw), biased.generate(prompt, **kw)
    assert torch.equal(a.sequences, b.sequences)
    assert all(torch.equal(x, y) for x, y in zip(a.scores, b.scores))


@pytest.mark.parametrize("loss_logits", ["targets", "all"])
def test_loss_reads_the_plain_logits_plus_the_hand_bias(tiny_model_cfg, loss_logits):
    model = _model(tiny_model_cfg, match_answer_bias=True, loss_logits=loss_logits)
    processor = build_processor(model.cfg, model)
    tok = processor.tokenizer
    yes, no = tok.convert_tokens_to_ids("▁Yes"), tok.convert_tokens_to_ids("▁No")
    visual = _construct(model, processor)
    batch = _batch(processor)
    a, b = 3.0, -0.5
    with torch.no_grad():
        model.answer_bias.copy_(torch.tensor([a, b]))
        m = _oracle_m(model, visual, batch["input_ids"], batch["attention_mask"], tok.eos_token_id)
        # the construction: row 0's question names what its cell shows; row 1's second question does not,
        # though its first answer named what the cell shows (an m over the whole prompt would be ~1 there)
        ids = batch["input_ids"]
        answer_pos = [int((batch["labels"][r] == target).nonzero()[-1]) - 1 for r, target in ((0, yes), (1, no))]
        assert m[0, answer_pos[0]] > 0.99 and m[1, answer_pos[1]] < 0.05
        assert int((ids[1, : answer_pos[1]] == tok.eos_token_id).sum()) == 1
        rock_pos = int((ids[1] == _first_id(tok, "rock")).nonzero()[0])
        assert m[1, rock_pos] > 0.99
        torch.testing.assert_close(model.answer_match(model.embed(ids, batch["pixel_values"]), ids,
                                                      batch["attention_mask"]), m, atol=1e-5, rtol=1e-4)
        logits = _biased_plain_logits(model, batch, m, a, b, yes, no)
        labels = batch["labels"][:, 1:]
        want = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                 ignore_index=IGNORE_INDEX, reduction="sum")
        got = model(batch)["loss_sum"]
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)
    # and the bias is not a no-op at these values: the same loss without it differs
    with torch.no_grad():
        model.answer_bias.zero_()
        assert abs(float(model(batch)["loss_sum"]) - float(want)) > 1e-2


def test_generation_adds_the_forward_bias_at_every_step(tiny_model_cfg):
    model = _model(tiny_model_cfg, match_answer_bias=True)
    processor = build_processor(model.cfg, model)
    tok = processor.tokenizer
    yes, no = tok.convert_tokens_to_ids("▁Yes"), tok.convert_tokens_to_ids("▁No")
    visual = _construct(model, processor)
    prompt = _batch(processor, generation=True)
    a, b = 5.0, 1.0
    with torch.no_grad():
        model.answer_bias.copy_(torch.tensor([a, b]))
        out = model.generate(prompt, max_new_tokens=3, do_sample=False, num_beams=1, output_scores=True,
                             return_dict_in_generate=True)
        for step, scores in enumerate(out.scores):
            # the forward over the prompt and the tokens generated before this step (left padding kept)
            ids = torch.cat([prompt["input_ids"], out.sequences[:, :step]], dim=1)
            mask = torch.cat([prompt["attention_mask"], torch.ones_like(out.sequences[:, :step])], dim=1)
            batch = {"input_ids": ids, "attention_mask": mask, "pixel_values": prompt["pixel_values"]}
            m = _oracle_m(model, visual, ids, mask, tok.eos_token_id)
            want = _biased_plain_logits(model, batch, m, a, b, yes, no)[:, -1]
            torch.testing.assert_close(scores, want, atol=1e-4, rtol=1e-4)
    assert out.scores[0][0, yes] - out.scores[0][0, no] > 0  # row 0 (m ~ 1): pushed towards yes by ~a + b


def test_the_scalars_train_and_persist(tiny_model_cfg, tmp_path):
    model = _model(tiny_model_cfg, match_answer_bias=True)
    batch = _batch(build_processor(model.cfg, model))
    model(batch)["loss_sum"].backward()
    assert model.answer_bias.grad is not None and model.answer_bias.grad[1].abs() > 0
    with torch.no_grad():
        model.answer_bias.copy_(torch.tensor([1.5, -2.0]))
    model.save_trainable(tmp_path)
    again = _model(tiny_model_cfg, match_answer_bias=True, checkpoint=str(tmp_path))
    assert torch.equal(again.answer_bias.detach(), torch.tensor([1.5, -2.0]))


@pytest.mark.parametrize("answers", [["Yes"], ["Yes", "Yes"], ["Yes", ""], ["?Yes", "No"], "Yes"])
def test_bad_answer_strings_are_refused_naming_the_key(tiny_model_cfg, answers):
    with pytest.raises(UserError, match="model.match_answer_tokens"):
        _model(tiny_model_cfg, match_answer_bias=True, match_answer_tokens=answers)


def _names_file(tmp_path, names):
    path = tmp_path / "instances.json"
    path.write_text(__import__("json").dumps({"categories": [{"id": i, "name": n} for i, n in enumerate(names)]}))
    return str(path)


def test_names_file_limits_m_to_the_names_first_tokens_and_gain_scales_d(tiny_model_cfg, tmp_path):
    """With match_answer_names = {tree}, row 1's listing answer ("a rock.") no longer sets m even within its
    own turn; row 0's "tree" still does. Oracle: the loop of _oracle_m over the tree positions only, x gain."""
    model = _model(tiny_model_cfg, match_answer_bias=True, match_answer_names=_names_file(tmp_path, ["tree"]),
                   match_answer_gain=4.0)
    processor = build_processor(model.cfg, model)
    tok = processor.tokenizer
    yes, no = tok.convert_tokens_to_ids("▁Yes"), tok.convert_tokens_to_ids("▁No")
    visual = _construct(model, processor)
    batch = _batch(processor)
    ids = batch["input_ids"]
    tree = _first_id(tok, "tree")
    a, b = 0.5, 0.25
    with torch.no_grad():
        model.answer_bias.copy_(torch.tensor([a, b]))
        m = _oracle_m(model, visual, ids, batch["attention_mask"], tok.eos_token_id, readable={tree})
        rock_pos = int((ids[1] == _first_id(tok, "rock")).nonzero()[0])
        yes_pos = int((batch["labels"][0] == yes).nonzero()[-1]) - 1
        assert m[1, rock_pos] < 0.05 and m[0, yes_pos] > 0.99  # rock unread; row 0's tree read
        got_m = model.answer_match(model.embed(ids, batch["pixel_values"]), ids, batch["attention_mask"])
        torch.testing.assert_close(got_m, m, atol=1e-5, rtol=1e-4)
        logits = _biased_plain_logits(model, batch, m, 4.0 * a, 4.0 * b, yes, no)
        want = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                 batch["labels"][:, 1:].reshape(-1), ignore_index=IGNORE_INDEX,
                                                 reduction="sum")
        torch.testing.assert_close(model(batch)["loss_sum"], want, atol=1e-4, rtol=1e-5)
        prompt = _batch(processor, generation=True)
        out = model.generate(prompt, max_new_tokens=1, do_sample=False, num_beams=1, output_scores=True,
                             return_dict_in_generate=True)
        pm = _oracle_m(model, visual, prompt["input_ids"], prompt["attention_mask"], tok.eos_token_id, readable={tree})
        gen_want = _biased_plain_logits(model, prompt, pm, 4.0 * a, 4.0 * b, yes, no)[:, -1]
    torch.testing.assert_close(out.scores[0], gen_want, atol=1e-4, rtol=1e-4)


def test_bad_names_file_and_gain_are_refused_naming_the_key(tiny_model_cfg, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": []}')
    with pytest.raises(UserError, match="model.match_answer_names"):
        _model(tiny_model_cfg, match_answer_bias=True, match_answer_names=str(bad))
    with pytest.raises(UserError, match="model.match_answer_names"):
        _model(tiny_model_cfg, match_answer_bias=True, match_answer_names=str(tmp_path / "missing.json"))
    with pytest.raises(UserError, match="model.match_answer_gain"):
        _model(tiny_model_cfg, match_answer_bias=True, match_answer_gain=0)


def test_full_names_reads_a_name_only_where_it_is_whole_first_ids_reads_every_shared_first_id(tiny_model_cfg, tmp_path):
    """A name "theskan" (ids ▁the, sk, an) and a cell that reads as ▁the. Asking about a rock "in the image":
    first_ids reads the "the" of the wording (m ~ 1), full_names reads nothing (m = 0). Asking about the
    theskan: full_names reads p(▁the) from the name's last token on, not before."""
    names = _names_file(tmp_path, ["theskan"])
    models = {mode: _model(tiny_model_cfg, match_answer_bias=True, match_answer_names=names, match_answer_read=mode)
              for mode in ("first_ids", "full_names")}
    processor = build_processor(models["first_ids"].cfg, models["first_ids"])
    tok = processor.tokenizer
    the = tok.convert_tokens_to_ids("▁the")
    assert tok("a theskan", add_special_tokens=False)["input_ids"][1:] == [the] + tok.convert_tokens_to_ids(["sk", "an"])
    turns = [[{"from": "human", "value": "<image> Is there a rock in the image?"}],
             [{"from": "human", "value": "<image> Is there a theskan?"}]]
    batch = processor.collate([{"conversations": t, "pixel_values": torch.zeros(1, 3, 32, 32)} for t in turns],
                              generation=True)
    ids = batch["input_ids"]
    got = {}
    for mode, model in models.items():
        table = model.llm.get_input_embeddings().weight
        with torch.no_grad():
            table[the] = 40 * table[the] / table[the].norm()
            visual = torch.zeros(2, model.num_visual_tokens, table.shape[1])
            visual[:, 0] = table[the] / 4
            p_the = torch.softmax(visual[0, 0] @ table.t(), dim=-1)[the]
            model.encode_images = lambda pixel_values, regions=None, image_keys=None: visual[: pixel_values.shape[0]]
            got[mode] = model.answer_match(model.embed(ids, batch["pixel_values"]), ids, batch["attention_mask"])
    assert p_the > 0.99
    torch.testing.assert_close(got["first_ids"][0, -1], p_the)
    assert float(got["full_names"][0, -1]) == 0.0
    an = int((ids[1] == tok.convert_tokens_to_ids("an")).nonzero()[-1])
    torch.testing.assert_close(got["full_names"][1, an:], p_the.expand(ids.shape[1] - an))
    assert (got["full_names"][1, :an] == 0).all()


def test_bad_read_mode_is_refused_naming_the_key(tiny_model_cfg):
    with pytest.raises(UserError, match="model.match_answer_read"):
        _model(tiny_model_cfg, match_answer_bias=True, match_answer_read="names")


def _two_image_case(model, processor):
    """A RAG-shaped sample: a retrieved image holding a tree with its caption, then the query image (holding a
    rock) and the question about a tree. Returns the batch and the visual tokens [2 images, cells, width]."""
    tok = processor.tokenizer
    tree, rock = _first_id(tok, "tree"), _first_id(tok, "rock")
    table = model.llm.get_input_embeddings().weight
    visual = torch.zeros(2, model.num_visual_tokens, table.shape[1])
    with torch.no_grad():
        for image, token in ((0, tree), (1, rock)):
            table[token] = 40 * table[token] / table[token].norm()
            visual[image, 0] = table[token] / 4
    model.encode_images = lambda pixel_values, regions=None, image_keys=None: visual[: pixel_values.shape[0]]
    turns = [{"from": "human", "value": "1. <image> a tree.\n<image> Is there a tree?"}, {"from": "gpt", "value": "No."}]
    sample = {"conversations": turns, "pixel_values": torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))}
    return processor.collate([sample]), visual


def _oracle_query_m(model, query_visual, ids, mask, readable):
    """m[0, t] by a loop, query_image scope: only names after the last visual position, only the query
    image's cells; 0 up to the last visual position (one turn: no EOS before the answer here)."""
    table = model.llm.get_input_embeddings().weight
    probs = torch.softmax(query_visual @ table.t(), dim=-1)
    last_visual = int((ids[0] == IMAGE_PLACEHOLDER_ID).nonzero()[-1])
    m, best = torch.zeros(ids.shape), 0.0
    for t in range(ids.shape[1]):
        if t > last_visual and int(mask[0, t]) and int(ids[0, t]) in readable:
            best = max(best, float(probs[:, int(ids[0, t])].max()))
        m[0, t] = best
    return m


def test_query_image_scope_reads_the_query_image_and_its_question_only(tiny_model_cfg, tmp_path):
    """all_images: the caption's "tree" matches the retrieved image's tree cell, so m is ~1 before the question
    is even read; query_image: the retrieved image and its caption are unread and the question's "tree" meets
    only the query image's rock, so m stays low. Oracle: _oracle_query_m's loop; with one image before its
    question the two scopes give the same m (the POPE prompts)."""
    names = _names_file(tmp_path, ["tree", "rock"])
    scoped = _model(tiny_model_cfg, match_answer_bias=True, match_answer_names=names, match_answer_scope="query_image")
    every = _model(tiny_model_cfg, match_answer_bias=True, match_answer_names=names)
    processor = build_processor(scoped.cfg, scoped)
    tok = processor.tokenizer
    batch, visual = _two_image_case(scoped, processor)
    _two_image_case(every, processor)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert int((ids == IMAGE_PLACEHOLDER_ID).sum()) == 2 * scoped.num_visual_tokens
    readable = {_first_id(tok, "tree"), _first_id(tok, "rock")}
    with torch.no_grad():
        got = scoped.answer_match(scoped.embed(ids, batch["pixel_values"]), ids, mask)
        want = _oracle_query_m(scoped, visual[1], ids, mask, readable)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
        every_m = every.answer_match(every.embed(ids, batch["pixel_values"]), ids, mask)
    answer = int(mask[0].sum()) - 1
    assert every_m[0, answer] > 0.99 and got[0, answer] < 0.05
    # one image before its question: the same m under both scopes
    single = _batch(processor)
    with torch.no_grad():
        a = scoped.answer_match(scoped.embed(single["input_ids"], single["pixel_values"]), single["input_ids"],
                                single["attention_mask"])
        b = every.answer_match(every.embed(single["input_ids"], single["pixel_values"]), single["input_ids"],
                               single["attention_mask"])
    torch.testing.assert_close(a, b)


def test_query_image_scope_in_generation_is_the_forward_m(tiny_model_cfg, tmp_path):
    """generate()'s processor reads the same scoped m as the forward: the first step's scores are the plain
    logits plus the hand bias from the oracle m at the prompt's last position."""
    names = _names_file(tmp_path, ["tree", "rock"])
    model = _model(tiny_model_cfg, match_answer_bias=True, match_answer_names=names, match_answer_scope="query_image")
    processor = build_processor(model.cfg, model)
    tok = processor.tokenizer
    yes, no = tok.convert_tokens_to_ids("▁Yes"), tok.convert_tokens_to_ids("▁No")
    _, visual = _two_image_case(model, processor)
    turns = [{"from": "human", "value": "1. <image> a tree.\n<image> Is there a tree?"}]
    prompt = processor.collate([{"conversations": turns, "pixel_values": torch.randn(2, 3, 32, 32)}], generation=True)
    readable = {_first_id(tok, "tree"), _first_id(tok, "rock")}
    with torch.no_grad():
        model.answer_bias.copy_(torch.tensor([2.0, -0.5]))
        m = _oracle_query_m(model, visual[1], prompt["input_ids"], prompt["attention_mask"], readable)
        want = _biased_plain_logits(model, prompt, m, 2.0, -0.5, yes, no)[:, -1]
        out = model.generate(prompt, max_new_tokens=1, do_sample=False, num_beams=1, output_scores=True,
                             return_dict_in_generate=True)
    torch.testing.assert_close(out.scores[0], want, atol=1e-4, rtol=1e-4)


def test_bad_scope_is_refused_naming_the_key(tiny_model_cfg):
    with pytest.raises(UserError, match="match_answer_scope"):
        _model(tiny_model_cfg, match_answer_bias=True, match_answer_scope="retrieved")
