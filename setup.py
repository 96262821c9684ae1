"""Builds rnnclf's optional C gate kernels (rnnclf/accel/_kernels.c); the rest is in pyproject.toml.

optional=True: where no C compiler is found the install still succeeds, and rnnclf runs the same
math as PyTorch ops (rnnclf/accel/kernels.py says which one it uses).
"""

import sys

from setuptools import Extension, setup

# MSVC takes /O2 and has no GCC vectorizer hints; GCC and clang take -O3.
FLAGS = ["/O2"] if sys.platform == "win32" else ["-O3"]

setup(ext_modules=[Extension("rnnclf.accel._kernels", ["rnnclf/accel/_kernels.c"],
                             extra_compile_args=FLAGS, optional=True)])
