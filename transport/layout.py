"""Names of everything Partita keeps in JetStream: streams, subjects, consumers, KV buckets and keys.

One :class:`Layout` per deployment prefix (default ``partita``), so several deployments can share a server.

Subjects::

    <prefix>.task.<type>.<domain>.<taskId>   task messages (work-queue stream <PREFIX>_TASKS); domain "_" = none
    <prefix>.tsched.<dispatchId>             schedules that publish a task message later (same stream)
    <prefix>.fence.<partition>               the partition's fence: its owner's dispatches name it (same stream)
    <prefix>.wf.<partition>.start            StartWorkflow            (stream <PREFIX>_EVENTS)
    <prefix>.wf.<partition>.result.<type>.<domain>    TaskResult from workers  (stream <PREFIX>_EVENTS)
    <prefix>.wf.<partition>.started.<type>.<domain>   TaskStarted from workers (only when the task asks for it)
    <prefix>.wf.<partition>.cmd              UpdateTask (and later operator commands) from clients
    <prefix>.wf.<partition>.timer            TimerFired, sourced from <prefix>.fired.<partition>
    <prefix>.timers.<id>                     a timer's schedule (stream <PREFIX>_TIMERS, nodes only; sealed id)
    <prefix>.fired.<partition>               what a timer's schedule publishes when due (same stream)
    <prefix>.esched.<id>                     timers' schedules in events streams made before <PREFIX>_TIMERS
    <prefix>.done.<workflowId>               core NATS: a workflow finished (for waiting clients)
    <prefix>.workers.<type>.<domain>         core NATS: a worker announces itself every 5 s
    <prefix>.event.<workflowType>.<name>     EVENT tasks' "conductor" sinks (stream <PREFIX>_EMITTED, 7 days)
    <prefix>.running.<partition>.<workflowId>   a workflow that has not ended (stream <PREFIX>_RUNNING, 1 each)

``partition = crc32(utf8(workflowId)) % partitions``. Names and domains that are not valid subject tokens are
escaped reversibly (:func:`escape_token`).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
NO_DOMAIN_TOKEN = "_"
NODE_CONSUMER_PREFIX = "node_"


def escape_token(value: str) -> str:
    """Escape ``value`` into one subject token that is also a valid KV key token and consumer-name part.

    Letters, digits, ``-`` and ``_`` stay; every other byte of the UTF-8 encoding becomes ``=XX`` (upper-case
    hex). A value that is exactly ``_`` is escaped too, because ``_`` alone means "no domain".
    """
    if not value:
        raise ValueError("cannot escape an empty name")
    if value == NO_DOMAIN_TOKEN:
        return "=5F"
    out: list[str] = []
    for char in value:
        if char in _SAFE:
            out.append(char)
        else:
            out.extend(f"={byte:02X}" for byte in char.encode())
    return "".join(out)


def unescape_token(token: str) -> str:
    """Inverse of :func:`escape_token`; raises ``ValueError`` for a token no escaping produces."""
    raw = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "=":
            pair = token[i + 1 : i + 3]
            if len(pair) != 2 or any(c not in "0123456789ABCDEF" for c in pair):
                raise ValueError(f"bad escape {token[i : i + 3]!r} in token {token!r}")
            raw.append(int(pair, 16))
            i += 3
        else:
            raw.extend(token[i].encode())
            i += 1
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise ValueError(f"token {token!r} does not unescape to UTF-8") from exc


def domain_token(domain: str | None) -> str:
    return NO_DOMAIN_TOKEN if domain is None else escape_token(domain)


def partition_of(workflow_id: str, partitions: int) -> int:
    """The event partition of a workflow: ``crc32(utf8(id)) % partitions``, stable in every language."""
    return zlib.crc32(workflow_id.encode()) % partitions


@dataclass(frozen=True, slots=True)
class Layout:
    prefix: str = "partita"
    partitions: int = 64

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.prefix):
            raise ValueError(f"prefix {self.prefix!r} must match {_PREFIX_RE.pattern}")
        if not 1 <= self.partitions <= 4096:
            raise ValueError(f"partitions must be within 1..4096, got {self.partitions}")

    # streams and buckets
    @property
    def tasks_stream(self) -> str:
        return f"{self.prefix.upper()}_TASKS"

    @property
    def events_stream(self) -> str:
        return f"{self.prefix.upper()}_EVENTS"

    @property
    def timers_stream(self) -> str:
        """Nodes' timers: schedules and what they fire, which the events stream sources as ``.timer`` events.
        Kept apart because a stream that allows schedules must allow roll-ups too (nats-server turns them on),
        and anyone who may publish to a stream with roll-ups can purge all of it: the events stream takes
        publishes from clients and workers, so it has neither."""
        return f"{self.prefix.upper()}_TIMERS"

    @property
    def dead_letter_stream(self) -> str:
        return f"{self.prefix.upper()}_DLQ"

    @property
    def emitted_stream(self) -> str:
        return f"{self.prefix.upper()}_EMITTED"

    @property
    def history_stream(self) -> str:
        return f"{self.prefix.upper()}_HISTORY"

    @property
    def running_stream(self) -> str:
        """An index of the workflows that have not ended: one subject per workflow under its partition, one
        message per subject (the reconciler lists a partition's without reading every record)."""
        return f"{self.prefix.upper()}_RUNNING"

    def running_subject(self, workflow_id: str) -> str:
        return f"{self.prefix}.running.{self.partition(workflow_id)}.{escape_token(workflow_id)}"

    def running_filter(self, partition: int) -> str:
        return f"{self.prefix}.running.{partition}.*"

    def parse_running_subject(self, subject: str) -> str | None:
        """The workflow id of a :meth:`running_subject`, or None for a subject Partita does not write."""
        parts = subject.split(".")
        if len(parts) != 4 or parts[:2] != [self.prefix, "running"] or not parts[2].isdigit():
            return None
        try:
            return unescape_token(parts[3])
        except ValueError:
            return None

    def history_subject(self, workflow_id: str) -> str:
        """Every transition of one workflow, in order (``partita workflow history``)."""
        return f"{self.prefix}.history.{escape_token(workflow_id)}"

    @property
    def workflows_bucket(self) -> str:
        return f"{self.prefix}_workflows"

    @property
    def payloads_bucket(self) -> str:
        """The object store of payloads over the size threshold (Conductor's external payload storage)."""
        return f"{self.prefix}_payloads"

    @property
    def limits_bucket(self) -> str:
        return f"{self.prefix}_limits"

    @property
    def members_bucket(self) -> str:
        """Live nodes: one key per member, refreshed every second (partition ownership)."""
        return f"{self.prefix}_members"

    @property
    def secrets_bucket(self) -> str:
        """Node-only values (the key that seals nodes' message ids on the events stream)."""
        return f"{self.prefix}_secrets"

    @property
    def definitions_bucket(self) -> str:
        return f"{self.prefix}_definitions"

    # task subjects
    def task_subject(self, task_type: str, domain: str | None) -> str:
        """The subjects of one (type, domain) queue: each task message goes to ``<this>.<taskId>``, so a canceled
        task's queued message can be purged by subject; the consumer filters on ``<this>.*``."""
        return f"{self.prefix}.task.{escape_token(task_type)}.{domain_token(domain)}"

    def task_message_subject(self, task_type: str, domain: str | None, task_id: str) -> str:
        return f"{self.task_subject(task_type, domain)}.{escape_token(task_id)}"

    def task_schedule_subject(self, dispatch_id: str) -> str:
        return f"{self.prefix}.tsched.{escape_token(dispatch_id)}"

    def fence_subject(self, partition: int) -> str:
        """One message per partition, published by each node that takes the partition: a task dispatch is stored
        only while the fence it names is the last one (actors/fencing.py)."""
        return f"{self.prefix}.fence.{partition}"

    def task_consumer(self, task_type: str, domain: str | None) -> str:
        """Deterministic durable name of the pull consumer for (type, domain)."""
        return f"task@{escape_token(task_type)}@{domain_token(domain)}"

    # event subjects
    def partition(self, workflow_id: str) -> int:
        return partition_of(workflow_id, self.partitions)

    def start_subject(self, workflow_id: str) -> str:
        return f"{self.prefix}.wf.{self.partition(workflow_id)}.start"

    def started_subject(self, workflow_id: str, task_type: str, domain: str | None) -> str:
        """Where a worker of (type, domain) reports that it started a task of the workflow."""
        return (
            f"{self.prefix}.wf.{self.partition(workflow_id)}.started.{escape_token(task_type)}.{domain_token(domain)}"
        )

    def command_subject(self, workflow_id: str) -> str:
        return f"{self.prefix}.wf.{self.partition(workflow_id)}.cmd"

    def timer_subject(self, workflow_id: str) -> str:
        return f"{self.prefix}.wf.{self.partition(workflow_id)}.timer"

    def timer_schedule_subject(self, timer_id: str) -> str:
        return f"{self.prefix}.timers.{escape_token(timer_id)}"

    def legacy_timer_schedule_subject(self, timer_id: str) -> str:
        """Where versions before the timers stream put a timer's schedule (in the events stream)."""
        return f"{self.prefix}.esched.{escape_token(timer_id)}"

    def fired_subject(self, workflow_id: str) -> str:
        """Where a timer's schedule publishes its ``TimerFired`` (in the timers stream); the events stream
        sources it as :meth:`timer_subject`."""
        return f"{self.prefix}.fired.{self.partition(workflow_id)}"

    @property
    def scheduler_prefixes(self) -> tuple[str, str]:
        """The subjects under which only nodes make schedules: what they fire is a node's timer."""
        return f"{self.prefix}.timers.", f"{self.prefix}.esched."

    def result_subject(self, workflow_id: str, task_type: str, domain: str | None) -> str:
        """Where a worker of (type, domain) reports a result: naming both lets NATS permissions confine a worker
        application to the task types and domains it is granted, and the node checks them against the task."""
        pair = f"{escape_token(task_type)}.{domain_token(domain)}"
        return f"{self.prefix}.wf.{self.partition(workflow_id)}.result.{pair}"

    @property
    def events_filter(self) -> str:
        return f"{self.prefix}.wf.>"

    @property
    def events_subjects(self) -> list[str]:
        """The events stream's subjects: each partition's, by number, so the stream refuses a message on a
        partition outside the layout (``<prefix>.wf.71.>`` with 64 partitions), which no node would read."""
        return [self.partition_filter(p) for p in range(self.partitions)]

    @property
    def timers_subjects(self) -> list[str]:
        return [f"{self.prefix}.timers.>", f"{self.prefix}.fired.*"]

    def partition_filter(self, partition: int) -> str:
        """Every event of one partition (a node's consumer filters on the partitions it owns)."""
        return f"{self.prefix}.wf.{partition}.>"

    @property
    def events_consumer(self) -> str:
        """The consumer all nodes shared before partitions were owned (removed when a node starts)."""
        return "nodes"

    def node_consumer(self, member: str) -> str:
        """The durable events consumer of one node (member name), filtered to the partitions it owns."""
        return f"{NODE_CONSUMER_PREFIX}{escape_token(member)}"

    def consumer_member(self, consumer: str) -> str | None:
        """The member a node consumer belongs to, or None for any other consumer."""
        if not consumer.startswith(NODE_CONSUMER_PREFIX):
            return None
        try:
            return unescape_token(consumer[len(NODE_CONSUMER_PREFIX) :])
        except ValueError:
            return None

    def worker_announce_subject(self, task_type: str, domain: str | None) -> str:
        return f"{self.prefix}.workers.{escape_token(task_type)}.{domain_token(domain)}"

    @property
    def workers_filter(self) -> str:
        return f"{self.prefix}.workers.*.*"

    def parse_worker_subject(self, subject: str) -> tuple[str, str | None] | None:
        """``(taskType, domain)`` of an announcement subject, or None."""
        parts = subject.split(".")
        if len(parts) != 4 or parts[0] != self.prefix or parts[1] != "workers":
            return None
        try:
            task_type = unescape_token(parts[2])
            domain = None if parts[3] == NO_DOMAIN_TOKEN else unescape_token(parts[3])
        except ValueError:
            return None
        if escape_token(task_type) != parts[2] or domain_token(domain) != parts[3]:
            return None  # not how Partita writes names (`*`, `>`, `=61`): nobody announces that
        return task_type, domain

    def done_subject(self, workflow_id: str) -> str:
        return f"{self.prefix}.done.{escape_token(workflow_id)}"

    def parse_event_subject(self, subject: str) -> tuple[str, str | None]:
        """``(kind, task_type)`` of an event subject; kind is ``start``, ``result``, ``cmd``, ``timer`` or
        ``unknown``."""
        parts = subject.split(".")
        if len(parts) >= 4 and parts[0] == self.prefix and parts[1] == "wf":
            if parts[3] in ("start", "cmd", "timer") and len(parts) == 4:
                return parts[3], None
            if parts[3] in ("result", "started") and len(parts) in (5, 6):  # 5: before domains were named
                try:
                    return parts[3], unescape_token(parts[4])
                except ValueError:
                    return "unknown", None
        return "unknown", None

    @staticmethod
    def report_domain(subject: str) -> tuple[bool, str | None] | None:
        """For a result or start-report subject: ``(True, domain)`` when it names a domain (None = no domain),
        ``(False, None)`` for the older form without one, and None for a domain token Partita never writes."""
        parts = subject.split(".")
        if len(parts) != 6:
            return False, None
        if parts[5] == NO_DOMAIN_TOKEN:
            return True, None
        try:
            domain = unescape_token(parts[5])
        except ValueError:
            return None
        return (True, domain) if domain and escape_token(domain) == parts[5] else None

    # definition keys
    @staticmethod
    def task_def_key(name: str) -> str:
        return f"task.{escape_token(name)}"

    @staticmethod
    def workflow_def_key(name: str, version: int) -> str:
        return f"workflow.{escape_token(name)}.{version}"

    @staticmethod
    def parse_definition_key(key: str) -> tuple[str, str, int | None] | None:
        """``("task", name, None)`` or ``("workflow", name, version)``; None for foreign keys."""
        parts = key.split(".")
        try:
            if len(parts) == 2 and parts[0] == "task":
                return "task", unescape_token(parts[1]), None
            if len(parts) == 3 and parts[0] == "workflow" and parts[2].isdigit():
                return "workflow", unescape_token(parts[1]), int(parts[2])
        except ValueError:
            return None
        return None

    @staticmethod
    def workflow_key(workflow_id: str) -> str:
        return escape_token(workflow_id)
