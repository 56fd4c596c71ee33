"""Numbers out of a derivation: every gradient at given parameters and inputs, as NumPy arrays.

`evaluate` computes the derived formulas themselves, in the document's layout: the δ recurrence
(per sample, as the matrix-level derivation states it) and then each parameter's final result.
`gradient_function` compiles the same derivation to NumPy code in memory (derive codegen) and
wraps it in the document's layout, for speed. Arrays go in and come out as the document writes
them: a from-to document's W^l is (units before × units after), Ng's b^(l) is column 0 of Θ^(l).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import sympy as sp

from .errors import DeriveError
from .notation import parse_parameter, profile

MAX_EVALUATED_SAMPLES = 10_000      # the tree walker runs the δ recurrence once per sample


def layout_description(result) -> dict[str, str]:
    """How the document lays out each parameter and the input, in words (also for the docs)."""
    q, n = result.quantities, profile(result.spec.notation, result.spec.symbols)
    weight_rows = "one row per unit of layer l (the target)" if q.layout == "column" else \
        "one row per unit of the layer before (the source)"
    out = {"W": f"W^l: {weight_rows}", "b": "b^l: a vector (1-D array)",
           "x": ("x: one sample as a 1-D array" + ("" if q.samples == 1 else
                 f"; a batch with one {'row' if q.layout == 'row' else 'column'} per sample"))}
    if n.bias_folded:
        out["b"] += "; the document's Θ^(l) is [b^l | W^l] (bias as column 0)"
    return out


def _weights_in(q, array: np.ndarray) -> np.ndarray:
    """The document's W^l -> the oracle's storage, (to, from)."""
    return array if q.layout == "column" else array.T


def _samples_in(q, array: np.ndarray, name: str) -> np.ndarray:
    """A 1-D sample, or a batch with samples as columns (rows in the row layout) -> (units, m)."""
    if array.ndim == 1:
        return array.reshape(-1, 1)
    if array.ndim != 2:
        raise DeriveError(f"evaluate: {name} must be a 1-D array (one sample) or a 2-D batch, not {array.ndim}-D")
    return array.T if q.layout == "row" else array


def _array(value, name: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise DeriveError(f"evaluate: {name} must be an array of numbers") from None
    if not np.all(np.isfinite(array)):
        raise DeriveError(f"evaluate: {name} has a value that is not finite")
    return array


def _parameters_by_name(result, parameters: Mapping) -> dict[str, np.ndarray]:
    """The user's names (W1, Theta1, b1, w1) -> the result's parameter names."""
    out = {}
    for key, value in parameters.items():
        name = parse_parameter(str(key))
        if name is None or name.kind not in ("W", "b") or name.indices:
            raise DeriveError(f"evaluate: unknown parameter {key!r}; this network's parameters are "
                              f"{', '.join(result.parameters)}")
        canonical = f"{name.kind}{name.label}"
        if canonical not in result.parameters:
            raise DeriveError(f"evaluate: unknown parameter {key!r}; this network's parameters are "
                              f"{', '.join(result.parameters)}")
        if canonical in out:
            raise DeriveError(f"evaluate: {canonical} is given twice")
        out[canonical] = _array(value, str(key))
    missing = [p for p in result.parameters if p not in out]
    if missing:
        raise DeriveError(f"evaluate: no value for {', '.join(missing)} (this network's parameters are "
                          f"{', '.join(result.parameters)})")
    return out


def user_instance(result, parameters: Mapping, x, y=None, constants: Mapping | None = None):
    """An oracle Instance holding the user's numbers, with sizes and constants checked against the spec."""
    from .oracle import Instance
    from . import rules

    spec, q = result.spec, result.quantities
    if spec.loss.kind == "generic":
        raise DeriveError("evaluate: a generic loss has no numbers; give the spec a loss kind "
                          f"({', '.join(k for k in rules.LOSSES if k != 'generic')})")
    params = _parameters_by_name(result, parameters)
    xs = _samples_in(q, _array(x, "x"), "x")
    m = xs.shape[1]
    if q.samples == 1 and m != 1:
        raise DeriveError(f"evaluate: x holds {m} samples, but this network is derived for one sample "
                          "(samples: 1 in the spec); give one sample, or set samples: m in the spec")
    if q.samples.is_Integer and int(q.samples) not in (1, m):
        raise DeriveError(f"evaluate: x holds {m} samples; the spec says samples: {int(q.samples)}")
    if m > MAX_EVALUATED_SAMPLES:
        raise DeriveError(f"evaluate: {m} samples; at most {MAX_EVALUATED_SAMPLES} (use gradient_function for more)")
    weights, biases, sizes = {}, {}, [xs.shape[0]]
    for l in range(1, q.depth + 1):
        w = params[f"W{l}"]
        if w.ndim != 2:
            raise DeriveError(f"evaluate: W{l} must be a 2-D array ({layout_description(result)['W']})")
        w = _weights_in(q, w)
        if w.shape[1] != sizes[-1]:
            raise DeriveError(f"evaluate: W{l} has the shape {params[f'W{l}'].shape}, which does not fit "
                              f"{sizes[-1]} units in the layer before ({layout_description(result)['W']})")
        sizes.append(w.shape[0])
        weights[l] = w
        if spec.layers[l - 1].bias:
            b = params[f"b{l}"].reshape(-1, 1)
            if b.shape[0] != w.shape[0]:
                raise DeriveError(f"evaluate: b{l} has {b.shape[0]} entries; layer {l} has {w.shape[0]} units")
            biases[l] = b
        else:
            biases[l] = np.zeros((w.shape[0], 1))
    values: dict[sp.Symbol, float] = {}
    for symbol, size in zip(q.sizes, sizes):
        if symbol.is_Integer and int(symbol) != size:
            raise DeriveError(f"evaluate: the arrays give a layer of {size} units where the spec says {int(symbol)}")
        if not symbol.is_Integer:
            if values.get(symbol, size) != size:
                raise DeriveError(f"evaluate: the size {symbol} is {values[symbol]} in one place and {size} in another")
            values[symbol] = size
    if not q.samples.is_Integer:
        values[q.samples] = m
    constants = dict(constants or {})
    lam = 0.0
    if spec.loss.l2 is not None:
        if isinstance(spec.loss.l2, str):
            if spec.loss.l2 not in constants:
                raise DeriveError(f"evaluate: the penalty's strength {spec.loss.l2} needs a value: "
                                  f"constants={{'{spec.loss.l2}': 0.1}}")
            lam = float(constants.pop(spec.loss.l2))
            values[sp.Symbol(spec.loss.l2)] = lam
        else:
            lam = float(spec.loss.l2)
    if constants:
        raise DeriveError(f"evaluate: unknown constants {', '.join(sorted(constants))}")
    loss = rules.LOSSES[spec.loss.kind]
    if y is None:
        raise DeriveError(f"evaluate: the loss {spec.loss.kind} needs the target y")
    ys = _samples_in(q, _array(y, "y"), "y")
    if ys.shape != (sizes[-1], m):
        raise DeriveError(f"evaluate: y must hold {sizes[-1]} outputs for each of the {m} samples")
    scale = float(spec.loss.scale) if spec.loss.scale is not None else float(loss.default_scale)
    reduction = 1.0 / m if spec.loss.reduction == "mean" else 1.0
    return Instance(q, tuple(sizes), m, weights, biases, xs, ys, values, scale, reduction, lam)


