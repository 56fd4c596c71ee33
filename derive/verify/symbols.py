"""Reading symbols: what each symbol of a claim means in the spec's notation, and walking terms."""
from __future__ import annotations

from dataclasses import replace

from ..claim import Term, base_name, render
from ..errors import DeriveError
from ..notation import parse_parameter, profile

LATEX_NAMES = {"hat_y": r"\hat{y}", "y_out": r"y_{\mathrm{out}}", "bold_delta": r"\boldsymbol{\delta}",
               "ones": r"\mathbf{1}", "tilde_Theta": r"\tilde{\Theta}"}     # claim names that are not plain letters -> how to write them
PER_SAMPLE_KINDS = ("z", "a", "delta", "input", "y", "output")
class Meaning:
    """Symbols of a claim -> the engine's quantities, in the spec's notation."""

    def __init__(self, result):
        self.result, self.q = result, result.quantities
        spec = result.spec
        self.n = profile(spec.notation, spec.symbols)
        table = {}
        for kind, names in (("W", (self.n.weights, self.n.weight, "W", "w")), ("b", (self.n.bias, "b")),
                            ("z", (self.n.pre,)), ("a", (self.n.act,)), ("delta", (self.n.delta, "delta")),
                            ("input", (self.n.input,)), ("y", (self.n.target,)), ("L", (self.n.loss, "L")),
                            ("acc", (self.n.accumulator,)),     # before batch_delta: Ng's Delta is the accumulator
                            ("batch_delta", (self.n.batch_delta, "Delta")), ("batch_a", (self.n.batch_act,)),
                            ("batch_input", (self.n.batch_input,)), ("batch_y", (self.n.batch_target,)),
                            ("batch_z", (self.n.batch_pre,))):
            for name in names:
                table.setdefault(base_name(name), kind)
        if self.n.bias_folded:
            table.pop(base_name(self.n.bias), None)
            for name in (self.n.weights, self.n.weight):     # Ng: Theta, and tilde Theta without column 0
                table[base_name(name)] = "W"
        table["hat_y"] = "output"
        if self.n.output:
            table["y_out"] = "output"
        self.l2 = spec.loss.l2 if isinstance(spec.loss.l2, str) else None
        self.table = table

    def l2_value(self, inst) -> float:
        """The symbolic L2 strength's value at an instance."""
        import sympy as sp

        return float(inst.constants[sp.Symbol(self.l2)])

    def is_l2(self, name: str) -> bool:
        """The spec's name for a symbolic L2 strength, or \\lambda, which the documents print for it."""
        return self.l2 is not None and name in (self.l2, "lambda")

    def normalize(self, t: Term) -> Term:
        """Resolve what the notation leaves to the reader: Ng's Theta_{i0} is the bias b_i, and in a
        one-layer network where the input and the output share a name (Rashid's o), the index letter
        tells the layer (o_j before the weights, o_k after them: w_jk runs from j to k)."""
        shared = (base_name(self.n.input) == base_name(self.n.act) and self.q.depth == 1
                  and self.n.layer_labels == "if_deep")
        roles: dict[str, int] = {}
        if shared:
            for _, s in subterms(t):
                if s.op == "symbol" and self.table.get(s.name) == "W" and len(s.indices) == 2:
                    first, second = s.indices
                    before, after = (second, first) if self.q.index_order == "to_from" else (first, second)
                    for letter, layer in ((before, 0), (after, 1)):
                        if isinstance(letter, str):
                            roles.setdefault(letter, layer)
                if s.op == "sum" and s.indices and s.name not in roles:
                    limit = s.indices[0].replace("{", "").replace("}", "").replace("_", "")
                    hits = [l for l, size in enumerate(self.q.sizes) if str(size).replace("_", "") == limit]
                    if len(hits) == 1:
                        roles[s.name] = hits[0]
            roles.setdefault(self.n.index_name("k"), 0)
            roles.setdefault(self.n.index_name("j"), 1)
            pairs = [s.indices for _, s in subterms(t) if s.op == "iverson"]
            for _ in pairs:                     # [i = j]: i runs where j does
                for first, second in pairs:
                    if first in roles and second not in roles:
                        roles[second] = roles[first]
                    elif second in roles and first not in roles:
                        roles[first] = roles[second]
        act, batch_act = base_name(self.n.act), base_name(self.n.batch_act)
        shared_batch = shared and base_name(self.n.batch_input) == batch_act
        unit = 1 if self.q.layout == "row" else 0          # which index of a batch entry names the unit

        def walk(s: Term) -> Term:
            if s.op == "symbol":
                if self.n.bias_folded and self.table.get(s.name) == "W" and len(s.indices) == 2 and s.indices[1] == 0:
                    return replace(s, name=s.name + "_col0", indices=s.indices[:1])
                if shared and s.name == act and s.label is None and len(s.indices) == 1 and s.indices[0] in roles:
                    return replace(s, label=roles[s.indices[0]])
                if shared_batch and s.name == batch_act and s.label is None and len(s.indices) == 2 \
                        and s.indices[unit] in roles:                  # Rashid's O_{js}: the batch of o_j
                    return replace(s, label=roles[s.indices[unit]])
                return s
            return replace(s, args=tuple(walk(a) for a in s.args)) if s.args else s
        return walk(t)

    def size_names(self) -> dict:
        """n_2, n2 -> the size symbol (or number) of the network, m -> the sample count."""
        if not hasattr(self, "_size_names"):
            self._size_names = {str(s).replace("_", ""): s for s in self.q.sizes + (self.q.samples,)}
        return self._size_names

    def is_loss(self, t: Term, total: bool = False) -> bool:
        """L (or L_data, L^{(s)}) as a symbol of its own; total: only the loss the oracle differentiates
        backwards (L or L_data of the instance, not one sample's L^{(s)} within a batch)."""
        if t.op != "symbol" or self.table.get(t.name.removesuffix("_data")) != "L":
            return False
        return not (total and t.sample is not None)

    def symbols(self) -> str:
        return ", ".join(sorted(LATEX_NAMES.get(k, k) for k in self.table if k not in ("hat_y",)))

    def layer(self, kind: str, label: int | None) -> int:
        depth = self.q.depth
        if label is None:
            if depth == 1 and kind in ("W", "b", "z", "a", "delta"):
                return 1
            raise DeriveError(f"claim: {kind} needs a layer label, e.g. {kind}^{{2}}")
        layer = label - (self.n.node_shift if kind in ("z", "a", "delta") else 0)
        low = 0 if kind == "a" else 1
        if not low <= layer <= depth:
            raise DeriveError(f"claim: layer label {label} is out of range for this network "
                              f"({self.n.label(low, kind in ('z', 'a', 'delta'))} to "
                              f"{self.n.label(depth, kind in ('z', 'a', 'delta'))})")
        return layer

    def matrix(self, t: Term):
        """A symbol -> (MatrixSymbol, is_batch)."""
        kind = self.table.get(t.name)
        if self.n.bias_folded and kind is None and t.name.endswith("_col0") and \
                self.table.get(t.name.removesuffix("_col0")) == "W":        # Ng's bias column Theta_{.0}
            return self.q.matrix("b", self.layer("b", t.label)), False
        if kind is None:
            if t.name == "m" or self.is_l2(t.name):
                return None, True
            raise DeriveError(f"claim: unknown symbol {t.name!r}; in the {self.n.name} notation the symbols are "
                              f"{self.symbols()} (with layer labels), m, \\mathbf{{1}} and \\hat y")
        batch = kind.startswith("batch_")
        kind = kind.removeprefix("batch_")
        if kind == "input":
            return self.q.matrix("a", 0, batch), batch
        if kind == "output":
            return self.q.matrix("a", self.q.depth, batch), batch
        if kind == "y":
            return self.q.matrix("y", None, batch), batch
        if kind == "L":
            raise DeriveError("claim: the loss appears only as \\frac{\\partial L}{\\partial ...}")
        return self.q.matrix(kind, self.layer(kind, t.label), batch), batch

    def uses_batch(self, t: Term) -> bool:
        """A batch symbol (X, A, Delta, the accumulator, m, L^{(s)}); the ones vector is neither."""
        if t.op == "symbol":
            kind = self.table.get(t.name, "")
            return kind.startswith("batch_") or kind == "acc" or t.name == "m" or t.sample is not None
        return any(self.uses_batch(a) for a in t.args)

    def mixed_symbol(self, t: Term) -> Term | None:
        """A per-sample symbol (x, a, z, delta, y) in a term that also has batch symbols: per-sample
        symbols stay per-sample, so such a term has no reading (delta^2 (a^1)^T / m is not the batch's
        Delta^2 (A^1)^T / m). None when the term does not mix them."""
        if not self.uses_batch(t):
            return None
        return next((s for _, s in subterms(t) if s.op == "symbol" and s.sample is None and
                     self.table.get(s.name) in PER_SAMPLE_KINDS), None)

