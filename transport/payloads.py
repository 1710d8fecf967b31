"""Large payloads in the JetStream Object Store: Conductor's external payload storage, done natively.

A payload (a workflow's input or output, a task's input or output) whose JSON is larger than ``threshold``
travels and is stored as a *path* into the ``<prefix>_payloads`` object store, in Conductor's
``externalInputPayloadStoragePath`` / ``externalOutputPayloadStoragePath`` fields, with the map itself left
empty. Paths are content-addressed (``<workflowId>/<sha256>``): storing the same payload twice (a redelivery, a
worker and a node storing one output) writes one object, and a path never changes meaning. A payload over
``max_size`` is refused with :class:`PayloadError`; the caller fails the task or workflow with that reason.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from typing import Final

import anyio
import msgspec
import nats.errors
import nats.js.errors
from nats.js.object_store import ObjectStore

from partita.schemas import PayloadError, Workflow
from partita.schemas.limits import configured_limits, json_text_depth

from .codec import decode, encode_json
from .connection import Connection
from .errors import TransportError
from .layout import Layout

DEFAULT_THRESHOLD: Final = 32 * 1024
DEFAULT_MAX_SIZE: Final = 64 * 1024 * 1024
TRANSFER_TIMEOUT: Final = 60.0  # seconds for one payload to be stored or loaded
_decoder: Final = msgspec.json.Decoder(dict[str, object])


def _env_bytes(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of bytes, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


class PayloadStore:
    """Offload and load payloads; used by nodes, workers and clients. The bucket is provisioned by
    ``ensure_layout`` and opened on first use."""

    def __init__(
        self, conn: Connection, layout: Layout, *, threshold: int | None = None, max_size: int | None = None
    ) -> None:
        self._conn = conn
        self._layout = layout
        self.threshold = threshold or _env_bytes("PARTITA_PAYLOAD_THRESHOLD", DEFAULT_THRESHOLD)
        self.max_size = max_size or _env_bytes("PARTITA_PAYLOAD_MAX_SIZE", DEFAULT_MAX_SIZE)
        if self.threshold > self.max_size:
            raise ValueError(f"payload threshold {self.threshold} exceeds the maximum size {self.max_size}")
        self._store: ObjectStore | None = None

    async def _bucket(self) -> ObjectStore:
        if self._store is None:
            bucket = self._layout.payloads_bucket
            try:
                self._store = await self._conn.js.object_store(bucket)
            except nats.js.errors.BucketNotFoundError as exc:
                raise TransportError(f"object store {bucket} is missing (is the layout provisioned?)") from exc
            except nats.errors.Error as exc:
                raise TransportError(f"object store {bucket}: {exc}") from exc
        return self._store

    def encoded(self, payload: dict[str, object], what: str) -> bytes | None:
        """``payload``'s JSON when it must be stored outside (over the threshold), else None; raises
        :class:`PayloadError` over the maximum size."""
        if not payload:
            return None
        data = encode_json(payload)
        if len(data) <= self.threshold:
            return None
        if len(data) > self.max_size:
            raise PayloadError(f"{what} is {len(data)} bytes; the maximum payload size is {self.max_size} bytes")
        return data

    async def offload(self, workflow_id: str, payload: dict[str, object], what: str) -> str | None:
        """Store ``payload`` if it is over the threshold and return its path; None when it stays inline."""
        data = self.encoded(payload, what)
        if data is None:
            return None
        return await self.put(workflow_id, data)

    async def put(self, workflow_id: str, data: bytes) -> str:
        """Store ``data`` under its content path, unless it is there already. Never store one name twice:
        nats-py replaces an object by writing new chunks and deleting the old ones, which a reader of the
        old description would wait for forever."""
        path = f"{workflow_id}/{hashlib.sha256(data).hexdigest()}"
        store = await self._bucket()
        try:
            with anyio.fail_after(TRANSFER_TIMEOUT):
                try:
                    await store.get_info(path)
                    return path  # same name, same content
                except (nats.js.errors.ObjectNotFoundError, nats.js.errors.ObjectDeletedError):
                    pass
                await store.put(path, data)
        except TimeoutError as exc:
            raise TransportError(f"store payload {path}: timed out after {TRANSFER_TIMEOUT} s") from exc
        except nats.errors.Error as exc:
            raise TransportError(f"store payload {path}: {exc}") from exc
        return path

    async def load(self, path: str) -> dict[str, object]:
        """The payload stored at ``path``; :class:`PayloadError` if there is none (removed, or a bad path)."""
        store = await self._bucket()
        try:
            with anyio.fail_after(TRANSFER_TIMEOUT):  # nats-py waits for chunks without a deadline
                result = await store.get(path)
        except TimeoutError as exc:
            raise TransportError(f"load payload {path}: timed out after {TRANSFER_TIMEOUT} s") from exc
        except nats.js.errors.ObjectNotFoundError as exc:
            raise PayloadError(f"no stored payload at {path!r}") from exc
        except nats.js.errors.ObjectDeletedError as exc:
            raise PayloadError(f"the payload at {path!r} was deleted") from exc
        except nats.errors.Error as exc:
            raise TransportError(f"load payload {path}: {exc}") from exc
        data = result.data or b""
        digest = path.rpartition("/")[2]
        if len(digest) == 64 and hashlib.sha256(data).hexdigest() != digest:
            # Content-addressed: whoever may write the store (a worker granted --payloads) cannot swap it.
            raise PayloadError(f"the payload at {path!r} does not match its content hash: it was altered")
        # Measured on the text, before decoding: a hostile depth would exhaust msgspec's stack.
        problem = configured_limits().payload_problem(f"the payload at {path!r}", None, depth=json_text_depth(data))
        if problem is not None:
            raise PayloadError(problem)
        return decode(_decoder, data, f"payload at {path!r} (a JSON object)")

    async def delete_workflow(self, workflow_id: str) -> int:
        """Delete every payload stored for ``workflow_id`` (those of all its runs, and its children's inputs
        stored under its id by older versions); returns how many. Lists the whole bucket: an admin action."""
        store = await self._bucket()
        try:
            listed = await store.list(ignore_deletes=True)
        except nats.js.errors.NotFoundError:
            return 0
        except nats.errors.Error as exc:
            raise TransportError(f"list payloads: {exc}") from exc
        mine = [info.name for info in listed if info.name and info.name.rpartition("/")[0] == workflow_id]
        await self.delete(mine)
        return len(mine)

    async def delete(self, paths: Iterable[str]) -> None:
        """Delete stored payloads; missing ones are fine."""
        store = await self._bucket()
        for path in paths:
            try:
                await store.delete(path)
            except (nats.js.errors.ObjectNotFoundError, nats.js.errors.ObjectDeletedError):
                pass
            except nats.errors.Error as exc:
                raise TransportError(f"delete payload {path}: {exc}") from exc


async def hydrate(
    store: PayloadStore, workflow: Workflow, cache: dict[str, dict[str, object]] | None = None
) -> Workflow:
    """``workflow`` with every stored payload loaded into its map (the paths stay set). Tasks without stored
    payloads are the very same objects; ``cache`` (path → payload) saves loading one twice."""
    cache = {} if cache is None else cache

    async def load(path: str | None, inline: dict[str, object]) -> dict[str, object]:
        if not path:
            return inline
        if path not in cache:
            cache[path] = await store.load(path)
        return cache[path]

    tasks = list(workflow.tasks)
    for index, task in enumerate(tasks):
        if task.external_input_payload_storage_path or task.external_output_payload_storage_path:
            tasks[index] = msgspec.structs.replace(
                task,
                input_data=await load(task.external_input_payload_storage_path, task.input_data),
                output_data=await load(task.external_output_payload_storage_path, task.output_data),
            )
    if not (
        workflow.external_input_payload_storage_path
        or workflow.external_output_payload_storage_path
        or any(a is not b for a, b in zip(tasks, workflow.tasks, strict=True))
    ):
        return workflow
    return msgspec.structs.replace(
        workflow,
        input=await load(workflow.external_input_payload_storage_path, workflow.input),
        output=await load(workflow.external_output_payload_storage_path, workflow.output),
        tasks=tuple(tasks),
    )


__all__ = ["DEFAULT_MAX_SIZE", "DEFAULT_THRESHOLD", "PayloadStore", "hydrate"]
