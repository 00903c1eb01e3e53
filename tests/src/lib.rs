//! End-to-end tests across the connector and both fakes live in `tests/`.
