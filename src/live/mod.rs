//! The live transports: WebSocket sessions (`/ws`, `/ws/jobs/{id}`) and Server-Sent Events
//! (`/api/jobs/{id}/events`). Both subscribe with the event registry before they read a
//! job's snapshot, hold back what arrives meanwhile, send each `seq` once and in order, and
//! close when their viewer's right to watch ends.

mod seen;
pub mod sse;
pub mod ws;
