"""The bad-input corpus: hostile and malformed inputs for every entry point.

Each case is run by tests/test_hostile.py in a fresh folder, in a child process with a time and a
memory limit. The folder holds a secret file and a victim file outside the output folder, and
symlink traps inside it; payloads try to run code (creating PWNED), read the secret, or write
through the traps. A case names the exit codes it may end with (bad input: 1 or 2).
"""
from __future__ import annotations

from dataclasses import dataclass, field

SECRET = "SECRET-CANARY-7f3a9c"


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]                 # after `python -m derive.cli`; {out} is the output folder
    files: dict = field(default_factory=dict)   # name -> text, or ("fifo",), ("sparse", bytes), ("dir",)
    exits: tuple[int, ...] = (2,)
    python: str = ""                      # a library case: code run with `python -c` instead of the CLI


GOOD = "name: net\ninput: 2\nlayers: [{units: 3, activation: tanh}, {units: 1, activation: sigmoid}]\nloss: squared_error\n"


def spec(body: str) -> str:
    return body


# Hostile but valid: these must succeed, with the payload inert (escaped), or are work that code
# generation does without numbers.
ACCEPTED = {"title-docstring": (0,), "title-input": (0,), "weights-4m": (0, 2)}


def _spec_cases() -> list[Case]:
    """Spec files that are malformed, hostile or too large, through check, build and codegen."""
    bodies = {
        "empty": "",
        "not-mapping": "- 1\n- 2\n",
        "scalar": "42\n",
        "binary": "\x00\x01\x02\xff",
        "python-tag": "!!python/object/apply:os.system ['touch PWNED']\n",
        "python-name": "name: !!python/name:os.system\ninput: 2\nlayers: [{units: 2}]\n",
        "alias-bomb": "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
                      "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
                      "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
                      "name: x\ninput: *g\nlayers: [{units: 2}]\n",
        "deep-list": "name: x\ninput: " + "[" * 5000 + "]" * 5000 + "\nlayers: [{units: 2}]\n",
        "deep-map": "name: x\ninput: 2\nlayers: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
        "name-traversal": "name: ../../victim\ninput: 2\nlayers: [{units: 2}]\n",
        "name-slash": "name: a/b\ninput: 2\nlayers: [{units: 2}]\n",
        "name-list": "name: [1, 2]\ninput: 2\nlayers: [{units: 2}]\n",
        "no-layers": "name: x\ninput: 2\nlayers: []\n",
        "layers-string": "name: x\ninput: 2\nlayers: dense\n",
        "units-zero": "name: x\ninput: 2\nlayers: [{units: 0}]\n",
        "units-negative": "name: x\ninput: 2\nlayers: [{units: -3}]\n",
        "units-float": "name: x\ninput: 2\nlayers: [{units: 2.5}]\n",
        "units-huge": "name: x\ninput: 2\nlayers: [{units: 100000000000000000000000000}]\n",
        "units-5000-digits": "name: x\ninput: 2\nlayers: [{units: " + "9" * 5000 + "}]\n",
        "softmax-100000": "name: x\ninput: 2\nlayers: [{units: 100000, activation: softmax}]\nloss: cross_entropy\n",
        "samples-100000": "name: x\ninput: 2\nlayers: [{units: 3}]\nsamples: 100000\n",
        "units-x-samples": "name: x\ninput: 2\nlayers: [{units: 5000}]\nsamples: 5000\n",
        "layers-5000": "name: x\ninput: 2\nlayers: [" + ", ".join(["{units: 2, activation: tanh}"] * 5000) + "]\n",
        "weights-4m": "name: x\ninput: 2000\nlayers: [{units: 2000, activation: tanh}]\n",
        "activation-code": "name: x\ninput: 2\nlayers: [{units: 2, activation: \"__import__('os').system('touch PWNED')\"}]\n",
        "activation-list": "name: x\ninput: 2\nlayers: [{units: 2, activation: [1]}]\n",
        "bias-string": "name: x\ninput: 2\nlayers: [{units: 2, bias: maybe}]\n",
        "slope-exp": "name: x\ninput: 2\nlayers: [{units: 2, activation: leaky_relu, slope: 1e100000000}]\n",
        "slope-5000-digits": "name: x\ninput: 2\nlayers: [{units: 2, activation: leaky_relu, slope: " + "7" * 5000 + "}]\n",
        "slope-inf": "name: x\ninput: 2\nlayers: [{units: 2, activation: leaky_relu, slope: .inf}]\n",
        "slope-nan": "name: x\ninput: 2\nlayers: [{units: 2, activation: leaky_relu, slope: .nan}]\n",
        "slope-on-tanh": "name: x\ninput: 2\nlayers: [{units: 2, activation: tanh, slope: 1/2}]\n",
        "scale-1e5000": "name: x\ninput: 2\nlayers: [{units: 2}]\nloss: {kind: squared_error, scale: 1.0e5000}\n",
        "scale-zero-division": "name: x\ninput: 2\nlayers: [{units: 2}]\nloss: {kind: squared_error, scale: 1/0}\n",
        "scale-negative": "name: x\ninput: 2\nlayers: [{units: 2}]\nloss: {kind: squared_error, scale: -1}\n",
        "scale-code": "name: x\ninput: 2\nlayers: [{units: 2}]\nloss: {kind: squared_error, scale: \"__import__('os')\"}\n",
        "l2-exp": "name: x\ninput: 2\nlayers: [{units: 2}]\nloss: {kind: squared_error, l2: 1e100000000}\n",
        "l2-loss-name": "name: x\ninput: 2\nlayers: [{units: 2}]\nloss: {kind: squared_error, l2: L}\n",
        "l2-sample-name": "name: x\ninput: 2\nlayers: [{units: 2}]\nloss: {kind: squared_error, l2: m}\nsamples: m\n",
        "l2-size-name": "name: x\ninput: n_0\nlayers: [{units: 2}]\nloss: {kind: squared_error, l2: n_0}\n",
        "l2-index-name": "name: x\ninput: 2\nlayers: [{units: 2}]\nloss: {kind: squared_error, l2: j}\n",
        "l2-tex": "name: x\ninput: 2\nlayers: [{units: 2}]\nloss: {kind: squared_error, l2: '\\input{secret.txt}'}\n",
        "loss-unknown": "name: x\ninput: 2\nlayers: [{units: 2}]\nloss: hinge\n",
        "loss-bce-tanh": "name: x\ninput: 2\nlayers: [{units: 2, activation: tanh}]\nloss: binary_cross_entropy\n",
        "reduction-bad": "name: x\ninput: 2\nlayers: [{units: 2}]\nloss: {kind: squared_error, reduction: median}\n",
        "notation-bad": "name: x\nnotation: os\ninput: 2\nlayers: [{units: 2}]\n",
        "field-unknown": "name: x\ninput: 2\nlayers: [{units: 2}]\nexec: true\n",
        "symbols-int-key": "name: x\ninput: 2\nlayers: [{units: 2}]\nsymbols: {1: a}\n",
        "symbols-tex": "name: x\ninput: 2\nlayers: [{units: 2}]\nsymbols: {weights: '\\input{secret.txt}'}\n",
        "symbols-role": "name: x\ninput: 2\nlayers: [{units: 2}]\nsymbols: {__class__: a}\n",
        "symbols-list": "name: x\ninput: 2\nlayers: [{units: 2}]\nsymbols: [a, b]\n",
        "title-docstring": "name: x\ntitle: 'x\"\"\" ; import os; os.system(\"touch PWNED\") ; \"\"\"'\ninput: 2\nlayers: [{units: 2}]\n",
        "title-input": "name: x\ntitle: '\\input{secret.txt} \\write18{touch PWNED}'\ninput: 2\nlayers: [{units: 2}]\n",
        "title-control": "name: x\ntitle: \"bell \\a and \\x1b[31m red\"\ninput: 2\nlayers: [{units: 2}]\n",
        "title-rtl": "name: x\ntitle: \"abc \\u202e cba\"\ninput: 2\nlayers: [{units: 2}]\n",
        "title-long": "name: x\ntitle: '" + "t" * 5000 + "'\ninput: 2\nlayers: [{units: 2}]\n",
        "title-list": "name: x\ntitle: [1]\ninput: 2\nlayers: [{units: 2}]\n",
        "size-reserved": "name: x\ninput: j\nlayers: [{units: 2}]\n",
        "size-code": "name: x\ninput: \"os.system('x')\"\nlayers: [{units: 2}]\n",
    }
    out = []
    for key, body in bodies.items():
        command = "build" if len(out) % 3 == 1 else "codegen" if len(out) % 3 == 2 else "check"
        argv = {"check": ("check", "spec.yaml", "--json"), "build": ("build", "spec.yaml", "-o", "{out}"),
                "codegen": ("codegen", "spec.yaml", "-o", "{out}/model.py")}[command]
        out.append(Case(f"spec-{key}-{command}", argv, {"spec.yaml": body}, exits=ACCEPTED.get(key, (2,))))
    return out


