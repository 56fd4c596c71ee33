"""Shared timing for the benchmarks: medians, because the machines here are noisy."""
import statistics
import time


def median_time(fn, repeats: int, warm_up: bool = True) -> float:
    if warm_up:
        fn()  # first call pays for imports, caches and JAX compilation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
