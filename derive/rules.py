"""Rule tables: activations, losses, and the textbook simplifications of their pairing.

Each row is data. `tests/test_rules.py` runs over every row: the derivative identity
against `sympy.diff` of the SymPy form, and each NumPy twin against the SymPy form.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import sympy as sp


@dataclass(frozen=True)
class Activation:
    """An activation f with f' written the way textbooks write it.

    `derivative_in_output(a)` is f'(z) in terms of a = f(z) where the textbook does that
    (sigma' = sigma(1 - sigma)); None where f' needs z itself.
    """

    name: str
    latex: str                         # how f is printed, e.g. \sigma
    form: Callable[[sp.Expr], sp.Expr]  # f(x) as SymPy
    derivative: Callable[[sp.Expr], sp.Expr]  # f'(x) in terms of x
    derivative_in_output: Callable[[sp.Expr], sp.Expr] | None
    numpy: Callable[[np.ndarray], np.ndarray]
    numpy_derivative: Callable[[np.ndarray], np.ndarray]
    kinks: tuple[float, ...] = ()       # points where f' jumps; numeric checks stay away
    convention: str = ""                # a stated convention, e.g. f'(0) = 0
    vector: bool = False                # softmax: a_j depends on every z_i
    identity_key: str = ""              # template key of the prose explaining f'


def _sigmoid_np(x):
    out = np.empty_like(x, dtype=float)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def _softplus_np(x):
    return np.logaddexp(0.0, x)


def _softmax_np(z):
    """Column-wise softmax (features are rows)."""
    shifted = z - z.max(axis=0, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=0, keepdims=True)


def _leaky(slope):
    return Activation(
        name="leaky_relu",
        latex=r"\operatorname{LReLU}",
        form=lambda x: sp.Piecewise((x, x > 0), (slope * x, True)),
        derivative=lambda x: sp.Piecewise((1, x > 0), (slope, True)),
        derivative_in_output=None,
        numpy=lambda x: np.where(x > 0, x, float(slope) * x),
        numpy_derivative=lambda x: np.where(x > 0, 1.0, float(slope)),
        kinks=(0.0,),
        convention="leaky_relu_at_zero",
        identity_key="leaky_relu",
    )


_ACTIVATIONS: dict[str, Activation] = {
    "identity": Activation(
        name="identity", latex=r"\operatorname{id}",
        form=lambda x: x, derivative=lambda x: sp.Integer(1),
        derivative_in_output=lambda a: sp.Integer(1),
        numpy=lambda x: x, numpy_derivative=lambda x: np.ones_like(x),
        identity_key="identity",
    ),
    "sigmoid": Activation(
        name="sigmoid", latex=r"\sigma",
        form=lambda x: 1 / (1 + sp.exp(-x)),
        derivative=lambda x: sp.exp(-x) / (1 + sp.exp(-x)) ** 2,
        derivative_in_output=lambda a: sp.Mul(a, 1 - a, evaluate=False),
        numpy=_sigmoid_np,
        numpy_derivative=lambda x: _sigmoid_np(x) * (1 - _sigmoid_np(x)),
        identity_key="sigmoid",
    ),
    "tanh": Activation(
        name="tanh", latex=r"\tanh",
        form=sp.tanh, derivative=lambda x: 1 - sp.tanh(x) ** 2,
        derivative_in_output=lambda a: 1 - a**2,
        numpy=np.tanh, numpy_derivative=lambda x: 1 - np.tanh(x) ** 2,
        identity_key="tanh",
    ),
    "relu": Activation(
        name="relu", latex=r"\operatorname{ReLU}",
        form=lambda x: sp.Max(0, x),
        derivative=lambda x: sp.Piecewise((1, x > 0), (0, True)),
        derivative_in_output=None,
        numpy=lambda x: np.maximum(x, 0.0),
        numpy_derivative=lambda x: (x > 0).astype(float),
        kinks=(0.0,), convention="relu_at_zero", identity_key="relu",
    ),
    "softplus": Activation(
        name="softplus", latex=r"\operatorname{softplus}",
        form=lambda x: sp.log(1 + sp.exp(x)),
        derivative=lambda x: 1 / (1 + sp.exp(-x)),
        derivative_in_output=None,
        numpy=_softplus_np, numpy_derivative=_sigmoid_np,
        identity_key="softplus",
    ),
    "softmax": Activation(
        # form/derivative act on one entry given the others; the engine uses the Jacobian.
        name="softmax", latex=r"\operatorname{softmax}",
        form=lambda x: sp.exp(x), derivative=lambda x: sp.exp(x),
        derivative_in_output=None,
        numpy=_softmax_np, numpy_derivative=lambda x: np.ones_like(x),
        vector=True, identity_key="softmax",
    ),
}

ACTIVATION_NAMES = tuple(sorted([*_ACTIVATIONS, "leaky_relu"]))
DEFAULT_LEAKY_SLOPE = sp.Rational(1, 100)


def activation(name: str, slope: sp.Rational | None = None) -> Activation:
    if name == "leaky_relu":
        return _leaky(slope if slope is not None else DEFAULT_LEAKY_SLOPE)
    return _ACTIVATIONS[name]


def softmax_jacobian_np(a_col: np.ndarray) -> np.ndarray:
    """J_ij = a_i (delta_ij - a_j) for one column a."""
    a = a_col.reshape(-1)
    return np.diag(a) - np.outer(a, a)


# ---------------------------------------------------------------------------- losses

@dataclass(frozen=True)
class Loss:
    """A per-sample loss l(a, y) = sum_k term(a_k, y_k) (generic: opaque l(a)).

    `grad_entry(a_k, y_k, scale)` is dl/da_k. `target` says what y must be for the
    loss to make sense: 'real', 'unit' (each y_k in [0, 1]) or 'simplex' (sum_k y_k = 1).
    """

    name: str
    term: Callable[[sp.Expr, sp.Expr, sp.Expr], sp.Expr] | None
    grad_entry: Callable[[sp.Expr, sp.Expr, sp.Expr], sp.Expr] | None
    numpy: Callable[[np.ndarray, np.ndarray, float], np.ndarray]   # per-sample values, shape (m,)
    target: str
    output_range: str  # 'real' or 'unit': what the outputs must be for the loss to be defined
    default_scale: sp.Rational = sp.Integer(1)


def _se_np(a, y, c):
    return c * ((a - y) ** 2).sum(axis=0)


def _bce_np(a, y, c):
    return -c * (y * np.log(a) + (1 - y) * np.log(1 - a)).sum(axis=0)


def _ce_np(a, y, c):
    return -c * (y * np.log(a)).sum(axis=0)


LOSSES: dict[str, Loss] = {
    "squared_error": Loss(
        "squared_error",
        term=lambda a, y, c: c * (a - y) ** 2,
        grad_entry=lambda a, y, c: 2 * c * (a - y),
        numpy=_se_np, target="real", output_range="real",
        default_scale=sp.Rational(1, 2),
    ),
    "binary_cross_entropy": Loss(
        "binary_cross_entropy",
        term=lambda a, y, c: -c * (y * sp.log(a) + (1 - y) * sp.log(1 - a)),
        grad_entry=lambda a, y, c: c * (-y / a + (1 - y) / (1 - a)),
        numpy=_bce_np, target="unit", output_range="unit",
    ),
    "cross_entropy": Loss(
        "cross_entropy",
        term=lambda a, y, c: -c * y * sp.log(a),
        grad_entry=lambda a, y, c: -c * y / a,
        numpy=_ce_np, target="simplex", output_range="unit",
    ),
    "generic": Loss(
        # l(a) is left abstract; numeric checks stand in a fixed smooth function (see oracle).
        "generic", term=None, grad_entry=None,
        numpy=lambda a, y, c: c * (np.sin(a) + 0.5 * (a - y) ** 2).sum(axis=0),
        target="real", output_range="real",
    ),
}
LOSS_NAMES = tuple(sorted(LOSSES))


def generic_loss_grad_np(a, y, c):
    """d/da of the stand-in for the generic loss (used only by numeric evaluation)."""
    return c * (np.cos(a) + (a - y))


# --------------------------------------------------------- simplifications (visible steps)

@dataclass(frozen=True)
class Simplification:
    """A textbook cancellation: with this output activation and loss, delta^L = scale*(a - y)."""

    name: str
    activation: str
    loss: str
    condition: str = ""   # template key of the condition it relies on, e.g. targets sum to 1
    form: str = "a_minus_y"   # delta^L = scale*(a - y), or "y_times_a_minus_one": scale*y*(a - 1)


SIMPLIFICATIONS: tuple[Simplification, ...] = (
    Simplification("sigmoid_bce", "sigmoid", "binary_cross_entropy"),
    Simplification("softmax_ce", "softmax", "cross_entropy", condition="targets_sum_to_one"),
    # -y/a times sigma' = a (1 - a): the a cancels, so no division by an output that may be 0
    Simplification("sigmoid_ce", "sigmoid", "cross_entropy", form="y_times_a_minus_one"),
)


def simplification_for(activation_name: str, loss_name: str) -> Simplification | None:
    for row in SIMPLIFICATIONS:
        if row.activation == activation_name and row.loss == loss_name:
            return row
    return None
