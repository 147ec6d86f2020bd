//! Text conditioning on the host: the bundled digit captions, word tokenizers (the bundled
//! vocabulary, or one built from a user's captions), and the frozen encoder that turns token ids
//! into the context, mask and pooled vectors a text-conditioned model reads (no tensor library
//! here).
//!
//! The encoder stands where real pipelines put a frozen T5 or CLIP: fixed word embeddings drawn
//! from a constant seed, so a run, its samples and its checkpoints need nothing beyond the model
//! file's dims to agree on it.

pub mod captions;
pub mod encoder;
pub mod vocab;

pub use captions::{
    canonical_prompt, caption_for, digit_named, longest_caption, CAPTION_TEMPLATES,
};
pub use encoder::{TextBatch, TextDims, TextEncoder, BUNDLED_ENCODER, CAPTION_ENCODER};
pub use vocab::{TextError, Tokenizer, PAD};
