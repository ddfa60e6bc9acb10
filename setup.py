"""Package list for the ``trunkline`` import package.

``pyproject.toml`` maps ``trunkline.gateway``, ``trunkline.media`` and ``trunkline.codecs`` onto the
top-level folders; this file only enumerates their subpackages so new ones need no edit here.
"""

from setuptools import find_packages, setup

PACKAGES = ["trunkline"]
for top in ("gateway", "media", "codecs"):
    PACKAGES += [f"trunkline.{name}" for name in find_packages(where=".", include=[top, f"{top}.*"])]

setup(packages=PACKAGES)
