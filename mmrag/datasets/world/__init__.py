"""The synthetic multimodal knowledge world: entities, scenes, corpus, questions, in the real formats."""
from mmrag.datasets.world.generator import GENERATOR_VERSION, WorldExistsError, generate_world, plan_world
from mmrag.datasets.world.presets import WorldPreset, get_preset, preset_names

__all__ = ["GENERATOR_VERSION", "WorldExistsError", "WorldPreset", "generate_world", "get_preset",
           "plan_world", "preset_names"]
