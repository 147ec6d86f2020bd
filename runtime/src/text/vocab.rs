//! Word-level tokenizers: lower-cased words split at whitespace, trailing punctuation dropped,
//! id 0 the padding; an unknown word is an error, never dropped. The bundled vocabulary covers
//! the digit captions; a vocabulary built from a user's captions covers theirs.

use std::collections::HashMap;
use std::fmt;

/// The padding id: pads a caption to the model's context length; its embedding is zero and its
/// mask entry 0.
pub const PAD: u32 = 0;

/// The digit words, by digit.
pub const DIGIT_WORDS: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];

/// Every word the bundled tokenizer knows besides the digit words and numerals, in id order
/// (appending keeps earlier ids, and so earlier runs' encodings, unchanged).
const OTHER_WORDS: [&str; 24] = [
    "a",
    "an",
    "the",
    "digit",
    "number",
    "numeral",
    "handwritten",
    "written",
    "drawn",
    "by",
    "hand",
    "of",
    "image",
    "picture",
    "photo",
    "showing",
    "white",
    "on",
    "black",
    "background",
    "small",
    "large",
    "in",
    "ink",
];

/// Why a text could not be tokenized: the caller adds where the text came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextError {
    /// A word outside the vocabulary.
    UnknownWord {
        /// The word as written (lower-cased).
        word: String,
    },
    /// More words than the model's context holds.
    TooLong {
        /// Words in the text.
        words: usize,
        /// The model's context length.
        max: usize,
    },
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextError::UnknownWord { word } => {
                write!(f, "the word `{word}` is not in the vocabulary")
            }
            TextError::TooLong { words, max } => write!(
                f,
                "the text has {words} words and the model's context holds {max} tokens"
            ),
        }
    }
}

/// The padding's entry in a vocabulary's id order.
const PAD_WORD: &str = "<pad>";

