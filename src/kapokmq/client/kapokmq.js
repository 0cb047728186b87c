// KapokMQ browser client: an ES module with no dependencies and no build step.
//
// Served by every broker at GET /client/kapokmq.js, so a page on the broker's own origin can
//   import { Producer, Consumer } from "/client/kapokmq.js";
// and one elsewhere can import it from the broker's URL (CORS is open on every route).
// The protocol is the one of docs/protocol.md: open /Producers/Conn/{topic}/{id} or
// /Consumers/Conn/{topic}/{id}, answer "Please enter the secret key" with the key, wait for
// "Secret key matching succeeded"; a producer gets one reply ("ok" or "error: ...") per frame,
// in order; a consumer gets one message per frame and acks it by sending its MessageCode.

export const PROMPT = "Please enter the secret key";
export const KEY_OK = "Secret key matching succeeded";
export const KEY_ERROR = "Secret key matching error";
const TOO_BIG = 1009; // the broker closes with 1009 on a frame over mq.maxMessageBytes
const MAX_RESENDS = 3; // a frame that kills every connection it is sent on is given up

/** Any failure this module reports. */
export class KapokMQError extends Error {
  constructor(message) {
    super(message);
    this.name = this.constructor.name;
  }
}
/** The broker refused a message (its reply started with "error:"); not retried. */
export class SendError extends KapokMQError {}
/** The broker refused the secret key; the client gives up and does not reconnect. */
export class AuthError extends KapokMQError {}
/** The client was closed, could not connect, or gave up reconnecting, before the operation finished. */
export class ClosedError extends KapokMQError {}
/** No answer in time: a send not answered within `sendTimeout` ms (it may still be stored). */
export class TimeoutError extends KapokMQError {}

/** Reconnect delays: attempt n waits a random time in [d/2, d], d = min(maximum, initial*factor^n) ms. */
export class Backoff {
  constructor({ initial = 100, maximum = 10000, factor = 2, maxAttempts = null } = {}) {
    Object.assign(this, { initial, maximum, factor, maxAttempts });
  }
  delay(attempt) {
    const ceiling = Math.min(this.maximum, this.initial * this.factor ** Math.min(attempt, 64));
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }
  exhausted(attempt) {
    return this.maxAttempts !== null && attempt >= this.maxAttempts;
  }
}

/** The broker's WebSocket base: the module's own origin unless a URL is given. */
function webSocketBase(url) {
  const base = new URL(url ?? new URL(import.meta.url).origin);
  if (!["http:", "https:", "ws:", "wss:"].includes(base.protocol)) {
    // new WebSocket() would throw later, inside connect(), and leave it pending
    throw new TypeError(`unsupported URL scheme in ${JSON.stringify(url)} (http, https, ws or wss)`);
  }
  base.protocol = base.protocol === "https:" || base.protocol === "wss:" ? "wss:" : "ws:";
  return base.href.replace(/\/+$/, "");
}

/**
 * One logical connection that logs in and comes back after a drop (shared by both roles).
 * Events: "statechange" (see `state`: connecting, open, reconnecting, closed, failed).
 */
class Session extends EventTarget {
  constructor(
    role,
    topic,
    clientId,
    { url, key = "test", reconnect = true, backoff, connectTimeout = 10000 } = {},
  ) {
    super();
    if (!topic || !clientId) throw new TypeError("topic and client id are required");
    this.url = `${webSocketBase(url)}/${role}/Conn/${encodeURIComponent(topic)}/${encodeURIComponent(clientId)}`;
    this.topic = topic;
    this.clientId = clientId;
    this.key = key;
    this.reconnect = reconnect;
    this.backoff = backoff instanceof Backoff ? backoff : new Backoff(backoff);
    this.connectTimeout = connectTimeout; // ms to open the socket and log in
    this.loginTimer = null;
    this.whyClosed = null; // set when this client closed a socket that did not log in
    this.state = "idle";
    this.error = null;
    this.ws = null;
    this.ready = false;
    this.attempt = 0;
    this.closing = false;
    this.ever = false; // logged in at least once: later opens are reconnects
    this.timer = null;
    this.waiters = []; // connect() callers: [resolve, reject]
  }

  /** Connect and log in; resolves once the broker accepted the key. */
  connect() {
    if (this.state === "open") return Promise.resolve();
    if (this.state === "failed" || this.state === "closed") {
      return Promise.reject(this.error ?? new ClosedError("client is closed"));
    }
    const promise = new Promise((resolve, reject) => this.waiters.push([resolve, reject]));
    if (this.state === "idle") this.open();
    return promise;
  }

