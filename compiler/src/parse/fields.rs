//! A JSON object reader that tracks its path and which keys were used.
//!
//! Why: every semantic error must name the JSON path and say what was expected and found, and
//! unknown keys (a typo such as `"head"` for `"heads"`) must be errors, not silently ignored.

use std::cell::RefCell;
use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::diag::{Diagnostic, Result};
use crate::dims::{self, DimTable};

/// Short description of a JSON value for "found:" lines.
pub fn describe(v: &Value) -> String {
    let text = v.to_string();
    let text = if text.len() > 60 {
        format!(
            "{}…",
            &text[..text.char_indices().nth(57).map_or(text.len(), |(i, _)| i)]
        )
    } else {
        text
    };
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    if matches!(v, Value::Object(_) | Value::Array(_)) {
        kind.to_string()
    } else {
        format!("{kind}: {text}")
    }
}

/// Path of a child key (`$.a` + `b` → `$.a.b`).
pub fn child(path: &str, key: &str) -> String {
    if dims::is_identifier(key) {
        format!("{path}.{key}")
    } else {
        format!("{path}[{key:?}]")
    }
}

/// Path of an array element.
pub fn elem(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// An object being read.
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    /// JSON path of the object.
    pub path: String,
    used: RefCell<BTreeSet<&'a str>>,
}

impl<'a> Fields<'a> {
    /// Reads `v` as an object, or reports what it was instead.
    pub fn new(v: &'a Value, path: &str, what: &str) -> Result<Self> {
        match v {
            Value::Object(map) => Ok(Fields {
                map,
                path: path.to_string(),
                used: RefCell::new(BTreeSet::new()),
            }),
            other => Err(
                Diagnostic::at_path(path, format!("{what} must be a JSON object"))
                    .expected("an object { ... }")
                    .found(describe(other)),
            ),
        }
    }

