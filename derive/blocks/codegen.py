"""NumPy code for a block network: a forward pass written per stage, and gradients printed from the
derivation's results in the order a backward pass runs them. Matrix-form results become array
expressions (a recurrent layer's pair of formulas a loop over its steps); a network of feature maps
(conv, pool) has index-level results, and each becomes loops over its free indices around the printed
entry formula (sums as Python sums, entries outside a map 0), which is exact and slow by design."""
from __future__ import annotations

import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixExpr

from ..algebra import Diag, Elementwise, MatPartial, Partial
from ..errors import DeriveError
from .engine import BlockDerivation, derive_blocks
from .plan import stages
from .spec import BlockSpec
from .symbols import INDEX, Shift

ACTIVATION_CODE = {
    "identity": ("x", "np.ones_like(x)"),
    "sigmoid": ("1.0 / (1.0 + np.exp(-x))", "sigmoid(x) * (1.0 - sigmoid(x))"),
    "tanh": ("np.tanh(x)", "1.0 - np.tanh(x) ** 2"),
    "relu": ("np.maximum(x, 0.0)", "(x > 0).astype(x.dtype)"),
    "softplus": ("np.logaddexp(0.0, x)", "1.0 / (1.0 + np.exp(-x))"),
}


def generate_blocks(spec: BlockSpec) -> str:
    from ..render import environment

    result = derive_blocks(spec, levels=("index",) if spec.has_maps else ("matrix",))
    printer = _NumpyPrinter(result)
    backward = _entry_lines(result, printer) if spec.has_maps else _backward_lines(result, printer)
    return environment().get_template("codegen/blocks.py.j2").render(
        spec=spec, layers=_layers(result), backward=backward, sizes=_size_lines(result),
        activations=_activations(spec), loss=_loss(spec), parameters=result.parameters)


def _activations(spec: BlockSpec) -> list[dict]:
    out = []
    for l, layer in enumerate(spec.layers, start=1):
        name = layer.activation
        if name in ("softmax", "log_softmax"):
            continue
        if name == "leaky_relu":
            slope = float(layer.slope) if layer.slope is not None else 0.01
            value, prime = f"np.where(x > 0, x, {slope!r} * x)", f"np.where(x > 0, 1.0, {slope!r})"
        else:
            value, prime = ACTIVATION_CODE[name]
        out.append({"layer": l, "value": value, "prime": prime})
    return out


def _loss(spec: BlockSpec) -> dict:
    loss = spec.loss
    scale = float(loss.scale) if loss.scale is not None else (0.5 if loss.kind == "squared_error" else 1.0)
    return {"kind": loss.kind, "scale": scale, "mean": loss.reduction == "mean", "delta": float(loss.delta),
            "margin": float(loss.margin)}


def _layers(result: BlockDerivation) -> list[dict]:
    spec = result.spec
    out = []
    for l, layer in enumerate(spec.layers, start=1):
        out.append({"l": l, "kind": layer.kind, "bias": layer.bias, "norm": layer.norm, "eps": float(layer.eps),
                    "stride": layer.stride, "padding": layer.padding, "size": layer.kernel, "mode": layer.mode,
                    "reads_map": spec.map_shape(l - 1) is not None,
                    "dropout": float(layer.dropout) if layer.dropout is not None else None,
                    "skip": spec.source_of(l), "activation": layer.activation,
                    "stages": [(s.kind, s.out) for s in stages(spec, l)]})
    return out


def _size_lines(result: BlockDerivation) -> list[str]:
    """Symbolic sizes read off the arrays, so the printed formulas can make their ones and shifts."""
    t, lines = result.table, []
    seen = set()
    for l, size in enumerate(t.sizes):
        if not size.is_Integer and size not in seen:
            seen.add(size)
            lines.append(f"size_{size.name} = {'X' if l == 0 else f'A{l}'}.shape[0]")
    if not t.samples.is_Integer and t.samples not in seen:
        lines.append(f"size_{t.samples.name} = X.shape[1]")
    for l, layer in enumerate(result.spec.layers, start=1):
        key = t.key_size(l) if layer.kind == "attention" else None
        if key is not None and not key.is_Integer and key not in seen:
            seen.add(key)
            lines.append(f"size_{key.name} = WQ{l}.shape[0]")
    return lines


def _backward_lines(result: BlockDerivation, P: "_NumpyPrinter") -> list[str]:
    lines, done = [], set()
    order = result.backward_order()
    for d in order:
        if (d.topic, d.layer) in done:
            continue
        target = P.target(d.steps[0].lhs)
        src = d.layer - 1
        if d.topic == "input" and result.spec.layers[src - 1].kind == "rnn":
            act = result.get("act", src, "matrix")
            act_target = P.target(act.steps[0].lhs)
            lines.append(f"{act_target} = np.zeros_like(Z{src})")
            lines.append(f"for _ in range({P.expr(result.table.samples)} + 1):  # backpropagation through time: "
                         "exact after T + 1 rounds")
            lines.append(f"    {target} = {P.expr(d.result.rhs)}  # {d.key}")
            lines.append(f"    {act_target} = {P.expr(act.result.rhs)}  # {act.key}")
            done.add(("act", src))
            continue
        lines.append(f"{target} = {P.expr(d.result.rhs)}  # {d.key}")
    return lines


