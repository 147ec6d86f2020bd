//! How a batch is conditioned, on the host: nothing, class labels, or encoded texts. The
//! trainer and the samplers build one per batch; the lowering turns it into the model's inputs.

use crate::text::{canonical_prompt, TextBatch, TextEncoder, TextError};

/// The conditioning of a batch of samples.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// An unconditional model.
    None,
    /// One class label per sample (the null label for dropped ones).
    Labels(Vec<i64>),
    /// One encoded text per sample (the empty text for dropped ones).
    Text(TextBatch),
}

impl Condition {
    /// Samples conditioned (`None` for an unconditional batch, which carries no count).
    pub fn count(&self) -> Option<usize> {
        match self {
            Condition::None => None,
            Condition::Labels(l) => Some(l.len()),
            Condition::Text(t) => Some(t.n),
        }
    }

    /// The conditioning that asks for the digits (classes) `labels`: the labels themselves, or
    /// for a text model (`text`) each digit's canonical prompt; `Condition::None` without labels.
    pub fn of_classes(
        labels: Option<&[i64]>,
        text: Option<&TextEncoder>,
    ) -> Result<Condition, TextError> {
        Ok(match (labels, text) {
            (None, _) => Condition::None,
            (Some(l), None) => Condition::Labels(l.to_vec()),
            (Some(l), Some(enc)) => {
                let prompts: Vec<String> =
                    l.iter().map(|&d| canonical_prompt(d as usize)).collect();
                Condition::Text(enc.encode(&prompts)?)
            }
        })
    }

    /// Samples `from..from + m` (a micro-batch or a sampling chunk).
    pub fn slice(&self, from: usize, m: usize) -> Condition {
        match self {
            Condition::None => Condition::None,
            Condition::Labels(l) => Condition::Labels(l[from..from + m].to_vec()),
            Condition::Text(t) => Condition::Text(t.slice(from, m)),
        }
    }

    /// This condition followed by as many null conditions (`null_label` for labels, the empty
    /// text for texts): the two halves of a classifier-free guidance batch. `None` for an
    /// unconditional batch, which cannot be guided.
    pub fn with_null(&self, null_label: i64) -> Option<Condition> {
        match self {
            Condition::None => None,
            Condition::Labels(l) => Some(Condition::Labels(
                [l.as_slice(), &vec![null_label; l.len()]].concat(),
            )),
            Condition::Text(t) => Some(Condition::Text(t.concat(&TextBatch::null(t.n, t.dims)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::{TextDims, TextEncoder};

    #[test]
    fn guidance_batches_append_the_null_condition() {
        let labels = Condition::Labels(vec![3, 4, 5]);
        assert_eq!(labels.slice(1, 2), Condition::Labels(vec![4, 5]));
        assert_eq!(
            labels.with_null(10),
            Some(Condition::Labels(vec![3, 4, 5, 10, 10, 10]))
        );
        assert_eq!(Condition::None.with_null(10), None);
        let dims = TextDims {
            len: 2,
            context: 2,
            pooled: Some(1),
        };
        let enc = TextEncoder::new(dims);
        let text = Condition::Text(enc.encode(&["a one".into()]).unwrap());
        let Some(Condition::Text(both)) = text.with_null(10) else {
            panic!("text guidance batch")
        };
        assert_eq!(both.n, 2);
        assert_eq!(both.slice(1, 1), TextBatch::null(1, dims));
        assert_eq!(Condition::Text(both.slice(0, 1)), text);
    }
}
