//! Data-parallel peers seen as one [`Session`]: one thread per peer of this process, each with
//! its own [`Trainer`] (its shard of every batch, its own rayon pool), driven over channels.
//! The peers average gradients through [`super::collective`] inside each step, so every peer
//! holds the same parameters; sampling and checkpoints are answered by this process's first
//! peer.
//!
//! Nothing waits forever: the peers' answers come over one channel, the first failure any peer
//! reports (an error, or a panic caught in its thread) ends the wait at once, and a silent peer
//! ends it after `Parallel::timeout`, naming the peer. Either marks the group broken: a node
//! that died leaves the others blocked inside the all-reduce, and the process exits with the
//! error without waiting for them.
//!
//! With a cluster, the peers first agree at start: peer 0 (node 0) sends a fingerprint of the
//! recipe and its step and step target, every node compares, and a resumed run's state is sent
//! from peer 0 to all, so only node 0 needs the run folder.

use std::collections::BTreeMap;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tread_compiler::params::param_specs;

use super::collective::{self, CollectiveReducer};
use super::fused::Engine;
use super::peer_panics::{first_peer_panic, quiet_peer_panics};
use super::sample::{Guidance, SampleSpec};
use super::session::Session;
use super::train::{Recipe, Shard, Trainer};
use super::value::OpResult;
use crate::checkpoint::{Checkpoint, HostTensor};
use crate::data::Dataset;
use crate::parallel::Parallel;

/// A checkpoint to start from and its step.
pub type Saved = (Arc<Checkpoint>, u64);

/// How the group starts: fresh, or from a checkpoint at a step, and the step target.
#[derive(Clone)]
pub struct GroupStart {
    /// The checkpoint and its step (`None`: a fresh run). On a cluster only node 0's counts.
    pub saved: Option<Saved>,
    /// Total steps of the run (node 0's counts on a cluster).
    pub steps: u64,
    /// Text every node must agree on besides the recipe (the data source), hashed into the
    /// start-up fingerprint.
    pub agree_on: String,
}

/// What the peers agreed on at start: the step to continue from and the step target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// Completed steps at start.
    pub step: u64,
    /// Total steps of the run.
    pub steps: u64,
}

enum Command {
    Step(Arc<Dataset>),
    Sample(Box<(SampleSpec, Guidance, bool)>),
    Checkpoint,
    Params,
    Stop,
}

enum Reply {
    Ready(OpResult<Agreed>),
    /// The loss and the peer's (seconds, steps) spent averaging so far.
    Loss(OpResult<f32>, (f64, u64)),
    Images(OpResult<Vec<f32>>),
    Saved(OpResult<Checkpoint>),
    Params(OpResult<Vec<Vec<f32>>>),
    Stopped,
    /// The peer's thread panicked (the message), so it will answer nothing more.
    Died(String),
}

impl Reply {
    /// The error this reply carries, if any (a failed step or start, or a dead peer).
    fn failure(&self) -> Option<String> {
        match self {
            Reply::Ready(Err(e)) | Reply::Loss(Err(e), _) | Reply::Died(e) => Some(e.clone()),
            _ => None,
        }
    }
}

