// A Partita worker in JavaScript, written from docs/protocol.md alone (no Partita code), with the `nats` npm
// package. tests/integration/test_node_worker.py runs it against a real nats-server and a node.
//
// It is a conformance worker: every rule of the doc's "Run tasks" that a chain exercises is followed, and a
// message that breaks the doc's contract (a report subject that is not the one the doc defines) stops it with
// exit code 3, so a test sees the disagreement.
//
// Environment:
//   NATS_URL            server URL (default nats://127.0.0.1:4222)
//   PARTITA_PREFIX      deployment prefix (default partita)
//   PARTITA_TASK_TYPES  comma-separated task types to serve (required)
//   PARTITA_DOMAIN      the domain served (default: none)
//   PARTITA_WORKER_ID   workerId in reports (default node-<pid>)
//   PARTITA_CONCURRENCY tasks run at once per type (default 2)
//
// Every task type runs the same step: output {value: input.value + 1, steps: [...input.steps, taskType]}.
// SIGTERM stops it: no more fetching, running tasks finish (5 s), the rest are given back.

import { AckPolicy, DeliverPolicy, connect, headers, nanos } from "nats";

const PREFIX = process.env.PARTITA_PREFIX || "partita";
const UPPER = PREFIX.toUpperCase();
const TASKS_STREAM = `${UPPER}_TASKS`;
const EVENTS_STREAM = `${UPPER}_EVENTS`;
const DOMAIN = process.env.PARTITA_DOMAIN || null;
const WORKER_ID = process.env.PARTITA_WORKER_ID || `node-${process.pid}`;
const CONCURRENCY = Number(process.env.PARTITA_CONCURRENCY || 2);
const TYPES = (process.env.PARTITA_TASK_TYPES || "").split(",").map((t) => t.trim()).filter(Boolean);

const LEASE_CAP_SECONDS = 15; // "L = min(AckWait, R, 15 s)"
const DEFAULT_RESPONSE_TIMEOUT = 3600; // "responseTimeoutSeconds absent or 0 means 3600"
const ANNOUNCE_SECONDS = 5;
const STOP_GRACE_MS = 5000;
const PUBLISH_ATTEMPTS = 8;

const enc = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function log(event, fields = {}) {
  process.stderr.write(`${JSON.stringify({ event, worker: WORKER_ID, ...fields })}\n`);
}

class ProtocolViolation extends Error {}

// --- names (docs/protocol.md "Names") ---------------------------------------------------------------------

const SAFE = /^[A-Za-z0-9_-]$/;

function escapeToken(value) {
  if (!value) throw new Error("cannot escape an empty name");
  if (value === "_") return "=5F";
  let out = "";
  for (const char of value) {
    if (SAFE.test(char)) {
      out += char;
    } else {
      for (const byte of enc.encode(char)) out += `=${byte.toString(16).toUpperCase().padStart(2, "0")}`;
    }
  }
  return out;
}

