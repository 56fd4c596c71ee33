"""NumPy code from a derivation: one statement per named step, each commented with its equation.

The gradient statements are printed from the engine's batch-level results (dL/dW^l, dL/db^l)
and its matrix-level delta recurrence, with the single-sample quantities replaced by their batch
matrices; nothing here knows backprop by heart.
"""
from __future__ import annotations

from dataclasses import replace

import sympy as sp

from .algebra import Diag, Elementwise, MatPartial
from .engine import NetworkDerivation, derive
from .spec import NetworkSpec

DTYPES = ("float32", "float64")
LAYOUTS = {"column": "nielsen", "row": "rowvec"}


class _NumpyPrinter:
    """Matrix expressions -> NumPy source, with batch matrices for single-sample quantities."""

    def __init__(self, result: NetworkDerivation):
        self.q = result.quantities
        self.row = self.q.layout == "row"

    def name(self, symbol) -> str:
        atom = self.q.atom(symbol.name)
        if atom.kind == "W":
            return f"W{atom.layer}"
        if atom.kind == "b":
            return f"b{atom.layer}"
        if atom.kind == "y":
            return "Y"
        if atom.kind == "a" and atom.layer == 0:
            return "X"
        return {"z": "Z", "a": "A", "delta": "Delta", "acc": "G"}[atom.kind] + str(atom.layer)

    def __call__(self, e) -> str:
        if isinstance(e, sp.MatrixSymbol):
            return self.name(e)
        if isinstance(e, sp.OneMatrix):      # beside + - and * NumPy broadcasts the number
            return "1.0"
        if getattr(e, "is_number", False):
            return repr(float(e))
        if isinstance(e, sp.Symbol):   # only m and the L2 strength occur; a user's name never reaches code
            return "m" if e == self.q.samples else "l2"
        if isinstance(e, sp.Pow) and e.exp == -1:
            return f"(1.0 / {self(e.base)})"
        if isinstance(e, (sp.Mul, sp.MatMul)):
            return self._product(e)
        if isinstance(e, sp.MatAdd):
            positive, negative = [], []
            for t in e.args:
                if isinstance(t, sp.OneMatrix):
                    positive.append("1.0")
                elif isinstance(t, sp.MatMul) and t.args[0].is_number and t.args[0] < 0:
                    rest = t.args[1:] if t.args[0] == -1 else (-t.args[0], *t.args[1:])
                    negative.append(self._wrap(sp.MatMul(*rest)) if len(rest) > 1 else self._wrap(rest[0]))
                else:
                    positive.append(self(t))
            return " - ".join([" + ".join(positive)] + negative) if positive else "-" + " - ".join(negative)
        if isinstance(e, sp.Transpose):
            return f"{self._wrap(e.arg)}.T"
        if isinstance(e, sp.HadamardProduct):
            return " * ".join(self._wrap(a) for a in e.args)
        if isinstance(e, sp.HadamardPower):
            return f"{self._wrap(e.base)} ** {int(e.exp)}"
        if isinstance(e, Elementwise):
            if e.function == "reciprocal":
                return f"(1.0 / {self._wrap(e.arg)})"
            if e.function == "softmax":   # along each sample
                return f"softmax({self(e.arg)}, axis={1 if self.row else 0})"
            return f"{e.function}({self(e.arg)})"
        if isinstance(e, MatPartial):
            raise ValueError("a generic loss has no code: give the loss kind")
        raise ValueError(f"no NumPy form for {type(e).__name__}: {e}")

    def _product(self, e) -> str:
        args = list(e.args)
        scalars = [a for a in args if not getattr(a, "is_Matrix", False)]
        mats = [a for a in args if getattr(a, "is_Matrix", False)]
        ones = [a for a in mats if isinstance(a, sp.OneMatrix)]
        mats = [a for a in mats if not isinstance(a, sp.OneMatrix)]
        if ones:     # 1^T Delta or Delta 1: the sum over the samples, as a BLAS product (twice np.sum's speed)
            operand = self._wrap(sp.MatMul(*mats)) if len(mats) > 1 else self._wrap(mats[0])
            left = ones[0].shape[0] == 1
            vector = f"ws.ones({'(1, m)' if left else '(m, 1)'}, X.dtype)"
            body = f"{vector} @ {operand}" if left else f"{operand} @ {vector}"
        elif self._is_jacobian(mats[0]) and len(mats) > 1:        # (diag(a) - a a^T) (W^T delta)
            body = self._jacobian(mats[0], sp.MatMul(*mats[1:]) if len(mats) > 2 else mats[1])
        elif self._is_jacobian(mats[-1]) and len(mats) > 1:       # row layout: g (diag(a) - a^T a)
            body = self._jacobian(mats[-1], sp.MatMul(*mats[:-1]) if len(mats) > 2 else mats[0])
        else:
            body = " @ ".join(self._wrap(a) for a in mats)
        parts = [self._wrap(s_) for s_ in scalars] + ([body] if body else [])
        return " * ".join(parts)

    def into(self, name: str, e) -> str | None:
        """A product of two matrices written into the workspace array `name` (no fresh array);
        None for any other expression."""
        if not isinstance(e, sp.MatMul) or len(e.args) != 2:
            return None
        if not all(getattr(a, "is_Matrix", False) and not isinstance(a, sp.OneMatrix) and not self._is_jacobian(a)
                   for a in e.args):
            return None
        left, right = e.args
        return f'ws.matmul("{name}", {self._wrap(left)}, {self._wrap(right)})'

    def _wrap(self, e) -> str:
        text = self(e)
        simple = isinstance(e, (sp.MatrixSymbol, sp.Symbol, Elementwise, sp.Transpose, sp.Pow)) or (
            hasattr(e, "is_number") and e.is_number and not text.startswith("-"))
        return text if simple else f"({text})"

    @staticmethod
    def _is_jacobian(e) -> bool:
        return isinstance(e, sp.MatAdd) and any(isinstance(t, Diag) for t in e.args)

    def _jacobian(self, jac, g):
        """(diag(a) - a a^T) g, per sample, as a * g - a * sum(a * g): never an n x n matrix."""
        a = next(t for t in jac.args if isinstance(t, Diag)).vector
        A, G = self._wrap(a), self._wrap(g)
        axis = 1 if self.row else 0
        return f"{A} * {G} - {A} * np.sum({A} * {G}, axis={axis}, keepdims=True)"


