//! Each target's implementation, by its [`Target`]: the one place a runtime is registered.

use super::target::{Target, TargetRuntime};

pub fn of(target: Target) -> &'static dyn TargetRuntime {
    match target {
        Target::Containerd => &super::containerd::Containerd,
        Target::Crio => &super::crio::Crio,
        #[cfg(test)]
        Target::Third => &super::third::Third,
    }
}