def _file_cases() -> list[Case]:
    """Inputs that are not files of text, and outputs that cannot be written."""
    return [
        Case("spec-fifo", ("check", "spec.yaml"), {"spec.yaml": ("fifo",)}),
        Case("spec-dev-zero", ("check", "/dev/zero")),
        Case("spec-dev-urandom", ("build", "/dev/urandom", "-o", "{out}")),
        Case("spec-folder", ("check", "folder"), {"folder": ("dir",)}),
        Case("spec-missing", ("check", "missing.yaml")),
        Case("spec-sparse-3g", ("check", "spec.yaml"), {"spec.yaml": ("sparse", 3 * 2 ** 30)}),
        Case("spec-two-mb", ("check", "spec.yaml"), {"spec.yaml": "# " + "x" * 2_000_000 + "\n" + GOOD}),
        Case("build-second-invalid", ("build", "good.yaml", "bad.yaml", "-o", "{out}"),
             {"good.yaml": GOOD, "bad.yaml": "name: y\ninput: 2\nlayers: [{units: 2}]\nsymbols: {weights: '12345'}\n"}),
        Case("build-out-under-file", ("build", "good.yaml", "-o", "afile/out"), {"good.yaml": GOOD, "afile": "x"}),
        Case("build-out-is-file", ("build", "good.yaml", "-o", "afile"), {"good.yaml": GOOD, "afile": "x"}),
        Case("codegen-out-folder", ("codegen", "good.yaml", "-o", "{out}"), {"good.yaml": GOOD}),
        Case("codegen-out-under-file", ("codegen", "good.yaml", "-o", "afile/m.py"), {"good.yaml": GOOD, "afile": "x"}),
        Case("build-layers-bad", ("build", "good.yaml", "-o", "{out}", "--layers", "1-99"), {"good.yaml": GOOD}),
        Case("build-layers-code", ("build", "good.yaml", "-o", "{out}", "--layers", "__import__('os')"),
             {"good.yaml": GOOD}),
        Case("build-ok-through-traps", ("build", "good.yaml", "-o", "{out}"), {"good.yaml": GOOD}, exits=(0,)),
        Case("codegen-ok-through-traps", ("codegen", "good.yaml", "-o", "{out}/net.py"), {"good.yaml": GOOD},
             exits=(0,)),
        Case("demo-out-under-file", ("demo", "-o", "afile/out", "--no-pdf"), {"afile": "x"}),
        # any Unicode in a title typesets (Greek as math, CJK in Chinese, the rest as code points)
        Case("build-pdf-title-emoji", ("build", "t.yaml", "-o", "{out}", "--pdf"),
             {"t.yaml": "name: t\ntitle: 'smile \U0001F600'\ninput: 2\nlayers: [{units: 2}]\n"}, exits=(0,)),
        Case("build-pdf-title-cjk-en", ("build", "t.yaml", "-o", "{out}", "--pdf"),
             {"t.yaml": "name: t\ntitle: '反向传播'\ninput: 2\nlayers: [{units: 2}]\n"}, exits=(0,)),
        Case("build-pdf-title-greek-zh", ("build", "t.yaml", "-o", "{out}", "--pdf", "--lang", "zh"),
             {"t.yaml": "name: t\ntitle: 'σ and ∂'\ninput: 2\nlayers: [{units: 2}]\n"}, exits=(0,)),
        Case("verify-derivation-fifo", ("verify", "good.yaml", "--derivation", "d.tex"),
             {"good.yaml": GOOD, "d.tex": ("fifo",)}),
        Case("verify-derivation-dev-zero", ("verify", "good.yaml", "--derivation", "/dev/zero"), {"good.yaml": GOOD}),
        Case("verify-derivation-sparse", ("verify", "good.yaml", "--derivation", "d.tex"),
             {"good.yaml": GOOD, "d.tex": ("sparse", 2 ** 30)}),
        Case("verify-derivation-binary", ("verify", "good.yaml", "--derivation", "d.tex"),
             {"good.yaml": GOOD, "d.tex": "\udcff\udcfe"}),
    ]


