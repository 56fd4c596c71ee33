"""Network descriptions: the Python API, the YAML format, and their validation.

Sizes are positive integers or symbol names (n_0, m); numbers such as a loss scale are
read by `fractions.Fraction`, never evaluated.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Union

from .errors import SpecError

Size = Union[int, str]

# Names a symbolic L2 strength may not take: index letters, the sample count, and the names the
# notation profiles give the loss and the network's quantities (L = L * ... would be printed).
L2_RESERVED = frozenset("i j k p q s m n e d f g h L J E W w b z a x y t o A X Y Z O G D T Theta theta "
                           "delta Delta sigma pi".split())
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
SPEC_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
NOTATIONS = ("nielsen", "ng", "rashid", "fromto", "rowvec")
ACTIVATIONS = ("identity", "leaky_relu", "relu", "sigmoid", "softmax", "softplus", "tanh")
LOSSES = ("binary_cross_entropy", "cross_entropy", "generic", "squared_error")
REDUCTIONS = ("mean", "sum")
# Limits, checked before any work: derive + every step check is about 2 ms per layer, and the
# numeric oracle's cost grows with units^2 x samples per layer (see README, Limits).
MAX_LAYERS = 1000
MAX_UNITS = 10_000
MAX_SAMPLES = 10_000
MAX_UNITS_TIMES_SAMPLES = 1_000_000
RESERVED_NAMES = ("i", "j", "k", "p", "q", "s", "L", "E", "J")


@dataclass(frozen=True)
class Layer:
    units: Size
    activation: str = "sigmoid"
    bias: bool = True
    slope: Fraction | None = None  # leaky_relu only


@dataclass(frozen=True)
class LossSpec:
    kind: str = "squared_error"
    scale: Fraction | None = None       # None: the loss's own default (1/2 for squared error)
    reduction: str = "mean"             # over samples, when samples != 1
    l2: Fraction | str | None = None    # lambda/2 sum_l ||W^l||^2


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    input: Size
    layers: tuple[Layer, ...]
    loss: LossSpec = field(default_factory=LossSpec)
    samples: Size = 1
    title: str = ""
    notation: str = "nielsen"
    symbols: tuple[tuple[str, str], ...] = ()   # per-spec overrides of notation names
    title_zh: str = ""                          # the title of the Chinese documents
    compare: tuple["Comparison", ...] = ()      # formulas of an existing text, judged beside the derivation

    def __post_init__(self):
        validate(self)

    @property
    def sizes(self) -> tuple[Size, ...]:
        return (self.input, *(layer.units for layer in self.layers))

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def is_concrete(self) -> bool:
        return all(isinstance(s, int) for s in self.sizes)

    def with_notation(self, notation: str) -> "NetworkSpec":
        return replace(self, notation=notation)


def require_dense(spec, what: str) -> None:
    """The commands that take dense chains only so far say so by name, before any work."""
    if not isinstance(spec, NetworkSpec):
        from .errors import DeriveError

        raise DeriveError(f"{spec.name}: this network has normalization, dropout, skips, recurrence, attention, "
                          f"feature maps or one of the newer losses; {what} takes dense chains only")


def network(name: str, input: Size, layers: list, loss: str | dict | LossSpec = "squared_error",
            samples: Size = 1, title: str = "", notation: str = "nielsen", symbols: dict | None = None) -> NetworkSpec:
    """Python API: `network("xor", 2, [(4, "sigmoid"), (1, "sigmoid")], loss="squared_error")`."""
    return from_mapping({
        "name": name, "input": input, "title": title, "notation": notation, "samples": samples,
        "layers": [_layer_mapping(l) for l in layers],
        "loss": loss if not isinstance(loss, LossSpec) else {
            "kind": loss.kind, **({"scale": str(loss.scale)} if loss.scale is not None else {}),
            "reduction": loss.reduction, **({"l2": str(loss.l2)} if loss.l2 is not None else {})},
        **({"symbols": symbols} if symbols else {}),
    })


def _layer_mapping(layer) -> dict:
    if isinstance(layer, Layer):
        out = {"units": layer.units, "activation": layer.activation, "bias": layer.bias}
        return out | ({"slope": str(layer.slope)} if layer.slope is not None else {})
    if isinstance(layer, dict):
        return layer
    if isinstance(layer, (tuple, list)) and len(layer) == 2:
        return {"units": layer[0], "activation": layer[1]}
    raise SpecError("layers", layer, "a Layer, a mapping or a (units, activation) pair")


# ------------------------------------------------------------------------- validation

def _size(value: Any, field_name: str) -> Size:
    if isinstance(value, bool):
        raise SpecError(field_name, value, "a positive integer or a symbol name such as n_1")
    if isinstance(value, int):
        if not 1 <= value <= MAX_UNITS:
            raise SpecError(field_name, value, f"a positive integer up to {MAX_UNITS} or a symbol name such as n_1")
        return value
    if isinstance(value, str) and NAME_RE.match(value):
        if value in RESERVED_NAMES:
            raise SpecError(field_name, value, "a symbol name other than " + ", ".join(RESERVED_NAMES) +
                            " (those letters are summation indices and the loss)")
        return value
    raise SpecError(field_name, _short(value), "a positive integer or a symbol name such as n_1 (letters, digits, _)")


MAX_NUMBER_CHARS = 40                      # 1/2, 0.001, 1e-3: a spec's constants are short
NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,3})?(/\d+)?$")


def _number(value: Any, field_name: str, positive: bool = True) -> Fraction:
    """A number read by Fraction after its form and size are checked: no 10^(10^8), no 5000 digits."""
    if isinstance(value, bool):
        raise SpecError(field_name, value, "a number such as 1, 0.5 or 1/2")
    text = str(value).strip() if isinstance(value, (int, float, str)) else None
    if isinstance(value, int) and abs(value) > 10 ** 12:
        text = None
    try:
        number = Fraction(text) if text is not None and len(text) <= MAX_NUMBER_CHARS and NUMBER_RE.match(text) \
            else None
    except (ValueError, ZeroDivisionError, OverflowError):
        number = None
    if number is not None and not (Fraction(1, 10 ** 12) <= abs(number) <= 10 ** 12 or number == 0):
        raise SpecError(field_name, _short(value), "a number between 1e-12 and 1e12")
    if number is None or (positive and number <= 0):
        raise SpecError(field_name, _short(value), "a positive number such as 1, 0.5 or 1/2" if positive else "a number")
    return number


def _short(value: Any) -> str:
    """A bounded picture of a bad value for a message: a YAML alias bomb or a megabyte string is
    never expanded."""
    import reprlib

    shorten = reprlib.Repr()
    shorten.maxstring, shorten.maxother, shorten.maxlevel = 60, 60, 2
    shorten.maxlist = shorten.maxdict = shorten.maxtuple = 4
    if isinstance(value, str) and len(value) <= 60:
        return value
    return _Verbatim(shorten.repr(value))


class _Verbatim(str):
    """Already a repr: SpecError's !r shows it as it is."""

    def __repr__(self):
        return str(self)