/// The words of `text` as the tokenizer reads them: split at whitespace, trailing punctuation
/// dropped, lower-cased, empty words skipped.
fn words_of(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split_whitespace()
        .map(|raw| {
            raw.trim_end_matches(['.', ',', '!', '?', ';', ':'])
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
}

/// A word-level tokenizer: its words in id order (the padding first) and their ids.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    words: Vec<String>,
    ids: HashMap<String, u32>,
}

impl PartialEq for Tokenizer {
    fn eq(&self, other: &Self) -> bool {
        self.words == other.words
    }
}

impl Default for Tokenizer {
    fn default() -> Self {
        Self::bundled()
    }
}

impl Tokenizer {
    /// The bundled vocabulary: padding, the digit words, the numerals 0–9, then the other words.
    pub fn bundled() -> Self {
        const NUMERALS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
        let words = DIGIT_WORDS.iter().chain(&NUMERALS).chain(&OTHER_WORDS);
        Self::of_words(words.map(|w| w.to_string()))
    }

    /// The vocabulary of a set of captions: every word they use, in byte order (so the ids
    /// follow from the captions alone, not from their order).
    pub fn of_texts<S: AsRef<str>>(texts: &[S]) -> Self {
        let mut words: Vec<String> = texts.iter().flat_map(|t| words_of(t.as_ref())).collect();
        words.sort();
        words.dedup();
        Self::of_words(words)
    }

    /// A vocabulary as [`Tokenizer::in_id_order`] wrote it (an export's or a checkpoint's),
    /// or what is wrong with the text.
    pub fn from_id_order(text: &str) -> Result<Self, String> {
        let mut words = text.split(' ');
        if words.next() != Some(PAD_WORD) {
            return Err(format!("the first word is not `{PAD_WORD}`"));
        }
        let words: Vec<String> = words.map(str::to_string).collect();
        if let Some(w) = words
            .iter()
            .find(|w| w.is_empty() || words_of(w).next().as_deref() != Some(w.as_str()))
        {
            return Err(format!("`{w}` is not a word the tokenizer can produce"));
        }
        let t = Self::of_words(words);
        if t.ids.len() + 1 != t.words.len() {
            return Err("a word occurs twice".into());
        }
        Ok(t)
    }

    /// The tokenizer of `words` (ids from 1, in order).
    fn of_words(words: impl IntoIterator<Item = String>) -> Self {
        let words: Vec<String> = std::iter::once(PAD_WORD.to_string()).chain(words).collect();
        let ids = words
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
        Tokenizer { words, ids }
    }

    /// Whether this is the bundled vocabulary.
    pub fn is_bundled(&self) -> bool {
        *self == Self::bundled()
    }

    /// Number of ids, padding included.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// `false`: the vocabulary always holds the padding.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The words a text may use, comma-separated (for error messages); a long vocabulary is
    /// cut after its first 60 words, with the count.
    pub fn listing(&self) -> String {
        const SHOWN: usize = 60;
        let known = &self.words[1..];
        if known.len() <= SHOWN {
            return known.join(", ");
        }
        format!(
            "{}, … ({} words in all)",
            known[..SHOWN].join(", "),
            known.len()
        )
    }

    /// Every word in id order, space-separated, the padding first (the exported vocabulary).
    pub fn in_id_order(&self) -> String {
        self.words.join(" ")
    }

    /// The ids of `text`'s words padded with [`PAD`] to `max` ids.
    pub fn encode(&self, text: &str, max: usize) -> Result<Vec<u32>, TextError> {
        let mut ids = Vec::with_capacity(max);
        for word in words_of(text) {
            let id = *self.ids.get(&word).ok_or(TextError::UnknownWord { word })?;
            ids.push(id);
        }
        if ids.len() > max {
            return Err(TextError::TooLong {
                words: ids.len(),
                max,
            });
        }
        ids.resize(max, PAD);
        Ok(ids)
    }

    /// The number of words in `text` (what it takes of a context).
    pub fn words_in(&self, text: &str) -> usize {
        words_of(text).count()
    }

    /// The words of `ids` joined by spaces, padding left out (for grid labels and logs).
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .filter(|&&i| i != PAD)
            .filter_map(|&i| self.words.get(i as usize).map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_words_case_and_punctuation_insensitively_and_pads() {
        let t = Tokenizer::bundled();
        let ids = t.encode("A handwritten Seven.", 6).unwrap();
        assert_eq!(ids.len(), 6);
        assert_eq!(&ids[3..], &[PAD, PAD, PAD]);
        assert_eq!(t.decode(&ids), "a handwritten seven");
        // Words and numerals are distinct tokens.
        assert_ne!(t.encode("7", 1).unwrap(), t.encode("seven", 1).unwrap());
        // The bundled ids are fixed: runs and their samples depend on them.
        assert_eq!(t.encode("zero 0 a ink", 4).unwrap(), vec![1, 11, 21, 44]);
        assert_eq!(t.len(), 45);
    }

    #[test]
    fn unknown_words_and_long_texts_are_errors() {
        let t = Tokenizer::bundled();
        assert_eq!(
            t.encode("a sevne", 8),
            Err(TextError::UnknownWord {
                word: "sevne".into()
            })
        );
        assert_eq!(
            t.encode("a b", 8).unwrap_err().to_string(),
            "the word `b` is not in the vocabulary"
        );
        assert_eq!(
            t.encode("the digit seven on black", 3),
            Err(TextError::TooLong { words: 5, max: 3 })
        );
        assert_eq!(t.encode("", 2).unwrap(), vec![PAD, PAD]);
    }

    #[test]
    fn a_vocabulary_of_captions_is_their_sorted_words_and_reads_back() {
        let t = Tokenizer::of_texts(&["A red Fox.", "the fox, sleeping", "a red hen"]);
        assert_eq!(t.in_id_order(), "<pad> a fox hen red sleeping the");
        // Caption order does not change the ids.
        assert_eq!(
            Tokenizer::of_texts(&["a red hen", "the fox, sleeping", "A red Fox."]),
            t
        );
        assert_eq!(t.encode("the red fox", 4).unwrap(), vec![6, 4, 2, PAD]);
        assert_eq!(
            t.encode("a seven", 4),
            Err(TextError::UnknownWord {
                word: "seven".into()
            })
        );
        let back = Tokenizer::from_id_order(&t.in_id_order()).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.encode("hen", 1).unwrap(), vec![3]);
        assert!(!t.is_bundled());
        let bundled = Tokenizer::from_id_order(&Tokenizer::bundled().in_id_order()).unwrap();
        assert!(bundled.is_bundled());
        for bad in [
            "a fox",
            "<pad> fox fox",
            "<pad> Fox",
            "<pad> fox  hen",
            "<pad> fox.",
        ] {
            assert!(Tokenizer::from_id_order(bad).is_err(), "{bad}");
        }
        // A long vocabulary is listed in part, with its size.
        let many: Vec<String> = (0..100).map(|i| format!("w{i:03}")).collect();
        let listing = Tokenizer::of_texts(&many).listing();
        assert!(listing.starts_with("w000, w001") && listing.ends_with("(100 words in all)"));
    }
}