def subterms(t: Term, path=()):
    yield path, t
    for i, a in enumerate(t.args):
        yield from subterms(a, path + (i,))


def replace_at(t: Term, path, new: Term) -> Term:
    if not path:
        return new
    args = list(t.args)
    args[path[0]] = replace_at(args[path[0]], path[1:], new)
    return replace(t, args=tuple(args))

def at(t, path):
    for i in path:
        t = t.args[i]
    return t

def free_letters(t: Term, bound=frozenset()) -> list[str]:
    if t.op == "sum":
        return free_letters(t.args[0], bound | {t.name})
    out = [i for i in t.indices if isinstance(i, str) and i not in bound] if t.op in ("symbol", "iverson") else []
    if t.sample is not None and t.sample not in bound:
        out.append(t.sample)
    for a in t.args:
        out += [i for i in free_letters(a, bound) if i not in out]
    return list(dict.fromkeys(out))

def mixed_message(symbol: Term, meaning: Meaning) -> str:
    n = meaning.n
    names = ", ".join(base_name(x) for x in (n.batch_delta, n.batch_act, n.batch_input))
    return (f"the claim mixes the per-sample {render(symbol)} with batch symbols (m, the batch matrices, the "
            f"accumulator): a per-sample symbol is one sample's; write the batch's matrices (e.g. {names}) "
            f"throughout, or leave out m and the batch symbols for one sample")


