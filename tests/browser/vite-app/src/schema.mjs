// The app's one schema source, for the packaging test's run of the installed `oversync-web server-schema`.
import { defineSchema } from 'oversync-web';

export const schema = defineSchema(
  { users: { id: 'uuid', name: 'text', email: 'text', created_at: 'timestamp?' } },
  { indexes: { users: [['name']] } },
);
