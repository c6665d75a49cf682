"""heed analysis: saliency, sequential Jacobians, attention recordings, videos and figures.

Takes any callable or ``nn.Module``; imports nothing from ``agents``.
"""

from heed.analysis.saliency import (
    CAPTUM_METHODS,
    AnalysisError,
    DuelingSaliency,
    captum_saliency,
    dueling_saliency,
    jacobian_saliency,
    multi_target_saliency,
    perturbation_saliency,
)
from heed.analysis.sequential import sensitivity_matrix, sequential_jacobian

__all__ = [
    "CAPTUM_METHODS",
    "AnalysisError",
    "DuelingSaliency",
    "captum_saliency",
    "dueling_saliency",
    "jacobian_saliency",
    "multi_target_saliency",
    "perturbation_saliency",
    "sensitivity_matrix",
    "sequential_jacobian",
]
