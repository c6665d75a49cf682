"""heed analysis: saliency, sequential Jacobians, attention recordings, videos and figures.

Takes any callable or ``nn.Module``; imports nothing from ``heed.agents``.
"""

from heed.analysis.focus import GAME_OBJECTS, focus_summary, object_masks
from heed.analysis.perturbation import episode_background, occlusion_saliency, perturbation_saliency
from heed.analysis.saliency import (
    CAPTUM_METHODS,
    AnalysisError,
    captum_saliency,
    jacobian_saliency,
    multi_target_saliency,
)
from heed.analysis.saliency_methods import (
    SALIENCY_METHODS,
    DuelingSaliency,
    dueling_saliency,
    get_saliency_method,
)
from heed.analysis.sequential import sensitivity_matrix, sequential_jacobian

__all__ = [
    "CAPTUM_METHODS",
    "GAME_OBJECTS",
    "SALIENCY_METHODS",
    "AnalysisError",
    "DuelingSaliency",
    "captum_saliency",
    "dueling_saliency",
    "episode_background",
    "focus_summary",
    "get_saliency_method",
    "jacobian_saliency",
    "multi_target_saliency",
    "object_masks",
    "occlusion_saliency",
    "perturbation_saliency",
    "sensitivity_matrix",
    "sequential_jacobian",
]
