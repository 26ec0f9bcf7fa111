//! Tests that run the `ekvae` command line.

mod envs;
mod model;
