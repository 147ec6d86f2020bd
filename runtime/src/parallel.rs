//! How one training run is spread over data-parallel peers: `--devices N` peers in this
//! process, optionally times `--nodes K` processes (machines) joined through a coordinator.
//! Plain settings and their checks; the peers themselves are in `lower/group.rs`, the
//! all-reduce in `lower/collective.rs`.

use std::time::Duration;

use tread_compiler::diag::{Diagnostic, Location};

/// The default `--peer-timeout`: long enough for node 0's sample grids and evaluations, which
/// the other nodes wait through.
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(600);

/// Several processes training one run: this one is node `rank` of `nodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Number of nodes (processes), each with the same `--devices`.
    pub nodes: u32,
    /// This node's rank, `0..nodes`; node 0 writes the run folder.
    pub rank: u32,
    /// The coordinator (`treadc coordinator`) as `HOST:PORT`.
    pub coordinator: String,
    /// Where the other nodes reach this one, `HOST:PORT`; the port is opened here for the
    /// peer-to-peer tensor transfers.
    pub address: String,
}

impl Cluster {
    /// The coordinator's websocket address.
    pub fn coordinator_url(&self) -> String {
        format!("ws://{}", self.coordinator)
    }

    /// This node's websocket address.
    pub fn address_url(&self) -> String {
        format!("ws://{}", self.address)
    }

    /// The port of this node's address (checked by [`Parallel::check`]).
    pub fn port(&self) -> u16 {
        port_of(&self.address).unwrap_or(0)
    }
}

/// The peers of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parallel {
    /// Peers in this process (CPU workers or GPUs).
    pub devices: usize,
    /// Other processes, if any.
    pub cluster: Option<Cluster>,
    /// How long a peer may take to answer (a step, or joining) before the run stops with an
    /// error instead of waiting for a node that died.
    pub timeout: Duration,
    /// Micro-batches each peer splits its share of a step into, computed concurrently
    /// (`--micro-batches`; `None`: the engine's default, see `lower/pass.rs`).
    pub micro_batches: Option<usize>,
}

impl Default for Parallel {
    fn default() -> Self {
        Parallel {
            devices: 1,
            cluster: None,
            timeout: DEFAULT_PEER_TIMEOUT,
            micro_batches: None,
        }
    }
}

impl Parallel {
    /// Peers over all nodes.
    pub fn peers(&self) -> usize {
        self.devices * self.cluster.as_ref().map_or(1, |c| c.nodes as usize)
    }

    /// The global index of this process's first peer (`rank · devices`).
    pub fn first_peer(&self) -> usize {
        self.devices * self.cluster.as_ref().map_or(0, |c| c.rank as usize)
    }

    /// `true` for the process that writes the run folder (node 0, or the only process).
    pub fn is_leader(&self) -> bool {
        self.cluster.as_ref().is_none_or(|c| c.rank == 0)
    }

    /// `true` when there is nothing to all-reduce: one peer in one process.
    pub fn is_single(&self) -> bool {
        self.peers() == 1 && self.cluster.is_none()
    }

    /// Checks the flags against each other and the global batch; the diagnostic names the flag.
    pub fn check(&self, batch: usize) -> Result<(), Diagnostic> {
        self.check_flags()?;
        let peers = self.peers();
        if !batch.is_multiple_of(peers) {
            return bad(
                "--batch",
                &format!(
                    "a global batch divisible by the {peers} peers (--devices × --nodes), so \
                     that every peer computes the same number of samples"
                ),
                batch.to_string(),
            );
        }
        if let Some(m) = self.micro_batches {
            let local = batch / peers;
            if !local.is_multiple_of(m) {
                return bad(
                    "--micro-batches",
                    &if peers == 1 {
                        format!("a number of micro-batches dividing --batch {batch}")
                    } else {
                        format!(
                            "a number of micro-batches dividing the {local} samples each of \
                             the {peers} peers computes per step (--batch {batch})"
                        )
                    },
                    m.to_string(),
                );
            }
        }
        Ok(())
    }

