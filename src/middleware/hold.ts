/**
 * Holding a charged response until its order is durable. The charge is
 * decided when the headers are written (PROTOCOL.md section 7), but the
 * deposit queue's append is asynchronous (a Redis round trip): without a hold,
 * the content could reach the buyer before the order is in the queue, and a
 * merchant killed in between would have served it for nothing.
 *
 * `holdOutput` keeps every byte the response writes (headers included) off the
 * socket until `open()`; `fail()` closes the connection with nothing sent. It
 * does what Node itself does for a response whose socket is not assigned yet
 * (a pipelined request waiting its turn): `_writeRaw` queues the output on the
 * message and `_flush` sends it, then finishes the message if it has ended.
 * So frameworks, pipes and `flushHeaders` need no cooperation, backpressure and
 * 'finish' behave as usual, and bodies are not buffered beyond the round trip.
 * A websocket upgrade's answer is written on the raw socket by the proxy:
 * `socket` is then corked instead.
 */
import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

/** The parts of Node's `OutgoingMessage` (Node 18 to 24) a hold uses. */
interface Outgoing {
  _writeRaw(data: string | Uint8Array, encoding?: unknown, callback?: unknown, size?: number): boolean;
  _flush(): void;
  _onPendingData(delta: number): void;
  outputData: { data: string | Uint8Array; encoding: unknown; callback: unknown }[];
  outputSize: number;
}

/** A response's output, held. */
export interface Hold {
  /** Lets the held output go, in order, and everything after it. */
  open(): void;
  /** Drops the held output and closes the connection. */
  fail(): void;
}

/**
 * `_writeRaw` of a held response: queues the output as Node does for a response without a socket.
 * One function for every response, not a closure per response (see `PendingCharge` in core.ts).
 */
function heldWriteRaw(
  this: ServerResponse & Outgoing,
  data: string | Uint8Array,
  encoding?: unknown,
  callback?: unknown,
): boolean {
  if (this.destroyed) return false;
  if (typeof encoding === 'function') {
    callback = encoding;
    encoding = null;
  }
  this.outputData.push({ data, encoding, callback });
  this.outputSize += data.length;
  this._onPendingData(data.length);
  return this.outputSize < this.writableHighWaterMark;
}

/** Holds `res`'s output (and `socket`'s, when given: an upgrade) until `open` or `fail`. */
export function holdOutput(res: ServerResponse, socket?: Duplex): Hold {
  const r = res as ServerResponse & Outgoing;
  // An own property shadows the prototype's method for this response only.
  r._writeRaw = heldWriteRaw;
  socket?.cork();
  let done = false;
  return {
    open() {
      if (done) return;
      done = true;
      delete (r as Partial<Outgoing>)._writeRaw;
      if (!r.destroyed) r._flush();
      socket?.uncork();
    },
    fail() {
      if (done) return;
      done = true;
      delete (r as Partial<Outgoing>)._writeRaw;
      r.outputData = [];
      r._onPendingData(-r.outputSize);
      r.outputSize = 0;
      r.destroy();
      socket?.destroy();
    },
  };
}
