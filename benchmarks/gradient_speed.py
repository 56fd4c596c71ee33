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
from timing import median_time

SIZES = (256, 512, 512, 10)
BATCH = 256


def spec():
    return network("bench", SIZES[0], [(SIZES[1], "relu"), (SIZES[2], "relu"), (SIZES[3], "softmax")],
                   loss="cross_entropy", samples="m")


def keep_freed_memory(keep: bool) -> bool:
    """glibc returns freed arrays over 128 KB to the OS, so every fresh NumPy temporary page-faults;
    PyTorch and JAX keep their own memory pools. mallopt lets this process keep freed memory too."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    size = 1 << 30 if keep else 128 * 1024
    return bool(libc.mallopt(M_MMAP_THRESHOLD, size)) and bool(libc.mallopt(M_TRIM_THRESHOLD, size if keep else 128 * 1024))


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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    nested = nested_gradient_code(spec(), layout="row")
    print(f"network {'-'.join(map(str, SIZES))}, ReLU hidden, softmax + cross-entropy, batch {BATCH}; "
          f"median of {args.repeats} runs\n")
    with tempfile.TemporaryDirectory() as tmp:
        for dtype_name in ("float32", "float64"):
            dtype = np.dtype(dtype_name).type
            path = Path(tmp) / f"model_{dtype_name}.py"
            path.write_text(generate(spec(), layout="row", dtype=dtype_name))
            mod = load_module(path)
            params = mod.init_params(sizes=SIZES, dtype=dtype)
            X, Y = data(dtype, rng)
            keep_freed_memory(False)
            ours_default = median_time(lambda: mod.gradients(params, X, Y), args.repeats)
            forward_default = median_time(lambda: mod.forward(params, X), args.repeats)
            pooled = keep_freed_memory(True)
            ours = median_time(lambda: mod.gradients(params, X, Y), args.repeats)
            forward = median_time(lambda: mod.forward(params, X), args.repeats)
            namespace = {"np": np, "m": BATCH, "relu": mod.relu, "relu_prime": mod.relu_prime,
                         "softmax": mod.softmax, **params, "X": X, "Y": Y}
            compiled = {k: compile(v, k, "eval") for k, v in nested.items()}
            naive = median_time(lambda: [eval(c, namespace) for c in compiled.values()], max(3, args.repeats // 5))
            rows = [("generated gradients (derive), freed memory kept", ours, ""),
                    ("generated forward pass, freed memory kept", forward, ""),
                    ("generated gradients (derive), default malloc", ours_default, ""),
                    ("generated forward pass, default malloc", forward_default, ""),
                    ("nested expressions, nothing shared", naive, "")]
            if not pooled:
                print("  (mallopt unavailable: both settings are the default)")
            peers = []
            for make in (torch_peer, jax_peer):
                step, label = make(params, X, Y, dtype)
                if step is None:
                    print(f"[{dtype_name}] skipped: {label}")
                    continue
                t = median_time(step, args.repeats)
                rows.append((label, t, ""))
                peers.append(t)
            print(f"[{dtype_name}]")
            print(f"  {'':52}{'ms':>9}{'derive / this':>15}")
            for label, t, _ in rows:
                print(f"  {label:52}{1000 * t:9.2f}{ours / t:15.2f}")
            if peers:
                print(f"  derive / faster peer: {ours / min(peers):.2f} freed memory kept, "
                      f"{ours_default / min(peers):.2f} default malloc   (target <= 1.0)")
            print(f"  derive / own forward: {ours / forward:.2f} freed memory kept, "
                  f"{ours_default / forward_default:.2f} default malloc   (target <= 2.5)\n")


if __name__ == "__main__":
    main()
