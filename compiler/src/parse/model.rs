//! Reads a whole model file into a [`Model`]: the dense graph, its declared routes and its
//! training recipe.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::blocks::{check_name, expand, lookup};
use super::fields::{as_array, as_size, as_str, child, describe, elem, Fields};
use super::json::read_json;
use crate::config::TrainingConfig;
use crate::diag::{Diagnostic, Location, Result};
use crate::dims::{self, DimTable};
use crate::ir::{DType, Dim, Graph, InputRole, Node, NodeId, Op, Place, ValueType};
use crate::route_spec::{GivenRoute, RouteOrigin, RouteSpec};

/// The format tag every model file carries.
pub const FORMAT: &str = "treadc.model/1";

const TOP_KEYS: [&str; 12] = [
    "format",
    "name",
    "description",
    "dims",
    "inputs",
    "stem",
    "blocks",
    "trunk",
    "head",
    "outputs",
    "routes",
    "training",
];

/// A parsed, verified model.
#[derive(Debug, Clone)]
pub struct Model {
    /// The dense graph.
    pub graph: Graph,
    /// Routes declared in the file (applied only when asked).
    pub routes: Vec<GivenRoute>,
    /// The training recipe.
    pub training: TrainingConfig,
    /// The evaluated dims table.
    pub dims: DimTable,
    /// Free-text description.
    pub description: String,
    /// The file it came from.
    pub file: String,
}

/// Parses and verifies `text`, read from `file` (used in diagnostics).
pub fn parse_model(text: &str, file: &str) -> Result<Model> {
    parse_inner(text).map_err(|d| d.in_file(file)).map(|mut m| {
        m.file = file.to_string();
        m
    })
}

fn parse_inner(text: &str) -> Result<Model> {
    let root = read_json(text)?;
    let top = Fields::new(&root, "$", "the model file")?;
    top.check_known(&TOP_KEYS)?;
    let format = top.req("format", &format!("\"{FORMAT}\""))?;
    if format.as_str() != Some(FORMAT) {
        return Err(Diagnostic::at_path("$.format", "not a treadc model file")
            .expected(format!("\"{FORMAT}\""))
            .found(describe(format)));
    }
    let name = top.str("name")?.to_string();
    let description = top.opt_str("description")?.unwrap_or("").to_string();
    let dims = parse_dims(&top)?;
    let mut g = Graph::new(name);
    let mut scope: HashMap<String, NodeId> = HashMap::new();
    parse_inputs(&top, &dims, &mut g, &mut scope)?;
    expand(&top, &dims, &mut g, &mut scope)?;

    let outs = Fields::new(
        top.req("outputs", "an object {name: node}")?,
        "$.outputs",
        "`outputs`",
    )?;
    for (k, v) in outs.entries() {
        let path = child("$.outputs", k);
        let target = as_str(v, &path)?;
        let id = lookup(&scope, target, &path)?;
        g.outputs.push((k.clone(), id));
    }
    if g.outputs.is_empty() {
        return Err(Diagnostic::at_path("$.outputs", "the model has no outputs")
            .expected("at least one output")
            .found("{}"));
    }

    let routes = parse_routes(&top)?;
    let training = match top.get("training") {
        Some(v) => TrainingConfig::parse(&Fields::new(v, "$.training", "`training`")?)?,
        None => TrainingConfig::default(),
    };
    top.finish(&TOP_KEYS)?;

    validate(&mut g)?;
    Ok(Model {
        graph: g,
        routes,
        training,
        dims,
        description,
        file: String::new(),
    })
}

/// Checks the expanded graph: acyclic, every shape inferred, the verifier's rules.
fn validate(g: &mut Graph) -> Result<()> {
    if let Err(cycle) = g.topo_order() {
        let first = g.find(&cycle[0]).map(|id| g.node(id).origin.clone());
        return Err(Diagnostic::new(
            Location::Node {
                name: cycle[0].clone(),
                path: first.flatten(),
            },
            "the graph has a cycle",
        )
        .expected("an acyclic graph: no node may depend on itself")
        .found(format!("a cycle {} → {}", cycle.join(" → "), cycle[0])));
    }
    crate::shape::infer(g)?;
    crate::verify::verify(g)
}

