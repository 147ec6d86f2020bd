//! The `.npy` format (NumPy's array file), read and written in one place: latents and labels
//! come in as `.npy` (`data/latents.rs`), samples go out as `.npy` (`treadc sample --npy`).
//! Versions 1.0–3.0 are read (little-endian, C order, the dtypes the caller accepts); version 1.0
//! `<f4` is written, its header padded to 64 bytes as NumPy does.

use std::path::Path;

use tread_compiler::diag::{Diagnostic, Location};
use tread_compiler::read::read_bytes;

use crate::checkpoint::write_atomic;

/// An array read from a `.npy` file: its dtype string, shape and raw data.
pub struct Npy {
    /// The dtype string, e.g. `<f4`.
    pub descr: String,
    /// The shape (C order).
    pub shape: Vec<usize>,
    /// The raw little-endian data.
    pub data: Vec<u8>,
}

/// Reads a `.npy` file (format 1.0, 2.0 or 3.0): checks the magic, parses the header dict,
/// refuses Fortran order and any dtype not in `accept` (each `<` + kind + byte size, such as
/// `<f4`; `expected` and `help` word that error), and checks the data length against the shape.
pub fn read(path: &Path, accept: &[&str], expected: &str, help: &str) -> Result<Npy, Diagnostic> {
    let file = path.display().to_string();
    let bytes = read_bytes(path, ".npy file", "a readable file")?;
    let header_err = |message: &str, expected: &str, found: String| {
        Diagnostic::new(Location::Item("header".into()), message)
            .expected(expected)
            .found(found)
            .in_file(&file)
    };
    if !bytes.starts_with(b"\x93NUMPY") || bytes.len() < 10 {
        let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        return Err(header_err(
            "not a .npy file",
            "the .npy magic \\x93NUMPY, a version and a header",
            format!("bytes {}", head.join(" ")),
        ));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => {
            return Err(header_err(
                "unsupported .npy format version",
                "version 1.0, 2.0 or 3.0",
                format!("version {major}.{minor}"),
            ))
        }
    };
    let Some(text) = bytes.get(start..start + len) else {
        return Err(header_err(
            "the file ends inside its header",
            &format!("a {len}-byte header after byte {start}"),
            format!("{} bytes in all", bytes.len()),
        ));
    };
    let text = String::from_utf8_lossy(text);
    let dict = parse_header(&text).map_err(|why| {
        header_err(
            "cannot parse the .npy header",
            "a dict {'descr': ..., 'fortran_order': ..., 'shape': (...)}",
            format!("{why} in {}", text.trim_end()),
        )
    })?;
    let field = |key: &str| dict.iter().find(|(k, _)| k == key).map(|(_, v)| v);
    let Some(PyVal::Str(descr)) = field("descr") else {
        return Err(header_err(
            "the .npy header has no dtype",
            "a string 'descr' such as '<f4'",
            text.trim_end().to_string(),
        ));
    };
    if !accept.contains(&descr.as_str()) {
        return Err(
            header_err("unsupported dtype", expected, format!("dtype '{descr}'")).help(help),
        );
    }
    match field("fortran_order") {
        Some(PyVal::Bool(false)) => {}
        Some(PyVal::Bool(true)) => {
            return Err(header_err(
                "Fortran-order arrays are not supported",
                "'fortran_order': False (C order)",
                "'fortran_order': True".into(),
            )
            .help("save `np.ascontiguousarray(arr)` instead"))
        }
        _ => {
            return Err(header_err(
                "the .npy header has no fortran_order",
                "'fortran_order': False",
                text.trim_end().to_string(),
            ))
        }
    }
    let shape: Option<Vec<usize>> = match field("shape") {
        Some(PyVal::Tuple(items)) => items
            .iter()
            .map(|v| match v {
                PyVal::Int(i) => usize::try_from(*i).ok(),
                _ => None,
            })
            .collect(),
        _ => None,
    };
    let Some(shape) = shape else {
        return Err(header_err(
            "the .npy header has no shape",
            "'shape': a tuple of integers",
            text.trim_end().to_string(),
        ));
    };
    // Every accepted descr is `<` + kind letter + byte size.
    let item = descr
        .get(2..)
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(1);
    let data_start = start + len;
    let Some(data_len) = shape.iter().try_fold(item, |acc, &d| acc.checked_mul(d)) else {
        return Err(header_err(
            "the shape is too large",
            "a shape whose size fits in memory",
            format!("shape {shape:?}"),
        ));
    };
    let found = bytes.len() - data_start;
    if found != data_len {
        let place = if found < data_len {
            format!("element {}", found / item)
        } else {
            format!("byte {}", data_start + data_len)
        };
        return Err(Diagnostic::new(
            Location::Item(place),
            if found < data_len {
                "the file is shorter than its header says (truncated?)"
            } else {
                "data after the last element"
            },
        )
        .expected(format!(
            "{data_len} data bytes after the {data_start}-byte header (shape {shape:?}, dtype '{descr}')"
        ))
        .found(format!("{found} data bytes"))
        .in_file(&file));
    }
    Ok(Npy {
        descr: descr.clone(),
        shape,
        data: bytes[data_start..].to_vec(),
    })
}