def _text(e, q) -> str:
    """The equation in plain text for the comment (names as in the code)."""
    from .notation import profile
    from .printing import DerivePrinter

    latex = DerivePrinter(q, profile(q.spec.notation, q.spec.symbols)).doprint(e)
    for old, new in ((r"\left(", "("), (r"\right)", ")"), (r"\odot", "⊙"), (r"\oslash", "⊘"), (r"\mathbf{1}", "1"),
                     (r"\frac{\partial L}{\partial ", "dL/d"), (r"\frac{1}{m}", "(1/m)"), (r"\delta", "δ"),
                     (r"\Delta", "Δ"), (r"\sigma", "σ"), (r"\tanh", "tanh"), (r"\operatorname{ReLU}", "relu"),
                     (r"\operatorname{LReLU}", "leaky_relu"), (r"\operatorname{softplus}", "softplus"),
                     (r"\operatorname{softmax}", "softmax"), (r"\operatorname{diag}", "diag"), (r"\lambda", "λ"), (r"\mathit", ""),
                     ("^{T}", "ᵀ"), ("{", ""), ("}", ""), ("\\", "")):
        latex = latex.replace(old, new)
    return " ".join(latex.split())


HELPERS = {
    "sigmoid": ("def sigmoid(x, out=None):\n"
                "    out = np.multiply(x, 0.5, out=out)  # σ(x) = (1 + tanh(x/2)) / 2: no overflow in exp\n"
                "    np.tanh(out, out=out)\n    out += 1.0\n    out *= 0.5\n    return out\n"),
    "tanh": "tanh = np.tanh\n",
    "relu": "def relu(x, out=None):\n    return np.maximum(x, 0, out=out)\n",
    "relu_prime": "def relu_prime(x):\n    return x > 0  # a mask (0 at 0, as PyTorch); float * bool stays float\n",
    "softplus": "def softplus(x, out=None):\n    return np.logaddexp(0, x, out=out)\n",
    "softplus_prime": "def softplus_prime(x):\n    return sigmoid(x)\n",
    "identity": "def identity(x):\n    return x\n",
}


