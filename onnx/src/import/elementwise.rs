//! Elementwise subgraphs recognised by what they compute, not by how they are spelt: a GELU is
//! `Gelu`, or `0.5·x·(1+erf(x/√2))`, or the tanh form in any operand order an exporter chose.
//! A region (elementwise nodes whose intermediates feed nothing else) is evaluated on probe
//! values and compared with the op set's elementwise functions.

/// An elementwise function of the op set a region may compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `a` unchanged (casts, identities).
    Identity,
    /// `a·sigmoid(a)`.
    Silu,
    /// Exact GELU.
    Gelu,
    /// GELU's tanh approximation.
    GeluTanh,
    /// `a + b`.
    Add,
    /// `a·b`.
    Mul,
    /// `x·(1 + scale) + shift`, inputs ordered (x, shift, scale).
    Modulate,
}

/// ONNX ops that act elementwise (with broadcasting).
pub fn is_elementwise(op: &str) -> bool {
    matches!(
        op,
        "Add"
            | "Sub"
            | "Mul"
            | "Div"
            | "Pow"
            | "Sqrt"
            | "Tanh"
            | "Erf"
            | "Sigmoid"
            | "Exp"
            | "Neg"
            | "Reciprocal"
            | "Cast"
            | "Identity"
            | "Gelu"
    )
}

/// One node of a region for evaluation: its op, GELU flavour, and operands.
#[derive(Debug, Clone)]
pub struct EvalNode {
    /// The ONNX op type.
    pub op: String,
    /// `Gelu`'s `approximate` attribute.
    pub approximate: Option<String>,
    /// Operands, in order.
    pub operands: Vec<Operand>,
}

/// An operand of a region node.
#[derive(Debug, Clone, Copy)]
pub enum Operand {
    /// The region's `k`-th input.
    Input(usize),
    /// A scalar constant.
    Scalar(f64),
    /// Another node of the region, by index.
    Node(usize),
}

/// Abramowitz–Stegun 7.1.26 (error below 1.5e-7), enough to tell GELU's flavours apart.
fn erf(x: f64) -> f64 {
    let s = x.signum();
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-x * x).exp();
    s * y
}

fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

fn gelu_tanh(x: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (c * (x + 0.044_715 * x * x * x)).tanh())
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Evaluates node `root` of `nodes` on `inputs`; `None` for an op it cannot evaluate.
pub fn eval(nodes: &[EvalNode], root: usize, inputs: &[f64]) -> Option<f64> {
    let n = &nodes[root];
    let mut v = vec![];
    for o in &n.operands {
        v.push(match *o {
            Operand::Input(k) => inputs[k],
            Operand::Scalar(s) => s,
            Operand::Node(i) => eval(nodes, i, inputs)?,
        });
    }
    let a = *v.first()?;
    let b = v.get(1).copied();
    Some(match n.op.as_str() {
        "Add" => a + b?,
        "Sub" => a - b?,
        "Mul" => a * b?,
        "Div" => a / b?,
        "Pow" => a.powf(b?),
        "Sqrt" => a.sqrt(),
        "Tanh" => a.tanh(),
        "Erf" => erf(a),
        "Sigmoid" => sigmoid(a),
        "Exp" => a.exp(),
        "Neg" => -a,
        "Reciprocal" => 1.0 / a,
        "Cast" | "Identity" => a,
        "Gelu" => match n.approximate.as_deref() {
            Some("tanh") => gelu_tanh(a),
            _ => gelu(a),
        },
        _ => return None,
    })
}

/// Probe points: fixed, spread over [-3, 3], away from special values.
fn probes(arity: usize) -> Vec<Vec<f64>> {
    let mut state = 0x9e37_79b9_u64;
    (0..8)
        .map(|_| {
            (0..arity)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    ((state >> 11) as f64 / (1u64 << 53) as f64) * 6.0 - 3.0
                })
                .collect()
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-5 * (1.0 + b.abs())
}

/// A unary function of the op set and its definition.
type Unary = (Function, fn(f64) -> f64);

