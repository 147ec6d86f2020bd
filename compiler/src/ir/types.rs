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

/// The stream of image (or video) tokens: the one a route routes unless it names another.
pub const IMAGE_STREAM: &str = "image";

/// The stream of text tokens (a text context, its mask, token ids).
pub const TEXT_STREAM: &str = "text";

/// One stream's run of tokens along a token axis: MMDiT and Flux concatenate a text and an image
/// stream, and the route pass must know which positions belong to which.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Segment {
    /// The stream's name (`image`, `text`, ...).
    pub stream: String,
    /// How many of the axis' tokens belong to it.
    pub tokens: u64,
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
    /// The streams laid along the token axis, in order, one segment per stream; their tokens
    /// sum to the axis' size. Empty when the value is not token-indexed.
    pub segments: Vec<Segment>,
}

impl ValueType {
    /// A float value without a token axis.
    pub fn f32(shape: Vec<Dim>) -> Self {
        ValueType {
            dtype: DType::F32,
            shape,
            token_axis: None,
            segments: vec![],
        }
    }

    /// The same type with a token axis holding one stream of image tokens.
    pub fn with_tokens(self, axis: usize) -> Self {
        self.with_stream(axis, IMAGE_STREAM)
    }

    /// The same type with a token axis holding one stream named `stream`.
    pub fn with_stream(mut self, axis: usize, stream: &str) -> Self {
        self.token_axis = Some(axis);
        let tokens = self.shape.get(axis).map_or(0, Dim::per_sample);
        self.segments = vec![Segment {
            stream: stream.to_string(),
            tokens,
        }];
        self
    }

    /// The same type without a token axis.
    pub fn without_tokens(mut self) -> Self {
        self.token_axis = None;
        self.segments.clear();
        self
    }

    /// The segment of `stream` on the token axis and the number of tokens before it.
    pub fn segment(&self, stream: &str) -> Option<(u64, &Segment)> {
        let mut before = 0;
        for s in &self.segments {
            if s.stream == stream {
                return Some((before, s));
            }
            before += s.tokens;
        }
        None
    }

    /// True when the token axis holds `stream` and nothing else.
    pub fn is_only(&self, stream: &str) -> bool {
        self.segments.len() == 1 && self.segments[0].stream == stream
    }

    /// The token-axis layout as written in dumps: `256` for image tokens alone, else
    /// `text=77+image=256`.
    pub fn layout(&self) -> String {
        if self.is_only(IMAGE_STREAM) {
            return self.segments[0].tokens.to_string();
        }
        self.segments
            .iter()
            .map(|s| format!("{}={}", s.stream, s.tokens))
            .collect::<Vec<_>>()
            .join("+")
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
            if self.token_axis == Some(i) && !self.is_only(IMAGE_STREAM) {
                write!(f, "T:{}", self.layout())?;
            } else {
                if self.token_axis == Some(i) {
                    f.write_str("T:")?;
                }
                write!(f, "{d}")?;
            }
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

    #[test]
    fn display_names_streams_unless_image_alone() {
        let mut t = ValueType::f32(vec![Dim::Sym("B".into()), Dim::Known(333), Dim::Known(8)])
            .with_stream(1, TEXT_STREAM);
        assert_eq!(t.to_string(), "f32[B, T:text=333, 8]");
        t.segments = vec![
            Segment {
                stream: TEXT_STREAM.into(),
                tokens: 77,
            },
            Segment {
                stream: IMAGE_STREAM.into(),
                tokens: 256,
            },
        ];
        assert_eq!(t.to_string(), "f32[B, T:text=77+image=256, 8]");
        assert_eq!(
            t.segment(IMAGE_STREAM).map(|(b, s)| (b, s.tokens)),
            Some((77, 256))
        );
        assert!(t.segment("video").is_none());
    }
}
