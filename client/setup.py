"""Only here to ship ``yfproxy_client.pth`` at the root of the wheel (metadata: pyproject.toml).

Python runs ``.pth`` files only from the root of a site directory, and setuptools has
no declarative way to put a file there: package data lands inside the package and
``data_files`` lands under the environment prefix, not in site-packages. So build_py
copies the file into the root of the build directory, which becomes the wheel's
purelib root, which pip unpacks into site-packages (and records, so that
``pip uninstall`` removes it again).
"""

from __future__ import annotations

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "yfproxy_client.pth"
HERE = os.path.dirname(os.path.abspath(__file__))


class BuildPyWithPth(build_py):
    def run(self) -> None:
        super().run()
        self.copy_file(os.path.join(HERE, PTH), os.path.join(self.build_lib, PTH))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), os.path.join(self.build_lib, PTH)]


setup(cmdclass={"build_py": BuildPyWithPth})