/// A Python literal in a `.npy` header.
#[derive(Debug, Clone, PartialEq)]
enum PyVal {
    Str(String),
    Bool(bool),
    Int(i64),
    Tuple(Vec<PyVal>),
}

/// Parses the header dict (`{'key': value, ...}` with string keys) into (key, value) pairs.
fn parse_header(text: &str) -> Result<Vec<(String, PyVal)>, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    p.expect(b'{')?;
    let mut out = Vec::new();
    loop {
        if p.eat(b'}') {
            break;
        }
        let PyVal::Str(key) = p.value()? else {
            return Err(format!("a non-string key at character {}", p.i));
        };
        p.expect(b':')?;
        let value = p.value()?;
        out.push((key, value));
        if !p.eat(b',') {
            p.expect(b'}')?;
            break;
        }
    }
    if p.peek().is_some() {
        return Err(format!("unexpected text at character {}", p.i));
    }
    Ok(out)
}

/// A tiny cursor over the header text.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    /// The next non-space byte, without consuming it.
    fn peek(&mut self) -> Option<u8> {
        while self.s.get(self.i).is_some_and(|b| b.is_ascii_whitespace()) {
            self.i += 1;
        }
        self.s.get(self.i).copied()
    }

    /// Consumes `b` if it is next.
    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// Consumes `b` or fails.
    fn expect(&mut self, b: u8) -> Result<(), String> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(format!("expected `{}` at character {}", b as char, self.i))
        }
    }

    /// One literal: a quoted string, True/False, an integer or a tuple.
    fn value(&mut self) -> Result<PyVal, String> {
        match self.peek() {
            Some(q @ (b'\'' | b'"')) => {
                let start = self.i + 1;
                let len = self.s[start..]
                    .iter()
                    .position(|&b| b == q)
                    .ok_or_else(|| format!("an unterminated string at character {}", self.i))?;
                self.i = start + len + 1;
                Ok(PyVal::Str(
                    String::from_utf8_lossy(&self.s[start..start + len]).into_owned(),
                ))
            }
            Some(b'(') => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    if self.eat(b')') {
                        break;
                    }
                    items.push(self.value()?);
                    if !self.eat(b',') {
                        self.expect(b')')?;
                        break;
                    }
                }
                Ok(PyVal::Tuple(items))
            }
            Some(b) if b.is_ascii_alphanumeric() || b == b'-' => {
                let start = self.i;
                while self
                    .s
                    .get(self.i)
                    .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'-')
                {
                    self.i += 1;
                }
                // Python 2 era files may write `3L`.
                let word = std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default();
                match word {
                    "True" => Ok(PyVal::Bool(true)),
                    "False" => Ok(PyVal::Bool(false)),
                    w => w
                        .trim_end_matches('L')
                        .parse()
                        .map(PyVal::Int)
                        .map_err(|_| format!("an unknown value `{w}` at character {start}")),
                }
            }
            _ => Err(format!("expected a value at character {}", self.i)),
        }
    }
}

/// Writes a little-endian f32 `.npy` (format 1.0, C order).
pub fn write(path: &Path, data: &[f32], shape: &[usize]) -> Result<(), Diagnostic> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_variants() {
        let h = parse_header("{'descr': '<f4', 'fortran_order': False, 'shape': (3L, 4), }  \n")
            .unwrap();
        assert_eq!(
            h[2],
            (
                "shape".into(),
                PyVal::Tuple(vec![PyVal::Int(3), PyVal::Int(4)])
            )
        );
        let h = parse_header("{\"descr\":\"<i8\",\"fortran_order\":True,\"shape\":()}").unwrap();
        assert_eq!(h[1].1, PyVal::Bool(true));
        assert_eq!(h[2].1, PyVal::Tuple(vec![]));
        for bad in [
            "",
            "{",
            "{'a' 1}",
            "{'a': 'x}",
            "{'a': (1, 2}",
            "{'a': 1} extra",
            "{1: 2}",
            "{'a': nope}",
        ] {
            assert!(parse_header(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn npy_header_is_aligned_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        write(&p, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
        let b = std::fs::read(&p).unwrap();
        let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hl) % 64, 0);
        let h = std::str::from_utf8(&b[10..10 + hl]).unwrap();
        assert!(h.contains("'shape': (2, 3)"));
        assert_eq!(
            f32::from_le_bytes([
                b[10 + hl + 20],
                b[10 + hl + 21],
                b[10 + hl + 22],
                b[10 + hl + 23]
            ]),
            6.0
        );
    }
}
