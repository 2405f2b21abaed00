"""mmrag: multimodal retrieval-augmented LLMs (GeMKR, SURf, CaMML, DataEngine, LRV) in one codebase.

Importing the package registers every model, vision tower, projector, dataset builder, task,
runner and lr schedule by explicit import (the registries live in mmrag.common.registry).
"""
from mmrag.models import multimodal_llm, projectors, vision_tower  # noqa: F401  (registers)
from mmrag.datasets import builders  # noqa: F401
from mmrag.runners import runner, schedules  # noqa: F401
from mmrag.tasks import instruction_tuning  # noqa: F401
from mmrag.models import gemkr  # noqa: F401,E402
from mmrag.datasets import knowledge  # noqa: F401,E402
from mmrag.retrieval import clue_scoring, dense_baseline, retrievers  # noqa: F401,E402
from mmrag.tasks import knowledge_retrieval  # noqa: F401,E402
from mmrag.tasks import pope  # noqa: F401,E402  (SURf: POPE / knowledge-VQA evaluation with optional retrieval)