def evaluate(result, parameters: Mapping, x, y=None, constants: Mapping | None = None) -> dict[str, np.ndarray]:
    """dL/dW^l and dL/db^l at the given numbers, from the derived formulas, in the document's layout.

    parameters: {"W1": ..., "b1": ...} (the notation's names are accepted too: Theta1, w1); x and y:
    one sample as 1-D arrays, or a batch for a spec with samples m (one column per sample; rows in
    the row layout); constants: a symbolic penalty strength, e.g. {"lambda": 0.1}.
    """
    from .evaluate import Evaluator

    inst = user_instance(result, parameters, x, y, constants)
    q, L = result.quantities, result.spec.depth
    oriented = lambda array: array.T if q.layout == "row" else array      # document <-> storage for vectors
    deltas = {l: np.zeros((inst.sizes[l], inst.samples)) for l in range(1, L + 1)}
    for s in range(inst.samples):     # the recurrence as derived, one sample at a time (softmax's Jacobian is per sample)
        one = inst.sample_view(s)
        for l in range(L, 0, -1):
            value = np.asarray(Evaluator(one)(result.get("delta", l, "matrix").result.rhs), dtype=float)
            value = oriented(value).reshape(-1, 1)
            one.overrides[("delta", l)] = value
            deltas[l][:, [s]] = value
    inst.overrides.update({("delta", l): d for l, d in deltas.items()})
    ev = Evaluator(inst)
    out = {}
    for name in result.parameters:
        value = np.asarray(ev(result.gradient(name).expr), dtype=float)
        out[name] = value.reshape(-1) if name.startswith("b") else value
    return out