def _claim_cases() -> list[Case]:
    claims = {
        "python": "__import__('os').system('touch PWNED')",
        "input": "\\input{secret.txt}",
        "write18": "\\immediate\\write18{touch PWNED}",
        "def": "\\def\\x{1} \\x",
        "catcode": "\\catcode`\\@=11",
        "frac-zero": "\\frac{1}{0}",
        "exp-710": "e^{710} \\delta^{2} (a^{1})^{T}",
        "log-zero": "\\log(0) \\delta^{2}",
        "a-minus-a": "\\frac{1}{a^{1} - a^{1}}",
        "sum-huge": "\\sum_{i=1}^{100000000} \\delta^{2} (a^{1})^{T}",
        "sum-nested": "\\sum_{i=1}^{9000} \\sum_{p=1}^{9000} \\sum_{q=1}^{9000} \\delta^{2} (a^{1})^{T}",
        "sum-unbound": "\\sum_{i} 1",
        "deep-parens": "(" * 3000 + "x" + ")" * 3000,
        "deep-braces": "{" * 3000 + "x" + "}" * 3000,
        "unbalanced": "\\frac{\\delta^{2}",
        "long-chain": " + ".join(["\\delta^{2}"] * 5000),
        "minus-chain": "-" * 5000 + "\\delta^{2}",
        "power-tower": "^".join(["a^{1}"] * 2000),
        "unknown-symbol": "\\Omega^{7}",
        "layer-999": "\\delta^{999} (a^{1})^{T}",
        "index-huge": "\\delta^{2}_{99999999999999999999}",
        "empty": "",
        "spaces": "   ",
        "unicode-junk": "δ⊙σ′ᵀ∂∑∫≈≠√∛",
        "control": "\\delta^{2}\x1b[2J",
        "bmatrix-ragged": "\\begin{bmatrix} 1 & 2 \\\\ 3 \\end{bmatrix}",
        "bmatrix-huge": "\\begin{bmatrix}" + " & ".join(["1"] * 3000) + "\\end{bmatrix}",
    }
    out = [Case(f"claim-{k}", ("verify", "good.yaml", "--param", "W2", "--claim", v, "--json"), {"good.yaml": GOOD},
                exits=(1, 2)) for k, v in claims.items()]
    out += [
        Case("claim-param-traversal", ("verify", "good.yaml", "--param", "../../etc/passwd", "--claim", "x"),
             {"good.yaml": GOOD}),
        Case("claim-param-missing-layer", ("verify", "good.yaml", "--param", "W9", "--claim", "x"), {"good.yaml": GOOD}),
        Case("claim-no-param", ("verify", "good.yaml", "--claim", "x"), {"good.yaml": GOOD}),
        Case("claim-wide-network", ("verify", "wide.yaml", "--param", "W2", "--claim", "x"),
             {"wide.yaml": "name: w\ninput: 3000\nlayers: [{units: 3000, activation: tanh}, {units: 2}]\n"}),
        Case("check-wide-deep", ("check", "wide.yaml"),
             {"wide.yaml": "name: w\ninput: 1000\nlayers: [" + ", ".join(["{units: 1000, activation: tanh}"] * 40)
              + "]\n"}),
        Case("derivation-7000-lines", ("verify", "good.yaml", "--derivation", "d.tex", "--json"),
             {"good.yaml": GOOD, "d.tex": "\\frac{\\partial L}{\\partial W^{2}} &= \\delta^{2} (a^{1})^{T} \\\\\n" +
              "&= \\delta^{2} (a^{1})^{T} \\\\\n" * 7000}, exits=(0, 1, 2)),
        Case("derivation-input", ("verify", "good.yaml", "--derivation", "d.tex", "--tex", "-o", "{out}"),
             {"good.yaml": GOOD, "d.tex": "x &= \\input{secret.txt} \\\\\n &= y \\\\\n"}),
        Case("derivation-no-equality", ("verify", "good.yaml", "--derivation", "d.tex"),
             {"good.yaml": GOOD, "d.tex": "just words\n"}),
        Case("derivation-one-wrong-pdf", ("verify", "good.yaml", "--derivation", "d.tex", "--tex", "-o", "{out}"),
             {"good.yaml": GOOD, "d.tex": "\\frac{\\partial L}{\\partial W^{2}} &= \\delta^{2} (a^{1})^{T} \\\\\n"
                                          "&= 2 \\delta^{2} (a^{1})^{T} \\\\\n"}, exits=(1,)),
    ]
    return out