  /** Close for good; nothing reconnects afterwards. */
  close() {
    this.closing = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "client closed");
    this.finish("closed", new ClosedError("client closed"));
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new Event("statechange"));
  }

  open() {
    this.setState(this.attempt === 0 && !this.ever ? "connecting" : "reconnecting");
    const ws = new WebSocket(this.url);
    this.ws = ws;
    this.ready = false;
    this.loginTimer = setTimeout(() => {
      if (ws === this.ws && !this.ready) {
        this.whyClosed = `no login within ${this.connectTimeout} ms`;
        ws.close(); // onclose follows, as for any failed attempt
      }
    }, this.connectTimeout);
    ws.onmessage = (event) => {
      if (ws !== this.ws) return;
      const text = typeof event.data === "string" ? event.data : String(event.data);
      if (this.ready) {
        this.received(text);
      } else if (text === PROMPT) {
        ws.send(this.key);
      } else if (text === KEY_OK) {
        clearTimeout(this.loginTimer);
        this.ready = true;
        this.ever = true;
        this.attempt = 0;
        this.setState("open");
        for (const [resolve] of this.waiters.splice(0)) resolve();
        this.loggedIn(ws);
      } else if (text === KEY_ERROR) {
        this.finish("failed", new AuthError("the broker refused the secret key"));
        ws.close(1000, "wrong key");
      } else {
        this.finish("failed", new KapokMQError(`unexpected handshake frame ${JSON.stringify(text.slice(0, 80))}`));
        ws.close(1000, "unexpected handshake");
      }
    };
    ws.onclose = (event) => {
      if (ws !== this.ws) return;
      clearTimeout(this.loginTimer);
      this.ws = null;
      const wasReady = this.ready;
      this.ready = false;
      const why = this.whyClosed ?? `closed with code ${event.code}`;
      this.whyClosed = null;
      if (this.closing || this.state === "failed") return;
      this.dropped(event, wasReady);
      if (!this.ever) {
        // The first connection is not retried (a wrong address fails at once); the client
        // stays usable: a later connect() or send() tries again.
        this.unreachable(new ClosedError(`cannot connect to ${this.url}: ${why}`));
      } else if (!this.reconnect) {
        this.finish("closed", new ClosedError(`connection closed (${event.code})`));
      } else if (this.backoff.exhausted(this.attempt)) {
        this.finish("failed", new ClosedError(`gave up after ${this.attempt} reconnect attempts`));
      } else {
        this.setState("reconnecting");
        this.timer = setTimeout(() => this.open(), this.backoff.delay(this.attempt++));
      }
    };
  }

  finish(state, error) {
    this.error = error;
    this.closing = true;
    clearTimeout(this.timer);
    clearTimeout(this.loginTimer);
    for (const [, reject] of this.waiters.splice(0)) reject(error);
    this.failAll(error);
    this.setState(state);
  }

  unreachable(error) {
    this.error = error;
    for (const [, reject] of this.waiters.splice(0)) reject(error);
    this.failAll(error);
    this.setState("idle");
  }

  // hooks for the roles
  received(text) {}
  loggedIn(ws) {}
  dropped(event, wasReady) {}
  failAll(error) {}
}

/**
 * Publishes to one topic. `send()` resolves on the broker's "ok" and rejects with SendError
 * on "error: ...". Sends made while disconnected wait for the connection. After a reconnect,
 * messages sent but not confirmed are sent again (at-least-once: a message whose reply was
 * lost may be stored twice, unless it has a `messageId`).
 */
export class Producer extends Session {
  constructor(topic, producerId, { sendTimeout = 30000, ...options } = {}) {
    super("Producers", topic, producerId, options);
    this.sendTimeout = sendTimeout; // ms before an unanswered send() rejects (null: never)
    this.pending = []; // {frame, resolve, reject, tries, timer}, in wire order
  }

  /** Messages sent and not yet answered. */
  get inFlight() {
    return this.pending.length;
  }

