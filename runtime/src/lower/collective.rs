//! burn-collective, the one module that names it: registering a peer, the gradient all-reduce,
//! summing host data (and sending peer 0's to all), and the coordinator (burn-collective's global
//! orchestrator) that nodes on several machines join.
//!
//! Reductions are sums divided here by the peer count (not burn-collective's `Mean`), so the
//! mean is over peers whatever the split between devices and nodes.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use burn_collective::{
    all_reduce, finish_collective, register, AllReduceStrategy, CollectiveConfig, PeerId,
    ReduceOperation,
};

use super::train::GradReducer;
use super::value::OpResult;
use crate::parallel::Parallel;

fn err(what: &str, e: burn_collective::CollectiveError) -> String {
    use burn_collective::CollectiveError as E;
    let first = super::peer_panics::first_peer_panic()
        .map(|m| format!("; first failure: {m}"))
        .unwrap_or_default();
    match e {
        E::LocalServerMissing | E::Global(_) => format!(
            "{what} failed: another node left the run or cannot be reached (burn-collective: \
             {e:?}{first})"
        ),
        e => format!("{what}: burn-collective reports {e:?}{first}"),
    }
}

/// The burn-collective configuration of `plan`'s peers in this process.
fn config(plan: &Parallel) -> OpResult<CollectiveConfig> {
    let mut c = CollectiveConfig::default()
        .with_num_devices(plan.devices)
        .with_local_all_reduce_strategy(AllReduceStrategy::Tree(2));
    if let Some(cl) = &plan.cluster {
        let parse = |s: String| {
            s.parse::<burn_communication::Address>()
                .map_err(|e| format!("bad address {s}: {e}"))
        };
        c = c
            .with_num_nodes(cl.nodes)
            .with_global_address(parse(cl.coordinator_url())?)
            .with_node_address(parse(cl.address_url())?)
            .with_data_service_port(cl.port())
            .with_global_all_reduce_strategy(AllReduceStrategy::Ring);
    }
    Ok(c)
}

/// Registers global peer `id` of `plan` on `device`; returns once every peer of this process
/// (and, with a cluster, every node) has registered.
pub(super) fn join<B: Backend>(id: usize, plan: &Parallel, device: &B::Device) -> OpResult<()> {
    register::<B>(PeerId::from(id), device.clone(), config(plan)?)
        .map_err(|e| err(&format!("peer {id} could not join the run"), e))
}

/// Leaves the collective (so that another group can register in this process later).
pub(super) fn leave<B: Backend>(id: usize) {
    // An error here means the collective is already torn down: nothing is left to release.
    let _ = finish_collective::<B>(PeerId::from(id));
}

fn host<B: Backend>(t: Tensor<B, 1>) -> OpResult<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| format!("{e:?}"))
}

/// The element-wise sum over all peers of `data` (same length on every peer).
pub(super) fn sum_host<B: Backend>(
    id: usize,
    data: Vec<f32>,
    device: &B::Device,
) -> OpResult<Vec<f32>> {
    let n = data.len();
    let mut data = data;
    // The ring across nodes splits the tensor into one slice per node and refuses a tensor
    // shorter than the node count; zeros pad small ones (the header, the agreement flag).
    data.resize(n.max(MIN_RING_LEN), 0.0);
    let len = data.len();
    let t = Tensor::<B, 1>::from_data(TensorData::new(data, [len]), device);
    let r = all_reduce::<B>(
        PeerId::from(id),
        t.into_primitive().tensor(),
        ReduceOperation::Sum,
    )
    .map_err(|e| err("all-reduce", e))?;
    let mut sum = host(Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(r)))?;
    sum.truncate(n);
    Ok(sum)
}

/// The length small all-reduces are padded to (see [`sum_host`]): more nodes than any run has.
const MIN_RING_LEN: usize = 4096;

/// Peer 0's `data` (`len` values; `Some` on peer 0 only) on every peer. burn-collective
/// 0.21's broadcast is not implemented across nodes ("Global broadcast unimplemented"), so this
/// is an all-reduce sum to which the other peers add zeros: exact, as `x + 0 = x`.
pub(super) fn from_first<B: Backend>(
    id: usize,
    data: Option<Vec<f32>>,
    len: usize,
    device: &B::Device,
) -> OpResult<Vec<f32>> {
    let data = match data {
        Some(d) if d.len() == len => d,
        Some(d) => {
            return Err(format!(
                "peer {id} was to send {len} values but has {}",
                d.len()
            ))
        }
        None => vec![0.0; len],
    };
    sum_host::<B>(id, data, device)
}

