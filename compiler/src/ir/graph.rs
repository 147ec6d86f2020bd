//! The graph: petgraph storage behind typed node ids; one value per node.
//!
//! Why one value per node: every consumer (burn lowering, ONNX writer, dumps) walks nodes in
//! topological order and reads a node's inputs as the values of other nodes, with no tuple
//! outputs to unpack. Multi-output layers are written as several `chunk` nodes.
//! Edges carry the input slot; the order of a node's inputs is the order of the slots.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use super::op::Op;
use super::types::ValueType;

/// A node (and the value it produces). Stable across passes that do not remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub(crate) NodeIndex<u32>);

impl NodeId {
    /// The raw storage index (stable, but not dense after removals).
    pub fn index(self) -> usize {
        self.0.index()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0.index())
    }
}

/// Where a node sits in the model's layout. Orders the dump and attributes FLOPs to blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Place {
    /// Before the trunk (embeddings, conditioning).
    Stem,
    /// Inside trunk block `i`.
    Block(usize),
    /// After the trunk (final layer, unpatchify).
    Head,
    /// Inserted by route `route` before block `block` (select and gathers).
    RouteEntry { route: usize, block: usize },
    /// Inserted by route `route` after block `block` (merges).
    RouteExit { route: usize, block: usize },
}

impl Place {
    /// Sort key that lays the graph out as stem, [entry, block, exit]*, head.
    fn major(self, depth: usize) -> usize {
        match self {
            Place::Stem => 0,
            Place::RouteEntry { block, .. } => 2 * block + 1,
            Place::Block(i) => 2 * i + 2,
            Place::RouteExit { block, .. } => 2 * block + 3,
            Place::Head => 2 * depth + 4,
        }
    }
}

/// A node: its unique name, op, inferred type, place and the JSON path it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Unique, stable, readable name (`blocks.3.attn`).
    pub name: String,
    /// The operation.
    pub op: Op,
    /// Output type; `None` only between construction and shape inference.
    pub ty: Option<ValueType>,
    /// Layout place.
    pub place: Place,
    /// JSON path of the node's definition, for diagnostics.
    pub origin: Option<String>,
}

/// One instance of a trunk block: the trunk value entering it and the one leaving it.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockInfo {
    /// Instance name (`blocks.3`).
    pub name: String,
    /// The block template it instantiates.
    pub template: String,
    /// The trunk value the block consumes (previous block's output, possibly merged).
    pub entry: NodeId,
    /// The trunk value the block produces.
    pub exit: NodeId,
}

/// A route that has been applied to the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedRoute {
    /// Fraction of tokens that bypass the blocks.
    pub rate: f64,
    /// First routed block.
    pub start: usize,
    /// Last routed block (inclusive).
    pub end: usize,
    /// Tokens entering the region.
    pub tokens: u64,
    /// Tokens processed by the region: `tokens − floor(tokens·rate)`.
    pub keep: u64,
    /// Whether kept indices are sorted (the region has an order-sensitive op).
    pub sorted: bool,
    /// The routed stream (`tokens` and `keep` count its tokens).
    pub stream: String,
}

/// The model graph.
#[derive(Debug, Clone)]
pub struct Graph {
    /// Model name (`DiT-S/2`).
    pub name: String,
    storage: StableDiGraph<Node, usize, u32>,
    /// Graph inputs, in declaration order.
    pub inputs: Vec<(String, NodeId)>,
    /// Graph outputs, in declaration order.
    pub outputs: Vec<(String, NodeId)>,
    /// Trunk block instances in order.
    pub blocks: Vec<BlockInfo>,
    /// Routes applied so far (empty for a dense graph).
    pub routes: Vec<AppliedRoute>,
}

impl Graph {
    /// An empty graph.
    pub fn new(name: impl Into<String>) -> Self {
        Graph {
            name: name.into(),
            storage: StableDiGraph::default(),
            inputs: vec![],
            outputs: vec![],
            blocks: vec![],
            routes: vec![],
        }
    }

    /// Number of trunk blocks.
    pub fn depth(&self) -> usize {
        self.blocks.len()
    }

    /// Adds a node with no inputs yet.
    pub fn add_node(&mut self, node: Node) -> NodeId {
        NodeId(self.storage.add_node(node))
    }

    /// Makes `src` the input at `slot` of `dst`.
    pub fn connect(&mut self, src: NodeId, dst: NodeId, slot: usize) {
        self.storage.add_edge(src.0, dst.0, slot);
    }

    /// Removes a node and its edges.
    pub fn remove_node(&mut self, id: NodeId) {
        self.storage.remove_node(id.0);
    }

