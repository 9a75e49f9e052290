// Sync state at a glance, plus the demo's "simulate offline" switch.
import { useState } from 'react';
import { useSyncStatus } from 'oversync-web/react';

const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : 'never');

/** What the running cycle does, with its counts. */
const activity = (s) =>
  s.uploading ? `Uploading ${s.uploaded}…` : s.downloading ? `Downloading ${s.downloaded}…` : s.syncing ? 'Syncing…' : 'Idle';

export function StatusBar({ db }) {
  const s = useSyncStatus(db);
  const [simulated, setSimulated] = useState(false);
  const toggle = async () => {
    await db?.simulateOffline(!simulated);
    setSimulated(!simulated);
  };
  return (
    <section className="status" aria-label="sync status">
      {/* No database yet (opening, or it could not open: the app says why), so nothing to say about the network. */}
      {db && <span className={`badge ${s.online ? 'ok' : 'off'}`} data-testid="online">{s.online ? 'Online' : 'Offline'}</span>}
      {s.storage === 'memory' && (
        <span className="badge warn" data-testid="storage" title="this browser cannot keep the journal: it is gone when the tab closes">
          Not saved on this device
        </span>
      )}
      <span className={`badge ${s.syncing ? 'busy' : ''}`} data-testid="syncing">{activity(s)}</span>
      <span className={`badge ${s.pending ? 'warn' : ''}`} data-testid="pending">{s.pending} pending</span>
      {s.parked > 0 && <span className="badge warn">{s.parked} parked</span>}
      <span className="muted" data-testid="last-synced">Last synced: {time(s.lastSyncedAt)}</span>
      {s.lastError && <span className="error" data-testid="last-error">{s.lastError.code}: {s.lastError.message}</span>}
      <span className="spacer" />
      <label className="switch">
        <input type="checkbox" checked={simulated} onChange={toggle} disabled={!db} data-testid="simulate-offline" />
        Simulate offline
      </label>
      <button onClick={() => db?.sync().catch(() => undefined)} disabled={!db}>Sync now</button>
      {s.hydration && (
        <div className="hydration" data-testid="hydration" role="status">
          <progress aria-label="downloading your journal" />
          Downloading your journal: {s.hydration.downloaded.toLocaleString('en')} rows so far
        </div>
      )}
    </section>
  );
}
