//! Shared helpers live in tests/tests/common; this crate only hosts the end-to-end suite.
