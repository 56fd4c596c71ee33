"""Worker processes for the web server: every request's work runs in one, under limits the server
enforces. A worker has an address-space rlimit (memory) and a CPU-time rlimit; the server waits for
its answer at most the task's time limit, then kills the worker's whole process group (LaTeX
included), removes its temporary folder and starts a replacement. A worker is also replaced after a
fixed number of tasks, so that no cache grows for the life of the server.

Workers are forked from a forkserver that has imported derive (a replacement starts in well under
a second), never from the server itself, whose event loop runs threads.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
import shutil
import signal
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Limits:
    seconds: float = 20.0            # wall-clock time of one task (a PDF: pdf_seconds)
    pdf_seconds: float = 120.0
    memory_mb: int = 2048            # address space of a worker and of what it starts (LaTeX)
    tasks_per_worker: int = 400
    queue_seconds: float = 60.0      # longest wait for a free worker before the request is turned away


class LimitExceeded(Exception):
    """A task ran past its time or memory limit; its worker was replaced."""

    def __init__(self, kind: str, limit: float):
        super().__init__(kind)
        self.kind, self.limit = kind, limit


class Busy(Exception):
    """No worker became free within the queue time."""


def _worker_main(conn, memory_bytes: int, cpu_seconds: int, temp_root: str) -> None:
    os.setpgrp()                                   # its LaTeX runs are killed with it
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C stops the server, which stops its workers
    tempfile.tempdir = temp_root                   # every temporary folder of this worker lives here
    os.environ["TMPDIR"] = temp_root
    from . import tasks

    while True:
        try:
            name, payload = conn.recv()
        except (EOFError, OSError):
            return
        try:
            answer = ("ok", tasks.run(name, payload))
        except MemoryError:
            conn.send(("memory", None))
            return                                 # a heap that hit its limit is not reused
        except Exception as exc:                   # tasks.run turns user errors into answers
            answer = ("internal", f"{type(exc).__name__}: {str(exc)[:300]}")
        conn.send(answer)


_CONTEXT = None


def _context():
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(["derive.web.preload"])
    return _CONTEXT


class Worker:
    def __init__(self, limits: Limits, temp_root: Path):
        ctx = _context()
        self.limits = limits
        self.folder = Path(tempfile.mkdtemp(prefix="worker-", dir=temp_root))
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_worker_main, daemon=True,
            args=(child, limits.memory_mb * 2**20, int(limits.pdf_seconds) + 10, str(self.folder)))
        self.process.start()
        child.close()
        self.tasks = 0

    def call(self, name: str, payload: dict, seconds: float):
        """(status, value) of one task; LimitExceeded when the worker had to be stopped."""
        self.tasks += 1
        self.conn.send((name, payload))
        if not self.conn.poll(seconds):
            self.stop()
            raise LimitExceeded("time", seconds)
        try:
            status, value = self.conn.recv()
        except (EOFError, OSError):             # it died: killed by the kernel (out of memory), or crashed
            self.stop()
            raise LimitExceeded("crash", 0) from None
        if status == "memory":
            self.stop()
            raise LimitExceeded("memory", self.limits.memory_mb)
        return status, value

    @property
    def worn(self) -> bool:
        return self.tasks >= self.limits.tasks_per_worker

    def stop(self) -> None:
        if self.process.pid is not None and self.process.is_alive():
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.process.kill()
        self.process.join(5)
        self.conn.close()
        shutil.rmtree(self.folder, ignore_errors=True)


class Pool:
    """`size` workers; `run` waits for a free one, runs a task there and hands the worker on."""

    def __init__(self, size: int, limits: Limits = Limits()):
        self.size, self.limits = size, limits
        self.temp_root = Path(tempfile.mkdtemp(prefix="derive-serve-"))
        self.idle: asyncio.Queue[Worker] | None = None
        self.replaced = 0
        self._lock = threading.Lock()
        self._workers: set[Worker] = set()

    def _new_worker(self) -> Worker:
        worker = Worker(self.limits, self.temp_root)
        with self._lock:
            self._workers.add(worker)
        return worker

    def _retire(self, worker: Worker) -> None:
        worker.stop()
        with self._lock:
            self._workers.discard(worker)

    async def start(self) -> None:
        self.idle = asyncio.Queue()
        workers = await asyncio.gather(*(asyncio.to_thread(self._new_worker) for _ in range(self.size)))
        for worker in workers:
            self.idle.put_nowait(worker)
        await asyncio.gather(*(self.run("warm", {}) for _ in range(self.size)))

    async def _replace(self, worker: Worker) -> None:
        await asyncio.to_thread(self._retire, worker)
        self.replaced += 1
        self.idle.put_nowait(await asyncio.to_thread(self._new_worker))

    async def run(self, name: str, payload: dict, seconds: float | None = None):
        seconds = seconds or self.limits.seconds
        try:
            worker = await asyncio.wait_for(self.idle.get(), self.limits.queue_seconds)
        except asyncio.TimeoutError:
            raise Busy() from None
        try:
            status, value = await asyncio.to_thread(worker.call, name, payload, seconds)
        except LimitExceeded:
            asyncio.create_task(self._replace(worker))   # the answer goes now; the new worker follows
            raise
        except BaseException:                            # cancelled mid-task: the worker's state is unknown
            asyncio.create_task(self._replace(worker))
            raise
        if worker.worn:
            asyncio.create_task(self._replace(worker))
        else:
            self.idle.put_nowait(worker)
        return status, value

    def pids(self) -> list[int]:
        with self._lock:
            return [w.process.pid for w in self._workers if w.process.pid]

    def close(self) -> None:
        with self._lock:
            workers = list(self._workers)
            self._workers.clear()
        for worker in workers:
            worker.stop()
        shutil.rmtree(self.temp_root, ignore_errors=True)
