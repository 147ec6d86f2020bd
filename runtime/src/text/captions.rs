//! Captions for the bundled digits: several phrasings per digit, with the digit as a word or a
//! numeral and the words in varied order, so a text-conditioned model learns to read the digit
//! out of a sentence rather than from one fixed token position.

use super::vocab::{Tokenizer, DIGIT_WORDS};

/// The phrasings: `{n}` is the digit (word or numeral), `{a}` its article (`a` or `an`). Each
/// fits the small presets' 8-token context.
pub const CAPTION_TEMPLATES: [&str; 12] = [
    "{n}",
    "{a} {n}",
    "the digit {n}",
    "the number {n}",
    "{a} handwritten {n}",
    "handwritten digit {n}",
    "{n} written by hand",
    "{a} {n} drawn in ink",
    "an image of {a} {n}",
    "a picture showing the numeral {n}",
    "white {n} on black",
    "{a} small {n} on a black background",
];

/// The digit as written in a caption: its word, or its numeral.
fn digit_text(digit: usize, numeral: bool) -> String {
    if numeral {
        digit.to_string()
    } else {
        DIGIT_WORDS[digit % 10].to_string()
    }
}

/// `template` filled for `digit`.
fn fill(template: &str, digit: usize, numeral: bool) -> String {
    let n = digit_text(digit, numeral);
    // "an eight", "an 8", "an 11"-style rules reduce to: eight and 8 take "an".
    let article = if digit % 10 == 8 { "an" } else { "a" };
    template.replace("{a}", article).replace("{n}", &n)
}

/// The caption of a training image of `digit` picked by the random word `pick`: one of the
/// templates, with the digit as a word or a numeral.
pub fn caption_for(digit: usize, pick: u64) -> String {
    let t = (pick % CAPTION_TEMPLATES.len() as u64) as usize;
    let numeral = (pick / CAPTION_TEMPLATES.len() as u64) % 3 == 2;
    fill(CAPTION_TEMPLATES[t], digit, numeral)
}

/// The most tokens any bundled caption takes (the shortest context a text model may have).
pub fn longest_caption(t: &Tokenizer) -> usize {
    (0..10)
        .flat_map(|d| (0..3 * CAPTION_TEMPLATES.len() as u64).map(move |p| caption_for(d, p)))
        .map(|c| t.words_in(&c))
        .max()
        .unwrap_or(0)
}

/// The prompt a grid or an evaluation uses for `digit` ("a seven"): one of the training
/// phrasings, so scores measure the conditioning the model was taught.
pub fn canonical_prompt(digit: usize) -> String {
    fill("{a} {n}", digit, false)
}

/// The digit a prompt names, when exactly one digit word or numeral occurs in it (how
/// `treadc sample --prompt` labels its samples for scoring).
pub fn digit_named(prompt: &str) -> Option<usize> {
    let mut found = None;
    for raw in prompt.split_whitespace() {
        let w = raw
            .trim_end_matches(['.', ',', '!', '?', ';', ':'])
            .to_lowercase();
        let d = DIGIT_WORDS
            .iter()
            .position(|x| *x == w)
            .or_else(|| w.parse::<usize>().ok().filter(|&d| d < 10));
        if let Some(d) = d {
            if found.is_some_and(|f| f != d) {
                return None;
            }
            found = Some(d);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every caption of every digit tokenizes within the small presets' 8 tokens and names
    /// its digit, as a word or a numeral, with the right article.
    #[test]
    fn every_caption_fits_and_names_its_digit() {
        let t = Tokenizer::bundled();
        let mut seen = std::collections::BTreeSet::new();
        for digit in 0..10 {
            for pick in 0..(3 * CAPTION_TEMPLATES.len() as u64) {
                let c = caption_for(digit, pick);
                t.encode(&c, 8).unwrap_or_else(|e| panic!("{c:?}: {e}"));
                assert_eq!(digit_named(&c), Some(digit), "{c:?}");
                assert!(!c.contains("a eight") && !c.contains("a 8"), "{c:?}");
                seen.insert(c);
            }
        }
        // 12 phrasings × (word, numeral) × 10 digits, all distinct.
        assert_eq!(seen.len(), 240);
        assert_eq!(caption_for(8, 1), "an eight");
        assert_eq!(caption_for(3, 2), "the digit three");
        assert_eq!(caption_for(3, 26), "the digit 3");
        assert_eq!(canonical_prompt(7), "a seven");
        assert_eq!(longest_caption(&t), 7);
    }

    #[test]
    fn digit_named_needs_one_digit() {
        assert_eq!(digit_named("The digit 4."), Some(4));
        assert_eq!(digit_named("four 4"), Some(4));
        assert_eq!(digit_named("a four or a 5"), None);
        assert_eq!(digit_named("a picture"), None);
        assert_eq!(digit_named("42"), None);
    }
}