const domainToken = (domain) => (domain === null ? "_" : escapeToken(domain));

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes) {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = CRC_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

let partitions = 0; // read from the events stream's configuration
const partitionOf = (workflowId) => crc32(enc.encode(workflowId)) % partitions;

function reportSubject(kind, workflowId, taskType) {
  return `${PREFIX}.wf.${partitionOf(workflowId)}.${kind}.${escapeToken(taskType)}.${domainToken(DOMAIN)}`;
}

// --- the task message (docs/protocol.md "Receive"; absent fields mean their default) ------------------------

const TASK_DEFAULTS = {
  inputData: {},
  retryCount: 0,
  pollCount: 0,
  domain: null,
  correlationId: null,
  scheduledTime: 0,
  responseTimeoutSeconds: 0,
  callbackAfterSeconds: 0,
  workflowVersion: 0,
  startedSubject: null,
  rateLimitPerFrequency: 0,
  rateLimitFrequencyInSeconds: 1,
  externalInputPayloadStoragePath: null,
};
const TASK_REQUIRED = [
  "taskId", "taskType", "taskDefName", "referenceTaskName", "workflowInstanceId", "workflowType", "resultSubject",
];

function decodeTask(data) {
  const value = JSON.parse(strictUtf8.decode(data));
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error("not a JSON object");
  if ("kind" in value && value.kind !== "Task") throw new Error(`kind is ${JSON.stringify(value.kind)}, not "Task"`);
  for (const field of TASK_REQUIRED) {
    if (typeof value[field] !== "string") throw new Error(`missing required field ${field}`);
  }
  const task = { ...TASK_DEFAULTS, ...value };
  if (task.inputData === null || typeof task.inputData !== "object") throw new Error("inputData is not an object");
  return task;
}

// --- the worker -------------------------------------------------------------------------------------------

const nc = await connect({ servers: process.env.NATS_URL || "nats://127.0.0.1:4222", name: WORKER_ID });
const jsm = await nc.jetstreamManager();
const js = nc.jetstream();
let stopping = false;
const workers = [];

async function readPartitionCount() {
  // "N is the count of [the events stream's <prefix>.wf.<p>.> subjects]"; nodes create the stream.
  const pattern = new RegExp(`^${PREFIX}\\.wf\\.(\\d+)\\.>$`);
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const info = await jsm.streams.info(EVENTS_STREAM);
      const count = info.config.subjects.filter((s) => pattern.test(s)).length;
      if (count > 0) return count;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    await new Promise((resolve) => setTimeout(resolve, 250)); // waiting for a node to create the stream
  }
}

function isNotFound(err) {
  return err?.api_error?.code === 404 || /not found/i.test(String(err?.message));
}

async function bindConsumer(taskType) {
  // "MUST bind the consumer by name and MUST NOT change an existing consumer's configuration"; on an open
  // server "MAY create a missing consumer with the settings above".
  const name = `task@${escapeToken(taskType)}@${domainToken(DOMAIN)}`;
  let info;
  try {
    info = await jsm.consumers.info(TASKS_STREAM, name);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    info = await jsm.consumers.add(TASKS_STREAM, {
      durable_name: name,
      filter_subject: `${PREFIX}.task.${escapeToken(taskType)}.${domainToken(DOMAIN)}.*`,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      max_deliver: -1,
      ack_wait: nanos(15_000),
      max_ack_pending: 10_000,
    });
    log("consumer_created", { consumer: name });
  }
  return { name, ackWaitSeconds: info.config.ack_wait / 1e9, consumer: await js.consumers.get(TASKS_STREAM, name) };
}

const nonce = () => [...crypto.getRandomValues(new Uint8Array(8))].map((b) => b.toString(16).padStart(2, "0")).join("");

async function publishDurable(subject, message, msgID) {
  // "MUST reuse [the id] when it retries that publish"
  let delay = 500;
  for (let attempt = 1; ; attempt++) {
    try {
      await js.publish(subject, enc.encode(JSON.stringify(message)), { msgID });
      return true;
    } catch (err) {
      log("publish_failed", { subject, attempt, error: String(err) });
      if (attempt >= PUBLISH_ATTEMPTS) return false;
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 4000);
    }
  }
}

function* extensions(lease, responseTimeout) {
  // "every max(1 s, L/3) after receipt, and the last one at R − L after receipt"
  const step = Math.max(1, lease / 3);
  const last = responseTimeout - lease;
  let at = 0;
  for (;;) {
    at += step;
    if (at >= last) {
      if (last > at - step) yield last;
      return;
    }
    yield at;
  }
}

function heartbeat(msg, lease, responseTimeout) {
  const received = Date.now();
  const times = extensions(lease, responseTimeout);
  let timer = null;
  const arm = () => {
    const next = times.next();
    if (next.done) return;
    timer = setTimeout(() => {
      msg.working(); // +WPI
      arm();
    }, Math.max(0, received + next.value * 1000 - Date.now()));
  };
  arm();
  return () => clearTimeout(timer);
}

