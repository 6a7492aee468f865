"""lm-eval integration: importing this package registers the lm-eval model `nnsight-codi` (after
filling lm-eval's own registry, so `hf` & co. still resolve).

Example:
    >>> import nnsight_codi.harness                      # doctest: +SKIP
    >>> from lm_eval.api.registry import get_model       # doctest: +SKIP
    >>> get_model("nnsight-codi").__name__, get_model("hf").__name__   # doctest: +SKIP
    ('NnsightCodiLM', 'HFLM')
"""

from .adapter import NnsightCodiLM
from .tasks import LOCAL_TASKS, PAPER_TASKS, TASKS_DIR, task_manager

__all__ = ["NnsightCodiLM", "LOCAL_TASKS", "PAPER_TASKS", "TASKS_DIR", "task_manager"]
