// What `db.diagnostics()` adds to the database's own numbers (issue 37): the owner's recent sync cycles, the
// realtime path and how often it came back, and the highest top the server has announced. Kept in the owning
// tab's worker; internal.

import type { CycleRecord, ErrorCode } from './types.js';
import type { RealtimeMode } from './watch.js';

/** Cycles kept, newest last. */
export const CYCLES_KEPT = 20;

export class Inspector {
  private cycles: CycleRecord[] = [];
  private mode: RealtimeMode = 'timer';
  private lost = false;
  private reconnects = 0;
  private since: string | null = null;
  private top: number | null = null;

  /** A cycle ended. */
  cycle(record: CycleRecord): void {
    this.cycles = [...this.cycles, record].slice(-CYCLES_KEPT);
    this.seen(record.cursorAfter);
  }

  /** The realtime path changed: coming back to a stream or long-poll after losing it counts as a reconnect. */
  switched(mode: RealtimeMode): void {
    if (mode === this.mode) return;
    if (mode === 'timer') this.lost = this.mode !== 'timer';
    else if (this.lost) {
      this.reconnects++;
      this.lost = false;
    }
    this.mode = mode;
    this.since = new Date().toISOString();
  }

  /** The server announced a top (or a cycle reached a cursor). */
  seen(top: number): void {
    if (top > 0) this.top = Math.max(this.top ?? 0, top);
  }

  snapshot(): { cycles: CycleRecord[]; realtime: { mode: RealtimeMode; reconnects: number; since: string | null }; serverTop: number | null } {
    return {
      cycles: this.cycles,
      realtime: { mode: this.mode, reconnects: this.reconnects, since: this.since },
      serverTop: this.top,
    };
  }
}

/** The record of a cycle that started at `startedAt` (`performance.now()` ms) and ended now. */
export function cycleRecord(
  startedAt: number,
  hydrating: boolean,
  cursors: [number, number],
  report: { applied?: number; conflicts?: number; rejected?: number },
  error: { code: ErrorCode; message: string } | null,
): CycleRecord {
  const ms = Math.round(performance.now() - startedAt);
  return {
    at: new Date(Date.now() - ms).toISOString(),
    ms,
    ok: error === null,
    hydrating,
    uploaded: report.applied ?? 0,
    conflicts: report.conflicts ?? 0,
    rejected: report.rejected ?? 0,
    cursorBefore: cursors[0],
    cursorAfter: cursors[1],
    error,
  };
}
