"""Notation profiles: names, index order, matrix layout and labels of every course's backprop.

The derivation logic is one. A profile changes what the reader sees (names, labels, index
letters) and two things the engine must know: the index order of weight entries and the
matrix layout, because those move the transposes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .errors import DeriveError

INDEX_ORDERS = ("to_from", "from_to")       # w_jk: to j from k (Nielsen), or from j to k (Rashid)
LAYOUTS = ("column", "transposed", "row")    # W a + b; W^T a + b; a W + b with samples as rows


@dataclass(frozen=True)
class Notation:
    name: str
    index_order: str = "to_from"
    layout: str = "column"
    weight: str = "w"            # entries w^l_{jk}
    weights: str = "W"           # the matrix W^l
    bias: str = "b"
    pre: str = "z"
    act: str = "a"
    delta: str = r"\delta"
    input: str = "x"
    target: str = "y"
    loss: str = "L"
    output: str = ""             # a name for the network's output, e.g. y_{out}; "" keeps a^L
    batch_pre: str = "Z"
    batch_delta: str = r"\Delta"
    batch_act: str = "A"
    batch_input: str = "X"
    batch_target: str = "Y"
    accumulator: str = "G"       # the running sum of per-sample gradients
    size: str = "n"              # the unit count of the general layer: n_{l}
    layer: str = "l"             # a layer label: l, or (l) as Ng writes it
    node_shift: int = 0          # Ng and 000 number the input layer 1: a^l is printed a^{l+1}
    layer_labels: str = "always"  # or "if_deep": no labels on a one-layer network (Rashid)
    bias_folded: bool = False    # Ng: the bias is column 0 of Theta, with a_0 = 1
    residual: str = "output_minus_target"   # or target_minus_output: E = sum (t - o)^2
    transpose: str = "T"
    functions: tuple[tuple[str, str], ...] = ()      # activation -> LaTeX name, e.g. sigmoid -> g
    indices: tuple[tuple[str, str], ...] = ()        # engine index letter -> printed letter

    def label(self, layer, node: bool = False) -> str:
        """The printed layer label; `layer` may be the general layer l (printed l, l+1, ...)."""
        return self.layer.replace("l", str(layer + (self.node_shift if node else 0)).replace(" ", ""))

    def index_name(self, letter: str) -> str:
        return dict(self.indices).get(letter, letter)

    def function_name(self, activation: str) -> str | None:
        return dict(self.functions).get(activation)


PROFILES = {
    "nielsen": Notation("nielsen"),
    "ng": Notation("ng", size="s", weight=r"\Theta", weights=r"\tilde{\Theta}", bias=r"\Theta", loss="J", layer="(l)",
                   node_shift=1, bias_folded=True, batch_delta=r"\boldsymbol{\delta}", accumulator=r"\Delta",
                   functions=(("sigmoid", "g"),),
                   indices=(("j", "i"), ("k", "j"), ("i", "k"), ("p", "p"))),
    "rashid": Notation("rashid", index_order="from_to", act="o", input="o", target="t", loss="E", pre="x",
                       layer_labels="if_deep", residual="target_minus_output", batch_input="O", batch_act="O",
                       indices=(("j", "k"), ("k", "j"), ("p", "q"))),
    "fromto": Notation("fromto", index_order="from_to", layout="transposed", node_shift=1,
                       output=r"y_{\mathrm{out}}", indices=(("j", "k"), ("k", "j"))),
    "rowvec": Notation("rowvec", index_order="from_to", layout="row", indices=(("j", "k"), ("k", "j"))),
}

ROLES = ("weight", "weights", "bias", "pre", "act", "delta", "input", "target", "loss", "output", "activation")
_GREEK = ("alpha", "beta", "gamma", "delta", "epsilon", "eta", "theta", "kappa", "lambda", "mu", "nu", "xi",
          "pi", "rho", "sigma", "tau", "phi", "chi", "psi", "omega", "Gamma", "Delta", "Theta", "Lambda",
          "Xi", "Pi", "Sigma", "Phi", "Psi", "Omega")
_PLAIN = re.compile(r"^[A-Za-z]{1,3}$")


def symbol_tex(value: str, role: str) -> str:
    """A user's symbol name made into LaTeX only from a whitelist: letters, or a Greek letter's name."""
    name = value.strip().lstrip("\\")
    if name in _GREEK:
        return "\\" + name
    if _PLAIN.match(name):
        return name if len(name) == 1 else r"\mathrm{" + name + "}"
    raise DeriveError(f"symbols.{role}: {value!r} is not accepted; expected one to three letters or "
                      f"a Greek letter's name such as theta")


def profile(name: str, overrides: tuple[tuple[str, str], ...] = ()) -> Notation:
    if name not in PROFILES:
        raise DeriveError(f"notation {name!r} is not known; profiles: {', '.join(PROFILES)}")
    chosen = PROFILES[name]
    for role, value in overrides:
        if role not in ROLES:
            raise DeriveError(f"symbols.{role}: no such symbol role; roles: {', '.join(ROLES)}")
        tex = symbol_tex(str(value), role)
        if role == "activation":
            chosen = replace(chosen, functions=tuple((a, tex) for a in
                                                     ("identity", "sigmoid", "tanh", "relu", "leaky_relu",
                                                      "softplus", "softmax")))
        else:
            chosen = replace(chosen, **{role: tex})
    return chosen


PARAMETER_NAME = re.compile(r"(W|w|Theta|Θ|θ|theta|b|delta|δ)\s*\^?\{?\(?([0-9]+)\)?\}?"
                            r"(?:\[([0-9]+)(?:,\s*([0-9]+))?\])?")
PARAMETER_KINDS = {"W": "W", "w": "W", "Theta": "W", "Θ": "W", "θ": "W", "theta": "W", "b": "b",
                   "delta": "delta", "δ": "delta"}


@dataclass(frozen=True)
class ParameterName:
    """A parameter (or delta) as a user names it: W2, Theta1, b1, delta3, W1[2,3]. The label is the one
    the notation prints: Ng's delta3 is the output layer's delta^{(3)}."""
    kind: str                  # W | b | delta
    label: int
    indices: tuple[int, ...] = ()

    def layer(self, notation: Notation) -> int:
        return self.label - notation.node_shift if self.kind == "delta" else self.label


def parse_parameter(text: str) -> ParameterName | None:
    m = PARAMETER_NAME.fullmatch(str(text).strip())
    if not m:
        return None
    return ParameterName(PARAMETER_KINDS[m.group(1)], int(m.group(2)), tuple(int(g) for g in m.group(3, 4) if g))
