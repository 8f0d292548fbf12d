//! The local runner: a labelled simulation of Kubernetes + Kata confidential VMs, for `nunki demo`.

pub mod agent;
pub mod processes;
