//! End-to-end tests live in `tests/`; the harness they use is the scenario runner's.

pub use scenarios::harness::*;
