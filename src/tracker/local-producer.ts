// HTTP-polled nodes: the main thread is their ring's producer (the shards are for TCP
// nodes), with counters of its own that are summed with the shards' at scrape time.
import type { NodeEntry } from '../nodes/node-table.js';
import { RingWriter, RESERVE_TOO_LARGE } from '../ring/ring-writer.js';
import { KIND_JSON_LINE } from '../ring/ring-layout.js';
import {
  C_DETECTIONS_RECEIVED, C_FRAMES_RECEIVED, C_FRAMES_WRITTEN, COUNTER_SLOTS, dropIndex, D_RING_OVERFLOW, D_FRAME_TOO_LARGE,
  type DropReason,
} from '../telemetry/counters.js';

export class LocalProducer {
  /** Main-thread counters for HTTP-polled frames. */
  readonly counters = new Float64Array(COUNTER_SLOTS);
  private readonly writers = new Map<string, RingWriter>();

  /** `written` runs after each frame that reached the ring (the tracker is pumped). */
  constructor(private readonly written: (node: NodeEntry) => void) {}

  /** Whether the main thread writes this node's ring. */
  has(id: string): boolean {
    return this.writers.has(id);
  }

  /** Writes one JSON line to the node's ring; false when it was dropped (counted). */
  write(node: NodeEntry, line: Buffer, timestamp: number, detections: number): boolean {
    let w = this.writers.get(node.id);
    if (!w) {
      w = new RingWriter(node.ring, 'block');
      this.writers.set(node.id, w);
    }
    this.counters[C_FRAMES_RECEIVED]!++;
    const off = w.reserve(line.length, timestamp, KIND_JSON_LINE, detections);
    if (off === RESERVE_TOO_LARGE) {
      this.counters[D_FRAME_TOO_LARGE]!++;
      return false;
    }
    if (off < 0) {
      // Polling cannot push back on the node: a full ring loses the new frame, counted.
      this.counters[D_RING_OVERFLOW]!++;
      return false;
    }
    w.bytes.set(line, off);
    w.commit();
    w.flush();
    this.counters[C_FRAMES_WRITTEN]!++;
    this.counters[C_DETECTIONS_RECEIVED]! += detections;
    this.written(node);
    return true;
  }

  /** A frame the source rejected before the ring: received and dropped. */
  drop(reason: DropReason): void {
    this.counters[C_FRAMES_RECEIVED]!++;
    this.counters[dropIndex(reason)]!++;
  }
}
