"""One step ``pyproject.toml`` cannot say: the wheel carries the station's taxonomy and default config inside the
``station`` package (``station/shipped/``), read there with ``importlib.resources``, while the repository keeps
the one copy of each where people edit them (``datasets/taxonomy.yaml``, ``configs/station.yaml``). The list is
``station.resources.SHIPPED``; everything else about the package is in ``pyproject.toml``."""

from __future__ import annotations

import runpy
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED: dict[str, str] = runpy.run_path(str(HERE / "station" / "resources.py"))["SHIPPED"]


class BuildWithShippedFiles(build_py):
    """``build_py`` that also copies the shipped files into ``station/shipped/`` of the build."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "station" / "shipped"
        self.mkpath(str(target))
        for name, source in SHIPPED.items():
            self.copy_file(str(HERE / source), str(target / name))


setup(cmdclass={"build_py": BuildWithShippedFiles})