def _entry_lines(result: BlockDerivation, P: "_NumpyPrinter") -> list[str]:
    """Each index-level result as loops over its free indices (1-based, as printed) filling an array shaped
    like its quantity; a later formula reads it where the derivation writes dL/d(entry) or delta."""
    lines = []
    for d in result.backward_order():
        step, subject = d.result, d.steps[0].lhs       # the quantity is the chain's first left side
        target = P.entry_target(subject)
        bounds = [P.expr(bound) for _, bound in step.free]
        lines.append(f"{target} = np.zeros(({', '.join(bounds)},))  # {d.key}")
        indent = ""
        for symbol, bound in step.free:
            lines.append(f"{indent}for {P.index(symbol)} in range(1, {P.expr(bound)} + 1):")
            indent += "    "
        at = ", ".join(f"{P.index(symbol)} - 1" for symbol, _ in step.free)
        lines.append(f"{indent}{target}[{at}] = {P.expr(step.rhs)}")
        lines.append(f"{target} = {target}.reshape({P.shape_of(subject)})")
    return lines


class _NumpyPrinter:
    """SymPy matrix expressions of a block derivation as NumPy source (names from the quantity table)."""

    def __init__(self, result: BlockDerivation):
        self.t = result.table
        self.spec = result.spec

    def name(self, kind: str, layer) -> str:
        if kind == "a" and layer == 0:
            return "X"
        if kind == "y":
            return "Y"
        if kind == "delta":
            return f"D{layer}"
        return {"a": "A", "z": "Z", "zhat": "Zhat", "u": "U_", "h": "H", "d": "Hd", "r": "R", "mu": "MU",
                "var": "VAR", "q": "Q", "kk": "K", "v": "V", "sc": "S", "pr": "P", "W": "W", "U": "U", "b": "b",
                "gamma": "gamma", "beta": "beta", "WQ": "WQ", "WK": "WK", "WV": "WV"}[kind] + str(layer)

    def target(self, lhs) -> str:
        if isinstance(lhs, MatPartial):
            atom = self.t.atom(lhs.den.name)
            if atom.kind in ("W", "U", "b", "gamma", "beta", "WQ", "WK", "WV"):
                return f"grads[\"{atom.kind}{atom.layer}\"]"
            return "g_" + self.name(atom.kind, atom.layer)
        atom = self.t.atom(lhs.name)
        return self.name(atom.kind, atom.layer)

    # ---- index level: entries, sums, brackets
    def index(self, symbol) -> str:
        return f"{symbol.name}_"            # loop variables apart from every other name of the module

    def _array(self, atom) -> str:
        if atom.kind in ("W", "U", "K", "b", "gamma", "beta", "WQ", "WK", "WV"):
            return f'params["{atom.kind}{atom.layer}"]'
        return self.name(atom.kind, atom.layer)

    def _gradient_of(self, entry) -> str:
        """The array holding dL/d(entry's quantity): delta for a weighted input, grads for a parameter."""
        atom = self.t.atom(entry.base.label.name)
        if atom.kind == "z":
            return f"D{atom.layer}"
        if atom.kind in ("W", "U", "K", "b", "gamma", "beta", "WQ", "WK", "WV"):
            return f'grads["{atom.kind}{atom.layer}"]'
        return "g_" + self.name(atom.kind, atom.layer)

    def entry_target(self, lhs) -> str:
        if isinstance(lhs, sp.Indexed):          # delta^l: dL/dz^l
            return f"D{self.t.atom(lhs.base.label.name).layer}"
        return self._gradient_of(lhs.den)

    def shape_of(self, lhs) -> str:
        entry = lhs if isinstance(lhs, sp.Indexed) else lhs.den
        atom = self.t.atom(entry.base.label.name)
        if atom.kind == "delta":
            return f"Z{atom.layer}.shape"
        return f"{self._array(atom)}.shape"

    def _at(self, array: str, indices) -> str:
        return f"_at({array}, {', '.join(self.expr(i) for i in indices)})"

    def scalar(self, e) -> str:
        if isinstance(e, sp.Indexed):
            atom = self.t.atom(e.base.label.name)
            array = f"D{atom.layer}" if atom.kind == "delta" else self._array(atom)
            return self._at(array, e.indices)
        if isinstance(e, Partial) and isinstance(e.num, sp.Symbol) and e.num.name == "L":
            return self._at(self._gradient_of(e.den), e.den.indices)
        if isinstance(e, sp.Sum):
            loops = " ".join(f"for {self.index(v)} in range({self.expr(lo)}, {self.expr(hi)} + 1)"
                             for v, lo, hi in reversed(e.limits))
            return f"sum({self.expr(e.function)} {loops})"
        if isinstance(e, sp.KroneckerDelta):
            return f"(1.0 if ({self.expr(e.args[0])}) == ({self.expr(e.args[1])}) else 0.0)"
        if isinstance(e, sp.ceiling):
            return f"_ceil({self.expr(e.args[0])})"
        if isinstance(e, (sp.Max, sp.Min)):
            return f"{type(e).__name__.lower()}({', '.join(self.expr(a) for a in e.args)})"
        if isinstance(e, sp.Abs):
            return f"abs({self.expr(e.args[0])})"
        if isinstance(e, sp.Function):
            name = type(e).__name__
            args = [self.expr(a) for a in e.args]
            if name.startswith("actprime_"):
                return f"act{name.split('_')[1]}_prime({args[0]})"
            if name.startswith("act_"):
                return f"act{name.split('_')[1]}({args[0]})"
            if name == "same":
                return f"_same({args[0]}, {args[1]})"
            if name in ("exp", "log", "sign"):
                return f"np.{name}({args[0]})"
            if name == "step":                     # [x > 0]
                return f"(1.0 if ({args[0]}) > 0 else 0.0)"
            if name == "clip":                     # Huber's derivative: x limited to [-delta, delta]
                delta = float(self.spec.loss.delta)
                return f"float(np.clip({args[0]}, -{delta!r}, {delta!r}))"
        raise DeriveError(f"codegen: cannot print {type(e).__name__} at index level")

    def expr(self, e) -> str:
        if isinstance(e, MatrixExpr):
            return self.matrix(e)
        if isinstance(e, (sp.Indexed, Partial, sp.Sum, sp.KroneckerDelta, sp.ceiling, sp.Function, sp.Max, sp.Min,
                          sp.Abs)):
            return self.scalar(e)
        if e.is_Integer:
            return str(int(e))
        if e.is_Rational:
            return f"({e.p} / {e.q})"
        if isinstance(e, sp.Symbol) and e.name in INDEX:
            return self.index(e)
        if isinstance(e, sp.Symbol):
            if e.name.startswith("epsilon_"):
                return repr(float(self.spec.layers[int(e.name.split("_")[1]) - 1].eps))
            return "size_" + e.name       # a size of the spec, read off the arrays (never a bare user name)
        if isinstance(e, sp.Pow):
            return f"({self.expr(e.base)}) ** ({self.expr(e.exp)})"
        if isinstance(e, sp.Mul):
            return " * ".join(f"({self.expr(a)})" for a in e.args)
        if isinstance(e, sp.Add):
            return " + ".join(f"({self.expr(a)})" for a in e.args)
        raise DeriveError(f"codegen: cannot print {type(e).__name__}")

    def matrix(self, e) -> str:
        if isinstance(e, sp.MatrixSymbol):
            atom = self.t.atom(e.name)
            return self.name(atom.kind, atom.layer)
        if isinstance(e, MatPartial):
            atom = self.t.atom(e.den.name)
            return "g_" + self.name(atom.kind, atom.layer)
        if isinstance(e, sp.MatMul):
            scalars = [self.expr(a) for a in e.args if not isinstance(a, MatrixExpr)]
            mats = [self.matrix(a) for a in e.args if isinstance(a, MatrixExpr)]
            body = " @ ".join(f"({m})" for m in mats)
            return " * ".join(scalars + [f"({body})"]) if scalars else body
        if isinstance(e, sp.MatAdd):
            return " + ".join(f"({self.matrix(a)})" for a in e.args)
        if isinstance(e, sp.Transpose):
            return f"({self.matrix(e.arg)}).T"
        if isinstance(e, sp.HadamardProduct):
            return " * ".join(f"({self.matrix(a)})" for a in e.args)
        if isinstance(e, sp.HadamardPower):
            return f"({self.matrix(e.base)}) ** ({self.expr(e.exp)})"
        if isinstance(e, (sp.OneMatrix, sp.Identity)) and e.shape == (1, 1):
            return "np.ones((1, 1))"
        if isinstance(e, sp.OneMatrix):
            return f"np.ones(({self.expr(e.shape[0])}, {self.expr(e.shape[1])}))"
        if isinstance(e, Diag):
            return f"np.diag(({self.matrix(e.vector)}).ravel())"
        if isinstance(e, Shift):
            return f"np.eye({self.expr(e.shape[0])}, k=-1)"
        if isinstance(e, Elementwise):
            arg = self.matrix(e.arg)
            name = e.function
            if name.startswith("actprime_"):
                return f"act{name.split('_')[1]}_prime({arg})"
            if name.startswith("act_"):
                return f"act{name.split('_')[1]}({arg})"
            return {"softmax": f"softmax({arg})", "log_softmax": f"log_softmax({arg})", "exp": f"np.exp({arg})",
                    "step": f"(({arg}) > 0).astype(float)",
                    "clip": f"np.clip({arg}, -{float(self.spec.loss.delta)!r}, {float(self.spec.loss.delta)!r})"}[name]
        raise DeriveError(f"codegen: cannot print {type(e).__name__}")
