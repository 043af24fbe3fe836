//! Resource pools: CPU cores, memory, network bandwidth and any kind the host adds,
//! shared by the steps of every run.