    /// The value at `key`, if present (marks it used).
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        let (k, v) = self.map.get_key_value(key)?;
        self.used.borrow_mut().insert(k.as_str());
        Some(v)
    }

    /// The value at `key`, or an error naming the missing key.
    pub fn req(&self, key: &str, expected: &str) -> Result<&'a Value> {
        self.get(key).ok_or_else(|| {
            let near = self
                .map
                .keys()
                .find(|k| k.as_str() != key && edit_distance(k, key) <= 2);
            let d = Diagnostic::at_path(&self.path, format!("missing required key `{key}`"));
            let d = match near {
                Some(k) => d.help(format!("`{k}` looks like a misspelling of `{key}`")),
                None => d,
            };
            d.expected(format!("`{key}`: {expected}")).found(format!(
                "keys {}",
                self.map
                    .keys()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// Path of `key` in this object.
    pub fn at(&self, key: &str) -> String {
        child(&self.path, key)
    }

    /// A required string.
    pub fn str(&self, key: &str) -> Result<&'a str> {
        let v = self.req(key, "a string")?;
        as_str(v, &self.at(key))
    }

    /// An optional string.
    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        self.get(key).map(|v| as_str(v, &self.at(key))).transpose()
    }

    /// An optional boolean.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(Diagnostic::at_path(self.at(key), "wrong type")
                .expected("true or false")
                .found(describe(v))),
        }
    }

    /// An optional finite number.
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        self.get(key).map(|v| as_f64(v, &self.at(key))).transpose()
    }

    /// A required size: an integer or a dims expression.
    pub fn size(&self, key: &str, table: &DimTable) -> Result<u64> {
        let v = self.req(key, "an integer or a dims expression such as \"6*D\"")?;
        as_size(v, &self.at(key), table)
    }

    /// An optional size.
    pub fn opt_size(&self, key: &str, table: &DimTable) -> Result<Option<u64>> {
        self.get(key)
            .map(|v| as_size(v, &self.at(key), table))
            .transpose()
    }

    /// Fails on the first key outside `allowed` (checked before reading, so that a misspelt
    /// section is reported as such rather than as a missing reference elsewhere).
    pub fn check_known(&self, allowed: &[&str]) -> Result<()> {
        for k in self.map.keys() {
            if !allowed.contains(&k.as_str()) {
                let near = allowed.iter().find(|a| edit_distance(a, k) <= 2);
                let d = Diagnostic::at_path(self.at(k), format!("unknown key `{k}`"))
                    .expected(format!(
                        "one of {}",
                        allowed
                            .iter()
                            .map(|a| format!("`{a}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                    .found(format!("`{k}`"));
                return Err(match near {
                    Some(a) => d.help(format!("did you mean `{a}`?")),
                    None => d,
                });
            }
        }
        Ok(())
    }

    /// Fails on any key not read so far, listing the keys that are allowed.
    pub fn finish(&self, allowed: &[&str]) -> Result<()> {
        let used = self.used.borrow();
        if let Some(k) = self.map.keys().find(|k| !used.contains(k.as_str())) {
            return Err(
                Diagnostic::at_path(self.at(k), format!("unknown key `{k}`"))
                    .expected(format!(
                        "one of {}",
                        allowed
                            .iter()
                            .map(|a| format!("`{a}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                    .found(format!("`{k}`")),
            );
        }
        Ok(())
    }

    /// The entries of the object, in file order.
    pub fn entries(&self) -> impl Iterator<Item = (&'a String, &'a Value)> {
        self.map.iter()
    }
}

/// Levenshtein distance, for "did you mean" hints on misspelt keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Reads a string.
pub fn as_str<'a>(v: &'a Value, path: &str) -> Result<&'a str> {
    v.as_str().ok_or_else(|| {
        Diagnostic::at_path(path, "wrong type")
            .expected("a string")
            .found(describe(v))
    })
}

/// Reads a finite number.
pub fn as_f64(v: &Value, path: &str) -> Result<f64> {
    v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
        Diagnostic::at_path(path, "wrong type")
            .expected("a number")
            .found(describe(v))
    })
}

/// Reads an array.
pub fn as_array<'a>(v: &'a Value, path: &str, what: &str) -> Result<&'a Vec<Value>> {
    v.as_array().ok_or_else(|| {
        Diagnostic::at_path(path, format!("{what} must be an array"))
            .expected("an array [ ... ]")
            .found(describe(v))
    })
}

/// Reads a size: a non-negative integer or a dims expression string.
pub fn as_size(v: &Value, path: &str, table: &DimTable) -> Result<u64> {
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(|| {
            Diagnostic::at_path(path, "not a size")
                .expected("a non-negative integer")
                .found(describe(v))
        }),
        Value::String(s) => dims::eval(s, table).map_err(|e| {
            Diagnostic::at_path(path, format!("bad dimension expression: {e}"))
                .expected(format!(
                    "an integer expression over the dims table ({})",
                    if table.is_empty() {
                        "empty".to_string()
                    } else {
                        table.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                ))
                .found(format!("\"{s}\""))
        }),
        other => Err(Diagnostic::at_path(path, "wrong type")
            .expected("an integer or a dims expression string")
            .found(describe(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("head", "heads"), 1);
        assert_eq!(edit_distance("heads", "heads"), 0);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn unknown_keys_are_reported_with_the_allowed_ones() {
        let v: Value = serde_json::from_str(r#"{"a": 1, "zz": 2}"#).unwrap();
        let f = Fields::new(&v, "$.x", "test").unwrap();
        f.get("a");
        let e = f.finish(&["a", "b"]).unwrap_err();
        assert_eq!(e.location, crate::diag::Location::Path("$.x.zz".into()));
        assert!(e.expected.as_deref().unwrap().contains("`b`"));
    }

    #[test]
    fn misspelt_required_key_gets_a_hint() {
        let v: Value = serde_json::from_str(r#"{"head": 6}"#).unwrap();
        let f = Fields::new(&v, "$", "test").unwrap();
        let e = f.req("heads", "a number").unwrap_err();
        assert!(e.help.as_deref().unwrap().contains("`head`"));
    }
}
