"""Scripts out of process: JavaScript (QuickJS) and jq programs run in sandbox helper processes.

libjq has no time or memory limit of its own. QuickJS has both, but its time limit reads ``clock()``, the CPU time
of the whole process: in the node, concurrent scripts and the event loop would spend one another's budget, and a
legitimate script would fail early on a busy node. A helper runs one evaluation at a time, so there that clock is
the evaluation's own.

A helper is a small Python process running this file (the standard library, ``jq`` and ``quickjs``, nothing of
Partita), reached over pipes and used by one thread at a time. It runs with an address-space limit
(``RLIMIT_AS``), a CPU-time backstop (``RLIMIT_CPU``, which stops a runaway program even if the node is gone), no
core dumps, no new file descriptors (so jq's ``import``/``include`` cannot read files) and an empty environment (so
``$ENV`` shows nothing of the node). The parent gives each evaluation a wall-clock deadline. For jq that is the
time limit. JavaScript stops itself when it has used its time limit of the helper's CPU; its deadline, twice the
limit and a second, only catches what the interpreter cannot interrupt, and leaves room for a helper that gets a
fair share of a busy machine's CPU. A helper that misses its deadline is killed by PID, as is one that dies, and
the next evaluation starts a fresh one. Helpers start on demand, at most ``POOL_SIZE`` at a time (more callers
wait for a free one), serve either language, stay for the next evaluation, and are stopped when the interpreter
exits. A helper compiles each jq program once (an LRU cache: compiling costs ~1.5 ms, running a simple program a
few µs); each JavaScript evaluation gets a fresh QuickJS context, so nothing one script does is seen by the next.

Protocol, one request at a time: the parent writes ``_REQUEST``, the program (UTF-8) and the input (JSON); the
helper answers ``_REPLY`` and a payload: a result, or an error message.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import os
import queue
import re
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, final

POOL_SIZE: Final = 4  # as many as a node runs script decisions at once (node.SCRIPT_THREADS)
PROGRAM_LIMIT_BYTES: Final = 64 * 1024  # of a jq program
STARTUP_SECONDS: Final = 30.0  # a helper not ready by then is broken, not slow
CACHE_SIZE: Final = 64  # compiled jq programs kept per helper
MESSAGE_LIMIT: Final = 1000  # characters of an error message sent back
# What a JavaScript helper may map beyond the script's heap: the input and output as Python strings, their UTF-8
# copies, the binding's buffers. QuickJS's own heap limit is the limit; this is only a backstop.
_JAVASCRIPT_SLACK_BYTES: Final = 64 * 1024 * 1024


class _Request(NamedTuple):
    """A request's header; the program and the input follow it."""

    language: bytes  # _JQ or _JAVASCRIPT
    program_bytes: int
    input_bytes: int
    memory_bytes: int  # jq: the address space beyond the helper's own; JavaScript: QuickJS's heap
    stack_bytes: int  # JavaScript's stack (jq: 0)
    output_bytes: int
    seconds: float  # the time limit
    now: float  # what JavaScript's clock says, in ms (jq: 0)
    seed: int  # JavaScript's Math.random (jq: 0)


@dataclass(frozen=True, slots=True)
class _Budget:
    """What the parent allows a request, and what its messages call the program."""

    noun: str  # "jq program" or "script"
    time_seconds: float  # the time limit the messages state
    wall_seconds: float  # when the parent gives up on the helper and kills it
    memory_bytes: int
    output_bytes: int


_REQUEST: Final = struct.Struct("!cIIQQQddI")  # a _Request
_REPLY: Final = struct.Struct("!cI")  # status, payload bytes
_JQ: Final = b"q"
_JAVASCRIPT: Final = b"j"
_READY: Final = b"!"
_RESULTS: Final = b"R"  # payload: JSON (jq: the results, one array; JavaScript: the value)
_STRING: Final = b"S"  # payload: JavaScript's value, a string (UTF-8)
_FAILED: Final = b"E"  # payload: the error message
_OUTPUT: Final = b"O"  # jq's results exceeded the output limit
_MEMORY: Final = b"M"  # Python ran out of memory (libjq aborts instead: see _Helper._died)