fn parse_dims(top: &Fields) -> Result<DimTable> {
    let mut table = DimTable::new();
    let Some(v) = top.get("dims") else {
        return Ok(table);
    };
    let f = Fields::new(v, "$.dims", "`dims`")?;
    for (k, v) in f.entries() {
        let path = child("$.dims", k);
        if !dims::is_identifier(k) {
            return Err(
                Diagnostic::at_path(&path, "dimension names must be identifiers")
                    .expected("a name such as D or grid_h")
                    .found(format!("\"{k}\"")),
            );
        }
        let n = as_size(v, &path, &table)?;
        table.insert(k.clone(), n);
    }
    Ok(table)
}

fn parse_inputs(
    top: &Fields,
    dims: &DimTable,
    g: &mut Graph,
    scope: &mut HashMap<String, NodeId>,
) -> Result<()> {
    let f = Fields::new(
        top.req("inputs", "an object {name: {shape, role}}")?,
        "$.inputs",
        "`inputs`",
    )?;
    let mut seen_roles: BTreeMap<&str, String> = BTreeMap::new();
    for (name, v) in f.entries() {
        let path = child("$.inputs", name);
        check_name(name, &path)?;
        let inp = Fields::new(v, &path, "an input")?;
        let shape_v = inp.req("shape", "an array of sizes or symbols such as \"B\"")?;
        let arr = as_array(shape_v, &inp.at("shape"), "`shape`")?;
        let mut shape = vec![];
        for (i, d) in arr.iter().enumerate() {
            let p = elem(&inp.at("shape"), i);
            shape.push(match d {
                Value::String(s) if i == 0 && dims::is_identifier(s) && !dims.contains_key(s) => {
                    Dim::Sym(s.clone())
                }
                other => match as_size(other, &p, dims) {
                    Ok(0) => {
                        return Err(Diagnostic::at_path(&p, "empty dimension")
                            .expected("a size ≥ 1")
                            .found("0"))
                    }
                    Ok(n) => Dim::Known(n),
                    Err(e) => return Err(e.help(
                        "only the batch axis (the first) may be a run-time symbol such as \"B\"",
                    )),
                },
            });
        }
        let dtype = match inp.opt_str("dtype")?.unwrap_or("f32") {
            "f32" => DType::F32,
            "i64" => DType::I64,
            o => {
                return Err(Diagnostic::at_path(inp.at("dtype"), "unknown dtype")
                    .expected("\"f32\" or \"i64\"")
                    .found(format!("\"{o}\"")))
            }
        };
        let role_s = inp.str("role")?;
        let role = InputRole::ALL
            .into_iter()
            .find(|r| r.name() == role_s)
            .ok_or_else(|| {
                Diagnostic::at_path(inp.at("role"), "unknown input role")
                    .expected(format!(
                        "one of {}",
                        InputRole::ALL
                            .map(|r| format!("\"{}\"", r.name()))
                            .join(", ")
                    ))
                    .found(format!("\"{role_s}\""))
            })?;
        if let Some(prev) = seen_roles.insert(role.name(), name.clone()) {
            return Err(
                Diagnostic::at_path(inp.at("role"), "two inputs with the same role")
                    .expected(format!("one input with role \"{}\"", role.name()))
                    .found(format!("inputs `{prev}` and `{name}`")),
            );
        }
        inp.finish(&["shape", "dtype", "role"])?;
        let ty = input_type(role, dtype, shape, &inp.at("shape"))?;
        let id = g.add_node(Node {
            name: name.clone(),
            op: Op::Input { role },
            ty: Some(ty),
            place: Place::Stem,
            origin: Some(path),
        });
        g.inputs.push((name.clone(), id));
        scope.insert(name.clone(), id);
    }
    for role in ["image", "noise_level"] {
        if !seen_roles.contains_key(role) {
            return Err(Diagnostic::at_path("$.inputs", format!("no input has role \"{role}\""))
                .expected("inputs with roles \"image\" and \"noise_level\" (and \"label\" if class-conditional)")
                .found(format!("roles {:?}", seen_roles.keys().collect::<Vec<_>>())));
        }
    }
    Ok(())
}