struct Peer {
    id: usize,
    tx: Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

/// The peers of this process as one session.
pub struct PeerGroup {
    peers: Vec<Peer>,
    /// Every peer's answers, tagged with its local index.
    answers: Receiver<(usize, Reply)>,
    recipe: Recipe,
    step: u64,
    timeout: Duration,
    broken: bool,
    /// Each local peer's (seconds, steps) spent in the gradient all-reduce.
    spent: Vec<(f64, u64)>,
    /// Peers over all nodes.
    total_peers: usize,
}

/// Everything a peer thread needs to start.
struct PeerStart<D> {
    id: usize,
    plan: Parallel,
    recipe: Recipe,
    start: GroupStart,
    threads: usize,
    device: D,
}

impl PeerGroup {
    /// Starts this process's peers of `plan` (`devices[i]` for local peer `i`) and waits until
    /// all have joined (and, on a cluster, agreed with node 0).
    pub fn start<B: Engine>(
        recipe: Recipe,
        plan: &Parallel,
        start: GroupStart,
        devices: Vec<B::Device>,
    ) -> Result<(Self, Agreed), String> {
        quiet_peer_panics();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (cores / plan.devices).max(1);
        let mut peers = Vec::with_capacity(plan.devices);
        let (answer, answers) = channel();
        for (local, device) in devices.into_iter().enumerate() {
            let id = plan.first_peer() + local;
            let (tx, cmds) = channel();
            let ps = PeerStart {
                id,
                plan: plan.clone(),
                recipe: recipe.clone(),
                start: start.clone(),
                threads,
                device,
            };
            let answer = answer.clone();
            let thread = std::thread::Builder::new()
                .name(format!("treadc-peer-{id}"))
                .spawn(move || peer_main::<B>(ps, local, cmds, answer))
                .map_err(|e| format!("cannot start peer {id}'s thread: {e}"))?;
            peers.push(Peer {
                id,
                tx,
                thread: Some(thread),
            });
        }
        let n = peers.len();
        let mut group = PeerGroup {
            spent: vec![(0.0, 0); n],
            total_peers: plan.peers(),
            peers,
            answers,
            recipe,
            step: 0,
            timeout: plan.timeout,
            broken: false,
        };
        let mut agreed = None;
        for r in group.gather("joining the run")? {
            match r {
                Reply::Ready(Ok(a)) => agreed = Some(a),
                _ => return Err(group.confused()),
            }
        }
        let agreed = agreed.ok_or("no peers to start")?;
        group.step = agreed.step;
        Ok((group, agreed))
    }

