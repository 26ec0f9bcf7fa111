//! Tests that run the `ekvae` command line.

mod envs;
mod mpc;
mod pixmpc;
mod model;
