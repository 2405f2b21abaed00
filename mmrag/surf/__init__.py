"""SURf: selectively using retrieved information — RAG prompts and training-data construction.

Modules: `prompts` (RAG human turn, re-answer prompt), `answerer` (the model protocol), `tool_eval`
(similarity scorers for open answers), `construct` (the data-construction steps), `stage_io` (resumable, chunked JSON-lines stages).
"""
from mmrag.surf.answerer import Answerer, load_answerer
from mmrag.surf.prompts import (
    RagConfig,
    RagPrompt,
    build_rag_prompt,
    format_rag_prompt,
    reanswer_prompt,
)

__all__ = [
    "Answerer",
    "load_answerer",
    "RagConfig",
    "RagPrompt",
    "build_rag_prompt",
    "format_rag_prompt",
    "reanswer_prompt",
]