def generate(spec: NetworkSpec, layout: str = "column", dtype: str = "float64") -> str:
    if not isinstance(spec, NetworkSpec):          # normalization, skips, recurrence, attention, feature maps
        from .blocks.codegen import generate_blocks
        from .errors import DeriveError

        if layout != "column" or dtype != "float64":
            raise DeriveError(f"{spec.name}: --layout and --dtype are for dense chains; a network with the newer "
                              "layers is written in float64, in its notation's layout (rowvec: samples as rows)")
        return generate_blocks(spec)
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}; accepted: {', '.join(LAYOUTS)}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}; accepted: {', '.join(DTYPES)}")
    if spec.loss.kind == "generic":
        from .errors import DeriveError

        raise DeriveError("loss.kind: generic has no code; choose squared_error, binary_cross_entropy or cross_entropy")
    batch_spec = replace(spec, samples="m", notation=LAYOUTS[layout], symbols=())
    result = derive(batch_spec, levels=("matrix", "batch"))
    q = result.quantities
    P = _NumpyPrinter(result)
    L = q.depth
    lines: list[str] = []
    used = set()

    def emit(indent, code, comment):
        lines.append(f"{indent}{code:<60}  # {comment}")

    # forward: the single-sample matrix equations with batch matrices (NumPy broadcasts the bias)
    fwd_lines = []
    for step in result.forward:
        if step.level != "forward" or step.fact("what") not in ("z_matrix", "a_matrix"):
            continue
        rhs = _batchify(step.rhs, q)
        target = P(_batchify(step.lhs, q))
        used.update(f.function for f in ({rhs} if isinstance(rhs, Elementwise) else rhs.atoms(Elementwise)))
        fwd_lines.append((_in_place(target, rhs, P), _text(step.lhs, q) + " = " + _text(step.rhs, q)))

    grad_lines = []
    for l in range(L, 0, -1):
        delta = result.get("delta", l, "matrix").result
        expr = _batchify(delta.rhs, q)
        for f in expr.atoms(Elementwise):
            if f.function == "reciprocal":
                from .errors import DeriveError

                raise DeriveError(f"codegen: a {spec.layers[-1].activation} output with {spec.loss.kind} has no "
                                  "derived form without a division by the output (1/a or 1/(1 - a), infinite where "
                                  "an output reaches 0 or 1); code is generated for sigmoid with binary_cross_entropy "
                                  "or cross_entropy, softmax with cross_entropy, and any output with squared_error")
            used.add(f.function)
        grad_lines.append((_in_place(f"Delta{l}", expr, P), _text(q.matrix("delta", l, True), q) + " = " + _text(expr, q)
                           + f"  (δ^{l} of each sample, one {'row' if P.row else 'column'} each)"))
        for topic, key in (("weight", "W"), ("bias", "b")):
            if topic == "bias" and not spec.layers[l - 1].bias:
                continue
            d = result.get(topic, l, "batch")
            final = d.result.rhs
            grad_lines.append((_gradient_statement(f"grads['{key}{l}']", f"dL/d{key}{l}", final, P), _text(d.steps[-1].lhs if topic == 'bias' else
                                                                         MatPartial(q.loss, q.matrix(key, l)), q)
                               + " = " + _text(final, q)))
    return _module(spec, q, layout, dtype, fwd_lines, grad_lines, used)


def _gradient_statement(target: str, name: str, expr, P) -> str:
    """c * (product) [+ lambda W]: the product first (into the workspace array `name`), then the
    scale and the penalty in place, so no scaled copy of an operand is made."""
    penalty = None
    if isinstance(expr, sp.MatAdd) and len(expr.args) == 2:
        scaled = [a for a in expr.args if isinstance(a, sp.MatMul) and any(isinstance(x, sp.MatrixSymbol) and
                                                                         P.q.atom(x.name).kind == "W" for x in a.args)
                  and len([x for x in a.args if getattr(x, "is_Matrix", False)]) == 1]
        if scaled:
            penalty = scaled[0]
            expr = next(a for a in expr.args if a is not penalty)
    scalars = [a for a in expr.args if not getattr(a, "is_Matrix", False)] if isinstance(expr, sp.MatMul) else []
    if not scalars:
        code = f"{target} = {P.into(name, expr) or P(expr)}"
    else:
        product = sp.MatMul(*[a for a in expr.args if getattr(a, "is_Matrix", False)])
        code = f"{target} = {P.into(name, product) or P(product)}; {target} *= {' * '.join(P._wrap(c) for c in scalars)}"
    if penalty is not None:
        code += f"; {target} += {P(penalty)}"
    return code


