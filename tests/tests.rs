//! End-to-end tests of the `ekvae` binary and cross-crate behaviour, one module per area.

mod cli;
mod docs;