class GradientFunction:
    """dL/dparameters as a NumPy function, compiled in memory from the derivation (like jax.grad).

    f(parameters, x, y) -> {"W1": ..., "b1": ...}, arrays in the document's layout (see `layout`);
    `module` is the generated NumPy module (forward, loss, gradients, train_step) it runs, or None
    where codegen has no code for the network (`why_not_compiled` says why): then it evaluates the
    derived formulas, as result.evaluate does.
    """

    def __init__(self, result, dtype: str = "float64"):
        from .codegen import generate, module_from_source

        self.result = result
        self.code_layout = "row" if result.quantities.layout == "row" else "column"
        self.layout = layout_description(result)
        try:
            self.source = generate(result.spec, layout=self.code_layout, dtype=dtype)
        except DeriveError as exc:      # no code for this network (e.g. a division by the output):
            self.source, self.module, self.why_not_compiled = None, None, str(exc)   # evaluate() serves
            return
        self.module = module_from_source(self.source, result.spec.name)
        self.why_not_compiled = None

    def __repr__(self) -> str:
        how = "compiled NumPy" if self.module else "evaluated formulas (no code for this network)"
        return f"<gradient function of {self.result.spec.name!r} ({how}): parameters {', '.join(self.result.parameters)}>"

    def __call__(self, parameters: Mapping, x, y=None, constants: Mapping | None = None) -> dict[str, np.ndarray]:
        if self.module is None:
            return evaluate(self.result, parameters, x, y, constants)
        spec, q = self.result.spec, self.result.quantities
        inst = user_instance(self.result, parameters, x, y, constants)    # checks every shape and name
        row = self.code_layout == "row"
        params = {}
        for l in range(1, q.depth + 1):
            params[f"W{l}"] = inst.weights[l].T if row else inst.weights[l]
            if spec.layers[l - 1].bias:
                params[f"b{l}"] = inst.biases[l].T if row else inst.biases[l]
        X, Y = (inst.x.T, inst.y.T) if row else (inst.x, inst.y)
        extra = {"l2": inst.penalty} if isinstance(spec.loss.l2, str) else {}     # codegen names it l2
        grads = self.module.gradients(params, X, Y, **extra)
        out = {}
        for name in self.result.parameters:
            g = np.array(grads[name])
            if name.startswith("b"):
                out[name] = g.reshape(-1)
            else:
                stored = g.T if row else g          # (to, from), as the instance keeps W
                out[name] = stored if q.layout == "column" else stored.T
        return out


def gradient_function(spec_or_result, dtype: str = "float64") -> GradientFunction:
    """A NumPy function of (parameters, x, y) -> gradients, compiled from the derivation in memory."""
    from .engine import NetworkDerivation, derive
    from .spec import load

    result = spec_or_result if isinstance(spec_or_result, NetworkDerivation) else \
        derive(load(spec_or_result) if isinstance(spec_or_result, str) else spec_or_result)
    return GradientFunction(result, dtype)


def document_point(result, inst) -> dict:
    """An instance's numbers in the document's layout: {"parameters", "x", "y", "constants"}, as
    evaluate() takes them (W^l as printed, b^l 1-D, one sample 1-D, a batch as the layout stacks it)."""
    from .evaluate import Evaluator

    q = result.quantities
    ev = Evaluator(inst)
    value = lambda expr: np.asarray(ev(expr), dtype=float)
    parameters = {name: value(q.matrix(name[0], int(name[1:]))) for name in result.parameters}
    parameters = {k: v.reshape(-1) if k.startswith("b") else v for k, v in parameters.items()}
    batch = inst.samples > 1
    x, y = value(q.matrix("a", 0, batch)), value(q.matrix("y", None, batch))
    if not batch:
        x, y = x.reshape(-1), y.reshape(-1)
    constants = {result.spec.loss.l2: inst.penalty} if isinstance(result.spec.loss.l2, str) else {}
    return {"parameters": parameters, "x": x, "y": y, "constants": constants}


def random_point(result, seed: int = 0) -> dict:
    """Random numbers to try evaluate() with, in the document's layout (see document_point); symbolic
    sizes and the batch take small concrete values."""
    from .oracle import make_instance

    return document_point(result, make_instance(result.quantities, seed=seed))
