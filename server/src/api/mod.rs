//! Transports that carry sessions (gRPC, WebSocket) and the HTTP front that
//! also serves health and metrics.

pub mod grpc;
pub mod http;
pub mod ws;
