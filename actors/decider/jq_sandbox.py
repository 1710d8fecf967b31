"""jq programs out of process: libjq has no time or memory limit, so a program runs in a helper process.

A helper is a small Python process running this file (the standard library and ``jq``, nothing of Partita),
reached over pipes and used by one thread at a time. It runs with an address-space limit (``RLIMIT_AS``), a
CPU-time backstop (``RLIMIT_CPU``, which stops a runaway program even if the node is gone), no core dumps, no
new file descriptors (so jq's ``import``/``include`` cannot read files) and an empty environment (so ``$ENV``
shows nothing of the node). The time limit is the caller's wall-clock deadline: a helper that misses it is
killed by PID, as is one that dies, and the next evaluation starts a fresh one. Helpers start on demand, at
most ``POOL_SIZE`` at a time (more callers wait for a free one), stay for the next evaluation, compile each
program once (an LRU cache: compiling costs ~1.5 ms, running a simple program a few µs), and are stopped
when the interpreter exits.

Protocol, one request at a time: the parent writes ``_REQUEST``, the program (UTF-8) and the input (JSON); the
helper answers ``_REPLY`` and a payload: the results as one JSON array, or an error message.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import os
import queue
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from typing import Any, Final, final

POOL_SIZE: Final = 4  # as many as a node runs script decisions at once (node.SCRIPT_THREADS)
PROGRAM_LIMIT_BYTES: Final = 64 * 1024
STARTUP_SECONDS: Final = 30.0  # a helper not ready by then is broken, not slow
CACHE_SIZE: Final = 64  # compiled programs kept per helper
MESSAGE_LIMIT: Final = 1000  # characters of an error message sent back

_REQUEST: Final = struct.Struct("!IIQQd")  # program bytes, input bytes, memory bytes, output bytes, CPU seconds
_REPLY: Final = struct.Struct("!cI")  # status, payload bytes
_READY: Final = b"!"
_RESULTS: Final = b"R"  # payload: the results, one JSON array
_FAILED: Final = b"E"  # payload: jq's error message
_OUTPUT: Final = b"O"  # the results exceeded the output limit
_MEMORY: Final = b"M"  # Python ran out of memory (libjq aborts instead: see _Helper._died)


class JqError(Exception):
    """A jq program failed or exceeded a limit; the message says which."""


def describe_size(size: int) -> str:
    """``size`` bytes for a message: ``32 MiB``, ``64 KiB`` or ``1000 bytes``."""
    for unit, scale in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


def evaluate(program: str, data: bytes, *, time_seconds: float, memory_bytes: int, output_bytes: int) -> list[object]:
    """Every value ``program`` produces for the JSON document ``data``. ``memory_bytes`` is what the program may
    allocate beyond the helper's own needs; ``output_bytes`` bounds the JSON array of the results."""
    code = program.encode()
    if len(code) > PROGRAM_LIMIT_BYTES:
        raise JqError(f"jq program is longer than the limit of {describe_size(PROGRAM_LIMIT_BYTES)}")
    request = _REQUEST.pack(len(code), len(data), memory_bytes, output_bytes, time_seconds) + code + data
    status, payload = _POOL.call(
        request, time_seconds=time_seconds, memory_bytes=memory_bytes, output_bytes=output_bytes
    )
    if status == _RESULTS:
        try:
            results: list[object] = json.loads(payload)
        except RecursionError as exc:  # deeper than this thread can decode: no task output could hold it
            raise JqError("jq program produced a result nested too deeply to read") from exc
        return results
    if status == _FAILED:
        raise JqError(payload.decode(errors="replace"))
    if status == _OUTPUT:
        raise JqError(f"jq program exceeded the output limit of {describe_size(output_bytes)}")
    raise JqError(f"jq program exceeded the memory limit of {describe_size(memory_bytes)}")


def close() -> None:
    """Stop every helper now (they are stopped at interpreter exit anyway); the next evaluation starts afresh."""
    _POOL.close()


class _Stale(Exception):
    """The helper was gone before a request reached it: the program never ran."""