/// Values per all-reduce bucket (4 Mi floats, 16 MiB): consecutive gradients are concatenated
/// into buckets of at most this size (a larger tensor gets its own), like PyTorch DDP's. Why
/// not one buffer: buffers over glibc's largest mmap threshold (32 MiB) are fresh mappings
/// each step, and faulting their pages in cost more than the reduction (DiT-S/2, 2 peers:
/// 850 ms per step in one 132 MB buffer).
const BUCKET_VALUES: usize = 1 << 22;

/// Gradient averaging over burn-collective: every parameter's gradient and the loss, in
/// buckets of consecutive tensors (a few all-reduce calls per step instead of one per tensor).
pub(super) struct CollectiveReducer {
    /// This peer's global id.
    pub id: usize,
    /// Peers over all nodes.
    pub peers: usize,
    /// Seconds spent in `mean` and calls so far.
    pub spent: (f64, u64),
}

impl<B: Backend> GradReducer<B> for CollectiveReducer {
    fn mean(
        &mut self,
        params: &[Tensor<B, 1>],
        grads: Option<Vec<Option<Tensor<B, 1>>>>,
        loss: f32,
    ) -> OpResult<(Vec<Option<Tensor<B, 1>>>, f32)> {
        let t0 = std::time::Instant::now();
        let device = params
            .first()
            .map(|p| p.device())
            .ok_or("a model without parameters has nothing to train")?;
        let reached: Vec<bool> = match &grads {
            Some(g) => g.iter().map(Option::is_some).collect(),
            None => vec![true; params.len()],
        };
        let sizes: Vec<usize> = params.iter().map(|p| p.dims()[0]).collect();
        let mut parts: Vec<Tensor<B, 1>> = match grads {
            Some(g) => g
                .into_iter()
                .zip(&sizes)
                .map(|(g, &n)| g.unwrap_or_else(|| Tensor::zeros([n], &device)))
                .collect(),
            None => sizes.iter().map(|&n| Tensor::zeros([n], &device)).collect(),
        };
        // A peer whose loss is not finite sends zeros and its loss: the sum is then not finite
        // on every peer, and every peer skips the update. The loss rides in the last bucket.
        parts.push(Tensor::from_data(TensorData::new(vec![loss], [1]), &device));
        let scale = 1.0 / self.peers as f32;
        let mut out = Vec::with_capacity(sizes.len());
        let mut loss = f32::NAN;
        let mut parts = parts.into_iter().peekable();
        let mut index = 0;
        while parts.peek().is_some() {
            // One bucket: consecutive tensors up to BUCKET_VALUES (at least one).
            let mut bucket = vec![];
            let mut len = 0;
            while let Some(p) =
                parts.next_if(|p| bucket.is_empty() || len + p.dims()[0] <= BUCKET_VALUES)
            {
                len += p.dims()[0];
                bucket.push(p);
            }
            let n_in = bucket.len();
            let summed = all_reduce::<B>(
                PeerId::from(self.id),
                Tensor::cat(bucket, 0).into_primitive().tensor(),
                ReduceOperation::Sum,
            )
            .map_err(|e| err("gradient all-reduce", e))?;
            // Split on the host: each gradient becomes its own contiguous tensor, as the fused
            // AdamW expects, and the division by the peer count happens in the same pass.
            let sum = host(Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(
                summed,
            )))?;
            let mut at = 0;
            for _ in 0..n_in {
                if index == sizes.len() {
                    loss = sum.get(at).map_or(f32::NAN, |l| l * scale);
                    break;
                }
                let n = sizes[index];
                out.push(reached[index].then(|| {
                    let g: Vec<f32> = sum[at..at + n].iter().map(|v| v * scale).collect();
                    Tensor::from_data(TensorData::new(g, [n]), &device)
                }));
                at += n;
                index += 1;
            }
        }
        self.spent.0 += t0.elapsed().as_secs_f64();
        self.spent.1 += 1;
        Ok((out, loss))
    }

    fn spent(&self) -> (f64, u64) {
        self.spent
    }
}

/// Runs the coordinator that the nodes of a multi-machine run join (`treadc coordinator`):
/// burn-collective's global orchestrator on `port`, until the process is interrupted.
pub fn run_coordinator(port: u16) -> Result<(), String> {
    // Bind once first so that a port in use is a clear error rather than a log line.
    std::net::TcpListener::bind(("0.0.0.0", port))
        .map_err(|e| format!("cannot listen on port {port}: {e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the coordinator's runtime: {e}"))?;
    rt.block_on(burn_collective::start_global_orchestrator(port));
    Ok(())
}