    /// The node behind an id.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.storage[id.0]
    }

    /// Mutable access to a node.
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.storage[id.0]
    }

    /// The type of a node's value (panics only if called before shape inference, a bug).
    pub fn ty(&self, id: NodeId) -> &ValueType {
        self.node(id)
            .ty
            .as_ref()
            .expect("shape inference runs before types are read")
    }

    /// All node ids in storage order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.storage.node_indices().map(NodeId).collect()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.storage.node_count()
    }

    /// True when the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A node's inputs, ordered by slot.
    pub fn inputs_of(&self, id: NodeId) -> Vec<NodeId> {
        let mut v: Vec<(usize, NodeId)> = self
            .storage
            .edges_directed(id.0, Direction::Incoming)
            .map(|e| (*e.weight(), NodeId(e.source())))
            .collect();
        v.sort();
        v.into_iter().map(|(_, n)| n).collect()
    }

    /// Every `(consumer, slot)` that reads `id`, sorted.
    pub fn users_of(&self, id: NodeId) -> Vec<(NodeId, usize)> {
        let mut v: Vec<(NodeId, usize)> = self
            .storage
            .edges_directed(id.0, Direction::Outgoing)
            .map(|e| (NodeId(e.target()), *e.weight()))
            .collect();
        v.sort();
        v
    }

    /// Rewires input `slot` of `dst` from whatever it was to `src`.
    pub fn set_input(&mut self, dst: NodeId, slot: usize, src: NodeId) {
        let old: Vec<_> = self
            .storage
            .edges_directed(dst.0, Direction::Incoming)
            .filter(|e| *e.weight() == slot)
            .map(|e| e.id())
            .collect();
        for e in old {
            self.storage.remove_edge(e);
        }
        self.connect(src, dst, slot);
    }

    /// Replaces `old` by `new` in graph outputs and block entry/exit records.
    pub fn replace_in_records(&mut self, old: NodeId, new: NodeId, entries_after: usize) {
        for (_, o) in &mut self.outputs {
            if *o == old {
                *o = new;
            }
        }
        for b in self.blocks.iter_mut().skip(entries_after) {
            if b.entry == old {
                b.entry = new;
            }
        }
    }

    /// Finds a node by name.
    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.storage
            .node_indices()
            .find(|&i| self.storage[i].name == name)
            .map(NodeId)
    }

    /// A deterministic topological order: among ready nodes, the one with the smallest
    /// (layout place, storage index) comes first, so dumps read stem → blocks → head.
    /// Returns the names of nodes on a cycle if there is one.
    pub fn topo_order(&self) -> Result<Vec<NodeId>, Vec<String>> {
        let depth = self.depth();
        let key = |i: NodeIndex<u32>| Reverse((self.storage[i].place.major(depth), i.index()));
        let mut indeg: std::collections::HashMap<NodeIndex<u32>, usize> = self
            .storage
            .node_indices()
            .map(|i| {
                (
                    i,
                    self.storage.edges_directed(i, Direction::Incoming).count(),
                )
            })
            .collect();
        type Ready = (Reverse<(usize, usize)>, NodeIndex<u32>);
        let mut ready: BinaryHeap<Ready> = indeg
            .iter()
            .filter(|(_, &d)| d == 0)
            .map(|(&i, _)| (key(i), i))
            .collect();
        let mut order = Vec::with_capacity(self.len());
        while let Some((_, i)) = ready.pop() {
            order.push(NodeId(i));
            for e in self.storage.edges_directed(i, Direction::Outgoing) {
                let t = e.target();
                let d = indeg.get_mut(&t).expect("every node has an in-degree");
                *d -= 1;
                if *d == 0 {
                    ready.push((key(t), t));
                }
            }
        }
        if order.len() == self.len() {
            Ok(order)
        } else {
            Err(self.find_cycle())
        }
    }

    /// Names of the nodes of one cycle, in edge order, starting at the lowest storage index.
    fn find_cycle(&self) -> Vec<String> {
        let sccs = petgraph::algo::tarjan_scc(&self.storage);
        let Some(mut scc) = sccs
            .into_iter()
            .find(|c| c.len() > 1 || self.storage.find_edge(c[0], c[0]).is_some())
        else {
            return vec![];
        };
        scc.sort();
        let members: std::collections::HashSet<_> = scc.iter().copied().collect();
        let start = scc[0];
        let mut path = vec![start];
        let mut cur = start;
        loop {
            let next = self
                .storage
                .neighbors_directed(cur, Direction::Outgoing)
                .filter(|n| members.contains(n))
                .min()
                .expect("every node of a cycle has a successor on it");
            if next == start || path.contains(&next) {
                break;
            }
            path.push(next);
            cur = next;
        }
        path.into_iter()
            .map(|i| self.storage[i].name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, place: Place) -> Node {
        Node {
            name: name.into(),
            op: Op::Silu,
            ty: None,
            place,
            origin: None,
        }
    }

    #[test]
    fn topo_order_follows_layout_then_insertion() {
        let mut g = Graph::new("t");
        let head = g.add_node(node("head", Place::Head));
        g.add_node(node("a", Place::Stem));
        let b = g.add_node(node("b", Place::Stem));
        g.connect(b, head, 0);
        let names: Vec<_> = g
            .topo_order()
            .unwrap()
            .into_iter()
            .map(|n| g.node(n).name.clone())
            .collect();
        assert_eq!(names, ["a", "b", "head"]);
    }

    #[test]
    fn topo_order_reports_cycles() {
        let mut g = Graph::new("t");
        let a = g.add_node(node("a", Place::Stem));
        let b = g.add_node(node("b", Place::Stem));
        g.connect(a, b, 0);
        g.connect(b, a, 0);
        assert_eq!(g.topo_order().unwrap_err(), ["a", "b"]);
        let c = g.add_node(node("c", Place::Stem));
        g.connect(b, c, 0);
        assert_eq!(
            g.topo_order().unwrap_err(),
            ["a", "b"],
            "descendants are not on the cycle"
        );
    }

    #[test]
    fn set_input_rewires_one_slot() {
        let mut g = Graph::new("t");
        let a = g.add_node(node("a", Place::Stem));
        let b = g.add_node(node("b", Place::Stem));
        let c = g.add_node(node("c", Place::Stem));
        g.connect(a, c, 0);
        g.connect(a, c, 1);
        g.set_input(c, 1, b);
        assert_eq!(g.inputs_of(c), [a, b]);
        assert_eq!(g.users_of(a), [(c, 0)]);
    }
}
