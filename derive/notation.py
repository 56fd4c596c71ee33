"""Notation profiles: how quantities are named and labelled on the page.

The derivation logic is one; a profile changes only what the reader sees.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .errors import DeriveError


@dataclass(frozen=True)
class Notation:
    name: str
    weight: str = "w"            # entries w^l_{jk}
    weights: str = "W"           # the matrix W^l
    bias: str = "b"
    pre: str = "z"
    act: str = "a"
    delta: str = r"\delta"
    input: str = "x"
    target: str = "y"
    loss: str = "L"
    batch_delta: str = r"\Delta"
    batch_act: str = "A"
    batch_input: str = "X"
    batch_target: str = "Y"
    layer: str = "l"             # a layer label inside a superscript: l, or (l) as Ng writes it
    transpose: str = r"\top"

    def label(self, layer: int) -> str:
        return self.layer.replace("l", str(layer))


PROFILES = {
    "nielsen": Notation("nielsen", transpose="T"),
}
PLANNED = ("ng", "rashid", "fromto", "rowvec")


def profile(name: str, overrides: tuple[tuple[str, str], ...] = ()) -> Notation:
    if name not in PROFILES:
        built = ", ".join(PROFILES)
        raise DeriveError(f"notation {name!r} cannot be typeset yet (profiles built: {built}; "
                          f"planned: {', '.join(PLANNED)})")
    chosen = PROFILES[name]
    fields = set(chosen.__dataclass_fields__) - {"name", "layer"}
    for key, value in overrides:
        if key not in fields:
            raise DeriveError(f"symbols.{key}: no such symbol role; roles: {', '.join(sorted(fields))}")
        chosen = replace(chosen, **{key: value})
    return chosen