    /// Checks the flags against each other (the batch is checked by [`Parallel::check`] once
    /// it is known); the diagnostic names the flag.
    pub fn check_flags(&self) -> Result<(), Diagnostic> {
        if self.devices == 0 {
            return bad("--devices", "at least 1 peer", "0".into());
        }
        if self.micro_batches == Some(0) {
            return bad("--micro-batches", "at least 1 micro-batch", "0".into());
        }
        if self.timeout.is_zero() {
            return bad("--peer-timeout", "a number of seconds ≥ 1", "0".into());
        }
        if let Some(c) = &self.cluster {
            if c.nodes == 0 {
                return bad("--nodes", "at least 1 node", "0".into());
            }
            if c.rank >= c.nodes {
                return bad(
                    "--node-rank",
                    &format!("a rank below --nodes {}", c.nodes),
                    c.rank.to_string(),
                );
            }
            for (flag, v) in [
                ("--coordinator", &c.coordinator),
                ("--node-address", &c.address),
            ] {
                if port_of(v).is_none() {
                    return bad(flag, "HOST:PORT with a port in 1..65535", v.clone());
                }
            }
        }
        Ok(())
    }
}

/// A bad-argument diagnostic naming `flag`.
fn bad(flag: &str, expected: &str, found: String) -> Result<(), Diagnostic> {
    Err(Diagnostic::new(Location::Item(flag.into()), "bad argument")
        .expected(expected)
        .found(found)
        .in_file("<command line>"))
}

/// The port of `HOST:PORT` (`None` without a host, or with a port that is not 1..65535).
fn port_of(addr: &str) -> Option<u16> {
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && !host.contains('/') && port > 0).then_some(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(nodes: u32, rank: u32, coordinator: &str, address: &str) -> Parallel {
        Parallel {
            devices: 2,
            cluster: Some(Cluster {
                nodes,
                rank,
                coordinator: coordinator.into(),
                address: address.into(),
            }),
            timeout: Duration::from_secs(5),
            micro_batches: None,
        }
    }

    #[test]
    fn peers_and_ranks() {
        let p = cluster(3, 2, "h:1", "h:2");
        assert_eq!(p.peers(), 6);
        assert_eq!(p.first_peer(), 4);
        assert!(!p.is_leader() && !p.is_single());
        assert!(Parallel::default().is_single() && Parallel::default().is_leader());
        assert_eq!(p.cluster.as_ref().map(Cluster::port), Some(2));
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let flag_of = |p: Parallel, batch| match p.check(batch) {
            Err(d) => d.to_string(),
            Ok(()) => String::new(),
        };
        assert!(cluster(2, 0, "127.0.0.1:7000", "127.0.0.1:7001")
            .check(8)
            .is_ok());
        assert!(flag_of(cluster(2, 0, "h:1", "h:2"), 6).contains("--batch"));
        assert!(flag_of(cluster(2, 2, "h:1", "h:2"), 8).contains("--node-rank"));
        assert!(flag_of(cluster(2, 0, "h", "h:2"), 8).contains("--coordinator"));
        assert!(flag_of(cluster(2, 0, "h:1", "h:0"), 8).contains("--node-address"));
        assert!(flag_of(cluster(2, 0, "h:1", ":5"), 8).contains("--node-address"));
        let none = Parallel {
            devices: 0,
            ..Parallel::default()
        };
        assert!(flag_of(none, 8).contains("--devices"));
        let micro = |devices, m| Parallel {
            devices,
            micro_batches: Some(m),
            ..Parallel::default()
        };
        // 8 samples on 2 peers: 4 each, which 4 micro-batches divide and 3 or 0 do not.
        assert!(micro(2, 4).check(8).is_ok());
        for (devices, m) in [(2, 8), (1, 3), (1, 0)] {
            let msg = flag_of(micro(devices, m), 8);
            assert!(msg.contains("--micro-batches"), "{msg}");
        }
    }
}
