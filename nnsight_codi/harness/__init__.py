"""lm-eval integration: importing this package registers the lm-eval model `nnsight-codi`.

Example:
    >>> import nnsight_codi.harness                      # doctest: +SKIP
    >>> from lm_eval.api.registry import get_model       # doctest: +SKIP
    >>> get_model("nnsight-codi").__name__               # doctest: +SKIP
    'NnsightCodiLM'
"""

from .adapter import NnsightCodiLM
from .tasks import LOCAL_TASKS, PAPER_TASKS, render_tasks, task_manager

__all__ = ["NnsightCodiLM", "LOCAL_TASKS", "PAPER_TASKS", "render_tasks", "task_manager"]
