//! iLQR and MPC for ekvae. Knows nothing about burn.
//!
//! Being built; see the open issue "iLQR and MPC planner".