function runStep(task) {
  const input = task.inputData;
  if (typeof input.value !== "number") throw new Error(`inputData.value must be a number, got ${JSON.stringify(input.value)}`);
  const steps = Array.isArray(input.steps) ? input.steps : [];
  return { value: input.value + 1, steps: [...steps, task.taskType], runtime: `node ${process.version}` };
}

class TaskWorker {
  constructor(taskType, binding) {
    this.taskType = taskType;
    this.binding = binding;
    this.inFlight = new Set();
    this.held = new Set(); // deliveries not yet acked, nakked or given back
    this.wake = () => {};
    this.executed = 0;
  }

  resultSubject(task, checked = true) {
    const subject = reportSubject("result", task.workflowInstanceId, this.taskType);
    if (checked && subject !== task.resultSubject) {
      throw new ProtocolViolation(`resultSubject ${task.resultSubject} is not ${subject}, the subject the doc defines`);
    }
    return subject;
  }

  async report(task, result, checked = true) {
    const status = result.status;
    const msgID = `result:${task.taskId}:${task.pollCount}:${status}:${nonce()}`;
    const message = {
      kind: "TaskResult",
      workflowInstanceId: task.workflowInstanceId,
      taskId: task.taskId,
      taskType: this.taskType,
      workerId: WORKER_ID,
      pollCount: task.pollCount,
      ...result,
    };
    return publishDurable(this.resultSubject(task, checked), message, msgID);
  }

  async finish(msg, task, result) {
    // "wait for the PubAck; only then ack the task message (if the publish fails, nak ... with a delay)"
    if (await this.report(task, result)) msg.ack();
    else msg.nak(5000);
  }

  async loop() {
    while (!stopping) {
      const free = CONCURRENCY - this.inFlight.size;
      if (free <= 0) {
        await new Promise((resolve) => {
          this.wake = resolve;
          setTimeout(resolve, 1000);
        });
        continue;
      }
      let batch;
      try {
        batch = await this.binding.consumer.fetch({ max_messages: free, expires: 1000 });
      } catch (err) {
        log("fetch_failed", { error: String(err) });
        await new Promise((resolve) => setTimeout(resolve, 1000));
        continue;
      }
      for await (const msg of batch) {
        if (stopping || this.inFlight.size >= CONCURRENCY) {
          await this.handBack(msg);
          continue;
        }
        this.held.add(msg);
        const job = this.execute(msg)
          .catch((err) => {
            if (err instanceof ProtocolViolation) {
              log("protocol_violation", { error: err.message });
              process.exit(3);
            }
            log("execution_crashed", { error: String(err?.stack || err) });
            return this.handBack(msg);
          })
          .finally(() => {
            this.held.delete(msg);
            this.inFlight.delete(job);
            this.wake();
          });
        this.inFlight.add(job);
      }
    }
  }

  async execute(msg) {
    let task;
    try {
      task = decodeTask(msg.data);
    } catch (err) {
      await this.reject(msg, `malformed task message: ${err.message}`);
      return;
    }
    const responseTimeout = task.responseTimeoutSeconds || DEFAULT_RESPONSE_TIMEOUT;
    const deliveries = msg.info.redeliveryCount;
    if (deliveries > 1) {
      // The response-timeout rule: an old or much redelivered message is reported TIMED_OUT, not run.
      const age = Date.now() / 1000 - msg.info.timestampNanos / 1e9;
      if (age >= responseTimeout - 1 || deliveries > 4) {
        log("task_response_timed_out", { taskId: task.taskId, deliveries });
        const reason = `Task timed out after ${responseTimeout} seconds (responseTimeoutSeconds): delivered ${deliveries} times`;
        await this.finish(msg, task, { status: "TIMED_OUT", reasonForIncompletion: reason, endTime: Date.now() });
        return;
      }
    }
    const lease = Math.min(this.binding.ackWaitSeconds, responseTimeout, LEASE_CAP_SECONDS);
    const stopHeartbeat = heartbeat(msg, lease, responseTimeout);
    try {
      await this.run(msg, task);
    } finally {
      stopHeartbeat();
    }
  }

