//! The frozen text encoder: token ids to the `[L, Dc]` context rows (one fixed embedding per
//! word, zero for padding), the `[L]` mask (1 for a word) and the `[Dp]` pooled vector (the mean
//! of a second fixed embedding over the words). Its tables are drawn from a constant seed, so
//! they follow from the model's dims alone.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::captions::longest_caption;
use super::vocab::{TextError, Tokenizer, PAD};
use crate::init::normal;

/// The name an export records for the bundled encoder (captions, tokenizer, seeded tables).
pub const BUNDLED_ENCODER: &str = "bundled-digits";
/// The name an export records for an encoder whose vocabulary was built from a user's captions
/// (`--data captions:DIR`): the same seeded tables, drawn for that vocabulary.
pub const CAPTION_ENCODER: &str = "caption-words";

/// The seed of the encoder's tables (part of the bundled encoder's definition: changing it
/// changes what every text-conditioned run was trained on).
const TABLE_SEED: u64 = 0x7e47_c0de;

/// The text inputs a model reads, from its input shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextDims {
    /// Tokens per text `L`.
    pub len: usize,
    /// Context width `Dc`.
    pub context: usize,
    /// Pooled width `Dp`, when the model has a pooled input.
    pub pooled: Option<usize>,
}

/// Encoded texts of a batch, row-major on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct TextBatch {
    /// Texts.
    pub n: usize,
    /// The dims they were encoded for.
    pub dims: TextDims,
    /// `[n, L, Dc]`.
    pub context: Vec<f32>,
    /// `[n, L]`, 1 for a word, 0 for padding.
    pub mask: Vec<f32>,
    /// `[n, Dp]` (empty without a pooled input).
    pub pooled: Vec<f32>,
}

impl TextBatch {
    /// `n` empty texts: zero context, mask and pooled vector (the null condition of
    /// classifier-free guidance).
    pub fn null(n: usize, dims: TextDims) -> Self {
        TextBatch {
            n,
            dims,
            context: vec![0.0; n * dims.len * dims.context],
            mask: vec![0.0; n * dims.len],
            pooled: vec![0.0; n * dims.pooled.unwrap_or(0)],
        }
    }

    /// Texts `from..from + m`.
    pub fn slice(&self, from: usize, m: usize) -> Self {
        let d = self.dims;
        let per = |w: usize| from * w..(from + m) * w;
        TextBatch {
            n: m,
            dims: d,
            context: self.context[per(d.len * d.context)].to_vec(),
            mask: self.mask[per(d.len)].to_vec(),
            pooled: self.pooled[per(d.pooled.unwrap_or(0))].to_vec(),
        }
    }

    /// The texts `rows` picks, in order (`None` picks the null text): a training batch drawn
    /// from stored texts, with the dropped samples' texts left empty.
    pub fn gather(&self, rows: &[Option<usize>]) -> Self {
        let mut out = TextBatch::null(rows.len(), self.dims);
        for (i, row) in rows.iter().enumerate() {
            if let Some(r) = *row {
                let one = self.slice(r, 1);
                let put = |dst: &mut [f32], src: &[f32]| {
                    let w = src.len();
                    dst[i * w..(i + 1) * w].copy_from_slice(src);
                };
                put(&mut out.context, &one.context);
                put(&mut out.mask, &one.mask);
                put(&mut out.pooled, &one.pooled);
            }
        }
        out
    }

    /// This batch followed by `other` (same dims).
    pub fn concat(&self, other: &TextBatch) -> Self {
        let join = |a: &[f32], b: &[f32]| [a, b].concat();
        TextBatch {
            n: self.n + other.n,
            dims: self.dims,
            context: join(&self.context, &other.context),
            mask: join(&self.mask, &other.mask),
            pooled: join(&self.pooled, &other.pooled),
        }
    }
}

/// A tokenizer and the frozen embedding tables drawn for it at one model's dims.
#[derive(Debug, Clone)]
pub struct TextEncoder {
    /// Tokens to ids.
    pub tokenizer: Tokenizer,
    /// The model's text dims.
    pub dims: TextDims,
    /// `[V, Dc]`, the padding row zero.
    context_table: Vec<f32>,
    /// `[V, Dp]`.
    pooled_table: Vec<f32>,
}

impl TextEncoder {
    /// The bundled encoder for a model with text dims `dims`.
    pub fn new(dims: TextDims) -> Self {
        Self::with_tokenizer(Tokenizer::bundled(), dims)
    }

    /// The encoder of `tokenizer`'s vocabulary at `dims`: its tables follow from the vocabulary's
    /// size and the constant seed, so the word list is all a run or an export must keep.
    pub fn with_tokenizer(tokenizer: Tokenizer, dims: TextDims) -> Self {
        let v = tokenizer.len();
        let mut rng = ChaCha8Rng::seed_from_u64(TABLE_SEED);
        let mut context_table: Vec<f32> = (0..v * dims.context).map(|_| normal(&mut rng)).collect();
        context_table[..dims.context].fill(0.0);
        let dp = dims.pooled.unwrap_or(0);
        let pooled_table = (0..v * dp).map(|_| normal(&mut rng)).collect();
        TextEncoder {
            tokenizer,
            dims,
            context_table,
            pooled_table,
        }
    }

