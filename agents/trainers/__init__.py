"""Trainers: each module defines a frozen ``Config`` dataclass and ``main(cfg)``.

:data:`TRAINERS` is the one table of them: ``scripts/train.py`` dispatches its subcommands through it
and ``heed sweep`` checks and runs trials through it, so a new trainer is one module plus one line here.
"""

#: trainer name -> (module with ``Config`` and ``main``, one-line description for ``train.py --help``)
TRAINERS = {
    "dqn": ("heed.agents.trainers.dqn", "Dueling / Double DQN on Atari, or any Gymnasium env with discrete actions and vector observations"),
    "supervised": ("heed.agents.trainers.supervised", "a recurrent core on an algorithmic or QA task"),
    "ppo": ("heed.agents.trainers.ppo", "recurrent PPO over any core on a memory environment"),
    "glimpse": ("heed.agents.trainers.glimpse", "hard (RAM) or soft (DRAW) attention on glimpse MNIST"),
    "draw": ("heed.agents.trainers.draw", "DRAW, the recurrent VAE that reads and writes with attention, on binarised MNIST"),
    "pen": ("heed.agents.trainers.pen", "a BLSTM (or LSTM) with CTC that reads synthetic online handwriting"),
    "synthesis": ("heed.agents.trainers.synthesis", "handwriting synthesis (Graves 2013) with or without the Gaussian window, on synthetic pen data"),
}
