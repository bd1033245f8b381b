"""Only for the optional compiled CLIENT LIST scanner; all other metadata is in pyproject.toml.

`optional=True`: without a C compiler or Python headers the build warns and goes on, and the
exporter uses its pure-Python scanner (same results, slower: see README "Performance").
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "exporter.pipeline._clientlist_scan", ["exporter/pipeline/_clientlist_scan.c"],
    extra_compile_args=["-O2"], optional=True,
)])
