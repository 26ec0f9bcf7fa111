//! The EKVAE world model (Klushyn et al., NeurIPS 2021) in burn.
//!
//! Being built; see the open issue "EKVAE world model in burn".
