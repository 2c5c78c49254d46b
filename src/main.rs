mod error;
mod flags;
mod inspect;
mod node;
mod plan;
mod render;
mod system;
mod version;
fn main() {}
