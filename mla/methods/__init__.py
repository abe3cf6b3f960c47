"""Training methods, one registered file each (see ``base.py`` for the API)."""
from mla.methods import concat, mla, unimodal  # noqa: F401  (registration side effects)
from mla.methods.base import METHODS, Method, create_method  # noqa: F401
