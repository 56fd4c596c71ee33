"""derive serve under load: 20 concurrent clients on loopback, bounded in count and in time.

For each kind of request (a claim, a 10-line derivation, a graph, a build of a document) it prints the
throughput, p50 and p95 latency and the errors; beside the claim, the peer measured in the same run:
the same claim judged in process (verify_claim, no HTTP, no worker), so the ratio is what serving
costs. Then 2,000 claims and graphs in a row with the memory of the server and its workers (RSS,
summed over the process tree) sampled every 200 requests: flat means no leak.

    python benchmarks/web_load.py                 # the server's default workers (one per core)
    python benchmarks/web_load.py --workers 4 --clients 20 --memory-requests 2000
Targets (issue 16): 0 errors; p95 of a claim under 300 ms with a warm server; memory flat.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CLAIMS = [r"\delta^{2} (a^{1})^{T}", r"a^{1} \delta^{2}", r"(a^{2} - y) \odot \sigma'(z^{2}) (a^{1})^{T}",
          r"((W^{2})^{T} \delta^{2} \odot \sigma'(z^{1})) x^{T}", r"-\delta^{2} (a^{1})^{T}"]
PARAMS = ["W2", "W2", "W2", "W1", "W2"]
DERIVATION = r"""\begin{align*}
\frac{\partial L}{\partial W^{2}} &= \delta^{2} (a^{1})^{T} \\
&= \left((a^{2} - y) \odot \sigma'(z^{2})\right) (a^{1})^{T} \\
&= \left((a^{2} - y) \odot a^{2} \odot (1 - a^{2})\right) (a^{1})^{T} \\
&= \left(a^{2} \odot (a^{2} - y) \odot (1 - a^{2})\right) (a^{1})^{T} \\
&= \left((1 - a^{2}) \odot a^{2} \odot (a^{2} - y)\right) (a^{1})^{T} \\
&= \left((a^{2} - y) \odot (a^{2} - a^{2} \odot a^{2})\right) (a^{1})^{T} \\
&= \left((a^{2} - y) \odot \sigma(z^{2}) \odot (1 - \sigma(z^{2}))\right) (a^{1})^{T} \\
&= \left((a^{2} - y) \odot \sigma'(z^{2})\right) (\sigma(z^{1}))^{T} \\
&= \delta^{2} (\sigma(z^{1}))^{T} \\
&= \delta^{2} (a^{1})^{T}
\end{align*}"""
GRAPHS = [("(x + y) * z", {"x": -2, "y": 5, "z": -4}),
          (r"\frac{1}{1 + e^{-(w_0 x_0 + w_1 x_1 + w_2)}}", {"w0": 2, "x0": -1, "w1": -3, "x1": -2, "w2": -3})]


def request_of(kind: str, n: int) -> tuple[str, dict]:
    if kind == "claim":
        return "/api/verify", {"example": "seed004_mlp_column", "param": PARAMS[n % 5], "claim": CLAIMS[n % 5]}
    if kind == "derivation":
        return "/api/verify", {"example": "seed004_mlp_column", "derivation": DERIVATION}
    if kind == "graph":
        expression, at = GRAPHS[n % 2]
        return "/api/graph", {"expression": expression, "at": at}
    return "/api/build", {"example": ["seed004_mlp_column", "seed003_rashid_summation"][n % 2], "lang": "en"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
            except OSError:
                continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def run_clients(port: int, kind: str, count: int, clients: int, deadline: float) -> dict:
    """`count` requests of one kind from `clients` threads with keep-alive connections."""
    latencies, errors, lock = [], [], threading.Lock()
    counter = iter(range(count))

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while time.monotonic() < deadline:
            with lock:
                n = next(counter, None)
            if n is None:
                break
            path, body = request_of(kind, n)
            start = time.perf_counter()
            try:
                conn.request("POST", path, json.dumps(body), {"content-type": "application/json"})
                response = conn.getresponse()
                data = response.read()
                ok = response.status == 200 and (kind == "graph" or kind == "build" or b'"verdict"' in data)
            except (OSError, http.client.HTTPException) as exc:
                ok, data = False, str(exc).encode()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            took = time.perf_counter() - start
            with lock:
                latencies.append(took)
                if not ok:
                    errors.append(data[:200])
        conn.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    latencies.sort()
    q = statistics.quantiles(latencies, n=20) if len(latencies) >= 2 else latencies * 19
    return {"kind": kind, "requests": len(latencies), "errors": len(errors), "seconds": wall,
            "throughput": len(latencies) / wall, "p50_ms": 1000 * statistics.median(latencies),
            "p95_ms": 1000 * q[18], "first_error": errors[0].decode(errors="replace") if errors else ""}


def in_process_claim_ms(repeats: int = 50) -> float:
    """The peer: the same claims judged in this process, the network derived once."""
    sys.path.insert(0, str(ROOT))
    from derive.engine import derive
    from derive.resources import example_text
    from derive.spec import loads
    from derive.verify import verify_claim

    result = derive(loads(example_text("seed004_mlp_column")), levels=("matrix",))
    for n in range(5):
        verify_claim(result, PARAMS[n], CLAIMS[n])
    times = []
    for n in range(repeats):
        start = time.perf_counter()
        verify_claim(result, PARAMS[n % 5], CLAIMS[n % 5])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None, help="derive serve --workers (default: one per core)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--memory-requests", type=int, default=2000)
    parser.add_argument("--max-seconds", type=float, default=600, help="the whole run stops by then")
    args = parser.parse_args()

    port = _free_port()
    command = [sys.executable, "-m", "derive.cli", "serve", "--port", str(port)]
    if args.workers:
        command += ["--workers", str(args.workers)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + args.max_seconds
    try:
        for _ in range(300):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/healthz")
                health = json.loads(conn.getresponse().read())
                break
            except OSError:
                time.sleep(0.2)
        else:
            print("derive serve did not start")
            return 1
        print(f"derive serve: {health['workers']} workers, {os.cpu_count()} cores; {args.clients} concurrent clients")
        for kind in ("claim", "graph"):                  # warm: each worker has derived the example once
            run_clients(port, kind, 4 * args.clients, args.clients, deadline)
        peer = in_process_claim_ms()
        plan = [("claim", 400), ("derivation", 100), ("graph", 400), ("build", 40)]
        print(f"{'request':<11} {'count':>6} {'errors':>6} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8}")
        results = []
        for kind, count in plan:
            r = run_clients(port, kind, count, args.clients, deadline)
            results.append(r)
            print(f"{kind:<11} {r['requests']:>6} {r['errors']:>6} {r['throughput']:>7.1f} {r['p50_ms']:>8.1f} "
                  f"{r['p95_ms']:>8.1f}" + (f"   first error: {r['first_error']}" if r["errors"] else ""))
        claim = results[0]
        service = 1000 * health["workers"] / claim["throughput"]      # a worker's time per claim, queueing aside
        print(f"peer: the same claim in process (no HTTP, no worker): median {peer:.1f} ms; served, a worker's "
              f"time per claim {service:.1f} ms = {service / peer:.1f}x; p50 = {claim['p50_ms'] / peer:.1f}x "
              f"(with {args.clients} clients queueing for {health['workers']} workers)")
        print(f"claim p95 {claim['p95_ms']:.0f} ms: target < 300 ms {'met' if claim['p95_ms'] < 300 else 'NOT met'}")

        samples, done, errors = [tree_rss_mb(server.pid)], 0, 0
        while done < args.memory_requests and time.monotonic() < deadline:
            for kind in ("claim", "graph"):
                r = run_clients(port, kind, 100, args.clients, deadline)
                done += r["requests"]
                errors += r["errors"]
            samples.append(tree_rss_mb(server.pid))
        print(f"memory over {done} requests ({errors} errors), server and workers, MB every 200: "
              + " ".join(f"{m:.0f}" for m in samples))
        growth = samples[-1] - samples[1] if len(samples) > 2 else 0.0
        print(f"growth after the first 200: {growth:+.0f} MB ({100 * growth / samples[1]:+.1f}%)")
        total_errors = sum(r["errors"] for r in results) + errors
        print(f"errors in all: {total_errors}")
        return 0 if total_errors == 0 else 1
    finally:
        server.terminate()
        server.wait(20)


if __name__ == "__main__":
    sys.exit(main())