    /// One answer from every peer, in peer order. Returns at the first failure any peer
    /// reports (the others may be blocked in a collective that will not complete), and after
    /// at most the timeout; either marks the group broken.
    fn gather(&mut self, doing: &str) -> Result<Vec<Reply>, String> {
        let n = self.peers.len();
        let mut got: Vec<Option<Reply>> = (0..n).map(|_| None).collect();
        let deadline = Instant::now() + self.timeout;
        while let Some(silent) = got.iter().position(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.answers.recv_timeout(left) {
                Ok((i, r)) => {
                    if let Some(e) = r.failure() {
                        self.broken = true;
                        return Err(e);
                    }
                    if let Some(slot) = got.get_mut(i) {
                        *slot = Some(r);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.broken = true;
                    return Err(format!(
                        "peer {} gave no answer for {} s while {doing}: another node stopped \
                         or cannot be reached, or node 0 is still writing a sample grid or an \
                         evaluation (raise --peer-timeout)",
                        self.peers[silent].id,
                        self.timeout.as_secs()
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.broken = true;
                    return Err(format!(
                        "the peers stopped while {doing}: {}",
                        first_peer_panic().unwrap_or_else(|| "their threads ended".into())
                    ));
                }
            }
        }
        Ok(got.into_iter().flatten().collect())
    }

    /// Sends `c` to this process's first peer (the peers hold the same state, so it answers
    /// for all; the others are not asked) and returns its answer, waiting at most the timeout.
    /// `&self`: the channels need no bookkeeping for a single question.
    fn ask_first(&self, c: Command, what: &str) -> Result<Reply, String> {
        let id = self.peers[0].id;
        self.peers[0]
            .tx
            .send(c)
            .map_err(|_| format!("peer {id} has stopped"))?;
        match self.answers.recv_timeout(self.timeout) {
            Ok((0, r)) => match r.failure() {
                Some(e) => Err(e),
                None => Ok(r),
            },
            Ok(_) => Err(format!("a peer other than {id} answered out of turn")),
            Err(_) => Err(format!("peer {id} gave no {what}")),
        }
    }

    fn out_of_turn(&self) -> String {
        format!("peer {} answered out of turn", self.peers[0].id)
    }

    fn confused(&mut self) -> String {
        self.broken = true;
        "a peer answered out of turn".into()
    }

    fn send(&mut self, i: usize, c: Command) -> Result<(), String> {
        self.peers[i].tx.send(c).map_err(|_| {
            self.broken = true;
            format!("peer {} has stopped", self.peers[i].id)
        })
    }
}

impl Session for PeerGroup {
    fn step(&self) -> u64 {
        self.step
    }

    fn recipe(&self) -> &Recipe {
        &self.recipe
    }

    fn train_step(&mut self, data: &Arc<Dataset>) -> OpResult<f32> {
        if self.broken {
            return Err("the peer group stopped after an earlier error".into());
        }
        for i in 0..self.peers.len() {
            self.send(i, Command::Step(data.clone()))?;
        }
        let doing = format!("training step {}", self.step + 1);
        let mut loss = Ok(f32::NAN);
        for (i, r) in self.gather(&doing)?.into_iter().enumerate() {
            match r {
                Reply::Loss(l, spent) => {
                    self.spent[i] = spent;
                    if i == 0 {
                        loss = l;
                    }
                }
                _ => return Err(self.confused()),
            }
        }
        let loss = loss?;
        if loss.is_finite() {
            self.step += 1;
        }
        Ok(loss)
    }

    fn sample(&self, spec: &SampleSpec, guidance: &Guidance, use_ema: bool) -> OpResult<Vec<f32>> {
        let c = Command::Sample(Box::new((spec.clone(), guidance.clone(), use_ema)));
        match self.ask_first(c, "samples")? {
            Reply::Images(r) => r,
            _ => Err(self.out_of_turn()),
        }
    }

    fn to_checkpoint(&self) -> OpResult<Checkpoint> {
        match self.ask_first(Command::Checkpoint, "checkpoint")? {
            Reply::Saved(r) => r,
            _ => Err(self.out_of_turn()),
        }
    }

    fn parallel_report(&self) -> Option<String> {
        // The peer that waited least arrived last: its time is the all-reduce itself, not
        // waiting for slower peers.
        let (secs, steps) = self
            .spent
            .iter()
            .filter(|s| s.1 > 0)
            .min_by(|a, b| (a.0 / a.1 as f64).total_cmp(&(b.0 / b.1 as f64)))?;
        Some(format!(
            "data parallel: {} peers ({} here); gradient all-reduce {:.1} ms per step (the \
             least-waiting peer's mean over {steps} steps)",
            self.total_peers,
            self.peers.len(),
            1e3 * secs / *steps as f64
        ))
    }

    fn host_params(&self) -> OpResult<Vec<Vec<f32>>> {
        match self.ask_first(Command::Params, "parameters")? {
            Reply::Params(r) => r,
            _ => Err(self.out_of_turn()),
        }
    }
}

impl Drop for PeerGroup {
    /// Stops the peers and waits (at most the timeout each) until they have left the
    /// collective, so that a later group in this process can join; a broken group's threads
    /// are left blocked (the process is about to exit with the error).
    fn drop(&mut self) {
        if self.broken {
            return;
        }
        for p in &self.peers {
            let _ = p.tx.send(Command::Stop);
        }
        let deadline = Instant::now() + self.timeout;
        let mut stopped = 0;
        while stopped < self.peers.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.answers.recv_timeout(left) {
                Ok((i, Reply::Stopped)) => {
                    stopped += 1;
                    if let Some(t) = self.peers.get_mut(i).and_then(|p| p.thread.take()) {
                        let _ = t.join();
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }
}

/// A peer thread: joins, agrees, builds its trainer, then answers commands until `Stop`. A
/// panic is answered as [`Reply::Died`], so the group does not wait for a thread that is gone.
fn peer_main<B: Engine>(
    ps: PeerStart<B::Device>,
    local: usize,
    cmds: Receiver<Command>,
    answer: Sender<(usize, Reply)>,
) {
    let id = ps.id;
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(ps.threads)
        .thread_name(move |i| format!("treadc-peer-{id}-{i}"))
        .build()
    {
        Ok(p) => p,
        Err(e) => {
            let _ = answer.send((
                local,
                Reply::Ready(Err(format!("cannot start peer {id}'s threads: {e}"))),
            ));
            return;
        }
    };
    let reply = answer.clone();
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.install(move || serve::<B>(ps, cmds, move |r| reply.send((local, r)).is_ok()))
    }));
    match ran {
        Ok(true) => {}
        Ok(false) => collective::leave::<B>(id),
        Err(_) => {
            let why = first_peer_panic().unwrap_or_else(|| "a panic".into());
            let _ = answer.send((local, Reply::Died(format!("peer {id} failed: {why}"))));
            collective::leave::<B>(id);
        }
    }
}

/// Answers commands; `answer` returns `false` once the group is gone. Returns `true` when it
/// has left the collective itself (on `Stop`, before answering, so that a later group in this
/// process can join).
fn serve<B: Engine>(
    ps: PeerStart<B::Device>,
    cmds: Receiver<Command>,
    answer: impl Fn(Reply) -> bool,
) -> bool {
    let id = ps.id;
    let mut trainer = match setup::<B>(ps) {
        Ok((t, agreed)) => {
            if !answer(Reply::Ready(Ok(agreed))) {
                return false;
            }
            t
        }
        Err(e) => {
            answer(Reply::Ready(Err(e)));
            return false;
        }
    };
    while let Ok(c) = cmds.recv() {
        let reply = match c {
            Command::Step(data) => {
                let loss = trainer.train_step(&data);
                Reply::Loss(loss, trainer.reduce_spent().unwrap_or((0.0, 0)))
            }
            Command::Sample(b) => {
                let (spec, guidance, ema) = *b;
                Reply::Images(trainer.sample(&spec, &guidance, ema))
            }
            Command::Checkpoint => Reply::Saved(trainer.to_checkpoint()),
            Command::Params => Reply::Params(trainer.host_params()),
            Command::Stop => {
                drop(trainer);
                collective::leave::<B>(id);
                answer(Reply::Stopped);
                return true;
            }
        };
        if !answer(reply) {
            return false;
        }
    }
    false
}

/// Joins the collective, agrees with node 0 (on a cluster) and builds this peer's trainer.
fn setup<B: Engine>(ps: PeerStart<B::Device>) -> OpResult<(Trainer<B>, Agreed)> {
    let PeerStart {
        id,
        plan,
        recipe,
        start,
        device,
        ..
    } = ps;
    collective::join::<B>(id, &plan, &device)?;
    let (agreed, saved) = if plan.cluster.is_some() {
        agree::<B>(id, &recipe, &start, &device)?
    } else {
        let step = start.saved.as_ref().map_or(0, |s| s.1);
        (
            Agreed {
                step,
                steps: start.steps,
            },
            start.saved.clone(),
        )
    };
    let trainer = match saved {
        Some((ck, step)) => Trainer::<B>::from_checkpoint(recipe, device, &ck, step)?,
        None => Trainer::<B>::new(recipe, device)?,
    };
    let shard = Shard {
        index: id,
        count: plan.peers(),
    };
    let reducer = CollectiveReducer {
        id,
        peers: plan.peers(),
        spent: (0.0, 0),
    };
    Ok((trainer.into_peer(shard, Box::new(reducer))?, agreed))
}

/// The checkpoint's tensor groups, in the order they are sent.
const STATE_SETS: [&str; 4] = ["model", "ema", "adam_m", "adam_v"];

/// The cluster start-up: node 0's fingerprint, step and target go to all; every peer checks
/// the fingerprint and they all learn whether anyone differs; a resumed state follows.
fn agree<B: Engine>(
    id: usize,
    recipe: &Recipe,
    start: &GroupStart,
    device: &B::Device,
) -> OpResult<(Agreed, Option<Saved>)> {
    let mine = fingerprint(recipe, &start.agree_on);
    let header = (id == 0).then(|| {
        let step = start.saved.as_ref().map_or(0, |s| s.1);
        [mine, step, start.steps]
            .iter()
            .flat_map(|&v| encode_u64(v))
            .collect::<Vec<f32>>()
    });
    let got = collective::from_first::<B>(id, header, 12, device)?;
    let [theirs, step, steps] = match got.chunks(4).map(decode_u64).collect::<Vec<_>>()[..] {
        [Some(a), Some(b), Some(c)] => [a, b, c],
        _ => return Err(format!("peer {id} received a malformed start-up header")),
    };
    let differ = if theirs == mine { 0.0 } else { 1.0 };
    let differing = collective::sum_host::<B>(id, vec![differ], device)?
        .first()
        .copied()
        .unwrap_or(f32::NAN);
    if differing != 0.0 {
        return Err(if differ > 0.0 {
            "this node was started with another model, --route, --batch, --seed or --data than \
             node 0 (their fingerprints differ); start every node with the same MODEL and flags"
                .to_string()
        } else {
            format!(
                "{differing} peer(s) on other nodes were started with another model, --route, \
                 --batch, --seed or --data than node 0; start every node with the same MODEL \
                 and flags"
            )
        });
    }
    let agreed = Agreed { step, steps };
    if step == 0 {
        return Ok((agreed, None));
    }
    let specs = param_specs(&recipe.routed);
    let mut tensors = BTreeMap::new();
    for set in STATE_SETS {
        let mine = (id == 0)
            .then(|| {
                start.saved.as_ref().map(|(ck, _)| {
                    specs
                        .iter()
                        .flat_map(|s| {
                            ck.tensors
                                .get(&format!("{set}/{}", s.name))
                                .map_or(&[][..], |t| &t.data[..])
                                .iter()
                                .copied()
                        })
                        .collect::<Vec<f32>>()
                })
            })
            .flatten();
        let len = specs
            .iter()
            .map(|s| s.shape.iter().product::<usize>())
            .sum();
        let flat = collective::from_first::<B>(id, mine, len, device)?;
        let mut at = 0;
        for s in &specs {
            let n: usize = s.shape.iter().product();
            let data = flat
                .get(at..at + n)
                .ok_or_else(|| format!("node 0 sent a `{set}` state of another size"))?
                .to_vec();
            at += n;
            tensors.insert(
                format!("{set}/{}", s.name),
                HostTensor {
                    shape: s.shape.clone(),
                    data,
                },
            );
        }
    }
    let ck = Checkpoint {
        tensors,
        meta: BTreeMap::new(),
    };
    Ok((agreed, Some((Arc::new(ck), step))))
}

/// FNV-1a over the recipe's routed graph, training settings, batch, seed and `extra`: equal on
/// two nodes iff they would train the same run (stable across builds, unlike `DefaultHasher`).
fn fingerprint(r: &Recipe, extra: &str) -> u64 {
    let text = format!(
        "{}\n{:?}\n{} {} {:?} {}\n{extra}",
        tread_compiler::emit::to_text(&r.routed),
        r.training,
        r.batch,
        r.seed,
        r.classes,
        r.fused
    );
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// A `u64` as four 16-bit chunks, each exact in an `f32`.
fn encode_u64(v: u64) -> [f32; 4] {
    [0, 16, 32, 48].map(|s| ((v >> s) & 0xffff) as f32)
}

fn decode_u64(c: &[f32]) -> Option<u64> {
    if c.len() != 4
        || c.iter()
            .any(|&x| !(0.0..65536.0).contains(&x) || x.fract() != 0.0)
    {
        return None;
    }
    Some(
        c.iter()
            .enumerate()
            .fold(0, |acc, (i, &x)| acc | ((x as u64) << (16 * i))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lower::tests::{bundled_digits as mnist, max_diff, small_recipe as recipe};
    use burn::backend::Flex;
    use std::sync::Mutex;

    /// burn-collective keeps one collective per backend type in the process: the tests that
    /// start groups take turns.
    static COLLECTIVE: Mutex<()> = Mutex::new(());

    fn group(r: Recipe, devices: usize, saved: Option<Saved>) -> PeerGroup {
        let plan = Parallel {
            devices,
            timeout: Duration::from_secs(120),
            ..Parallel::default()
        };
        let start = GroupStart {
            saved,
            steps: 5,
            agree_on: String::new(),
        };
        PeerGroup::start::<Flex>(r, &plan, start, vec![Default::default(); devices])
            .unwrap()
            .0
    }

    /// The equivalence: one process with batch 8 and 2 peers with 4 each see the same
    /// data, noise, class dropout and routes, so after 5 steps the parameters agree to fp32
    /// rounding (the split sums the batch in another order). The bound is 200× below how far
    /// the parameters moved, so a peer drawing other samples or routes would fail it.
    #[test]
    fn two_peers_with_half_batches_equal_one_process() {
        let _turn = COLLECTIVE.lock().unwrap_or_else(|e| e.into_inner());
        let data = mnist();
        let mut one = Trainer::<Flex>::new(recipe(8), Default::default()).unwrap();
        let start = one.host_params().unwrap();
        let mut two = group(recipe(8), 2, None);
        for step in 0..5 {
            let (a, b) = (
                one.train_step(&data).unwrap(),
                two.train_step(&data).unwrap(),
            );
            assert!(
                (a - b).abs() <= 1e-5 * a.abs(),
                "step {step}: loss {a} vs {b}"
            );
        }
        assert_eq!(two.step(), 5);
        let (pa, pb) = (one.host_params().unwrap(), two.host_params().unwrap());
        let diff = max_diff(&pa, &pb);
        let moved = max_diff(&pa, &start);
        eprintln!("max |one - two| after 5 steps: {diff:e}; parameters moved up to {moved:e}");
        assert!(diff <= 1e-6, "max abs difference {diff}");
        assert!(moved > 200.0 * 1e-6, "the parameters moved only {moved}");
        assert!(two.parallel_report().is_some());
    }

    /// A checkpoint written by 2 peers resumes on 1 (and one written by 1 resumes on 2): the
    /// format does not depend on the peer count, and the runs continue as one.
    #[test]
    fn a_checkpoint_resumes_with_another_peer_count() {
        let _turn = COLLECTIVE.lock().unwrap_or_else(|e| e.into_inner());
        let data = mnist();
        let mut straight = Trainer::<Flex>::new(recipe(4), Default::default()).unwrap();
        for _ in 0..4 {
            straight.train_step(&data).unwrap();
        }
        let mut two = group(recipe(4), 2, None);
        for _ in 0..2 {
            two.train_step(&data).unwrap();
        }
        let ck = two.to_checkpoint().unwrap();
        drop(two);
        let mut one =
            Trainer::<Flex>::from_checkpoint(recipe(4), Default::default(), &ck, 2).unwrap();
        one.train_step(&data).unwrap();
        let ck3 = one.to_checkpoint().unwrap();
        let mut two_again = group(recipe(4), 2, Some((Arc::new(ck3), 3)));
        assert_eq!(two_again.step(), 3);
        two_again.train_step(&data).unwrap();
        let diff = max_diff(
            &straight.host_params().unwrap(),
            &two_again.host_params().unwrap(),
        );
        assert!(diff <= 1e-6, "max abs difference {diff}");
    }

    #[test]
    fn u64_round_trips_through_f32_chunks() {
        for v in [0, 1, 0xffff, 0x1_0000, u64::MAX, 0xdead_beef_cafe_f00d] {
            assert_eq!(decode_u64(&encode_u64(v)), Some(v));
        }
        assert_eq!(decode_u64(&[1.5, 0.0, 0.0, 0.0]), None);
        assert_eq!(decode_u64(&[0.0, 0.0, 0.0]), None);
    }
}