WRITES_INTO = ("sigmoid", "tanh", "relu", "softplus")   # helpers that take out= (and every leaky_relu*)


def _in_place(target: str, rhs, P) -> str:
    """Z = A @ W + b and Delta = (G @ W.T) * f'(Z) as a product written into the workspace,
    then updated in place; a = f(z) written into the workspace: the same equation with no fresh
    array per statement (a fresh array over 128 KB may page-fault on every call, depending on
    the allocator's state)."""
    parts = None
    if isinstance(rhs, sp.MatAdd) and len(rhs.args) == 2:
        prod = [a for a in rhs.args if isinstance(a, sp.MatMul) and not any(x.is_number for x in a.args)]
        rest = [a for a in rhs.args if a not in prod]
        if len(prod) == 1 and len(rest) == 1 and isinstance(rest[0], sp.MatrixSymbol):
            parts = (P.into(target, prod[0]) or P(prod[0]), "+=", P(rest[0]))
    elif isinstance(rhs, sp.HadamardProduct) and isinstance(rhs.args[0], sp.MatMul) and \
            not any(a.is_number for a in rhs.args[0].args) and not P._is_jacobian(rhs.args[0].args[0]):
        factors = [g for f in rhs.args[1:] for g in (f.args if isinstance(f, sp.HadamardProduct) else (f,))]
        first = P.into(target, rhs.args[0]) or P(rhs.args[0])
        return f"{target} = {first}; " + "; ".join(f"{target} *= {P._wrap(f)}" for f in factors)
    elif isinstance(rhs, Elementwise) and isinstance(rhs.arg, sp.MatrixSymbol) and \
            (rhs.function in WRITES_INTO or rhs.function.startswith("leaky_relu")) and not rhs.function.endswith("_prime"):
        arg = P(rhs.arg)
        return f'{target} = {rhs.function}({arg}, out=ws.like("{target}", {arg}))'
    elif isinstance(rhs, Elementwise) and rhs.function == "softmax" and isinstance(rhs.arg, sp.MatrixSymbol):
        arg = P(rhs.arg)
        return f'{target} = softmax({arg}, axis={1 if P.row else 0}, out=ws.like("{target}", {arg}))'
    if parts is None:
        return f"{target} = {P(rhs)}"
    first, op, second = parts
    return f"{target} = {first}; {target} {op} {second}"


def _batchify(expr, q):
    """Single-sample quantities -> their batch matrices (columns or rows of samples)."""
    mapping = {}
    for sym in expr.atoms(sp.MatrixSymbol):
        atom = q.atom(sym.name)
        if atom.kind in ("z", "a", "delta", "y") and not atom.batch:
            mapping[sym] = q.matrix(atom.kind, atom.layer, batch=True)
    return expr.xreplace(mapping)


def _module(spec, q, layout, dtype, fwd_lines, grad_lines, used) -> str:
    from .render import environment

    helpers = set(used)
    if any(f.startswith("softplus") for f in used) or "softplus_prime" in used:
        helpers.add("sigmoid")
    l2 = spec.loss.l2
    c = spec.loss.scale if spec.loss.scale is not None else (sp.Rational(1, 2) if spec.loss.kind == "squared_error" else 1)
    sizes = spec.sizes if spec.is_concrete else None
    import numpy as np

    leaky = sorted({(base, float(q.functions[base].numpy_derivative(np.array([-1.0]))[0]))
                    for base in {f.removesuffix("_prime") for f in used if f.startswith("leaky_relu")}})
    return environment().get_template("codegen/model.py.j2").render(
        spec=spec, layout=layout, dtype=dtype, forward=fwd_lines, grads=grad_lines,
        helpers=[HELPERS[h] for h in sorted(helpers) if h in HELPERS], leaky=leaky,
        softmax="softmax" in used, sizes=sizes, loss_kind=spec.loss.kind, scale=float(c),
        mean=spec.loss.reduction == "mean", l2_symbol="l2" if isinstance(l2, str) else None,
        l2_value=float(l2) if l2 is not None and not isinstance(l2, str) else None,
        biases=[l for l, layer in enumerate(spec.layers, start=1) if layer.bias], depth=spec.depth,
        sample_axis=0 if layout == "row" else 1, document=document_layout(spec, layout))