  /**
   * Publish one message; `delay` is whole seconds (delivered once due), `ttl` seconds it
   * may wait to be consumed once due (0 = none), `messageId` a dedup id: a resend with the
   * same id within the broker's mq.dedupWindow is not stored twice (docs/protocol.md).
   */
  send(data, { delay = 0, ttl = 0, messageId = "" } = {}) {
    if (typeof data !== "string") return Promise.reject(new TypeError("message data must be a string"));
    if (!Number.isSafeInteger(delay)) return Promise.reject(new TypeError("delay must be whole seconds"));
    if (!Number.isSafeInteger(ttl) || ttl < 0) return Promise.reject(new TypeError("ttl must be whole seconds >= 0"));
    if (typeof messageId !== "string") return Promise.reject(new TypeError("messageId must be a string"));
    if (this.closing) return Promise.reject(this.error ?? new ClosedError("client is closed"));
    const body = { MessageData: data, DelayTime: delay };
    if (ttl) body.TTL = ttl;
    if (messageId) body.MessageId = messageId;
    const frame = JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const item = { frame, resolve, reject, tries: 0, timer: null };
      if (this.sendTimeout !== null) {
        // The frame stays queued (a late reply still pairs with it, a reconnect resends it).
        item.timer = setTimeout(() => {
          const state = this.ready ? "" : ` (${this.state})`;
          reject(new TimeoutError(`no reply within ${this.sendTimeout} ms${state}`));
        }, this.sendTimeout);
      }
      this.pending.push(item);
      if (this.ready) {
        item.tries += 1;
        this.ws.send(frame);
      } else if (this.state === "idle") {
        this.open();
      }
    });
  }

  /** Wait (up to `timeout` ms) for every reply, through a reconnect under way, then close. */
  async close(timeout = 10000) {
    if (this.pending.length && !this.closing) {
      const last = this.pending[this.pending.length - 1];
      const settled = new Promise((resolve) => {
        const done = () => resolve();
        last.resolve = wrap(last.resolve, done);
        last.reject = wrap(last.reject, done);
      });
      await Promise.race([settled, new Promise((resolve) => setTimeout(resolve, timeout))]);
    }
    super.close();
  }

  received(reply) {
    const item = this.pending.shift();
    if (!item) return; // a reply with nothing in flight: the broker never does that
    clearTimeout(item.timer);
    if (reply === "ok") item.resolve();
    else if (reply.startsWith("error:")) item.reject(new SendError(reply));
    else item.reject(new KapokMQError(`unexpected producer reply ${JSON.stringify(reply.slice(0, 80))}`));
  }

  loggedIn(ws) {
    // A frame that kills every connection it is sent on (e.g. one far above
    // mq.maxMessageBytes, which the browser may see closed 1006 rather than 1009) is given
    // up: of those sent MAX_RESENDS times, the biggest, not the first (small ones sent
    // with it die with it).
    const worn = this.pending.filter((item) => item.tries >= MAX_RESENDS);
    if (worn.length) {
      const culprit = worn.reduce((a, b) => (b.frame.length > a.frame.length ? b : a));
      this.pending.splice(this.pending.indexOf(culprit), 1);
      clearTimeout(culprit.timer);
      culprit.reject(new ClosedError(`connection dropped ${MAX_RESENDS} times sending this message`));
    }
    for (const item of this.pending) {
      item.tries += 1;
      ws.send(item.frame);
    }
  }

  dropped(event, wasReady) {
    // The biggest unanswered frame was the one too big. Not the first: smaller ones sent
    // just before it may be stored without their "ok" (the broker can close before
    // answering them), and they are sent again after the reconnect like any other.
    if (event.code === TOO_BIG && this.pending.length) {
      const culprit = this.pending.reduce((a, b) => (b.frame.length > a.frame.length ? b : a));
      this.pending.splice(this.pending.indexOf(culprit), 1);
      clearTimeout(culprit.timer);
      culprit.reject(new SendError("error: message too big for the broker (closed 1009)"));
      // The connections dropped so far are the culprit's doing: the others start afresh,
      // or an innocent one that died with it would be given up for it at the next login.
      for (const item of this.pending) item.tries = 0;
    }
  }

  failAll(error) {
    for (const item of this.pending.splice(0)) {
      clearTimeout(item.timer);
      item.reject(error);
    }
  }
}

function wrap(first, then) {
  return (value) => {
    first(value);
    then();
  };
}

/**
 * Consumes one topic. `onMessage(message)` is called for each message, one at a time in
 * arrival order; the message is acked when it returns (or its promise resolves) unless
 * `autoAck` is false (then call `ack(code)`). A handler that throws leaves the message
 * unacked: the broker delivers it again after mq.pushRetryTime. Messages are the broker's
 * JSON objects: {MessageCode, MessageData, Topic, CreateTime, ConsumedTime, DelayTime, Status}.
 */
export class Consumer extends Session {
  constructor(topic, consumerId, { onMessage, autoAck = true, ...options } = {}) {
    super("Consumers", topic, consumerId, options);
    if (typeof onMessage !== "function") throw new TypeError("onMessage must be a function");
    this.onMessage = onMessage;
    this.autoAck = autoAck;
    this.chain = Promise.resolve();
  }

  /** Acknowledge a message; false when not connected (the broker will redeliver it). */
  ack(code) {
    if (!this.ready) return false;
    this.ws.send(code);
    return true;
  }

  received(text) {
    let message;
    try {
      message = JSON.parse(text); // the broker appends "\n"; JSON.parse allows it
    } catch {
      return; // not a message: nothing to ack
    }
    this.chain = this.chain.then(async () => {
      try {
        await this.onMessage(message);
      } catch (err) {
        console.warn("kapokmq: onMessage failed; the message stays unacked", err);
        return;
      }
      if (this.autoAck) this.ack(message.MessageCode);
    });
  }
}