def validate(spec: NetworkSpec) -> None:
    if not isinstance(spec.name, str) or not SPEC_NAME_RE.match(spec.name):
        raise SpecError("name", spec.name, "letters, digits, '-' and '_' (it names the output files)")
    _size(spec.input, "input")
    _size(spec.samples, "samples")
    if spec.notation not in NOTATIONS:
        raise SpecError("notation", spec.notation, "one of " + ", ".join(NOTATIONS))
    if not spec.layers:
        raise SpecError("layers", [], "a non-empty list of layers")
    if len(spec.layers) > MAX_LAYERS:
        raise SpecError("layers", f"{len(spec.layers)} layers", f"at most {MAX_LAYERS} layers")
    for number, layer in enumerate(spec.layers, start=1):
        where = f"layers[{number}]"
        _size(layer.units, f"{where}.units")
        if layer.activation not in ACTIVATIONS:
            raise SpecError(f"{where}.activation", layer.activation, "one of " + ", ".join(ACTIVATIONS))
        if layer.activation == "softmax" and layer.units == 1:
            raise SpecError(f"{where}.units", 1, "at least 2 units for softmax (one unit is always 1)")
        if layer.slope is not None and layer.activation != "leaky_relu":
            raise SpecError(f"{where}.slope", str(layer.slope), "a slope only with activation leaky_relu")
    loss = spec.loss
    if loss.kind not in LOSSES:
        raise SpecError("loss.kind", loss.kind, "one of " + ", ".join(LOSSES))
    if loss.reduction not in REDUCTIONS:
        raise SpecError("loss.reduction", loss.reduction, "one of " + ", ".join(REDUCTIONS))
    output = spec.layers[-1]
    if loss.kind in ("binary_cross_entropy", "cross_entropy") and output.activation not in ("sigmoid", "softmax"):
        raise SpecError("loss.kind", loss.kind,
                        f"an output activation with values in (0, 1) (sigmoid or softmax) for this loss; "
                        f"the output layer uses {output.activation}")
    if loss.kind == "cross_entropy" and output.units == 1:
        raise SpecError("loss.kind", loss.kind, "at least 2 output units for categorical cross-entropy "
                        "(use binary_cross_entropy for one unit)")
    for key, value in spec.symbols:
        if not isinstance(key, str) or not NAME_RE.match(key) or not isinstance(value, str) or len(value) > 40:
            raise SpecError(f"symbols.{str(key)[:40]}", _short(value), "a symbol name mapped to a short name")
    from .notation import profile

    profile(spec.notation, spec.symbols)        # every override refused here, before anything is written
    if isinstance(spec.samples, int) and spec.samples > MAX_SAMPLES:
        raise SpecError("samples", spec.samples, f"at most {MAX_SAMPLES} numeric samples; write a symbol such "
                        "as m for a batch of any size")
    width = spec.samples if isinstance(spec.samples, int) else 1
    for number, units in enumerate([spec.input] + [layer.units for layer in spec.layers]):
        if isinstance(units, int) and units * width > MAX_UNITS_TIMES_SAMPLES:
            where = "input" if number == 0 else f"layers[{number}].units"
            raise SpecError(where, units, f"at most {MAX_UNITS_TIMES_SAMPLES} units x samples per layer "
                            f"({units} x {width} here); give the size as a symbol such as n_{number}")