  async run(msg, task) {
    if (task.rateLimitPerFrequency > 0) {
      const wait = await takeRateSlot(this.taskType, task.rateLimitPerFrequency, task.rateLimitFrequencyInSeconds);
      if (wait > 0) {
        await this.handBack(msg, task.taskId, wait);
        return;
      }
    }
    if (task.externalInputPayloadStoragePath && Object.keys(task.inputData).length === 0) {
      try {
        const store = await js.views.os(`${PREFIX}_payloads`);
        const blob = await store.getBlob(task.externalInputPayloadStoragePath);
        if (blob === null) throw new Error(`object ${task.externalInputPayloadStoragePath} is gone`);
        task.inputData = JSON.parse(strictUtf8.decode(blob));
      } catch (err) {
        const reason = `the task's input could not be read: ${err.message}`;
        await this.finish(msg, task, { status: "FAILED_WITH_TERMINAL_ERROR", reasonForIncompletion: reason, endTime: Date.now() });
        return;
      }
    }
    const startTime = Date.now();
    if (task.startedSubject) {
      // "MUST JetStream-publish a TaskStarted there before it runs the task"
      const subject = reportSubject("started", task.workflowInstanceId, this.taskType);
      if (subject !== task.startedSubject) {
        throw new ProtocolViolation(`startedSubject ${task.startedSubject} is not ${subject}, the subject the doc defines`);
      }
      const started = {
        kind: "TaskStarted",
        workflowInstanceId: task.workflowInstanceId,
        taskId: task.taskId,
        taskType: this.taskType,
        workerId: WORKER_ID,
        pollCount: task.pollCount,
        startTime,
      };
      if (!(await publishDurable(subject, started, `started:${task.taskId}:${task.pollCount}:${nonce()}`))) {
        log("task_start_unreported", { taskId: task.taskId });
      }
    }
    let result;
    try {
      result = { status: "COMPLETED", outputData: runStep(task) };
    } catch (err) {
      result = { status: "FAILED", reasonForIncompletion: err.message, logs: [String(err.stack)] };
    }
    await this.finish(msg, task, { ...result, startTime, endTime: Date.now() });
    this.executed += 1;
    log("task_executed", { taskId: task.taskId, workflowId: task.workflowInstanceId, status: result.status });
  }

  async reject(msg, reason) {
    // "dead-letters it on <prefix>.dlq.task, then terminates it"; and reports it if it can be addressed.
    log("task_rejected", { subject: msg.subject, reason });
    let identity = null;
    try {
      const value = JSON.parse(strictUtf8.decode(msg.data));
      if (["workflowInstanceId", "taskId", "resultSubject"].every((f) => typeof value?.[f] === "string")) identity = value;
    } catch {
      identity = null;
    }
    if (identity !== null) {
      // Reported on the subject the doc defines for it, whatever the unreadable message says.
      const task = { ...identity, pollCount: undefined };
      const reasonForIncompletion = `the worker could not read the task: ${reason}`;
      await this.report(task, { status: "FAILED_WITH_TERMINAL_ERROR", reasonForIncompletion }, false);
    }
    let text;
    let encoding = "utf-8";
    try {
      text = strictUtf8.decode(msg.data);
    } catch {
      text = Buffer.from(msg.data).toString("base64");
      encoding = "base64";
    }
    const letter = {
      subject: msg.subject, streamSeq: msg.seq, reason, data: text, dataEncoding: encoding, time: Date.now(), seq: 0,
      size: msg.data.length, truncated: false,
    };
    if (await publishDurable(`${PREFIX}.dlq.task`, letter, `dlq:${msg.subject}:${msg.seq}`)) msg.term(reason);
  }