    /// The encoder for `dims` if its context holds every bundled caption, else the number of
    /// tokens the longest caption needs.
    pub fn fitting(dims: TextDims) -> Result<Self, usize> {
        let enc = TextEncoder::new(dims);
        let longest = longest_caption(&enc.tokenizer);
        if dims.len < longest {
            return Err(longest);
        }
        Ok(enc)
    }

    /// The name an export records for this encoder: the bundled one, or one built from a
    /// user's captions.
    pub fn name(&self) -> &'static str {
        if self.tokenizer.is_bundled() {
            BUNDLED_ENCODER
        } else {
            CAPTION_ENCODER
        }
    }

    /// The ids of `text`, padded to the context length.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, TextError> {
        self.tokenizer.encode(text, self.dims.len)
    }

    /// Encodes texts given as padded ids (`L` each; ids past the vocabulary read as padding).
    pub fn encode_ids(&self, texts: &[Vec<u32>]) -> TextBatch {
        let d = self.dims;
        let dp = d.pooled.unwrap_or(0);
        let mut out = TextBatch::null(texts.len(), d);
        for (i, ids) in texts.iter().enumerate() {
            let mut words = 0usize;
            for (l, &id) in ids.iter().take(d.len).enumerate() {
                let id = id as usize;
                if id == PAD as usize || id >= self.tokenizer.len() {
                    continue;
                }
                words += 1;
                out.mask[i * d.len + l] = 1.0;
                let row = &self.context_table[id * d.context..(id + 1) * d.context];
                let at = (i * d.len + l) * d.context;
                out.context[at..at + d.context].copy_from_slice(row);
                for (o, p) in out.pooled[i * dp..(i + 1) * dp]
                    .iter_mut()
                    .zip(&self.pooled_table[id * dp..(id + 1) * dp])
                {
                    *o += p;
                }
            }
            if words > 0 {
                for o in &mut out.pooled[i * dp..(i + 1) * dp] {
                    *o /= words as f32;
                }
            }
        }
        out
    }

    /// Tokenizes and encodes `texts`.
    pub fn encode(&self, texts: &[String]) -> Result<TextBatch, TextError> {
        let ids = texts
            .iter()
            .map(|t| self.tokenize(t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.encode_ids(&ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIMS: TextDims = TextDims {
        len: 4,
        context: 3,
        pooled: Some(2),
    };

    #[test]
    fn encodes_words_to_fixed_rows_and_padding_to_zero() {
        let e = TextEncoder::new(DIMS);
        let b = e
            .encode(&["a seven".into(), "seven".into(), String::new()])
            .unwrap();
        assert_eq!(b.n, 3);
        assert_eq!(b.mask, [1., 1., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0.]);
        // "seven" has one row wherever it stands; padding rows are zero.
        assert_eq!(b.context[3..6], b.context[12..15]);
        assert!(b.context[3..6].iter().any(|&v| v != 0.0));
        assert!(b.context[6..12].iter().all(|&v| v == 0.0));
        assert_ne!(b.context[0..3], b.context[3..6]);
        // The pooled vector is the mean over words; the empty text is the null condition.
        let (a, seven) = (e.encode(&["a".into()]).unwrap(), &b.pooled[2..4]);
        for ((p, x), y) in b.pooled[..2].iter().zip(&a.pooled).zip(seven) {
            assert!((p - (x + y) / 2.0).abs() < 1e-6);
        }
        assert_eq!(b.slice(2, 1), TextBatch::null(1, DIMS));
        // Deterministic: a second encoder (another run, a sampler) agrees bit for bit.
        assert_eq!(
            TextEncoder::new(DIMS).encode_ids(&[vec![8, 21, 0, 0]]),
            e.encode_ids(&[vec![8, 21, 0, 0]])
        );
    }

    #[test]
    fn slices_and_concatenations_keep_rows() {
        let e = TextEncoder::new(TextDims {
            pooled: None,
            ..DIMS
        });
        let b = e
            .encode(&["one".into(), "two".into(), "the digit 3".into()])
            .unwrap();
        assert!(b.pooled.is_empty());
        let joined = b.slice(0, 1).concat(&b.slice(1, 2));
        assert_eq!(joined, b);
        let picked = b.gather(&[Some(2), None, Some(0)]);
        assert_eq!(picked.slice(0, 1), b.slice(2, 1));
        assert_eq!(picked.slice(1, 1), TextBatch::null(1, b.dims));
        assert_eq!(picked.slice(2, 1), b.slice(0, 1));
    }
}
