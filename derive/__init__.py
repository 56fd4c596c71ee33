r"""derive: symbolic backpropagation derivations, checked step by step.

    >>> from derive import network, derive, check
    >>> result = derive(network("xor", 2, [(4, "sigmoid"), (1, "sigmoid")]))
    >>> result.gradient("W1")                     # shows as LaTeX in a notebook; .expr is SymPy's
    <Gradient \frac{\partial L}{\partial W^{1}} = \delta^{1} x^{T}>
    >>> grads = result.evaluate(params, x, y)     # NumPy arrays, from the derived formulas
    >>> f = gradient_function("seed004_mlp_column") # compiled NumPy code, in memory
"""
from importlib import metadata as _metadata

from .errors import DeriveError, SpecError
from .spec import Layer, LossSpec, NetworkSpec, load, network

try:
    __version__ = _metadata.version("derive")
except _metadata.PackageNotFoundError:      # run from a checkout that was never installed
    __version__ = "0+unknown"

_LAZY = {        # SymPy costs ~0.5 s to import: load it only when derivations are asked for
    "derive": "engine", "NetworkDerivation": "engine",
    "check": "checks", "CheckReport": "checks",
    "latex": "display", "markdown": "display", "Gradient": "display",
    "evaluate": "numeric", "gradient_function": "numeric", "GradientFunction": "numeric", "random_point": "numeric",
}

__all__ = ["__version__", "DeriveError", "SpecError", "Layer", "LossSpec", "NetworkSpec", "load", "network",
           *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'derive' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
