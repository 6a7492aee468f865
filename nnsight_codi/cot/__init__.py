"""Chain-of-thought steering vectors for instruct LMs (Zhang & Viteri, "Uncovering Latent Chain
of Thought Vectors in Language Models"): extraction into a store, injection schedules as step
hooks, a resumable (layer, coefficient) grid, and evaluation with accuracy and reasoning rate.

Example:
    >>> from nnsight_codi.cot import ExtractConfig, extract_vectors, load_vectors   # doctest: +SKIP
"""

from .cot_accuracy import ConditionResult, chain_agreement, evaluate_condition, evaluate_conditions
from .cot_steering import SCHEDULES, Condition, Steering, parse_condition
from .grid import best_points, most_chains_points, run_grid
from .prompts import COT_INSTRUCTION, DIRECT_INSTRUCTION, MODES, Instructions, build_prompt, writes_chain
from .questions import load_questions
from .vector_estimation import ExtractConfig, extract_vectors, load_vectors, recompute_vectors

__all__ = ["ConditionResult", "chain_agreement", "evaluate_condition", "evaluate_conditions", "best_points",
           "most_chains_points",
           "run_grid", "COT_INSTRUCTION", "DIRECT_INSTRUCTION", "MODES", "Instructions", "build_prompt",
           "writes_chain", "load_questions", "SCHEDULES", "Condition", "Steering", "parse_condition",
           "ExtractConfig", "extract_vectors", "load_vectors", "recompute_vectors"]
