//! Value types: element type, shape with symbolic dims, and the token axis.
//!
//! Why: the route pass must know, for every value, whether it is indexed by token and along which
//! axis; shape inference must catch a pass that leaves the graph ill-typed before any backend runs.

use std::fmt;

/// Element type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float (activations, parameters).
    F32,
    /// 64-bit integer (labels, token indices).
    I64,
}

impl DType {
    /// The name used in model.json and dumps.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::I64 => "i64",
        }
    }
}

/// One dimension: a known size or a symbol bound at run time (the batch `B`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A size known at compile time.
    Known(u64),
    /// A size named by a symbol and known only at run time.
    Sym(String),
}

impl Dim {
    /// The size when known.
    pub fn known(&self) -> Option<u64> {
        match self {
            Dim::Known(n) => Some(*n),
            Dim::Sym(_) => None,
        }
    }

    /// The size used by per-sample analysis: symbols (the batch) count as 1.
    pub fn per_sample(&self) -> u64 {
        self.known().unwrap_or(1)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
        }
    }
}

/// The type of a value: element type, shape and (optionally) which axis indexes tokens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValueType {
    /// Element type.
    pub dtype: DType,
    /// Shape, outermost first.
    pub shape: Vec<Dim>,
    /// The axis that indexes tokens, if the value is token-indexed.
    pub token_axis: Option<usize>,
}

impl ValueType {
    /// A float value without a token axis.
    pub fn f32(shape: Vec<Dim>) -> Self {
        ValueType {
            dtype: DType::F32,
            shape,
            token_axis: None,
        }
    }

    /// The same type with a token axis.
    pub fn with_tokens(mut self, axis: usize) -> Self {
        self.token_axis = Some(axis);
        self
    }

    /// Number of tokens when the value is token-indexed and the size is known.
    pub fn tokens(&self) -> Option<u64> {
        self.token_axis.and_then(|a| self.shape[a].known())
    }

    /// The last dimension (the feature / channel axis of token values).
    pub fn last(&self) -> Option<&Dim> {
        self.shape.last()
    }

    /// Elements per sample (symbolic dims count as 1).
    pub fn per_sample_elems(&self) -> u64 {
        self.shape.iter().map(Dim::per_sample).product()
    }
}

impl fmt::Display for ValueType {
    /// `f32[B, T:256, 384]` — `T:` marks the token axis.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype.name())?;
        for (i, d) in self.shape.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if self.token_axis == Some(i) {
                f.write_str("T:")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_marks_token_axis() {
        let t = ValueType::f32(vec![Dim::Sym("B".into()), Dim::Known(256), Dim::Known(384)])
            .with_tokens(1);
        assert_eq!(t.to_string(), "f32[B, T:256, 384]");
        assert_eq!(t.tokens(), Some(256));
        assert_eq!(t.per_sample_elems(), 256 * 384);
    }
}
