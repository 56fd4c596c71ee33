"""Speed of the generated gradient code against PyTorch autograd, JAX, nested expressions, and
its own forward pass, for 256-512-512-10 (ReLU hidden, softmax + cross-entropy), batch 256.

    python benchmarks/gradient_speed.py [--repeats 30]

Prints medians over the repeats and ratios measured in the same run. PyTorch and JAX run on the
CPU and are skipped with a message when they are not installed.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from derive import network
from derive.codegen import generate, load_module, nested_gradient_code
from timing import interleaved_medians

SIZES = (256, 512, 512, 10)
NUMPY_PRODUCTS = "NumPy: the step's matrix products alone"
BATCH = 256


def spec():
    return network("bench", SIZES[0], [(SIZES[1], "relu"), (SIZES[2], "relu"), (SIZES[3], "softmax")],
                   loss="cross_entropy", samples="m")


def data(dtype, rng):
    X = rng.standard_normal((BATCH, SIZES[0])).astype(dtype)
    Y = np.eye(SIZES[-1], dtype=dtype)[rng.integers(0, SIZES[-1], BATCH)]
    return X, Y


def torch_peer(params, X, Y, dtype):
    try:
        import torch
    except ImportError:
        return None, "PyTorch not installed (pip install torch==2.13.0)"
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    tX, tY = torch.tensor(X), torch.tensor(Y)

    def step():
        for v in tp.values():
            v.grad = None
        A = torch.relu(tX @ tp["W1"] + tp["b1"])
        A = torch.relu(A @ tp["W2"] + tp["b2"])
        logits = A @ tp["W3"] + tp["b3"]
        loss = -(tY * torch.log_softmax(logits, dim=1)).sum() / BATCH
        loss.backward()
        return [v.grad for v in tp.values()]
    return step, f"PyTorch {torch.__version__} autograd, CPU, {torch.get_num_threads()} threads"


def jax_peer(params, X, Y, dtype):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None, "JAX not installed (pip install jax jaxlib)"
    if dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    jp = {k: jnp.asarray(v) for k, v in params.items()}
    jX, jY = jnp.asarray(X), jnp.asarray(Y)

    def loss(p, X, Y):
        A = jax.nn.relu(X @ p["W1"] + p["b1"])
        A = jax.nn.relu(A @ p["W2"] + p["b2"])
        logits = A @ p["W3"] + p["b3"]
        return -(Y * jax.nn.log_softmax(logits, axis=1)).sum() / X.shape[0]

    fn = jax.jit(jax.value_and_grad(loss))

    def step():
        value, grads = fn(jp, jX, jY)
        jax.block_until_ready(grads)
        return grads
    return step, f"JAX {jax.__version__} jit(value_and_grad), CPU"


def multiply_adds(sizes, batch):
    """Multiply-adds of the matrix products: the forward pass, and the backward pass (the weight
    gradient of every layer, the delta of every layer but the first)."""
    forward = sum(batch * a * b for a, b in zip(sizes, sizes[1:]))
    backward = forward + sum(batch * a * b for a, b in zip(sizes[1:], sizes[2:]))
    return forward, backward


def products_alone(params, X, numpy_or_torch):
    """The step's matrix products back to back into preallocated arrays, nothing else: what this
    library's BLAS needs for the step, whoever calls it."""
    lib = numpy_or_torch
    W = [params[f"W{l}"] for l in range(1, len(SIZES))]
    if lib.__name__ == "torch":
        W, X = [lib.tensor(w) for w in W], lib.tensor(X)
    acts = [X] + [lib.ones((BATCH, n), dtype=X.dtype) * 0.5 for n in SIZES[1:-1]]
    deltas = [lib.ones((BATCH, n), dtype=X.dtype) * 0.25 for n in SIZES[1:]]
    jobs = [(acts[l], W[l]) for l in range(len(W))]
    for l in range(len(W) - 1, -1, -1):
        jobs.append((acts[l].T, deltas[l]))
        if l > 0:
            jobs.append((deltas[l], W[l].T))
    outs = [lib.empty((a.shape[0], b.shape[1]), dtype=X.dtype) for a, b in jobs]

    def run():
        for (a, b), out in zip(jobs, outs):
            lib.matmul(a, b, out=out)
    return run


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    nested = nested_gradient_code(spec(), layout="row")
    fwd_macs, bwd_macs = multiply_adds(SIZES, BATCH)
    print(f"network {'-'.join(map(str, SIZES))}, ReLU hidden, softmax + cross-entropy, batch {BATCH}; "
          f"median of {args.repeats} calls each, timed in blocks over 5 rounds\n"
          f"multiply-adds in matrix products: forward {fwd_macs / 1e6:.1f} M, backward {bwd_macs / 1e6:.1f} M: "
          f"forward + backward = {(fwd_macs + bwd_macs) / fwd_macs:.2f} x forward, backward alone "
          f"{bwd_macs / fwd_macs:.2f} x\n")
    with tempfile.TemporaryDirectory() as tmp:
        for dtype_name in ("float32", "float64"):
            dtype = np.dtype(dtype_name).type
            path = Path(tmp) / f"model_{dtype_name}.py"
            path.write_text(generate(spec(), layout="row", dtype=dtype_name))
            mod = load_module(path)
            params = mod.init_params(sizes=SIZES, dtype=dtype)
            X, Y = data(dtype, rng)
            ws, ws_forward, ws_step = mod.Workspace(), mod.Workspace(), mod.Workspace()
            cache = mod.forward(params, X)
            namespace = {"np": np, "ws": mod.Workspace(), "m": BATCH, "relu": mod.relu, "relu_prime": mod.relu_prime,
                         "softmax": mod.softmax, **params, "X": X, "Y": Y}
            compiled = [compile(v, k, "eval") for k, v in nested.items()]
            candidates = {
                "derive: gradients (with their forward pass)": lambda: mod.gradients(params, X, Y, workspace=ws),
                "derive: gradients, fresh arrays (no workspace)": lambda: mod.gradients(params, X, Y),
                "derive: backward alone (forward cache given)":
                    lambda: mod.gradients(params, X, Y, cache=cache, workspace=ws),
                "derive: train_step (one forward pass, update)": lambda: mod.train_step(params, X, Y, 0.0, workspace=ws_step),
                "derive: forward pass": lambda: mod.forward(params, X, workspace=ws_forward),
                "derive: forward pass, fresh arrays": lambda: mod.forward(params, X),
                NUMPY_PRODUCTS: products_alone(params, X, np),
            }
            peers = []
            for make in (torch_peer, jax_peer):
                step, label = make(params, X, Y, dtype)
                if step is None:
                    print(f"[{dtype_name}] skipped: {label}")
                    continue
                candidates[label] = step
                peers.append(label)
            if peers and peers[0].startswith("PyTorch"):
                import torch

                candidates["PyTorch: the step's matrix products alone"] = products_alone(params, X, torch)
            t = interleaved_medians(candidates, args.repeats)
            naive = interleaved_medians({"nested": lambda: [eval(c, namespace) for c in compiled]},
                                        max(3, args.repeats // 5))["nested"]
            t["nested expressions, nothing shared"] = naive
            ours = t["derive: gradients (with their forward pass)"]
            forward = t["derive: forward pass"]
            print(f"[{dtype_name}]")
            print(f"  {'':52}{'ms':>9}{'derive / this':>15}")
            for label, seconds in t.items():
                print(f"  {label:52}{1000 * seconds:9.2f}{ours / seconds:15.2f}")
            if peers:
                fastest = min(t[p] for p in peers)
                print(f"  derive / faster peer: {ours / fastest:.2f}   (target <= 1.0); "
                      f"NumPy's matrix products alone / faster peer: "
                      f"{t[NUMPY_PRODUCTS] / fastest:.2f}")
            print(f"  derive / own forward: {ours / forward:.2f} (multiply-adds {(fwd_macs + bwd_macs) / fwd_macs:.2f}); "
                  f"backward alone / forward: {t['derive: backward alone (forward cache given)'] / forward:.2f} "
                  f"(multiply-adds {bwd_macs / fwd_macs:.2f})   (target <= 2.5)\n")


if __name__ == "__main__":
    main()
