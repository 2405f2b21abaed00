"""mmrag: multimodal retrieval-augmented LLMs (GeMKR, SURf, CaMML, DataEngine, LRV) in one codebase.

Importing the package registers every model, vision tower, projector, dataset builder, task,
runner, lr schedule, retriever and clue scorer by explicit import (the registries live in
mmrag.common.registry); nothing is discovered by `import *`.
"""
from mmrag.models import gemkr, multimodal_llm, projectors, vision_tower  # noqa: F401
from mmrag.datasets import builders, knowledge  # noqa: F401
from mmrag.retrieval import clue_scoring, dense_baseline, retrievers  # noqa: F401
from mmrag.runners import runner, schedules  # noqa: F401
from mmrag.tasks import instruction_tuning, knowledge_retrieval, pope  # noqa: F401
