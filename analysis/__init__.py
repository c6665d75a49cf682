"""heed analysis: saliency, sequential Jacobians, attention recordings, videos and figures.

Takes any callable or ``nn.Module``; imports nothing from ``agents``.
"""
