"""Retrieval: the suffix-array corpus index for constrained generative retrieval (corpus_index),
the corpus-constrained decoding processor and group beam search (constrained_decoding), and the
clue -> passage scorers registered in CLUE_SCORERS (clue_scoring). Imports are wired by the lead."""