def _graph_cases() -> list[Case]:
    exprs = {
        "python": ("__import__('os').system('touch PWNED')", ("x=1",)),
        "input": ("\\input{secret.txt}", ("x=1",)),
        "unknown-function": ("eval(x)", ("x=1",)),
        "power-tower": ("10^10^10", ()),
        "x-tower": ("^".join(["x"] * 3000), ("x=1",)),
        "long-chain": ("+".join(["x"] * 5000), ("x=1",)),
        "minus-chain": ("0" + "-x" * 3000, ("x=1",)),
        "nested-exp": ("exp(" * 150 + "x" + ")" * 150, ("x=1",)),
        "deep-parens": ("(" * 400 + "x" + ")" * 400, ("x=1",)),
        "sqrt-zero": ("x^0.5", ("x=0",)),
        "recip-tiny": ("1/x", ("x=1e-200",)),
        "recip-zero": ("1/x", ("x=0",)),
        "log-negative": ("log(x)", ("x=-1",)),
        "exp-overflow": ("exp(exp(x))", ("x=800",)),
        "missing-vars": ("x*y+z", ()),
        "unused-var": ("x", ("x=1", "q=2")),
        "nan-value": ("x", ("x=nan",)),
        "inf-value": ("x", ("x=1e400",)),
        "bad-at": ("x", ("x",)),
        "at-code": ("x", ("x=__import__('os')",)),
        "huge": ("x+" * 6000 + "x", ("x=1",)),
        "empty": ("", ()),
        "only-operators": ("+-*/", ()),
        "unicode": ("∑∫√", ()),
    }
    out = [Case(f"graph-{k}", ("graph", e, *[a for v in at for a in ("--at", v)], "--json"), exits=(2,))
           for k, (e, at) in exprs.items()]
    out += [
        Case("graph-name-traversal", ("graph", "x", "--at", "x=1", "--tex", "-o", "{out}", "--name", "../victim")),
        Case("graph-name-slash", ("graph", "x", "--at", "x=1", "--tex", "-o", "{out}", "--name", "a/b")),
        Case("graph-out-under-file", ("graph", "x", "--at", "x=1", "--tex", "-o", "afile/o"), {"afile": "x"}),
        Case("graph-ok-through-traps", ("graph", "(x+y)*z", "--at", "x=-2", "--at", "y=5", "--at", "z=-4", "--tex",
                                        "-o", "{out}"), exits=(0,)),
    ]
    return out


