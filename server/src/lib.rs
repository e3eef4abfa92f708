//! placeholder

pub mod bytesize;
