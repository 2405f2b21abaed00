"""SURf: selectively using retrieved information — RAG prompts and training-data construction.

Modules: `prompts` (RAG human turn, re-answer prompt, retrieval-aware system prompt), `answerer`
(the model protocol), `tool_eval` (answer matching and similarity scorers), `construct` (the
data-construction steps), `stage_io` (resumable, chunked JSON-lines stages).
"""
from mmrag.surf.answerer import Answerer, load_answerer
from mmrag.surf.prompts import (
    RETRIEVAL_HINT,
    RagConfig,
    RagPrompt,
    build_rag_prompt,
    format_rag_prompt,
    reanswer_prompt,
    retrieval_system_prompt,
)

__all__ = [
    "Answerer",
    "load_answerer",
    "RETRIEVAL_HINT",
    "RagConfig",
    "RagPrompt",
    "build_rag_prompt",
    "format_rag_prompt",
    "reanswer_prompt",
    "retrieval_system_prompt",
]
