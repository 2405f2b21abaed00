"""A `tiny` world generated once per test session (about a second)."""
import pytest

from mmrag.datasets.world import generate_world


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("worlds") / "tiny_seed0"
    meta = generate_world("tiny", 0, out, progress=False)
    return out, meta