/// The type of an input with `role`: text roles carry `text` tokens on axis 1, and each new
/// role's rank and element type are checked here, where the file can still be named.
fn input_type(role: InputRole, dtype: DType, shape: Vec<Dim>, path: &str) -> Result<ValueType> {
    let want = match role {
        InputRole::Context => Some((3, DType::F32, "[B, L, Dc] f32 text embeddings")),
        InputRole::ContextMask => Some((2, DType::F32, "[B, L] f32 (1 = token, 0 = padding)")),
        InputRole::TokenIds => Some((2, DType::I64, "[B, L] i64 token ids")),
        InputRole::Pooled => Some((2, DType::F32, "[B, Dp] f32 pooled text vector")),
        InputRole::Guidance => Some((1, DType::F32, "[B] f32 guidance scale")),
        InputRole::Image | InputRole::NoiseLevel | InputRole::Label => None,
    };
    if let Some((rank, dt, what)) = want {
        if shape.len() != rank || dtype != dt {
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            return Err(Diagnostic::at_path(
                path,
                format!("wrong shape or type for a `{}` input", role.name()),
            )
            .expected(what)
            .found(format!("{}[{}]", dtype.name(), dims.join(", "))));
        }
    }
    let ty = ValueType {
        dtype,
        shape,
        token_axis: None,
        segments: vec![],
    };
    Ok(match role.stream() {
        Some(stream) => ty.with_stream(1, stream),
        None => ty,
    })
}

fn parse_routes(top: &Fields) -> Result<Vec<GivenRoute>> {
    let Some(v) = top.get("routes") else {
        return Ok(vec![]);
    };
    let paper = |p: String| GivenRoute {
        spec: RouteSpec::Paper,
        origin: RouteOrigin::File(p),
        stream: None,
    };
    if v.as_str() == Some("paper") {
        return Ok(vec![paper("$.routes".into())]);
    }
    if let Value::String(s) = v {
        return Err(Diagnostic::at_path("$.routes", "unknown route shorthand")
            .expected("\"paper\" or an array of {\"rate\", \"start\", \"end\"}")
            .found(format!("\"{s}\"")));
    }
    let arr = as_array(v, "$.routes", "`routes`")?;
    let mut out = vec![];
    for (i, rv) in arr.iter().enumerate() {
        let p = elem("$.routes", i);
        if rv.as_str() == Some("paper") {
            out.push(paper(p));
            continue;
        }
        let f = Fields::new(rv, &p, "a route {rate, start, end}")?;
        let rate = f.opt_f64("rate")?.ok_or_else(|| {
            Diagnostic::at_path(&p, "missing `rate`")
                .expected("\"rate\": 0.5")
                .found("no rate")
        })?;
        let idx = |key: &str| -> Result<usize> {
            let v = f.req(key, "a block index")?;
            v.as_u64().map(|x| x as usize).ok_or_else(|| {
                Diagnostic::at_path(f.at(key), "not a block index")
                    .expected("an integer ≥ 0")
                    .found(describe(v))
            })
        };
        let (start, end) = (idx("start")?, idx("end")?);
        let stream = match f.opt_str("stream")? {
            Some(s) if dims::is_identifier(s) => Some(s.to_string()),
            Some(s) => {
                return Err(Diagnostic::at_path(f.at("stream"), "bad stream name")
                    .expected("an identifier such as \"image\" or \"text\"")
                    .found(format!("\"{s}\"")))
            }
            None => None,
        };
        f.finish(&["rate", "start", "end", "stream"])?;
        out.push(GivenRoute {
            spec: RouteSpec::Explicit { rate, start, end },
            origin: RouteOrigin::File(p),
            stream,
        });
    }
    Ok(out)
}
