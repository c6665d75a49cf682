"""Register heed's ids as soon as ``gymnasium`` is imported, in any process (stdlib only, no heed import).

Gymnasium 1.x dropped the plugin loader that used to call the ``gymnasium.envs`` entry points, so a
process that never imports heed (SB3's ``SubprocVecEnv`` workers, RL Zoo, a user's own script) would
not know ``heed/Copy-v0``. :func:`install` puts a tiny finder on ``sys.meta_path`` that waits for the
``gymnasium`` package to finish importing and then calls
:func:`heed.envs.registration.register_all` (the way virtualenv patches ``distutils`` on import);
when gymnasium is already imported it registers at once. The installed ``heed_attention_gymnasium.pth``
runs ``import heed.envs`` at start-up, whose ``__init__`` calls :func:`install`.

Nothing here may break ``import gymnasium``: a failure to register becomes a warning.
"""

from __future__ import annotations

import sys
import warnings
from types import ModuleType

TARGET = "gymnasium"


def _register() -> None:
    try:
        from heed.envs.registration import register_all

        register_all()
    except Exception as exc:  # never break the user's `import gymnasium`
        warnings.warn(f"heed could not register its Gymnasium ids: {exc!r}", RuntimeWarning, stacklevel=2)


class _AfterGymnasium:
    """A ``sys.meta_path`` finder that finds nothing itself: it wraps the real loader of ``gymnasium`` so
    that :func:`_register` runs right after it (duck-typed, so that start-up imports no ``importlib.abc``)."""

    def find_spec(self, fullname: str, path=None, target: ModuleType | None = None):
        if fullname != TARGET:
            return None
        for finder in sys.meta_path:  # the finder that would have found gymnasium without us
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            original(module)
            _uninstall()
            _register()

        loader.exec_module = exec_module
        return spec


_FINDER = _AfterGymnasium()


def _uninstall() -> None:
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


def install() -> None:
    """Register heed's ids now if gymnasium is imported, else right after it is (idempotent)."""
    module = sys.modules.get(TARGET)
    if module is not None and not getattr(module.__spec__, "_initializing", False):
        _register()
    elif _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