  async handBack(msg, taskId = null, delaySeconds = 0) {
    // "publishes the message's exact bytes again ... with Nats-Msg-Id: handback:<stream sequence> and then acks"
    const msgID = `handback:${msg.seq}`;
    try {
      try {
        await jsm.streams.getMessage(TASKS_STREAM, { seq: msg.seq });
      } catch (err) {
        if (!isNotFound(err) && !/no message/i.test(String(err?.message))) throw err;
        msg.ack(); // purged meanwhile: nothing to give back
        return;
      }
      if (delaySeconds > 0 && taskId !== null) {
        const at = new Date(Math.ceil((Date.now() + delaySeconds * 1000) / 1000) * 1000);
        const h = headers();
        h.set("Nats-Schedule", `@at ${at.toISOString().replace(/\.\d{3}Z$/, "Z")}`);
        h.set("Nats-Schedule-Target", msg.subject);
        await js.publish(`${PREFIX}.tsched.${escapeToken(taskId)}`, msg.data, { msgID, headers: h });
      } else {
        await js.publish(msg.subject, msg.data, { msgID });
      }
    } catch (err) {
      log("task_hand_back_failed", { error: String(err) });
      msg.nak(delaySeconds ? delaySeconds * 1000 : undefined);
      return;
    }
    msg.ack();
  }
}

async function takeRateSlot(taskType, perWindow, windowSeconds) {
  // docs/protocol.md "Receive": a counter per window in <prefix>_limits, created or compare-and-set.
  const kv = await js.views.kv(`${PREFIX}_limits`, { bindOnly: true });
  windowSeconds = Math.max(1, windowSeconds);
  for (let attempt = 0; attempt < 32; attempt++) {
    const now = Date.now() / 1000;
    const window = Math.floor(now / windowSeconds);
    const key = `rate.${escapeToken(taskType)}.${window}`;
    try {
      const entry = await kv.get(key);
      if (entry === null || entry.operation !== "PUT") {
        await kv.create(key, enc.encode("1"));
        return 0;
      }
      const used = Number(strictUtf8.decode(entry.value));
      if (used >= perWindow) return (window + 1) * windowSeconds - now;
      await kv.update(key, enc.encode(String(used + 1)), entry.revision);
      return 0;
    } catch (err) {
      log("rate_slot_conflict", { error: String(err) }); // another worker took one meanwhile: look again
    }
  }
  return 0.5;
}

function announce() {
  // "Worker presence": a WorkerAnnouncement on core NATS, every 5 s.
  for (const taskType of TYPES) {
    const body = { taskType, domain: DOMAIN, workerId: WORKER_ID };
    nc.publish(`${PREFIX}.workers.${escapeToken(taskType)}.${domainToken(DOMAIN)}`, enc.encode(JSON.stringify(body)));
  }
}

if (TYPES.length === 0) {
  log("no_task_types", { hint: "set PARTITA_TASK_TYPES" });
  process.exit(2);
}
partitions = await readPartitionCount();
for (const taskType of TYPES) {
  const binding = await bindConsumer(taskType);
  log("worker_bound", { taskType, consumer: binding.name, ackWaitSeconds: binding.ackWaitSeconds });
  workers.push(new TaskWorker(taskType, binding));
}
announce();
const announcer = setInterval(announce, ANNOUNCE_SECONDS * 1000);
process.on("SIGTERM", () => {
  stopping = true;
  for (const worker of workers) worker.wake();
});
log("worker_started", { types: TYPES, partitions, domain: DOMAIN });
await Promise.all(workers.map((worker) => worker.loop()));
// Stopped: running tasks get the grace period, then whatever is still held is given back.
const grace = new Promise((resolve) => setTimeout(resolve, STOP_GRACE_MS));
await Promise.race([Promise.all(workers.flatMap((worker) => [...worker.inFlight])), grace]);
for (const worker of workers) {
  for (const msg of worker.held) await worker.handBack(msg);
}
clearInterval(announcer);
log("worker_stopped", { executed: workers.reduce((sum, worker) => sum + worker.executed, 0) });
await nc.drain();
process.exit(0);