# ------------------------------------------------------------------------------ YAML

SPEC_FIELDS = ("name", "title", "notation", "input", "layers", "loss", "samples", "symbols", "compare")
COMPARE_FIELDS = ("param", "claim", "source", "note")
MAX_COMPARISONS = 40


@dataclass(frozen=True)
class Comparison:
    """A formula as an existing text writes it (LaTeX), for the parameter (or delta) it claims to give;
    judged like `derive verify` and typeset beside derive's checked result."""
    param: str
    claim: str
    source: str = ""
    note: str = ""        # what the text says around it, shown with the verdict
    source_zh: str = ""   # the same in the Chinese documents (source: {en: ..., zh: ...})
    note_zh: str = ""


def _line_of_text(value, field: str) -> str:
    import unicodedata

    if not isinstance(value, str) or len(value) > 200:
        raise SpecError(field, _short(value), "a line of text (at most 200 characters)")
    odd = next((ch for ch in value if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn")), None)
    if odd is not None:
        raise SpecError(field, _short(value), f"printable text; U+{ord(odd):04X} is a control or formatting "
                        "character (such as a line break or a right-to-left override)")
    return value


def _comparisons(value) -> tuple[Comparison, ...]:
    if not isinstance(value, list) or len(value) > MAX_COMPARISONS:
        raise SpecError("compare", _short(value), f"a list (at most {MAX_COMPARISONS}) of "
                        "{param: W1, claim: '<LaTeX as the text writes it>', source: 'notes, p. 3'}")
    out = []
    for n, item in enumerate(value, start=1):
        where = f"compare[{n}]"
        if not isinstance(item, dict):
            raise SpecError(where, _short(item), "a mapping with param, claim and optionally source and note")
        unknown = [k for k in item if k not in COMPARE_FIELDS]
        if unknown:
            raise SpecError(f"{where}.{unknown[0]}", None, f"one of the fields {', '.join(COMPARE_FIELDS)}")
        for key in ("param", "claim"):
            if not isinstance(item.get(key), (str, int)) or isinstance(item.get(key), bool) or not str(item[key]).strip():
                raise SpecError(f"{where}.{key}", _short(item.get(key)), "a value: this field is required" if key not in item
                                else "text" if key == "claim" else "a parameter such as W1, b2 or delta3")
        claim = str(item["claim"])
        if len(claim) > 4000:
            raise SpecError(f"{where}.claim", _short(claim), "a formula of at most 4000 characters")
        texts = {}
        for key in ("source", "note"):
            value = item.get(key, "")
            if isinstance(value, dict):          # {en: ..., zh: ...}
                unknown = [k for k in value if k not in ("en", "zh")]
                if unknown:
                    raise SpecError(f"{where}.{key}.{unknown[0]}", None, "a language: en or zh")
                texts[key] = _line_of_text(str(value.get("en", "")), f"{where}.{key}.en")
                texts[key + "_zh"] = _line_of_text(str(value.get("zh", "")), f"{where}.{key}.zh")
            else:
                texts[key] = _line_of_text(str(value), f"{where}.{key}")
        out.append(Comparison(str(item["param"]).strip(), claim, **texts))
    return tuple(out)
LAYER_FIELDS = ("units", "activation", "bias", "slope")
LOSS_FIELDS = ("kind", "scale", "reduction", "l2")


def _check_fields(mapping: dict, accepted: tuple[str, ...], where: str) -> None:
    if not isinstance(mapping, dict):
        raise SpecError(where or "spec", _short(mapping), "a mapping with fields " + ", ".join(accepted))
    for key in mapping:
        if key not in accepted:
            raise SpecError(f"{where + '.' if where else ''}{str(key)[:40]}", _short(mapping[key]),
                            "no such field; accepted fields: " + ", ".join(accepted))


def from_mapping(data: Any) -> NetworkSpec:
    from .blocks import spec as blocks

    if isinstance(data, dict) and blocks.uses_blocks(data):    # normalization, dropout, skips, newer losses
        return blocks.from_mapping(data)
    _check_fields(data, SPEC_FIELDS, "")
    for required in ("name", "input", "layers"):
        if required not in data:
            raise SpecError(required, None, "a value: this field is required")
    raw_layers = data["layers"]
    if not isinstance(raw_layers, list):
        raise SpecError("layers", _short(raw_layers), "a non-empty list of layers")
    layers = []
    for number, raw in enumerate(raw_layers, start=1):
        where = f"layers[{number}]"
        _check_fields(raw, LAYER_FIELDS, where)
        if "units" not in raw:
            raise SpecError(f"{where}.units", None, "a positive integer or a symbol name: units is required")
        act = raw.get("activation", "sigmoid")
        if not isinstance(act, str):
            raise SpecError(f"{where}.activation", _short(act), "one of " + ", ".join(ACTIVATIONS))
        bias = raw.get("bias", True)
        if not isinstance(bias, bool):
            raise SpecError(f"{where}.bias", _short(bias), "true or false")
        slope = _number(raw["slope"], f"{where}.slope") if "slope" in raw else None
        layers.append(Layer(units=_size(raw["units"], f"{where}.units"), activation=act, bias=bias, slope=slope))
    raw_loss = data.get("loss", {"kind": "squared_error"})
    if isinstance(raw_loss, str):
        raw_loss = {"kind": raw_loss}
    _check_fields(raw_loss, LOSS_FIELDS, "loss")
    l2 = raw_loss.get("l2")
    if l2 is not None:
        l2 = l2 if isinstance(l2, str) and NAME_RE.match(l2) else _number(l2, "loss.l2")
    loss = LossSpec(
        kind=str(raw_loss.get("kind", "squared_error")),
        scale=_number(raw_loss["scale"], "loss.scale") if "scale" in raw_loss else None,
        reduction=str(raw_loss.get("reduction", "mean")),
        l2=l2,
    )
    if isinstance(l2, str):
        sizes = {str(x) for x in [data["input"], data.get("samples", 1)] + [layer.units for layer in layers]}
        if l2 in L2_RESERVED or l2 in sizes:
            raise SpecError("loss.l2", l2, "a number or a name of its own for the strength, such as lambda; "
                            "this name already means a size, the sample count, an index, the loss or a quantity")
    symbols = data.get("symbols") or {}
    if not isinstance(symbols, dict):
        raise SpecError("symbols", _short(symbols), "a mapping from symbol roles to names")
    title = data.get("title", "")
    title_zh = ""
    if isinstance(title, dict):          # {en: ..., zh: ...}: a title per language
        unknown = [k for k in title if k not in ("en", "zh")]
        if unknown:
            raise SpecError(f"title.{unknown[0]}", None, "a language: en or zh")
        title_zh = _line_of_text(title.get("zh", ""), "title.zh")
        title = _line_of_text(title.get("en", ""), "title.en")
    else:
        title = _line_of_text(title, "title")
    compare = _comparisons(data["compare"]) if "compare" in data else ()
    from .titles import split_title

    for field_name, text in (("title", title), ("title.zh", title_zh)):
        split_title(text, field_name)        # mathematics in a title must read now, not at typesetting
    for key, value in symbols.items():
        if not isinstance(key, str) or not isinstance(value, (str, int)) or isinstance(value, bool):
            raise SpecError("symbols", _short(symbols), "a mapping from symbol roles (text) to names (text)")
    return NetworkSpec(
        name=str(data["name"]) if isinstance(data["name"], (str, int)) else data["name"],
        title=title, notation=data.get("notation", "nielsen"),
        input=_size(data["input"], "input"), layers=tuple(layers), loss=loss,
        samples=_size(data.get("samples", 1), "samples"),
        symbols=tuple(sorted((str(k), str(v)) for k, v in symbols.items())),
        title_zh=title_zh, compare=compare,
    )


MAX_SPEC_BYTES = 1_000_000


def load(path: str | Path) -> NetworkSpec:
    """A spec from a YAML file, or a built-in example by its name (`derive examples` lists them) when
    no file of that name exists."""
    from .files import read_input
    from .resources import example_text

    example = None if Path(path).exists() else example_text(str(path))
    if example is not None:
        return loads(example, f"{path}.yaml")
    path = Path(path)
    raw = read_input(path, MAX_SPEC_BYTES, "spec file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError("spec file", str(path), "UTF-8 text") from None
    return loads(text, str(path))


def loads(text: str, origin: str = "spec") -> NetworkSpec:
    """A spec from YAML text; origin names it in error messages."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise SpecError("spec file", origin, "YAML nested less deeply") from None
    except ValueError as exc:       # e.g. an integer of more than 4300 digits
        raise SpecError("spec file", origin, f"YAML whose values can be read ({str(exc)[:80]})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        place = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError("YAML", f"{getattr(exc, 'problem', exc)}{place}", "well-formed YAML", origin) from None
    try:
        return from_mapping(data)
    except SpecError as exc:
        raise SpecError(exc.field, exc.value, exc.accepted, origin) from None
