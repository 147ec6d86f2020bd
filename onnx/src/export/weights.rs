//! The tensors an export writes, by checkpoint name.

use std::collections::HashMap;

use tread_compiler::diag::{Diagnostic, Location};

/// The model's tensors by checkpoint name (`blocks.3.attn.qkv.weight`), with the file they came
/// from for error messages.
pub struct Weights {
    /// Where the tensors came from (a checkpoint path, or "fresh init").
    pub source: String,
    /// Row-major values by name.
    pub tensors: HashMap<String, Vec<f32>>,
}

impl Weights {
    /// The tensor `name`, checked to hold `shape`'s element count.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<&[f32], Diagnostic> {
        let bad = |found: String| {
            Diagnostic::new(
                Location::Item(format!("tensor `{name}`")),
                "the weights do not match the model",
            )
            .expected(format!("a tensor of shape {shape:?}"))
            .found(found)
            .in_file(self.source.clone())
            .help("export a checkpoint together with the model it was trained with")
        };
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| bad("no such tensor".into()))?;
        let n: usize = shape.iter().product();
        if t.len() != n {
            return Err(bad(format!("{} values", t.len())));
        }
        Ok(t)
    }
}
