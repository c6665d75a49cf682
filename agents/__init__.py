"""heed agents: Dueling / Double DQN, recurrent cores, recurrent PPO, glimpse and supervised models."""

__all__ = ["__version__"]
__version__ = "0.1.0"
