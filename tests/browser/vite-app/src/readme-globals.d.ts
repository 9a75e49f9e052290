// What the package README's code blocks use without defining (the packaging test compiles each block, extracted
// from the installed package's README, as a module of this app).
declare const user: string;
declare const url: string;
declare const me: string;
declare const CREATE_TABLES: string;
declare const auth: (ctx: { deviceId: string; refresh: boolean }) => Promise<string>;
declare const myBackend: { token(deviceId: string): Promise<{ token: string }> };
declare function render(rows: unknown): void;
declare function showBadge(status: unknown): void;