def _library_cases() -> list[Case]:
    """The library raises DeriveError subclasses with the same messages, never anything else."""
    calls = {
        "network-bad-units": "network('x', 2, [(0, 'tanh')])",
        "network-bad-activation": "network('x', 2, [(2, 'os.system')])",
        "network-symbols-tex": "network('x', 2, [(2, 'tanh')], symbols={'weights': '\\\\input{secret.txt}'})",
        "network-symbols-int-key": "network('x', 2, [(2, 'tanh')], symbols={1: 'a'})",
        "network-title-control": "network('x', 2, [(2, 'tanh')], title='a\\x07b')",
        "network-l2-code": "network('x', 2, [(2, 'tanh')], loss={'kind': 'squared_error', 'l2': '__import__'})",
        "network-loss-type": "network('x', 2, [(2, 'tanh')], loss=42)",
        "network-layers-type": "network('x', 2, 'dense')",
        "load-fifo": "load('spec.yaml')",
        "verify-claim-python": "from derive.verify import verify_claim\n    v = verify_claim(derive(network('x', 2, "
                               "[(2, 'tanh')])), 'W1', \"__import__('os').system('touch PWNED')\")\n"
                               "    if v.verdict == 'unparseable': raise DeriveError(v.diagnosis)",
        "graph-python": "__import__('derive.graph', fromlist=['x']).build(\"__import__('os')\", {})",
    }
    program = ("import sys\nfrom derive import network, load, derive, DeriveError\ntry:\n    {call}\nexcept DeriveError as e:\n"
               "    print('derive: error:', e, file=sys.stderr); sys.exit(2)\n")
    return [Case(f"library-{k}", (), {"spec.yaml": ("fifo",)} if "fifo" in k else {}, exits=(2,),
                 python=program.format(call=v)) for k, v in calls.items()]


CASES: list[Case] = _spec_cases() + _file_cases() + _claim_cases() + _graph_cases() + _library_cases()
