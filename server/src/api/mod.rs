//! Transports that carry sessions: gRPC today.

pub mod grpc;
