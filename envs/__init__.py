"""heed environments: Atari set-up and the lecture's tasks as registered Gymnasium environments.

Importing ``envs`` registers every ``heed/...`` id with Gymnasium (and ale-py's ``ALE/...`` ids).
"""

from heed.envs import registration as _registration

_registration.register_all()
