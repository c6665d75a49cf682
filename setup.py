"""Packaging hook beside ``pyproject.toml`` (which holds all the metadata): ship one ``.pth`` file.

``heed_attention_gymnasium.pth`` runs ``import heed.envs`` when Python starts, which makes heed's
``heed/...`` Gymnasium ids known in every process as soon as it imports gymnasium (see
``envs/autoload.py``: Gymnasium 1.x no longer loads ``gymnasium.envs`` entry points). setuptools has
no declarative way to put a file at the root of site-packages, so ``build_py`` writes it: into
``build_lib`` for a wheel, into the editable wheel for ``pip install -e .``.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_NAME = "heed_attention_gymnasium.pth"
PTH_TEXT = "import heed.envs\n"


class BuildPyWithPth(build_py):
    """``build_py`` that also writes :data:`PTH_NAME` at the root of what gets installed."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # the editable wheel installs what is in install_lib
            root = self.get_finalized_command("install").install_lib
        else:
            root = self.build_lib
        Path(root).mkdir(parents=True, exist_ok=True)
        Path(root, PTH_NAME).write_text(PTH_TEXT, encoding="utf-8")


setup(cmdclass={"build_py": BuildPyWithPth})
