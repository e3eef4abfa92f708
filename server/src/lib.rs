//! placeholder

pub mod bytesize;
pub mod cgroup;