# JavaScript's environment, evaluated before the script: ``$`` is the input; ``Date`` (however reached) and
# ``performance`` are frozen to the decision's clock and ``Math.random`` is seeded.
_PRELUDE: Final = """
var $ = JSON.parse(__partita_input);
(function () {
  var frozen = __partita_now;
  var RealDate = Date;
  function FrozenDate() {
    if (!new.target) return new RealDate(frozen).toString();
    if (arguments.length === 0) return new RealDate(frozen);
    return new (Function.prototype.bind.apply(RealDate, [null].concat(Array.prototype.slice.call(arguments))))();
  }
  FrozenDate.prototype = RealDate.prototype;
  FrozenDate.now = function () { return frozen; };
  FrozenDate.UTC = RealDate.UTC;
  FrozenDate.parse = RealDate.parse;
  // (new Date()).constructor would otherwise be the real, ticking Date
  Object.defineProperty(RealDate.prototype, "constructor", { value: FrozenDate, writable: true, configurable: true });
  globalThis.Date = FrozenDate;
  globalThis.performance = { now: function () { return 0; }, timeOrigin: frozen };
  // Conductor hands scripts Java Lists: keep the scripts written for it (list.get(i), list.size()) working.
  [["get", function (i) { return this[i]; }], ["size", function () { return this.length; }],
   ["isEmpty", function () { return this.length === 0; }],
   ["contains", function (v) { return this.indexOf(v) !== -1; }]].forEach(function (m) {
    Object.defineProperty(Array.prototype, m[0], { value: m[1], writable: true, configurable: true });
  });
  var seed = __partita_seed;
  Math.random = function () { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
})();
"""

# Runs the script as a global script (an indirect eval, so its last expression is its value) and serialises the
# value before returning, within the limits: "J" + JSON for objects, "S" + the string, "L" when too large. What
# it uses is taken before the script runs, so the script cannot replace it. Strings are returned through
# ``join``, which makes them flat: the binding cannot read a concatenated (rope) string.
_RUN: Final = """
(function (run, script, stringify, AsyncResult, apply, join, limit) {
  var value = run(script);
  if (value instanceof AsyncResult) {
    throw new TypeError("the script's value is a Promise: import() and asynchronous results are not supported");
  }
  if (typeof value === "string") return value.length > limit ? "L" : apply(join, ["S", value], [""]);
  if ((typeof value === "object" && value !== null) || typeof value === "function") {
    var text = stringify(value);
    if (text === undefined) return undefined;
    return text.length > limit ? "L" : apply(join, ["J", text], [""]);
  }
  return value;
})(eval, __partita_script, JSON.stringify, Promise, Reflect.apply, Array.prototype.join, __partita_limit)
"""


class SandboxError(Exception):
    """A program failed or exceeded a limit; the message says which."""


def describe_size(size: int) -> str:
    """``size`` bytes for a message: ``32 MiB``, ``64 KiB`` or ``1000 bytes``."""
    for unit, scale in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


def _exceeded(noun: str, limit: str, size: int) -> str:
    return f"{noun} exceeded the {limit} limit of {describe_size(size)}"


def _out_of_time(noun: str, seconds: float) -> str:
    return f"{noun} exceeded the time limit of {seconds:g} s"


def evaluate_jq(
    program: str, data: bytes, *, time_seconds: float, memory_bytes: int, output_bytes: int
) -> list[object]:
    """Every value ``program`` produces for the JSON document ``data``. ``memory_bytes`` is what the program may
    allocate beyond the helper's own needs; ``output_bytes`` bounds the JSON array of the results."""
    code = _encode(program, "jq program")
    if len(code) > PROGRAM_LIMIT_BYTES:
        raise SandboxError(f"jq program is longer than the limit of {describe_size(PROGRAM_LIMIT_BYTES)}")
    budget = _Budget("jq program", time_seconds, time_seconds, memory_bytes, output_bytes)
    request = _Request(_JQ, len(code), len(data), memory_bytes, 0, output_bytes, time_seconds, 0.0, 0)
    status, payload = _POOL.call(_REQUEST.pack(*request) + code + data, budget)
    if status != _RESULTS:
        raise _refusal(status, payload, budget)
    results: list[object] = _decode(payload, "jq program produced a result nested too deeply to read")
    return results


def evaluate_javascript(
    script: str,
    bindings: bytes,
    *,
    now: float,
    seed: int,
    time_seconds: float,
    memory_bytes: int,
    stack_bytes: int,
    output_bytes: int,
) -> object:
    """The value of the script's last expression, as JSON-compatible Python data, with ``$`` bound to the JSON
    document ``bindings``, ``Date.now()`` being ``now`` and ``Math.random`` seeded with ``seed``.
    ``time_seconds`` is CPU time of the helper, which runs nothing else meanwhile."""
    code = _encode(script, "script")
    budget = _Budget("script", time_seconds, _javascript_deadline(time_seconds), memory_bytes, output_bytes)
    request = _Request(
        _JAVASCRIPT, len(code), len(bindings), memory_bytes, stack_bytes, output_bytes, time_seconds, now, seed
    )
    status, payload = _POOL.call(_REQUEST.pack(*request) + code + bindings, budget)
    if status == _STRING:
        return payload.decode(errors="surrogatepass")
    if status != _RESULTS:
        raise _refusal(status, payload, budget)
    return _decode(payload, "the script's result is nested too deeply to read")


