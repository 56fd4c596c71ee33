"""The stages of each layer, in forward order: which node each reads and writes. The symbolic engine and
the numeric instance both follow this one plan."""
from __future__ import annotations

from dataclasses import dataclass

from .spec import BlockSpec


@dataclass(frozen=True)
class Stage:
    kind: str        # linear | recur | attend | norm | act | dropout | skip
    layer: int
    inp: str         # the node kind read (a of layer l - 1 for linear)
    out: str         # the node kind written; "a" for the layer's output


def stages(spec: BlockSpec, l: int) -> tuple[Stage, ...]:
    layer = spec.layers[l - 1]
    if layer.kind == "attention":
        kinds = ["attend"] + (["skip"] if layer.skip else [])
    elif layer.kind == "conv":
        kinds = ["conv", "act"]
    elif layer.kind == "pool":
        kinds = ["pool"]
    else:
        kinds = ["recur" if layer.kind == "rnn" else "linear"] + (["norm"] if layer.norm else []) + ["act"] + \
            (["dropout"] if layer.dropout is not None else []) + (["skip"] if layer.skip else [])
    outputs = {"linear": "z", "recur": "z", "conv": "z", "norm": "u", "act": "h", "dropout": "d", "skip": "a",
               "attend": "h", "pool": "a"}
    out, previous = [], "a"
    for number, kind in enumerate(kinds):
        node = "a" if number == len(kinds) - 1 else outputs[kind]
        out.append(Stage(kind, l, previous, node))
        previous = node
    return tuple(out)


def skips_from(spec: BlockSpec, source: int) -> tuple[int, ...]:
    """The layers whose output adds a^source (besides layer source + 1, whose linear stage reads it)."""
    return tuple(l for l in range(1, spec.depth + 1) if spec.source_of(l) == source)