def activation(t: Term, meaning: Meaning):
    row = activation_row(t, meaning)
    if t.prime and row.vector:
        a, y = base_name(meaning.n.act), base_name(meaning.n.target)
        raise DeriveError(f"claim: {render(t)}: {row.name} has a Jacobian, not an entry-wise derivative; with "
                          f"cross-entropy the output delta is {a} - {y} (no extra derivative factor), otherwise "
                          f"write the Jacobian (\\operatorname{{diag}}({a}) - {a} {a}^T) times the gradient")
    return row


def activation_row(t: Term, meaning: Meaning):
    from .. import rules

    arg = t.args[0]
    layer = meaning.layer("z", arg.label) if arg.op == "symbol" and meaning.table.get(arg.name) in ("z", "batch_z") \
        else None
    if t.name in ("sigmoid", "relu", "tanh", "softplus", "identity"):
        return rules.activation(t.name)
    if t.name == "leaky_relu":        # with the layer's slope when the layer is a leaky ReLU
        own = meaning.q.activation(layer) if layer is not None else None
        return own if own is not None and own.name == "leaky_relu" else rules.activation("leaky_relu")
    if layer is not None:             # f, g, softmax: the layer's own activation
        return meaning.q.activation(layer)
    raise DeriveError(f"claim: cannot tell which layer's activation {t.name}(...) means; write it of z, "
                      f"e.g. {t.name}'(z^{{2}})")

def parameter_names(result) -> str:
    """What --param accepts for this network, labels as the notation prints them."""
    n = profile(result.spec.notation, result.spec.symbols)
    weight = "Theta" if "Theta" in base_name(n.weights) else "W"
    names = [f"{weight}{l}" for l in range(1, result.spec.depth + 1)]
    names += [f"b{l}" for l in range(1, result.spec.depth + 1) if result.spec.layers[l - 1].bias]
    names += [f"delta{l + n.node_shift}" for l in range(1, result.spec.depth + 1)]
    return ", ".join(names)


def target(result, param: str) -> Term:
    """What a claim is about, as a term: dL/dW^l, dL/db^l, delta^l, or one of their entries. Labels are
    the notation's: Ng's delta3 is the \\delta^{(3)} the documents print (the output layer's)."""
    name_of = parse_parameter(param)
    if name_of is None:
        raise DeriveError(f"--param {param!r}: expected one of {parameter_names(result)}, or one entry in the "
                          f"notation's index order such as W1[2,2] or b1[3]")
    n = profile(result.spec.notation, result.spec.symbols)
    kind, label, indices, layer = name_of.kind, name_of.label, name_of.indices, name_of.layer(n)
    if indices and len(indices) != (2 if kind == "W" else 1):
        raise DeriveError(f"--param {param}: {'a weight entry needs two indices' if kind == 'W' else 'one index'}")
    if not 1 <= layer <= result.spec.depth or (kind == "b" and not result.spec.layers[layer - 1].bias):
        raise DeriveError(f"--param {param}: the network has no such parameter; in the {n.name} notation it has "
                          + parameter_names(result))
    if kind == "delta":
        return Term("symbol", name=n.delta.lstrip("\\"), label=label, indices=indices)
    name = base_name(n.weights if kind == "W" else n.bias)
    if kind == "b" and n.bias_folded:             # Ng's b^l is column 0 of Theta^(l)
        name += "_col0"
    return Term("partial", (Term("symbol", name=n.loss.lstrip("\\")),
                            Term("symbol", name=name, label=layer, indices=indices)))


def parameter_layer(result, param: str) -> tuple[str, int] | None:
    """(weight | bias | delta, layer) of a whole-matrix --param, or None for an entry."""
    name_of = parse_parameter(param)
    if name_of is None or name_of.indices:
        return None
    n = profile(result.spec.notation, result.spec.symbols)
    return {"W": "weight", "b": "bias", "delta": "delta"}[name_of.kind], name_of.layer(n)
