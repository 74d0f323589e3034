"""Package discovery across the two source roots: modelyard/ (SDK, CLI) and services/ (servers)."""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["modelyard", "modelyard.*"]),
        "modelyard.services",
        *(f"modelyard.services.{name}" for name in find_packages("services")),
        # Directories of data files, named as packages so that setuptools takes them as such.
        "modelyard.services.ui.templates",
        "modelyard.services.ui.static",
    ],
)
