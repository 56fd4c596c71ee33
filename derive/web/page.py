"""The page: one Jinja template (templates/web/page.html.j2) in English or Chinese, with derive's own
script and style beside it. The interface's words live in templates/web/strings.j2."""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=2)
def render_page(lang: str) -> str:
    from ..render import environment

    return environment().get_template("web/page.html.j2").render(lang=lang, examples=example_list())


@functools.lru_cache(maxsize=None)
def static_text(name: str) -> str:
    from ..resources import template_source

    return template_source(f"web/{name}")


@functools.lru_cache(maxsize=1)
def example_list() -> list[dict]:
    from ..resources import example_names, example_text
    from ..spec import loads
    from ..titles import title_text

    out = []
    for name in example_names():
        spec = loads(example_text(name), f"{name}.yaml")
        # as written, without the $ of its math: a menu shows no mathematics
        out.append({"name": name, "title": {lang: title_text(spec, lang).replace("$", "") for lang in ("en", "zh")}})
    return out