/// Which op-set function the region computes, with the order its inputs take in that function
/// (`order[i]` is the region input at the function's position `i`), or `None`.
pub fn identify(nodes: &[EvalNode], root: usize, arity: usize) -> Option<(Function, Vec<usize>)> {
    let pts = probes(arity);
    let matches = |f: &dyn Fn(&[f64]) -> f64| {
        pts.iter()
            .all(|p| eval(nodes, root, p).is_some_and(|v| close(v, f(p))))
    };
    match arity {
        1 => {
            let unary: [Unary; 4] = [
                (Function::Identity, |a| a),
                (Function::Silu, |a| a * sigmoid(a)),
                (Function::Gelu, gelu),
                (Function::GeluTanh, gelu_tanh),
            ];
            unary
                .into_iter()
                .find(|(_, f)| matches(&|p: &[f64]| f(p[0])))
                .map(|(k, _)| (k, vec![0]))
        }
        2 => {
            if matches(&|p: &[f64]| p[0] + p[1]) {
                Some((Function::Add, vec![0, 1]))
            } else if matches(&|p: &[f64]| p[0] * p[1]) {
                Some((Function::Mul, vec![0, 1]))
            } else {
                None
            }
        }
        3 => {
            const ORDERS: [[usize; 3]; 6] = [
                [0, 1, 2],
                [0, 2, 1],
                [1, 0, 2],
                [1, 2, 0],
                [2, 0, 1],
                [2, 1, 0],
            ];
            ORDERS.into_iter().find_map(|[x, shift, scale]| {
                matches(&|p: &[f64]| p[x] * (1.0 + p[scale]) + p[shift])
                    .then(|| (Function::Modulate, vec![x, shift, scale]))
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str, operands: Vec<Operand>) -> EvalNode {
        EvalNode {
            op: op.into(),
            approximate: None,
            operands,
        }
    }

    #[test]
    fn erf_is_accurate_enough_to_tell_the_gelus_apart() {
        assert!((erf(0.5) - 0.520_499_877_8).abs() < 2e-7);
        assert!((erf(-1.5) + 0.966_105_146_5).abs() < 2e-7);
        assert!((gelu(1.0) - gelu_tanh(1.0)).abs() > 1e-4);
    }

    #[test]
    fn the_erf_gelu_spelt_as_torch_writes_it_is_a_gelu() {
        use Operand::*;
        // x / √2 → Erf → + 1 → · x → · 0.5
        let nodes = vec![
            node("Div", vec![Input(0), Scalar(std::f64::consts::SQRT_2)]),
            node("Erf", vec![Node(0)]),
            node("Add", vec![Node(1), Scalar(1.0)]),
            node("Mul", vec![Input(0), Node(2)]),
            node("Mul", vec![Node(3), Scalar(0.5)]),
        ];
        assert_eq!(identify(&nodes, 4, 1), Some((Function::Gelu, vec![0])));
    }

    #[test]
    fn modulate_is_found_whatever_the_input_order() {
        use Operand::*;
        // inputs (scale, x, shift): x · (scale + 1) + shift
        let nodes = vec![
            node("Add", vec![Input(0), Scalar(1.0)]),
            node("Mul", vec![Input(1), Node(0)]),
            node("Add", vec![Node(1), Input(2)]),
        ];
        assert_eq!(
            identify(&nodes, 2, 3),
            Some((Function::Modulate, vec![1, 2, 0]))
        );
    }

    #[test]
    fn a_gated_residual_is_no_single_function() {
        use Operand::*;
        // x + gate · y: the caller splits it into mul and add
        let nodes = vec![
            node("Mul", vec![Input(1), Input(2)]),
            node("Add", vec![Input(0), Node(0)]),
        ];
        assert_eq!(identify(&nodes, 1, 3), None);
        let silu_wrong = vec![node("Sigmoid", vec![Input(0)])];
        assert_eq!(identify(&silu_wrong, 0, 1), None);
    }
}
