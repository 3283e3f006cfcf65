"""Where ``gpuvio.cpu_fallback`` lives in a source checkout.

The CPU backend's sources sit in ``cpu_fallback/`` beside ``gpuvio/`` (the project's requested
layout), and setuptools installs them as ``gpuvio.cpu_fallback`` (``package-dir`` in
``pyproject.toml``), so site-packages gets no generic top-level name. Run from a checkout with
only ``PYTHONPATH`` set (the device check does), the folder is not inside ``gpuvio/``: this
finder maps that one package name to it. Installed or editable copies never need it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

_NAME = "gpuvio.cpu_fallback"


class _CheckoutFinder:
    """A ``sys.meta_path`` finder for ``gpuvio.cpu_fallback`` only."""

    def __init__(self, folder: str) -> None:
        self._folder = folder

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != _NAME:
            return None
        return importlib.util.spec_from_file_location(
            name, os.path.join(self._folder, "__init__.py"), submodule_search_locations=[self._folder])


def install() -> None:
    """Add the finder when ``gpuvio`` runs from a checkout that lacks an installed copy."""
    package = os.path.dirname(os.path.abspath(__file__))
    if os.path.isdir(os.path.join(package, "cpu_fallback")):
        return  # an installed wheel: the package is where Python looks anyway
    folder = os.path.join(os.path.dirname(package), "cpu_fallback")
    if not os.path.isfile(os.path.join(folder, "__init__.py")):
        return
    if any(isinstance(f, _CheckoutFinder) for f in sys.meta_path):
        return
    sys.meta_path.append(_CheckoutFinder(folder))
