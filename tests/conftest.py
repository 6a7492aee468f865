import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))          # test factories
sys.path.insert(0, str(HERE.parent))   # runs/ and analyses/


import pytest  # noqa: E402
import torch  # noqa: E402

THREADS = torch.get_num_threads()  # the count every test starts from (a subprocess gets the same default)


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """Put torch's thread count back to the session's default after each test: a test (or a training run
    it starts, in a module-scoped fixture too) that sets it would change every later test's CPU kernels, and
    so the last bits of results that later tests compare with a subprocess running at the default count."""
    yield
    if torch.get_num_threads() != THREADS:
        torch.set_num_threads(THREADS)


from tiers import SLOW, TIERS, tier_of  # noqa: E402


def pytest_collection_modifyitems(config, items):
    for item in items:
        relative = Path(item.fspath).resolve().relative_to(HERE)
        if not any(item.get_closest_marker(tier) for tier in TIERS):
            item.add_marker(getattr(pytest.mark, tier_of(relative)))
        name = item.name.split("[")[0]
        if set(relative.parts) & SLOW or f"{relative.name}::{name}" in SLOW:
            item.add_marker(pytest.mark.slow)
