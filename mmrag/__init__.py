"""mmrag: multimodal retrieval-augmented LLMs (GeMKR, SURf, CaMML, DataEngine, LRV) in one codebase.

Importing the package registers every model, vision tower, projector, dataset builder, task,
runner, lr schedule, retriever and clue scorer by explicit import (the registries live in
mmrag.common.registry); nothing is discovered by `import *`. Entry points and tests `import mmrag`;
modules inside the package never do (that would make a low layer import every layer above it):
they import the module they use.
"""
from mmrag.models import contrastive_clip, gemkr, multimodal_llm, projectors, vision_tower  # noqa: F401
from mmrag.datasets import builders, image_text, knowledge  # noqa: F401
from mmrag.retrieval import clue_scoring  # noqa: F401
from mmrag.retrievers import dense_baseline, image_database, knowledge as knowledge_retrievers  # noqa: F401
from mmrag.runners import runner, schedules  # noqa: F401
from mmrag.tasks import clip_pretrain, instruction_tuning, knowledge_retrieval, vqa_eval  # noqa: F401
from mmrag.retrievers import context_examples  # noqa: F401  (CaMML: context retriever, scienceqa builder + scorer)
from mmrag.metrics import vqa_official  # noqa: F401  (DataEngine benchmark scorers)
from mmrag.metrics import hallucination  # noqa: F401  (LRV: the lrv and mme scorers)
from mmrag.datasets import benchmarks  # noqa: F401  (DataEngine: benchmark readers, dataengine_minigpt4 builder)
from mmrag.metrics import gavie  # noqa: F401  (GAVIE scorer: LLM and world-oracle judges)
