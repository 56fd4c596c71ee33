"""derive: symbolic backpropagation derivations, checked step by step.

    >>> from derive import network, derive, check
    >>> result = derive(network("xor", 2, [(4, "sigmoid"), (1, "sigmoid")]))
    >>> result.gradient("W1")
"""
from importlib import metadata as _metadata

from .errors import DeriveError, SpecError
from .spec import Layer, LossSpec, NetworkSpec, load, network

try:
    __version__ = _metadata.version("derive")
except _metadata.PackageNotFoundError:      # run from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__", "DeriveError", "SpecError", "Layer", "LossSpec", "NetworkSpec", "load", "network", "derive", "check",
           "NetworkDerivation", "CheckReport"]


def __getattr__(name):  # SymPy costs ~0.5 s to import: load it only when derivations are asked for
    if name in ("derive", "NetworkDerivation"):
        from . import engine

        return getattr(engine, name)
    if name in ("check", "CheckReport"):
        from . import checks as check_module

        return getattr(check_module, name)
    raise AttributeError(name)
