"""Training methods, one registered file each (see ``base.py`` for the API).

Every module of this package is imported here, so a new method file registers itself.
"""
import importlib
import pkgutil

from mla.methods.base import METHODS, Method, create_method  # noqa: F401

for _info in pkgutil.iter_modules(__path__):
    if _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")
