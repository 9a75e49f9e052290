//! End-to-end: client engines (in-memory SQLite) against the real server and a real PostgreSQL, the scenarios of
//! PROTOCOL.md §9.1 and the client-side §9.2 regressions.

mod support;

mod backend_writes;
mod classic_server;
mod faults;
mod history;
mod hostile_server;
mod hydration;
mod identity;
mod kill;
mod load;
mod multi_device;
mod overload;
mod page_budget;
mod pg_restart;
mod prometheus;
mod proxy_faults;
mod regressions;
mod rejections;
mod scenarios;
mod sharing;
mod sharing_sim;
mod simulation;
