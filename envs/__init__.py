"""heed environments: Atari set-up and the lecture's tasks as registered Gymnasium environments.

Importing ``heed.envs`` makes every ``heed/...`` id known to Gymnasium (at once, or as soon as
gymnasium is imported: see :mod:`heed.envs.autoload`); after ``pip install`` this happens in every
process without the import. The ids and their entry points are in :mod:`heed.envs.registration`.
"""

from heed.envs import autoload as _autoload

_autoload.install()
