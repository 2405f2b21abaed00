"""Building from a CSV with the real LLaMA tokenizer: the CLI, shards, long passages, tokenizer checks."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from mmrag.cli import build_index as cli
from mmrag.common.assets import llama_tokenizer_dir
from mmrag.retrieval.corpus_index import CorpusIndex, CorpusIndexError, read_id_text_csv, tokenize_passages
from mmrag.retrieval.sharded_index import ShardedCorpusIndex, load_index

REPO = Path(__file__).resolve().parents[2]
PASSAGES = [("k1", "The Eiffel Tower is in Paris."), ("k2", "A banana is a yellow fruit."),
            ("k3", "Paris is the capital of France."), ("k4", "Zebras have black and white stripes.")]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(str(llama_tokenizer_dir()))


def write_csv(path: Path, rows, header="kid,text") -> Path:
    lines = [header] + [f'{pid},"{text}"' for pid, text in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_cli_builds_sharded_index_that_answers_like_a_single_one(tmp_path, tokenizer):
    corpus = write_csv(tmp_path / "corpus.csv", PASSAGES)
    for name, shards in (("one", 1), ("two", 2)):
        cmd = [sys.executable, str(REPO / "data_process" / "build_index.py"), "--corpus", str(corpus),
               "--tokenizer", str(llama_tokenizer_dir()), "--out", str(tmp_path / name), "--shards", str(shards)]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    single, sharded = load_index(tmp_path / "one", tokenizer), load_index(tmp_path / "two", tokenizer)
    assert isinstance(single, CorpusIndex) and isinstance(sharded, ShardedCorpusIndex)
    paris = tokenizer("Paris is", add_special_tokens=False)["input_ids"]
    assert single.count(paris) == sharded.count(paris) == 1  # "in Paris." is tokenised differently
    assert single.passages(paris).tolist() == sharded.passages(paris).tolist() == [2]
    assert [sharded.passage_text(r) for r in range(4)] == [t for _, t in PASSAGES]
    assert [single.passage_id(r) for r in range(4)] == ["k1", "k2", "k3", "k4"]


def test_passages_are_tokenised_without_bos_eos_and_without_truncation(tmp_path, tokenizer):
    long_text = " ".join(f"word{i}" for i in range(400))
    tokenizer.model_max_length = 16  # shorter than the passage: it must still be indexed whole
    try:
        ids = tokenize_passages([long_text], tokenizer, progress=False)[0].tolist()
        index = CorpusIndex.build([("long", long_text)], tokenizer, tmp_path, progress=False)
    finally:
        tokenizer.model_max_length = 1_000_000
    assert ids == tokenizer(long_text, add_special_tokens=False)["input_ids"] and len(ids) > 400
    assert tokenizer.bos_token_id not in ids and tokenizer.eos_token_id not in ids
    assert index.count(ids) == 1 and index.passage_tokens(0).tolist() == ids


def test_multi_process_tokenisation_equals_single(tokenizer):
    texts = [t for _, t in PASSAGES] * 3
    one = tokenize_passages(texts, tokenizer, batch_size=2, workers=1, progress=False)
    two = tokenize_passages(texts, tokenizer, batch_size=2, workers=2, progress=False)
    assert [a.tolist() for a in one] == [b.tolist() for b in two]


class OtherTokenizer:
    name_or_path = "other"

    def get_vocab(self):
        return {"a": 0, "b": 1}


def test_loading_with_another_tokenizer_is_refused(tmp_path, tokenizer):
    CorpusIndex.build(PASSAGES, tokenizer, tmp_path, progress=False)
    CorpusIndex.load(tmp_path, tokenizer=tokenizer)  # the same one is accepted
    with pytest.raises(CorpusIndexError, match="index built with tokenizer llama_tokenizer"):
        CorpusIndex.load(tmp_path, tokenizer=OtherTokenizer())


def test_csv_reader_names_file_and_line(tmp_path):
    assert read_id_text_csv(write_csv(tmp_path / "a.csv", PASSAGES[:1], header="id,text")) == [PASSAGES[0]]
    bad = tmp_path / "b.csv"
    bad.write_text("id,text\nx,hello\ny\n")
    with pytest.raises(CorpusIndexError, match=r"b\.csv:3: expected 2 fields"):
        read_id_text_csv(bad)
    with pytest.raises(CorpusIndexError, match=r"c\.csv:1: expected a header"):
        read_id_text_csv(write_csv(tmp_path / "c.csv", PASSAGES, header="title,body"))


def test_cli_one_shard_per_node_then_manifest(tmp_path, tokenizer):
    corpus = write_csv(tmp_path / "corpus.csv", PASSAGES)
    common = ["--corpus", str(corpus), "--tokenizer", str(llama_tokenizer_dir()), "--out", str(tmp_path / "idx")]
    for k in (1, 0):  # nodes may finish in any order
        assert cli.main(common + ["--shard-of", f"{k}/2"]) == 0
    assert cli.main(["--tokenizer", str(llama_tokenizer_dir()), "--out", str(tmp_path / "idx"),
                     "--write-manifest", "2"]) == 0
    index = load_index(tmp_path / "idx", tokenizer)
    assert [index.passage_id(r) for r in range(4)] == ["k1", "k2", "k3", "k4"]
    write_csv(corpus, PASSAGES + [("k2", "again")])
    with pytest.raises(SystemExit, match="duplicate passage id .k2. at rows 1 and 4"):
        cli.main(common + ["--shard-of", "0/2"])