def close() -> None:
    """Stop every helper now (they are stopped at interpreter exit anyway); the next evaluation starts afresh."""
    _POOL.close()


def _javascript_deadline(time_seconds: float) -> float:
    """Seconds of wall-clock time a script may take. QuickJS stops a script when it has used its time limit of the
    helper's CPU; the deadline catches only what the interpreter cannot interrupt (compiling, a helper that makes
    no progress at all), and leaves room for a helper with a fair share of a busy machine's CPU."""
    return 2 * time_seconds + 1.0


def _encode(program: str, noun: str) -> bytes:
    try:
        return program.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate: no text either engine could read
        raise SandboxError(f"{noun} is not valid text: {exc}") from None


def _decode(payload: bytes, too_deep: str) -> Any:  # Any: JSON
    try:
        return json.loads(payload)
    except RecursionError as exc:  # deeper than this thread can decode: no task output could hold it
        raise SandboxError(too_deep) from exc


def _refusal(status: bytes, payload: bytes, budget: _Budget) -> SandboxError:
    """The failure a helper's reply other than a result reports."""
    if status == _FAILED:
        return SandboxError(payload.decode(errors="replace"))
    if status == _OUTPUT:
        return SandboxError(_exceeded(budget.noun, "output", budget.output_bytes))
    return SandboxError(_exceeded(budget.noun, "memory", budget.memory_bytes))


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
            raise SandboxError(f"sandbox failed to start: {self.close() or type(exc).__name__}") from None

    def call(self, request: bytes, budget: _Budget) -> tuple[bytes, bytes]:
        """Send one request and read its reply. Any exception leaves the helper unusable: close it."""
        if self._closed:  # stopped at interpreter exit while idle
            raise _Stale
        deadline = time.monotonic() + budget.wall_seconds
        try:
            self._send(request, deadline)
        except BrokenPipeError:
            raise _Stale from None
        except TimeoutError:
            raise SandboxError(_out_of_time(budget.noun, budget.time_seconds)) from None
        try:
            status, size = _REPLY.unpack(self._receive(_REPLY.size, deadline))
            if size > max(budget.output_bytes, 4 * MESSAGE_LIMIT):  # the helper enforces the limit: a bug
                raise SandboxError("sandbox answered out of protocol")
            return status, self._receive(size, deadline)
        except TimeoutError:
            raise SandboxError(_out_of_time(budget.noun, budget.time_seconds)) from None
        except EOFError:
            raise SandboxError(self._died(budget)) from None

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

    def _died(self, budget: _Budget) -> str:
        """Why the helper died during an evaluation, from its exit status and its last words."""
        words = self.close()
        status = self.process.wait()  # (close() returns at once if another thread is closing the helper)
        if status == -signal.SIGXCPU:
            return _out_of_time(budget.noun, budget.time_seconds)
        if "memory" in words.lower():  # libjq aborts with "cannot allocate memory"; Python says MemoryError
            return _exceeded(budget.noun, "memory", budget.memory_bytes)
        how = signal.Signals(-status).name if status < 0 else f"exit status {status}"
        return f"{budget.noun} crashed its sandbox ({how}; e.g. a value nested too deeply)"

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

    def call(self, request: bytes, budget: _Budget) -> tuple[bytes, bytes]:
        helper = self._idle.get()
        try:
            while True:
                fresh = helper is None
                if helper is None:
                    helper = self._start()
                try:
                    status, payload = helper.call(request, budget)
                except _Stale:  # it died while idle (killed from outside): the program never ran, so run it again
                    self._discard(helper)
                    helper = None
                    if fresh:
                        raise SandboxError("sandbox stopped before the program ran") from None
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
    import jq  # only a helper loads libjq and QuickJS
    import quickjs

    requests, replies = os.dup(0), os.dup(1)
    quiet = os.open(os.devnull, os.O_RDWR)
    os.dup2(quiet, 0)  # nothing the engines read or write can touch the protocol
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
        request = _Request._make(_REQUEST.unpack(header))
        program, data = _read(requests, request.program_bytes), _read(requests, request.input_bytes)
        if program is None or data is None:
            return
        usage = resource.getrusage(resource.RUSAGE_SELF)
        _set_limit(resource.RLIMIT_CPU, int(usage.ru_utime + usage.ru_stime + request.seconds) + 2)
        try:
            if request.language == _JAVASCRIPT:
                space = request.memory_bytes + 4 * (len(data) + 4 * request.output_bytes) + _JAVASCRIPT_SLACK_BYTES
                _set_limit(resource.RLIMIT_AS, baseline + space)
                status, payload = _run_javascript(quickjs, program.decode(), data.decode(), request)
            else:
                _set_limit(resource.RLIMIT_AS, baseline + request.memory_bytes)
                status, payload = _run_jq(jq, compiled, program.decode(), data.decode(), request.output_bytes)
        except MemoryError:
            status, payload = _MEMORY, b""
        _set_limit(resource.RLIMIT_AS, resource.RLIM_INFINITY)  # reading the next request is not the program's
        _write(replies, _REPLY.pack(status, len(payload)) + payload)


