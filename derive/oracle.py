"""Random numeric instances of a network and an oracle that knows their true derivatives.

The oracle shares no rule with the engine: every local derivative (loss, activation, linear
map) is a float64 central difference of the NumPy forward function, chained backwards as
vector-Jacobian products. Final gradients are also compared against central differences of
the whole loss (check.py), which use nothing but forward passes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from . import rules
from .algebra import Quantities
from .errors import DeriveError

LOCAL_EPS = 1e-4
KINK_MARGIN = 1e-3   # well above every finite-difference step (<= 1e-5 in z)
SYMBOLIC_SIZES = (3, 2, 4, 3, 2, 4)   # distinct neighbours, so a missing transpose cannot fit
SYMBOLIC_SAMPLES = 3
MAX_INSTANCE_WEIGHTS = 2_000_000
MAX_INSTANCE_VALUES = 20_000_000


COMPLEX_STEP = 1e-30


def _vjp_complex(fn, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """g^T d fn / d x by the complex step, Im fn(x + i h) / h: no subtraction, so it is exact to
    rounding even where a difference quotient is not (log(a) at a softmax output of 1e-5). For the
    losses, whose NumPy forms (log, powers, sin) are analytic; anything else takes _vjp."""
    out = np.zeros_like(x)
    for i in range(x.shape[0]):
        step = np.zeros(x.shape, dtype=complex)
        step[i] = 1j * COMPLEX_STEP
        with np.errstate(all="ignore"):
            value = fn(x + step)
        if not np.iscomplexobj(value):
            return _vjp(fn, x, g)
        out[i] = (value.imag * g).sum(axis=0) / COMPLEX_STEP
    return out


def _vjp(fn, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """g^T d fn / d x, row by row (samples are columns and do not interact).

    Steps are relative to |x| and refined once by Richardson extrapolation, so log(a) at
    softmax outputs near 1e-3 is still accurate to about 1e-10.
    """
    out = np.zeros_like(x)
    for i in range(x.shape[0]):
        h = LOCAL_EPS * np.maximum(np.abs(x[i]), 0.1)
        estimates = []
        for scale in (1.0, 0.5):
            step = np.zeros_like(x)
            step[i] = scale * h
            estimates.append(((fn(x + step) - fn(x - step)) * g).sum(axis=0) / (2 * scale * h))
        out[i] = (4 * estimates[1] - estimates[0]) / 3
    return out


@dataclass
class Instance:
    """One numeric network: concrete sizes, parameters, inputs and targets (samples are columns)."""

    q: Quantities
    sizes: tuple[int, ...]
    samples: int
    weights: dict[int, np.ndarray]
    biases: dict[int, np.ndarray]
    x: np.ndarray
    y: np.ndarray
    constants: dict[sp.Symbol, float]
    loss_scale: float
    reduction: float          # 1/m for a mean over samples, 1 for a sum
    penalty: float            # lambda, 0 when there is none
    overrides: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, repr=False)

    # --------------------------------------------------------------- forward values
    def activation(self, l):
        return self.q.activation(l)

    def value(self, kind: str, layer: int | None = None) -> np.ndarray:
        key = (kind, layer)
        if key in self.overrides:
            return self.overrides[key]
        if key not in self._cache:
            # Fill the chain iteratively (deep networks would exhaust Python's recursion limit).
            if kind in ("z", "a") and layer:
                self._forward_to(layer)
            elif kind == "delta":
                self._backward_to(layer)
            if key not in self._cache:
                self._cache[key] = self._compute(kind, layer)
        return self._cache[key]

    def _known(self, kind, layer):
        return (kind, layer) in self.overrides or (kind, layer) in self._cache

    def _forward_to(self, layer):
        start = layer
        while start > 1 and not (self._known("a", start - 1) or self._known("z", start - 1)):
            start -= 1
        for l in range(max(start - 1, 1), layer + 1):
            for kind in ("z", "a"):
                if not self._known(kind, l):
                    self._cache[(kind, l)] = self._compute(kind, l)

    def _backward_to(self, layer):
        top = layer
        while top < self.depth and not self._known("delta", top + 1):
            top += 1
        for l in range(top, layer - 1, -1):
            if not self._known("delta", l):
                self._cache[("delta", l)] = self._compute("delta", l)

    def _compute(self, kind, layer):
        if kind == "W":
            return self.weights[layer]
        if kind == "b":
            return self.biases[layer]
        if kind == "y":
            return self.y
        if kind == "a" and layer == 0:
            return self.x
        if kind == "z":
            return self.weights[layer] @ self.value("a", layer - 1) + self.biases[layer]
        if kind == "a":
            return self.activation(layer).numpy(self.value("z", layer))
        if kind == "L_s":   # per-sample data loss
            return self.q_loss().numpy(self.value("a", self.depth), self.y, self.loss_scale)
        if kind == "L_data":
            return np.array(self.reduction * self.value("L_s").sum())
        if kind == "L":
            pen = 0.5 * self.penalty * sum((w ** 2).sum() for w in self.weights.values())
            return np.array(self.value("L_data") + pen)
        if kind == "delta":
            return self._delta(layer)
        if kind == "acc":   # the accumulated per-sample gradients of W^layer
            return sum(self.sample_grad("W", layer, s) for s in range(self.samples))
        raise KeyError(kind)

    @property
    def depth(self):
        return len(self.sizes) - 1

    def q_loss(self):
        return rules.LOSSES[self.q.spec.loss.kind]

    def _delta(self, l):
        """Per-sample dL_s/dz^l, by numeric vector-Jacobian products (independent of the engine)."""
        z = self.value("z", l)
        if l == self.depth:
            loss = self.q_loss()
            g = _vjp_complex(lambda a: loss.numpy(a, self.y, self.loss_scale)[None, :], self.value("a", l),
                             np.ones((1, z.shape[1])))
        else:
            w = self.weights[l + 1]
            g = _vjp(lambda a: w @ a, self.value("a", l), self.value("delta", l + 1))
        f = self.activation(l).numpy
        return _vjp(f, z, g)

    # ------------------------------------------------------------------- gradients
    def grad(self, kind: str, layer: int | None, loss: str = "L") -> np.ndarray:
        """dL/dX for X in W, b, z, a (total loss L, data loss L_data)."""
        key = ("grad", kind, layer, loss)
        if key in self._cache:
            return self._cache[key]
        c = self.reduction
        if kind == "z":
            out = c * self.value("delta", layer)
        elif kind == "a":
            if layer == self.depth:
                loss_row = self.q_loss()
                out = c * _vjp_complex(lambda a: loss_row.numpy(a, self.y, self.loss_scale)[None, :],
                                       self.value("a", layer), np.ones((1, self.samples)))
            else:
                w = self.weights[layer + 1]
                out = c * _vjp(lambda a: w @ a, self.value("a", layer), self.value("delta", layer + 1))
        elif kind == "W":
            d, a = self.value("delta", layer), self.value("a", layer - 1)
            w = self.weights[layer]
            out = c * _vjp_matrix(lambda W: W @ a, w, d)
            if loss == "L":
                out = out + self.penalty * w
        elif kind == "b":
            out = c * self.value("delta", layer).sum(axis=1, keepdims=True)
        else:
            raise KeyError(kind)
        self._cache[key] = out
        return out

    def sample_grad(self, kind: str, layer: int, sample: int) -> np.ndarray:
        """dL_s/dX for one sample s (0-based), without reduction or penalty."""
        key = ("sample_grad", kind, layer, sample)
        if key not in self._cache:
            d = self.value("delta", layer)[:, [sample]]
            if kind == "W":
                a = self.value("a", layer - 1)[:, [sample]]
                self._cache[key] = _vjp_matrix(lambda W: W @ a, self.weights[layer], d)
            elif kind == "b":
                self._cache[key] = d
            else:
                raise KeyError(kind)
        return self._cache[key]

    # --------------------------------------------------------------------- views
    def perturbed(self, kind: str, layer: int | None, entry: tuple[int, ...], h: float) -> "Instance":
        """A copy with one entry of one quantity moved by h; everything downstream recomputed lazily."""
        base = self.value(kind, layer).copy()
        base[entry] += h
        clone = self._clone()
        if kind == "W":
            clone.weights = {**self.weights, layer: base}
        elif kind == "b":
            clone.biases = {**self.biases, layer: base}
        elif kind == "a" and layer == 0:
            clone.x = base
        elif kind == "y":
            clone.y = base
        else:
            clone.overrides = {**self.overrides, (kind, layer): base}
        # forward values upstream of the moved entry stay valid: keep them, so a deep network does not
        # recompute its whole forward pass for every local derivative
        if kind == "y":
            first = self.depth + 1                  # the targets move the loss only
        elif kind == "a":
            first = layer + 1 if layer else 0        # a^l moved: z^l still holds; x moved: nothing does
        else:
            first = layer                            # W^l, b^l or z^l moved: layers before l hold
        clone._cache = {key: value for key, value in self._cache.items()
                        if len(key) == 2 and key[0] in ("z", "a") and key[1] is not None and key[1] < first}
        return clone

    def sample_view(self, s: int) -> "Instance":
        """Sample s alone, with the per-sample loss (no reduction, no penalty)."""
        clone = self._clone()
        clone.samples, clone.x, clone.y = 1, self.x[:, [s]], self.y[:, [s]]
        clone.reduction, clone.penalty = 1.0, 0.0
        clone.overrides = {k: v[:, [s]] for k, v in self.overrides.items()}
        return clone

    def with_values(self, values: dict[tuple[str, int], np.ndarray]) -> "Instance":
        clone = self._clone()
        clone.overrides = {**self.overrides, **values}
        return clone

    def _clone(self):
        return Instance(self.q, self.sizes, self.samples, self.weights, self.biases, self.x, self.y,
                        self.constants, self.loss_scale, self.reduction, self.penalty, dict(self.overrides))

    def total_loss(self, weights, biases) -> float:
        probe = self._clone()
        probe.weights, probe.biases, probe.overrides = weights, biases, {}
        return float(probe.value("L"))


def _vjp_matrix(fn, w, g):
    """g^T d fn / d W for a map whose output row j depends only on row j of W (as W @ a does).

    That structure lets one pass move a whole column of W: n_{l-1} passes, not n_l n_{l-1}.
    """
    out = np.zeros_like(w)
    for k in range(w.shape[1]):
        step = np.zeros_like(w)
        step[:, k] = LOCAL_EPS
        out[:, k] = ((fn(w + step) - fn(w - step)) * g).sum(axis=1) / (2 * LOCAL_EPS)
    return out


def concrete_sizes(q: Quantities, seed: int) -> tuple[tuple[int, ...], int]:
    """Small concrete sizes for symbolic ones: neighbours differ so shapes cannot fit by accident."""
    sizes, symbol_values = [], {}
    offset = seed % 3
    for number, size in enumerate(q.sizes):
        if size.is_Integer:
            sizes.append(int(size))
            continue
        if size not in symbol_values:
            symbol_values[size] = SYMBOLIC_SIZES[(len(symbol_values) + offset) % len(SYMBOLIC_SIZES)]
        sizes.append(symbol_values[size])
    spec_layers = q.spec.layers
    for l, layer in enumerate(spec_layers, start=1):
        if layer.activation == "softmax" and sizes[l] < 2:
            sizes[l] = 2
    samples = int(q.samples) if q.samples.is_Integer else SYMBOLIC_SAMPLES
    return tuple(sizes), samples


def make_instance(q: Quantities, seed: int = 0, samples: int | None = None) -> Instance:
    """Seeded random float64 values; pre-activations of kinked activations kept away from the kinks."""
    rng = np.random.default_rng(seed)
    sizes, m = concrete_sizes(q, seed)
    if samples is not None:
        m = samples
    weights_count = sum(a * b for a, b in zip(sizes[1:], sizes[:-1]))
    values_count = sum(sizes) * m
    if weights_count > MAX_INSTANCE_WEIGHTS or values_count > MAX_INSTANCE_VALUES:
        # every numeric instance (checks, verify, read-back) is made here: one budget, before the work
        raise DeriveError(f"{weights_count} weights and {values_count} activations are too many for a numeric "
                          f"instance (at most {MAX_INSTANCE_WEIGHTS} and {MAX_INSTANCE_VALUES}); give the sizes as "
                          "symbols (n_1, m, ...) to check and judge at small concrete sizes")
    spec = q.spec
    loss = rules.LOSSES[spec.loss.kind]
    scale = spec.loss.scale
    c = float(scale) if scale is not None else float(loss.default_scale)
    constants = {}
    for size_symbol, value in zip(q.sizes, sizes):
        if not size_symbol.is_Integer:
            constants[size_symbol] = value
    if not q.samples.is_Integer:
        constants[q.samples] = m
    lam = 0.0
    if spec.loss.l2 is not None:
        lam = float(rng.uniform(0.1, 0.9)) if isinstance(spec.loss.l2, str) else float(spec.loss.l2)
        if isinstance(spec.loss.l2, str):
            constants[sp.Symbol(spec.loss.l2)] = lam
    if loss.target == "real":
        y = rng.normal(size=(sizes[-1], m))
    elif loss.target == "unit":
        y = rng.uniform(0.05, 0.95, size=(sizes[-1], m))
    else:
        y = rng.dirichlet(np.ones(sizes[-1]), size=m).T
    x = rng.normal(size=(sizes[0], m))
    weights, biases = {}, {}
    fallback = None
    for attempt in range(200):
        for l in range(1, len(sizes)):
            weights[l] = rng.normal(scale=1.2 / np.sqrt(sizes[l - 1]), size=(sizes[l], sizes[l - 1]))
            biases[l] = (rng.normal(scale=0.5, size=(sizes[l], 1)) if spec.layers[l - 1].bias
                         else np.zeros((sizes[l], 1)))
        inst = Instance(q, sizes, m, dict(weights), dict(biases), x, y, constants, c,
                        1.0 / m if spec.loss.reduction == "mean" else 1.0, lam)
        if _away_from_kinks(inst):
            if _alive(inst):
                return inst
            fallback = fallback or inst
    if fallback is not None:        # no draw kept every layer alive: a vacuous comparison is still a true one
        return fallback
    raise DeriveError("could not draw numeric values with every pre-activation at least "
                      f"{KINK_MARGIN} away from the activation kinks in 200 tries; "
                      "use smaller layers or a smooth activation (softplus, tanh) for a numeric check")


def _alive(inst: Instance) -> bool:
    """Every sample has a unit with a non-zero derivative in every layer: a layer of ReLUs that are all
    off would make every delta below it 0, and a step checked there compares 0 with 0."""
    for l in range(1, inst.depth + 1):
        slope = inst.activation(l).numpy_derivative(inst.value("z", l))
        if not np.all(np.any(slope != 0, axis=0)):
            return False
    return True


def _away_from_kinks(inst: Instance) -> bool:
    for l in range(1, inst.depth + 1):
        kinks = inst.activation(l).kinks
        if kinks:
            z = inst.value("z", l)
            if any(np.abs(z - k).min() < KINK_MARGIN for k in kinks):
                return False
    return True
