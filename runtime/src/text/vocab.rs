//! The bundled vocabulary and its word-level tokenizer: lower-cased words split at whitespace,
//! trailing punctuation dropped, id 0 the padding; an unknown word is an error, never dropped.

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

/// The bundled word-level tokenizer.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    words: Vec<&'static str>,
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
        let mut words = vec!["<pad>"];
        words.extend(DIGIT_WORDS);
        words.extend(NUMERALS);
        words.extend(OTHER_WORDS);
        Tokenizer { words }
    }

    /// Number of ids, padding included.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// `false`: the vocabulary always holds the padding.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The words a text may use, comma-separated (for error messages and `--help`).
    pub fn listing(&self) -> String {
        self.words[1..].join(", ")
    }

    /// Every word in id order, space-separated, the padding first (the exported vocabulary).
    pub fn in_id_order(&self) -> String {
        self.words.join(" ")
    }

    /// The ids of `text`'s words padded with [`PAD`] to `max` ids.
    pub fn encode(&self, text: &str, max: usize) -> Result<Vec<u32>, TextError> {
        let mut ids = Vec::with_capacity(max);
        for raw in text.split_whitespace() {
            let word = raw
                .trim_end_matches(['.', ',', '!', '?', ';', ':'])
                .to_lowercase();
            if word.is_empty() {
                continue;
            }
            let id = self.words[1..]
                .iter()
                .position(|w| *w == word)
                .ok_or(TextError::UnknownWord { word })?;
            ids.push(id as u32 + 1);
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
        text.split_whitespace()
            .filter(|w| {
                !w.trim_end_matches(['.', ',', '!', '?', ';', ':'])
                    .is_empty()
            })
            .count()
    }

    /// The words of `ids` joined by spaces, padding left out (for grid labels and logs).
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .filter(|&&i| i != PAD)
            .filter_map(|&i| self.words.get(i as usize).copied())
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
}