def document_layout(spec, layout: str) -> dict:
    """How this module's arrays relate to the document's (the spec's notation), said plainly."""
    from .notation import profile

    n = profile(spec.notation, spec.symbols)
    doc_rows_are_targets = n.layout == "column"          # W^l as the document prints it
    code_rows_are_targets = layout == "column"
    return {"notation": n.name, "same": doc_rows_are_targets == code_rows_are_targets,
            "code_shape": "(n_l, n_{l-1})" if code_rows_are_targets else "(n_{l-1}, n_l)",
            "folded": n.bias_folded and any(layer.bias for layer in spec.layers), "row": layout == "row"}


XOR_INPUTS = ((0, 0, 1, 1), (0, 1, 0, 1))
XOR_TARGETS = ((0, 1, 1, 0),)


def load_module(path):
    """Import a generated module from its file."""
    from pathlib import Path

    return module_from_source(Path(path).read_text(encoding="utf-8"), Path(path).stem, str(path))


def module_from_source(source: str, name: str, filename: str | None = None):
    """Run generated code as a fresh module. The one place derive runs code: the text is generate()'s
    own output, printed from a validated spec (whitelisted names; the title only inside an escaped
    string literal), never user text."""
    import types

    module = types.ModuleType(f"derive_generated_{name}")
    module.__file__ = filename or f"<derive codegen: {name}>"
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def train_xor(module, epochs: int = 10_000, lr: float = 0.5, seed: int = 0, dtype: str = "float64") -> float:
    """Train a generated 2-?-1 column-layout module on XOR; return the final mean squared error.

    004_*.txt used lr 0.1 with a loss summed over the four samples; the generated loss is the
    mean, so the same step needs a larger rate (0.1 stays at MSE 0.02-0.25 after 10000 epochs).
    """
    import numpy as np

    X = np.array(XOR_INPUTS, dtype=dtype)
    Y = np.array(XOR_TARGETS, dtype=dtype)
    if module.SAMPLE_AXIS == 0:
        X, Y = X.T, Y.T
    params = module.init_params(seed=seed, dtype=getattr(np, dtype))
    workspace = module.Workspace()
    for _ in range(epochs):
        module.train_step(params, X, Y, lr, workspace=workspace)
    A = module.forward(params, X)[f"A{len(module.SIZES) - 1}"]
    return float(np.mean((A - Y) ** 2))


def nested_gradient_code(spec: NetworkSpec, layout: str = "row") -> dict[str, str]:
    """Each gradient as one nested NumPy expression in W, b, X, Y: every delta, activation and
    weighted input substituted, nothing shared. This is what evaluating the nested matrix
    expressions costs (a benchmark peer; sympy.lambdify itself cannot print the activations)."""
    batch_spec = replace(spec, samples="m", notation=LAYOUTS[layout], symbols=())
    result = derive(batch_spec, levels=("matrix", "batch"))
    q = result.quantities
    P = _NumpyPrinter(result)
    table = {}
    for step in result.forward:
        if step.level == "forward" and step.fact("what") in ("z_matrix", "a_matrix"):
            table[_batchify(step.lhs, q)] = _batchify(step.rhs, q)
    for l in range(q.depth, 0, -1):
        table[q.matrix("delta", l, True)] = _batchify(result.get("delta", l, "matrix").result.rhs, q)
    out = {}
    for name in result.parameters:
        expr = result.get("weight" if name[0] == "W" else "bias", int(name[1:]), "batch").result.rhs
        for _ in range(4 * q.depth + 4):      # substitute until only parameters and data remain
            expr = expr.xreplace(table)
        out[name] = P(expr)
    return out