@final
class _Helper:
    """One helper process and the parent's ends of its pipes."""

    def __init__(self) -> None:
        requests_in, self._requests = os.pipe()
        self._replies, replies_out = os.pipe()
        self._errors, errors_out = os.pipe()
        self._closed = False
        self._closing = threading.Lock()  # at exit, the pool may close a helper a worker thread is using
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", os.path.abspath(__file__)],
                stdin=requests_in,
                stdout=replies_out,
                stderr=errors_out,
                env={},  # jq's $ENV and env see nothing of the node
                start_new_session=True,  # a Ctrl-C at the terminal is for the node to handle, not its helpers
            )
        except BaseException:
            for fd in (self._requests, self._replies, self._errors):
                os.close(fd)
            raise
        finally:
            for fd in (requests_in, replies_out, errors_out):
                os.close(fd)
        for fd in (self._requests, self._replies, self._errors):
            os.set_blocking(fd, False)
        self._readable = select.poll()
        self._readable.register(self._replies, select.POLLIN)
        self._writable = select.poll()
        self._writable.register(self._requests, select.POLLOUT)
        try:
            self._receive(len(_READY), time.monotonic() + STARTUP_SECONDS)
        except (TimeoutError, EOFError) as exc:
            raise JqError(f"jq sandbox failed to start: {self.close() or type(exc).__name__}") from None

    def call(self, request: bytes, *, time_seconds: float, memory_bytes: int, output_bytes: int) -> tuple[bytes, bytes]:
        """Send one request and read its reply. Any exception leaves the helper unusable: close it."""
        if self._closed:  # stopped at interpreter exit while idle
            raise _Stale
        deadline = time.monotonic() + time_seconds
        try:
            self._send(request, deadline)
        except BrokenPipeError:
            raise _Stale from None
        except TimeoutError:
            raise JqError(f"jq program exceeded the time limit of {time_seconds:g} s") from None
        try:
            status, size = _REPLY.unpack(self._receive(_REPLY.size, deadline))
            if size > max(output_bytes, 4 * MESSAGE_LIMIT):  # the helper enforces the limit: a bug, not a result
                raise JqError("jq sandbox answered out of protocol")
            return status, self._receive(size, deadline)
        except TimeoutError:
            raise JqError(f"jq program exceeded the time limit of {time_seconds:g} s") from None
        except EOFError:
            raise JqError(self._died(time_seconds, memory_bytes)) from None

    def _send(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._requests, view) :]
            except BlockingIOError:
                self._wait(self._writable, deadline)

    def _receive(self, size: int, deadline: float) -> bytes:
        chunks = bytearray()
        while len(chunks) < size:
            try:
                chunk = os.read(self._replies, size - len(chunks))
            except BlockingIOError:
                self._wait(self._readable, deadline)
                continue
            if not chunk:
                raise EOFError
            chunks += chunk
        return bytes(chunks)

    @staticmethod
    def _wait(poller: select.poll, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            raise TimeoutError

    def _died(self, time_seconds: float, memory_bytes: int) -> str:
        """Why the helper died during an evaluation, from its exit status and its last words."""
        words = self.close()
        status = self.process.wait()  # (close() returns at once if another thread is closing the helper)
        if status == -signal.SIGXCPU:
            return f"jq program exceeded the time limit of {time_seconds:g} s"
        if "memory" in words.lower():  # libjq aborts with "cannot allocate memory"; Python says MemoryError
            return f"jq program exceeded the memory limit of {describe_size(memory_bytes)}"
        how = signal.Signals(-status).name if status < 0 else f"exit status {status}"
        return f"jq program crashed its sandbox ({how}; e.g. a value nested too deeply)"

    def close(self, *, grace: float = 0.0) -> str:
        """Stop the helper, by PID unless it exits within ``grace`` of being told to, and return the end of what
        it wrote to stderr. Idempotent."""
        with self._closing:
            if self._closed:
                return ""
            self._closed = True
        os.close(self._requests)  # end of input: an idle helper exits
        if grace:
            with contextlib.suppress(subprocess.TimeoutExpired):  # then it is killed
                self.process.wait(timeout=grace)
        if self.process.returncode is None:
            self.process.kill()
        self.process.wait()
        words = bytearray()
        while len(words) < 65536:
            try:
                chunk = os.read(self._errors, 65536)
            except BlockingIOError:  # pragma: no cover -- the helper has exited, so its end is closed
                break
            if not chunk:
                break
            words += chunk
        os.close(self._replies)
        os.close(self._errors)
        return words.decode(errors="replace").strip()[-MESSAGE_LIMIT:]

    def forget(self) -> None:
        """In a forked child: drop this process's copies of the pipes; the helper is the parent's."""
        if not self._closed:
            self._closed = True
            for fd in (self._requests, self._replies, self._errors):
                os.close(fd)


@final
class _Pool:
    """At most ``size`` helpers, each serving one caller at a time."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._inherited: list[_Helper] = []
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._idle: queue.LifoQueue[_Helper | None] = queue.LifoQueue()
        self._live: set[_Helper] = set()
        for _ in range(self._size):
            self._idle.put(None)  # a free slot without a helper yet: one starts on first use

    def call(self, request: bytes, *, time_seconds: float, memory_bytes: int, output_bytes: int) -> tuple[bytes, bytes]:
        helper = self._idle.get()
        try:
            while True:
                fresh = helper is None
                if helper is None:
                    helper = self._start()
                try:
                    status, payload = helper.call(
                        request, time_seconds=time_seconds, memory_bytes=memory_bytes, output_bytes=output_bytes
                    )
                except _Stale:  # it died while idle (killed from outside): the program never ran, so run it again
                    self._discard(helper)
                    helper = None
                    if fresh:
                        raise JqError("jq sandbox stopped before the program ran") from None
                    continue
                except BaseException:  # mid-protocol (a limit, a death, an interrupt): this helper is done
                    self._discard(helper)
                    helper = None
                    raise
                if status == _MEMORY:  # after a MemoryError the helper may be short of memory: start afresh
                    self._discard(helper)
                    helper = None
                return status, payload
        finally:
            self._idle.put(helper)

    def _start(self) -> _Helper:
        helper = _Helper()
        with self._lock:
            self._live.add(helper)
        return helper

    def _discard(self, helper: _Helper) -> None:
        with self._lock:
            self._live.discard(helper)
        helper.close()

    def close(self) -> None:
        """Stop every helper, idle or busy. The idle slots keep the stopped ones, which are replaced when met."""
        with self._lock:
            helpers, self._live = self._live, set()
        for helper in helpers:
            helper.close(grace=1.0)

    def forget(self) -> None:
        """In a forked child: the helpers are the parent's (kept referenced, so never collected as if running)."""
        for helper in self._live:
            helper.forget()
        self._inherited.extend(self._live)
        self._reset()


# --- the helper process ----------------------------------------------------------------------------------


def _serve() -> None:
    import jq  # only a helper loads libjq

    requests, replies = os.dup(0), os.dup(1)
    quiet = os.open(os.devnull, os.O_RDWR)
    os.dup2(quiet, 0)  # nothing libjq reads or writes can touch the protocol
    os.dup2(quiet, 1)
    os.close(quiet)
    os.set_blocking(2, False)  # a full stderr pipe must never block the helper
    with open("/proc/self/statm", "rb") as statm:
        baseline = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    lowest_free = os.dup(2)
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, lowest_free))  # no file can be opened from now on
    compiled: collections.OrderedDict[str, Any] = collections.OrderedDict()
    _write(replies, _READY)
    while True:
        header = _read(requests, _REQUEST.size)
        if header is None:
            return  # the node closed the pipe: it is done with this helper
        program_size, data_size, memory_bytes, output_bytes, cpu_seconds = _REQUEST.unpack(header)
        program, data = _read(requests, program_size), _read(requests, data_size)
        if program is None or data is None:
            return
        usage = resource.getrusage(resource.RUSAGE_SELF)
        _set_limit(resource.RLIMIT_CPU, int(usage.ru_utime + usage.ru_stime + cpu_seconds) + 2)
        _set_limit(resource.RLIMIT_AS, baseline + memory_bytes)
        try:
            status, payload = _run(jq, compiled, program.decode(), data.decode(), output_bytes)
        except MemoryError:
            status, payload = _MEMORY, b""
        _set_limit(resource.RLIMIT_AS, resource.RLIM_INFINITY)  # reading the next request is not the program's
        _write(replies, _REPLY.pack(status, len(payload)) + payload)