def _set_limit(kind: int, soft: int) -> None:
    _, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY and (soft == resource.RLIM_INFINITY or soft > hard):
        soft = hard
    resource.setrlimit(kind, (soft, hard))


def _run_jq(
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
        return _failed("jq program produced a result nested too deeply to read")
    except Exception as exc:  # jq reports its errors as ValueError; anything else is the program's failure too
        lines = str(exc).strip().splitlines()
        return _failed(conductor_jq_error(lines[0]) if lines else type(exc).__name__)
    return _RESULTS, b"[" + b",".join(parts) + b"]"


_INDEX_WITH_NAME: Final = re.compile(r'^Cannot index (\w+) with string \((".*")\)$')


def conductor_jq_error(message: str) -> str:
    """libjq's error message as Conductor's jq engine (jackson-jq) words it, where the two differ and a spec
    shows the difference: an object key is quoted, not parenthesised (``Cannot index string with string "a"``,
    JsonJQTransformSpec). Any other message is libjq's, unchanged."""
    return _INDEX_WITH_NAME.sub(r"Cannot index \1 with string \2", message)


def _run_javascript(quickjs: Any, script: str, data: str, request: _Request) -> tuple[bytes, bytes]:  # Any: untyped
    context = quickjs.Context()  # its own runtime: nothing one evaluation does is seen by the next
    context.set_memory_limit(request.memory_bytes)
    context.set_max_stack_size(request.stack_bytes)
    context.set("__partita_input", data)
    context.set("__partita_now", request.now)  # a double: quickjs-ng passes Python ints as int32
    context.set("__partita_seed", request.seed)
    context.set("__partita_script", script)
    context.set("__partita_limit", float(request.output_bytes))
    try:
        context.eval(_PRELUDE)
        context.set_time_limit(request.seconds)  # CPU time of this process, which runs nothing else meanwhile
        value = context.eval(_RUN)
    except quickjs.JSException as exc:
        return _failed(_javascript_failure(exc, request))
    except quickjs.StackOverflow:
        return _failed(_exceeded("script", "stack", request.stack_bytes))
    except (TypeError, UnicodeDecodeError) as exc:  # a value the binding cannot convert: a BigInt, or a string
        return _failed(f"script result cannot be read: {exc}")  # holding half a surrogate pair
    if isinstance(value, str):
        tag, text = value[:1], value[1:]
        if tag == "L" or _utf8_size(text, request.output_bytes) > request.output_bytes:
            return _failed(f"script result exceeds the output limit of {describe_size(request.output_bytes)}")
        return (_STRING if tag == "S" else _RESULTS), text.encode(errors="surrogatepass")
    try:
        return _RESULTS, json.dumps(value).encode()
    except TypeError:  # a Symbol, which the binding hands over as an opaque object
        return _failed(f"script result cannot be read: {type(value).__name__}")


def _utf8_size(text: str, limit: int) -> int:
    """``len(text.encode())``, computed only if it can exceed ``limit``: JavaScript checked the length in UTF-16
    units, and each takes one to three bytes in UTF-8."""
    return len(text) if len(text) * 3 <= limit else len(text.encode(errors="surrogatepass"))


def _javascript_failure(exc: Exception, request: _Request) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "interrupted" in message:
        return _out_of_time("script", request.seconds)
    if "out of memory" in message:
        return _exceeded("script", "memory", request.memory_bytes)
    if "Maximum call stack size exceeded" in message:
        return _exceeded("script", "stack", request.stack_bytes)
    if message == "null":  # QuickJS throws null when it cannot even allocate the out-of-memory error
        return _exceeded("script", "memory", request.memory_bytes) + " (or threw null)"
    return message


def _failed(message: str) -> tuple[bytes, bytes]:
    return _FAILED, message[:MESSAGE_LIMIT].encode(errors="replace")


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
