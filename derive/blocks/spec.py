"""Networks beyond the dense chain: layers with normalization, dropout and named skip connections,
and the losses that go with them. A spec whose layers or loss use none of these stays a
`derive.spec.NetworkSpec` (the dense chain); one that uses any of them is a `BlockSpec`.

    layers:
      - {units: 4, activation: relu, norm: batch, name: h1}
      - {units: 4, activation: relu, skip: h1, dropout: 1/5}
      - {units: 3, activation: identity}
    loss: {kind: softmax_cross_entropy}
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction

from ..errors import SpecError
from .. import spec as base

# A layer: z = W a + b; [norm] u = gamma * normalize(z) + beta; h = f(u); [dropout] h~ = M * h / (1 - p);
# [skip] a = h~ + a^(skip).
BLOCK_LAYER_FIELDS = ("units", "activation", "bias", "slope", "name", "kind", "norm", "eps", "dropout", "skip", "key",
                      "channels", "kernel", "stride", "padding", "mode", "size")
MAP_FIELDS = ("channels", "height", "width", "length")
BLOCK_LOSS_FIELDS = ("kind", "scale", "reduction", "delta", "margin")
KINDS = ("dense", "rnn", "attention", "conv", "pool")
MAP_KINDS = ("conv", "pool")               # they read and write feature maps: channels x rows (x columns)
POOL_MODES = ("max", "avg")
SEQUENCE_KINDS = ("rnn", "attention")      # their columns are time steps or tokens, not samples
NORMS = ("batch", "layer")
ACTIVATIONS = tuple(sorted(set(base.ACTIVATIONS) | {"log_softmax"}))
VECTOR_ACTIVATIONS = ("softmax", "log_softmax")
LOSSES = ("binary_cross_entropy", "cross_entropy", "hinge", "huber", "nll", "softmax_cross_entropy",
          "squared_error")
# the loss -> the output activations it is defined for (None: any entry-wise one)
LOSS_OUTPUTS = {"cross_entropy": ("softmax",), "binary_cross_entropy": ("sigmoid",), "nll": ("log_softmax",),
                "softmax_cross_entropy": ("identity",), "hinge": ("identity",), "huber": None,
                "squared_error": None}
NEW_LOSSES = ("hinge", "huber", "nll", "softmax_cross_entropy")
DEFAULT_EPS = Fraction(1, 100000)
# Every step is checked by central differences of the forward pass at the spec's own numbers: numeric sizes
# stay small (a symbol such as n_1 or m is derived for any size and checked at small ones).
MAX_NUMERIC_SIZE = 64
MAX_MAP_ENTRIES = 256
# the derivation's index letters (derive/blocks/symbols.py makes them SymPy symbols): no size may take one
BLOCK_NOTATIONS = ("nielsen", "rowvec")
INDEX_LETTERS = ("i", "j", "k", "p", "s", "t", "r", "c", "d", "q", "u", "e", "f", "g")
INPUT_NAME = "input"


@dataclass(frozen=True)
class BlockLayer:
    units: base.Size
    activation: str = "sigmoid"
    bias: bool = True
    slope: Fraction | None = None
    name: str = ""                   # for skip connections; "" when none is given
    norm: str | None = None          # batch | layer
    eps: Fraction = DEFAULT_EPS
    dropout: Fraction | None = None  # the drop probability p; the mask M is given (a fixed 0/1 matrix)
    skip: str | None = None          # a = h + a^(skip): the name of an earlier layer, or "input"
    kind: str = "dense"              # dense | rnn (Elman: z_t = W a_t + U h_(t-1) + b) | attention (single head)
    key: base.Size | None = None     # attention: the size of queries and keys (default: units)
    kernel: int = 0                  # conv: the kernel's side; pool: the window's side (stride = side)
    stride: int = 1
    padding: int = 0
    mode: str = ""                   # pool: max or avg


@dataclass(frozen=True)
class BlockLoss:
    kind: str = "squared_error"
    scale: Fraction | None = None
    reduction: str = "mean"
    delta: Fraction = Fraction(1)    # Huber: quadratic for |r| <= delta
    margin: Fraction = Fraction(1)   # hinge: the margin Delta of the multiclass SVM loss


@dataclass(frozen=True)
class BlockSpec:
    name: str
    input: base.Size
    layers: tuple[BlockLayer, ...]
    loss: BlockLoss = field(default_factory=BlockLoss)
    samples: base.Size = 1
    title: str = ""
    title_zh: str = ""
    notation: str = "nielsen"
    steps: base.Size | None = None   # a sequence network: the columns are its T time steps or tokens
    input_map: tuple[int, ...] | None = None   # a feature map: (channels, length) or (channels, height, width)

    def __post_init__(self):
        validate(self)

    @property
    def sizes(self) -> tuple[base.Size, ...]:
        """Entries per column of each layer's output (a feature map: channels x rows x columns)."""
        return tuple(self.entries(l) for l in range(self.depth + 1))

    def entries(self, l: int) -> base.Size:
        shape = self.map_shape(l)
        if shape is not None:
            out = 1
            for n in shape:
                out *= n
            return out
        return self.input if l == 0 else self.layers[l - 1].units

    def map_shape(self, l: int) -> tuple[int, ...] | None:
        """(channels, length) or (channels, height, width) of a feature map, None for a vector."""
        if l == 0:
            return self.input_map
        layer, before = self.layers[l - 1], self.map_shape(l - 1)
        if layer.kind not in MAP_KINDS or before is None:
            return None
        if layer.kind == "pool":
            return (before[0], *(n // layer.kernel for n in before[1:]))
        return (layer.units, *((n + 2 * layer.padding - layer.kernel) // layer.stride + 1 for n in before[1:]))

    @property
    def has_maps(self) -> bool:
        return self.input_map is not None

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def columns(self) -> base.Size:
        """The columns of every node: the samples, or the time steps (tokens) of a sequence network."""
        return self.steps if self.steps is not None else self.samples

    @property
    def is_sequence(self) -> bool:
        return self.steps is not None

    @property
    def is_concrete(self) -> bool:
        return all(isinstance(s, int) for s in self.sizes) and isinstance(self.samples, int)

    def source_of(self, l: int) -> int | None:
        """The layer whose output layer l adds (0 for the input), or None."""
        skip = self.layers[l - 1].skip
        if skip is None:
            return None
        if skip == INPUT_NAME:
            return 0
        return next(k for k, layer in enumerate(self.layers, start=1) if layer.name == skip)

    def with_notation(self, notation: str) -> "BlockSpec":
        return replace(self, notation=notation)


def uses_blocks(data: dict) -> bool:
    """Whether a spec mapping needs this engine: a field or value the dense chain does not have."""
    layers = data.get("layers") if isinstance(data, dict) else None
    loss = data.get("loss") if isinstance(data, dict) else None
    kind = loss.get("kind") if isinstance(loss, dict) else loss
    new_fields = set(BLOCK_LAYER_FIELDS) - set(base.LAYER_FIELDS)
    return (isinstance(layers, list) and any(isinstance(l, dict) and (new_fields & set(l) or
                                                                     l.get("activation") == "log_softmax")
                                             for l in layers)) \
        or kind in NEW_LOSSES or (isinstance(loss, dict) and bool({"delta", "margin"} & set(loss))) \
        or (isinstance(data, dict) and ("steps" in data or isinstance(data.get("input"), dict)))


def from_mapping(data: dict) -> BlockSpec:
    for key in data:
        if key not in ("name", "title", "notation", "input", "layers", "loss", "samples", "steps"):
            raise SpecError(str(key)[:40], base._short(data[key]),
                            "no such field for a network with normalization, dropout, skips, recurrent or attention "
                            "layers or the new losses; accepted: name, title, notation, input, layers, loss, samples, "
                            "steps")
    for required in ("name", "input", "layers"):
        if required not in data:
            raise SpecError(required, None, "a value: this field is required")
    if not isinstance(data["layers"], list):
        raise SpecError("layers", base._short(data["layers"]), "a non-empty list of layers")
    layers = tuple(_layer(raw, f"layers[{n}]") for n, raw in enumerate(data["layers"], start=1))
    raw_loss = data.get("loss", {"kind": "squared_error"})
    raw_loss = {"kind": raw_loss} if isinstance(raw_loss, str) else raw_loss
    base._check_fields(raw_loss, BLOCK_LOSS_FIELDS, "loss")
    loss = BlockLoss(kind=str(raw_loss.get("kind", "squared_error")),
                     scale=base._number(raw_loss["scale"], "loss.scale") if "scale" in raw_loss else None,
                     reduction=str(raw_loss.get("reduction", "mean")),
                     delta=base._number(raw_loss.get("delta", 1), "loss.delta"),
                     margin=base._number(raw_loss.get("margin", 1), "loss.margin"))
    title, title_zh = data.get("title", ""), ""
    if isinstance(title, dict):
        unknown = [k for k in title if k not in ("en", "zh")]
        if unknown:
            raise SpecError(f"title.{unknown[0]}", None, "a language: en or zh")
        title_zh = base._line_of_text(title.get("zh", ""), "title.zh")
        title = base._line_of_text(title.get("en", ""), "title.en")
    else:
        title = base._line_of_text(title, "title")
    from ..titles import split_title

    for field_name, text in (("title", title), ("title.zh", title_zh)):
        split_title(text, field_name)
    name = data["name"]
    input_map = _input_map(data["input"]) if isinstance(data["input"], dict) else None
    size = 1 if input_map else base._size(data["input"], "input")
    if input_map:
        for n in input_map:
            size *= n
    return BlockSpec(name=str(name) if isinstance(name, (str, int)) and not isinstance(name, bool) else name,
                     input=size, input_map=input_map, layers=layers, loss=loss,
                     samples=base._size(data.get("samples", 1), "samples"), title=title, title_zh=title_zh,
                     notation=data.get("notation", "nielsen"),
                     steps=base._size(data["steps"], "steps") if "steps" in data else None)


def _input_map(raw: dict) -> tuple[int, ...]:
    base._check_fields(raw, MAP_FIELDS, "input")
    spatial = ("length",) if "length" in raw else ("height", "width")
    for key in ("channels",) + spatial:
        if not isinstance(raw.get(key), int) or isinstance(raw.get(key), bool) or not 1 <= raw[key] <= 64:
            raise SpecError(f"input.{key}", base._short(raw.get(key)), "a number from 1 to 64: a feature map is "
                            "{channels: C, height: H, width: W} or {channels: C, length: N}")
    if "length" in raw and ({"height", "width"} & set(raw)):
        raise SpecError("input.length", raw["length"], "length (1-D) or height and width (2-D), not both")
    return tuple(raw[key] for key in ("channels",) + spatial)


def _small(raw: dict, key: str, where: str, default: int, low: int) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= 16:
        raise SpecError(f"{where}.{key}", base._short(value), f"a whole number from {low} to 16")
    return value


def _layer(raw, where: str) -> BlockLayer:
    base._check_fields(raw, BLOCK_LAYER_FIELDS, where)
    kind = raw.get("kind", "dense")
    if kind in MAP_KINDS:
        return _map_layer(raw, where, kind)
    for key in ("channels", "kernel", "stride", "padding", "mode", "size"):
        if key in raw:
            raise SpecError(f"{where}.{key}", base._short(raw[key]), f"{key} only with kind: conv or pool")
    if "units" not in raw:
        raise SpecError(f"{where}.units", None, "a positive integer or a symbol name: units is required")
    if kind not in KINDS:
        raise SpecError(f"{where}.kind", base._short(kind),
                        "one of " + ", ".join(KINDS) + " (convolution, pooling, recurrent and attention layers "
                        "are not derived yet)")
    bias = raw.get("bias", True)
    if not isinstance(bias, bool):
        raise SpecError(f"{where}.bias", base._short(bias), "true or false")
    name = _layer_name(raw, where)
    skip = raw.get("skip")
    if skip is not None and (not isinstance(skip, str) or not base.NAME_RE.match(skip)):
        raise SpecError(f"{where}.skip", base._short(skip), "the name of an earlier layer, or input")
    norm = raw.get("norm")
    if norm is not None and norm not in NORMS:
        raise SpecError(f"{where}.norm", base._short(norm), "batch or layer")
    eps = base._number(raw["eps"], f"{where}.eps") if "eps" in raw else DEFAULT_EPS
    if eps > Fraction(1, 10):
        raise SpecError(f"{where}.eps", base._short(raw["eps"]), "a small positive number such as 1e-5 (at most 0.1)")
    if "eps" in raw and norm is None:
        raise SpecError(f"{where}.eps", base._short(raw["eps"]), "an eps only with norm: batch or layer")
    dropout = base._number(raw["dropout"], f"{where}.dropout") if "dropout" in raw else None
    if dropout is not None and not dropout < 1:
        raise SpecError(f"{where}.dropout", base._short(raw["dropout"]),
                        "a drop probability p with 0 < p < 1 (the kept units are scaled by 1/(1 - p))")
    act = raw.get("activation", "tanh" if kind == "rnn" else "sigmoid")
    if not isinstance(act, str):
        raise SpecError(f"{where}.activation", base._short(act), "one of " + ", ".join(ACTIVATIONS))
    slope = base._number(raw["slope"], f"{where}.slope") if "slope" in raw else None
    key = base._size(raw["key"], f"{where}.key") if "key" in raw else None
    if key is not None and kind != "attention":
        raise SpecError(f"{where}.key", base._short(raw["key"]), "a key size only with kind: attention")
    if kind == "attention":
        act = raw.get("activation", "identity")
    return BlockLayer(units=base._size(raw["units"], f"{where}.units"), activation=act, bias=bias, slope=slope,
                      name=name, norm=norm, eps=eps, dropout=dropout, skip=skip, kind=kind, key=key)


def _layer_name(raw: dict, where: str) -> str:
    name = raw.get("name", "")
    if name != "" and (not isinstance(name, str) or not base.NAME_RE.match(name) or name == INPUT_NAME):
        raise SpecError(f"{where}.name", base._short(name), "a name of letters, digits and _ (not 'input')")
    return name


def _map_layer(raw: dict, where: str, kind: str) -> BlockLayer:
    allowed = {"conv": ("kind", "channels", "kernel", "stride", "padding", "activation", "bias", "slope", "name"),
               "pool": ("kind", "mode", "size", "name")}[kind]
    extra = [key for key in raw if key not in allowed]
    if extra:
        raise SpecError(f"{where}.{extra[0]}", base._short(raw[extra[0]]), f"a field of a {kind} layer: " +
                        ", ".join(allowed))
    if kind == "pool":
        mode = raw.get("mode", "max")
        if mode not in POOL_MODES:
            raise SpecError(f"{where}.mode", base._short(mode), "max or avg")
        size = _small(raw, "size", where, 2, 1)
        return BlockLayer(units=1, activation="identity", bias=False, name=_layer_name(raw, where), kind="pool",
                          kernel=size, mode=mode)
    if "channels" not in raw or "kernel" not in raw:
        missing = "channels" if "channels" not in raw else "kernel"
        raise SpecError(f"{where}.{missing}", None, "a whole number: a conv layer needs channels and kernel")
    bias = raw.get("bias", True)
    if not isinstance(bias, bool):
        raise SpecError(f"{where}.bias", base._short(bias), "true or false")
    act = raw.get("activation", "relu")
    if not isinstance(act, str):
        raise SpecError(f"{where}.activation", base._short(act), "one of " + ", ".join(ACTIVATIONS))
    slope = base._number(raw["slope"], f"{where}.slope") if "slope" in raw else None
    return BlockLayer(units=_small(raw, "channels", where, 1, 1), activation=str(act), bias=bias, slope=slope,
                      name=_layer_name(raw, where), kind="conv", kernel=_small(raw, "kernel", where, 3, 1),
                      stride=_small(raw, "stride", where, 1, 1), padding=_small(raw, "padding", where, 0, 0))


def _validate_maps(spec: BlockSpec) -> None:
    for l, layer in enumerate(spec.layers, start=1):
        where = f"layers[{l}]"
        before = spec.map_shape(l - 1)
        if layer.kind in MAP_KINDS and before is None:
            what = "the input" if l == 1 else f"layer {l - 1}"
            raise SpecError(f"{where}.kind", layer.kind, f"a feature map before it ({what} is a vector): "
                            "input: {channels: C, height: H, width: W}, then conv or pool layers; a pool or conv "
                            "cannot follow a dense layer")
        if layer.kind == "pool" and any(n % layer.kernel for n in before[1:]):
            raise SpecError(f"{where}.size", layer.kernel, f"a window that tiles the map: "
                            f"{' x '.join(map(str, before[1:]))} is not a multiple of {layer.kernel}")
        if layer.kind == "conv":
            for n in before[1:]:
                span = n + 2 * layer.padding - layer.kernel
                if span < 0 or span % layer.stride:
                    raise SpecError(f"{where}.stride" if span >= 0 else f"{where}.kernel",
                                    layer.stride if span >= 0 else layer.kernel,
                                    f"a kernel and stride that fit the map: (side {n} + 2 x padding "
                                    f"{layer.padding} - kernel {layer.kernel}) must be a non-negative multiple "
                                    f"of the stride")
            if layer.padding >= layer.kernel:
                raise SpecError(f"{where}.padding", layer.padding, "padding smaller than the kernel")
    if spec.samples != 1:
        raise SpecError("samples", spec.samples, "samples: 1 for a network of feature maps (derived per sample; "
                        "a batch's gradient is the sum of the samples')")
    last = spec.layers[-1]
    if last.kind in MAP_KINDS:
        raise SpecError(f"layers[{spec.depth}].kind", last.kind, "a dense output layer (the loss reads a vector)")
    for l, layer in enumerate(spec.layers, start=1):
        if layer.kind == "dense" and spec.map_shape(l - 1) is not None and (layer.norm or layer.skip):
            field_name = "norm" if layer.norm else "skip"
            raise SpecError(f"layers[{l}].{field_name}", base._short(getattr(layer, field_name)),
                            "a dense layer reading a feature map without normalization or skip")


def validate(spec: BlockSpec) -> None:
    if not isinstance(spec.name, str) or not base.SPEC_NAME_RE.match(spec.name):
        raise SpecError("name", spec.name, "letters, digits, '-' and '_' (it names the output files)")
    if spec.notation not in BLOCK_NOTATIONS:
        raise SpecError("notation", spec.notation, "nielsen (samples as columns) or rowvec (samples as rows, "
                        "Z = X W + 1 b): the other profiles are those of their courses' dense chains (a folded "
                        "bias, one-layer names, a transposed weight)")
    if not spec.layers:
        raise SpecError("layers", [], "a non-empty list of layers")
    if spec.notation == "rowvec" and spec.has_maps:
        raise SpecError("notation", "rowvec", "nielsen for a network of feature maps (a map has channels, rows "
                        "and columns, not samples as rows)")
    if len(spec.layers) > base.MAX_LAYERS:
        raise SpecError("layers", f"{len(spec.layers)} layers", f"at most {base.MAX_LAYERS} layers")
    if isinstance(spec.samples, int) and spec.samples > base.MAX_SAMPLES:
        raise SpecError("samples", spec.samples, f"at most {base.MAX_SAMPLES} numeric samples")
    if spec.input_map is not None or any(layer.kind in MAP_KINDS for layer in spec.layers):
        if any(layer.kind in SEQUENCE_KINDS for layer in spec.layers) or spec.steps is not None:
            raise SpecError("steps" if spec.steps is not None else "layers", "recurrent or attention layers",
                            "feature maps (conv, pool) or a sequence, not both in one network")
        _validate_maps(spec)
    sequence = [l for l, layer in enumerate(spec.layers, start=1) if layer.kind in SEQUENCE_KINDS]
    if spec.steps is not None and not sequence:
        raise SpecError("steps", spec.steps, "steps only with a recurrent or attention layer (kind: rnn or "
                        "attention); a batch of samples is samples: m")
    if sequence and spec.steps is None:
        raise SpecError(f"layers[{sequence[0]}].kind", spec.layers[sequence[0] - 1].kind,
                        "a sequence: give steps (the number of time steps or tokens, the columns of X)")
    if sequence and spec.samples != 1:
        raise SpecError("samples", spec.samples, "samples: 1 in a sequence network (its columns are the steps; "
                        "the gradient of a batch of sequences is the sum of theirs)")
    names: dict[str, int] = {}
    for l, layer in enumerate(spec.layers, start=1):
        where = f"layers[{l}]"
        if layer.kind == "rnn" and (layer.norm or layer.dropout is not None or layer.skip):
            field_name = "norm" if layer.norm else "dropout" if layer.dropout is not None else "skip"
            raise SpecError(f"{where}.{field_name}", base._short(getattr(layer, field_name)),
                            "no normalization, dropout or skip inside a recurrent layer (its state is its output)")
        if layer.kind == "attention" and (layer.norm or layer.dropout is not None or layer.activation != "identity"):
            field_name = "norm" if layer.norm else "dropout" if layer.dropout is not None else "activation"
            raise SpecError(f"{where}.{field_name}", base._short(getattr(layer, field_name)),
                            "an attention layer is softmax(K^T Q / sqrt(d)) V with a skip at most; put "
                            "normalization, activation and dropout in the next layer")
        if layer.kind in SEQUENCE_KINDS and l == spec.depth:
            raise SpecError(f"{where}.kind", layer.kind, "a dense output layer after a recurrent or attention layer "
                            "(the loss reads a dense layer's output at every step)")
        if layer.norm == "batch" and sequence:
            raise SpecError(f"{where}.norm", "batch", "norm: layer in a sequence network (batch norm would mix "
                            "the time steps)")
        if layer.activation not in ACTIVATIONS:
            raise SpecError(f"{where}.activation", layer.activation, "one of " + ", ".join(ACTIVATIONS))
        if layer.activation in VECTOR_ACTIVATIONS and l != spec.depth:
            raise SpecError(f"{where}.activation", layer.activation,
                            "an entry-wise activation in a hidden layer (softmax and log_softmax only at the output)")
        if layer.activation in VECTOR_ACTIVATIONS and layer.units == 1:
            raise SpecError(f"{where}.units", 1, f"at least 2 units for {layer.activation}")
        if layer.slope is not None and layer.activation != "leaky_relu":
            raise SpecError(f"{where}.slope", str(layer.slope), "a slope only with activation leaky_relu")
        if layer.norm == "batch" and spec.samples == 1:
            raise SpecError(f"{where}.norm", "batch", "norm: batch only with a batch (samples: m or a number "
                            "of at least 2): the mean and variance are over the samples")
        if layer.norm == "layer" and layer.units == 1:
            raise SpecError(f"{where}.norm", "layer", "norm: layer only with at least 2 units")
        if l == spec.depth and (layer.norm or layer.dropout is not None or layer.skip):
            field_name = "norm" if layer.norm else "dropout" if layer.dropout is not None else "skip"
            raise SpecError(f"{where}.{field_name}", base._short(getattr(layer, field_name)),
                            "no normalization, dropout or skip in the output layer (the loss reads its output)")
        if layer.skip is not None:
            if layer.skip != INPUT_NAME and layer.skip not in names:
                raise SpecError(f"{where}.skip", layer.skip, "the name of an earlier layer (" +
                                ", ".join(list(names) + [INPUT_NAME]) + ")")
            source = 0 if layer.skip == INPUT_NAME else names[layer.skip]
            if spec.sizes[source] != layer.units:
                raise SpecError(f"{where}.skip", layer.skip, f"a layer of the same size: {layer.skip} has "
                                f"{spec.sizes[source]} units, this layer {layer.units}")
        if layer.name:
            if layer.name in names:
                raise SpecError(f"{where}.name", layer.name, "a name no other layer has")
            names[layer.name] = l
    loss = spec.loss
    if loss.kind not in LOSSES:
        raise SpecError("loss.kind", loss.kind, "one of " + ", ".join(LOSSES))
    if loss.reduction not in base.REDUCTIONS:
        raise SpecError("loss.reduction", loss.reduction, "one of " + ", ".join(base.REDUCTIONS))
    output = spec.layers[-1]
    allowed = LOSS_OUTPUTS[loss.kind]
    if allowed is not None and output.activation not in allowed:
        raise SpecError("loss.kind", loss.kind, f"the output activation {' or '.join(allowed)} for this loss; "
                        f"the output layer uses {output.activation}")
    if allowed is None and output.activation in VECTOR_ACTIVATIONS:
        raise SpecError("loss.kind", loss.kind, f"an entry-wise output activation for this loss "
                        f"(with {output.activation} use " + ("cross_entropy" if output.activation == "softmax"
                                                              else "nll") + ")")
    if loss.kind in ("hinge", "softmax_cross_entropy", "nll") and output.units == 1:
        raise SpecError("loss.kind", loss.kind, "at least 2 output units (one per class)")
    if loss.kind != "huber" and loss.delta != 1:
        raise SpecError("loss.delta", str(loss.delta), "a delta only with the huber loss")
    if loss.kind != "hinge" and loss.margin != 1:
        raise SpecError("loss.margin", str(loss.margin), "a margin only with the hinge loss")
    sizes = [("samples", spec.samples), ("steps", spec.steps)] + \
        [(f"layers[{l}].units", layer.units) for l, layer in enumerate(spec.layers, start=1)
         if layer.kind not in MAP_KINDS] + \
        [(f"layers[{l}].key", layer.key) for l, layer in enumerate(spec.layers, start=1)] + \
        ([("input", spec.input)] if spec.input_map is None else [])
    for field_name, value in sizes:
        if isinstance(value, str) and value in INDEX_LETTERS:
            raise SpecError(field_name, value, "a size name other than " + ", ".join(INDEX_LETTERS) +
                            " (those letters are the derivation's indices)")
        if isinstance(value, int) and value > MAX_NUMERIC_SIZE:
            raise SpecError(field_name, value, f"at most {MAX_NUMERIC_SIZE} here, or a symbol such as n_1 or m: "
                            "derive checks every step of these layers numerically at the spec's sizes")
    for l in range(spec.depth + 1):
        shape = spec.map_shape(l)
        if shape is not None and spec.entries(l) > MAX_MAP_ENTRIES:
            raise SpecError("input" if l == 0 else f"layers[{l}]", " x ".join(map(str, shape)),
                            f"a feature map of at most {MAX_MAP_ENTRIES} entries (channels x rows x columns): "
                            "every step is checked numerically")
    width = spec.samples if isinstance(spec.samples, int) else 1
    for n, units in enumerate(spec.sizes):
        if isinstance(units, int) and units * width > base.MAX_UNITS_TIMES_SAMPLES:
            raise SpecError("input" if n == 0 else f"layers[{n}].units", units,
                            f"at most {base.MAX_UNITS_TIMES_SAMPLES} units x samples per layer")