def _set_limit(kind: int, soft: int) -> None:
    _, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY and (soft == resource.RLIM_INFINITY or soft > hard):
        soft = hard
    resource.setrlimit(kind, (soft, hard))


def _run(
    jq: Any, compiled: collections.OrderedDict[str, Any], program: str, data: str, output_bytes: int
) -> tuple[bytes, bytes]:  # Any: the jq binding is untyped
    try:
        query = compiled.pop(program) if program in compiled else jq.compile(program)
        compiled[program] = query
        if len(compiled) > CACHE_SIZE:
            compiled.popitem(last=False)
        parts: list[bytes] = []
        size = 1  # "[" and "]", less the comma counted for the first value
        for value in query.input_text(data):
            part = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
            size += len(part) + 1
            if size > output_bytes:
                return _OUTPUT, b""
            parts.append(part)
    except MemoryError:
        raise
    except RecursionError:  # a value nested deeper than Python's JSON handles; much deeper crashes libjq itself
        return _FAILED, b"jq program produced a result nested too deeply to read"
    except Exception as exc:  # jq reports its errors as ValueError; anything else is the program's failure too
        lines = str(exc).strip().splitlines()
        return _FAILED, (lines[0] if lines else type(exc).__name__)[:MESSAGE_LIMIT].encode()
    return _RESULTS, b"[" + b",".join(parts) + b"]"


def _read(fd: int, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = os.read(fd, size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


if __name__ == "__main__":
    _serve()
else:
    _POOL: Final = _Pool(POOL_SIZE)
    atexit.register(_POOL.close)
    os.register_at_fork(after_in_child=_POOL.forget)
