//! Integer dimension expressions: `384`, `"D"`, `"6*D"`, `"S/P"`, `"(S/P)*(S/P)"`.
//!
//! Why: one preset family (DiT-S..XL) differs only in a few sizes; a `dims` table plus small
//! expressions keeps each model.json short and lets a size change in one place. Division must be
//! exact, so a patch size that does not divide the image is reported, not rounded.

use std::collections::BTreeMap;

/// Named integer sizes of a model (`D`, `N`, ...), already evaluated.
pub type DimTable = BTreeMap<String, u64>;

/// Evaluates `expr` against `table`. Errors are plain strings; the caller adds the location.
pub fn eval(expr: &str, table: &DimTable) -> Result<u64, String> {
    let mut p = Parser {
        s: expr.as_bytes(),
        i: 0,
        table,
    };
    let v = p.sum()?;
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(format!(
            "unexpected `{}` at offset {} in `{expr}`",
            p.s[p.i] as char, p.i
        ));
    }
    u64::try_from(v).map_err(|_| format!("`{expr}` evaluates to {v}, which is negative"))
}

/// True when `s` is a plain identifier (a candidate symbolic dim such as `B`).
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    table: &'a DimTable,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    fn sum(&mut self) -> Result<i128, String> {
        let mut v = self.product()?;
        while let Some(c @ (b'+' | b'-')) = self.peek() {
            self.i += 1;
            let r = self.product()?;
            v = if c == b'+' { v + r } else { v - r };
        }
        Ok(v)
    }

    fn product(&mut self) -> Result<i128, String> {
        let mut v = self.atom()?;
        while let Some(c @ (b'*' | b'/')) = self.peek() {
            self.i += 1;
            let r = self.atom()?;
            if c == b'*' {
                v = v.checked_mul(r).ok_or("dimension expression overflows")?;
            } else {
                if r == 0 {
                    return Err("division by zero in a dimension expression".into());
                }
                if v % r != 0 {
                    return Err(format!("{v} is not divisible by {r}"));
                }
                v /= r;
            }
        }
        Ok(v)
    }

    fn atom(&mut self) -> Result<i128, String> {
        match self.peek() {
            Some(b'(') => {
                self.i += 1;
                let v = self.sum()?;
                if self.peek() != Some(b')') {
                    return Err("missing `)`".into());
                }
                self.i += 1;
                Ok(v)
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("0");
                text.parse::<i128>()
                    .map_err(|_| format!("number `{text}` is too large"))
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                let start = self.i;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_')
                {
                    self.i += 1;
                }
                let name = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                self.table
                    .get(&name)
                    .map(|&v| v as i128)
                    .ok_or_else(|| format!("unknown dimension `{name}`"))
            }
            Some(c) => Err(format!("unexpected `{}`", c as char)),
            None => Err("expression ends early".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> DimTable {
        [("D".to_string(), 384), ("S".into(), 32), ("P".into(), 2)]
            .into_iter()
            .collect()
    }

    #[test]
    fn evaluates_arithmetic() {
        let t = table();
        assert_eq!(eval("6*D", &t), Ok(2304));
        assert_eq!(eval(" (S / P) * (S/P) ", &t), Ok(256));
        assert_eq!(eval("D - 4 * 2 + 1", &t), Ok(377));
        assert_eq!(eval("17", &t), Ok(17));
    }

    #[test]
    fn reports_bad_expressions() {
        let t = table();
        assert!(eval("D/5", &t).unwrap_err().contains("not divisible"));
        assert!(eval("X", &t).unwrap_err().contains("unknown dimension `X`"));
        assert!(eval("2-D", &t).unwrap_err().contains("negative"));
        assert!(eval("(D", &t).unwrap_err().contains("missing"));
        assert!(eval("D D", &t).unwrap_err().contains("unexpected"));
        assert!(eval("", &t).is_err());
        assert!(eval("D/0", &t).is_err());
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("B"));
        assert!(is_identifier("batch_2"));
        assert!(!is_identifier("2B"));
        assert!(!is_identifier("D*2"));
    }
}
