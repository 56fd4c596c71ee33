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


def interleaved_medians(candidates: dict, repeats: int, rounds: int = 5) -> dict:
    """Median seconds per call of each candidate. The calls come in blocks, one block per candidate
    per round, so that drift of the machine (other jobs, clock changes) falls on all of them alike.
    Each block starts after a pause and two untimed calls: the thread pools of NumPy's BLAS,
    PyTorch and JAX spin for a while after their last call and would slow the next library down."""
    times = {name: [] for name in candidates}
    per_round = max(1, -(-repeats // rounds))
    for _ in range(rounds):
        for name, fn in candidates.items():
            time.sleep(0.25)
            fn()
            fn()
            for _ in range(per_round):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}
