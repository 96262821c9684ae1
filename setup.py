"""Builds rnnclf's optional C gate kernels (rnnclf/accel/_kernels.c) and ships configs/*.yaml as
package data; the rest is in pyproject.toml.

optional=True: where no C compiler is found the install still succeeds, and rnnclf runs the same
math as PyTorch ops (rnnclf/accel/kernels.py says which one it uses).

The shipped configs stay in the repository's top-level configs/ (where the README's commands and
the tests find them); the wheel carries them as the package-data folder rnnclf/configs/, so
`rnnclf train agnews_lstm` works from any folder (rnnclf/config/shipped.py looks in both places).
"""

import sys

from setuptools import Extension, find_packages, setup

# MSVC takes /O2 and has no GCC vectorizer hints; GCC and clang take -O3.
FLAGS = ["/O2"] if sys.platform == "win32" else ["-O3"]

setup(packages=[*find_packages(include=["rnnclf", "rnnclf.*"]), "rnnclf.configs"],
      package_dir={"rnnclf.configs": "configs"},
      package_data={"rnnclf.configs": ["*.yaml"],
                    "rnnclf.inference.serving": ["static/*.html"]},
      ext_modules=[Extension("rnnclf.accel._kernels", ["rnnclf/accel/_kernels.c"],
                             extra_compile_args=FLAGS, optional=True)])
