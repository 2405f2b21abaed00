import pytest

from mmrag.common.errors import UnknownNameError
from mmrag.common.registry import Registry


def test_register_and_get():
    reg = Registry("widget")

    @reg.register("round_widget")
    class Round:
        pass

    assert reg.get("round_widget") is Round
    assert "round_widget" in reg and reg.names() == ["round_widget"]


def test_duplicate_name_is_an_error():
    reg = Registry("widget")
    reg.register("a")(object)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(int)


def test_unknown_name_lists_known_and_closest():
    reg = Registry("model")
    reg.register("gemkr")(object)
    reg.register("mm_llm")(object)
    with pytest.raises(UnknownNameError) as err:
        reg.get("gemkrr")
    message = str(err.value)
    assert "did you mean 'gemkr'" in message and "mm_llm" in message


def test_project_registries_are_filled_by_import():
    import mmrag  # noqa: F401
    from mmrag.common.registry import MODELS, PROJECTORS, RUNNERS, VISION_TOWERS

    assert {"hf_clip", "open_clip", "timm"} <= set(VISION_TOWERS.names())
    assert {"linear", "mlp2x_gelu", "layernorm_linear"} <= set(PROJECTORS.names())
    assert "mm_llm" in MODELS and "runner_base" in RUNNERS
