//! cri-migrate: move a Kubernetes node off Docker Engine onto containerd or CRI-O.
//!
//! The binary (`src/main.rs`) is a thin shell over these modules; the end-to-end test's kubelet
//! stand-in (`tests/kubelet-standin`, a crate of the workspace) reuses the flag parser and the CRI client.

pub mod apply;
pub mod cli;
pub mod commands;
pub mod containerd;
pub mod cri;
pub mod error;
pub mod flags;
pub mod guided;
pub mod images;
pub mod inspect;
pub mod names;
pub mod node;
pub mod plan;
pub mod progress;
pub mod records;
pub mod render;
pub mod report;
pub mod runtime;
pub mod secrets;
pub mod signals;
pub mod sync;
pub mod system;
pub mod terminal;
pub mod unit;
pub mod version;
