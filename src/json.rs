//! Documents: strict JSON parsing and the canonical form of RFC 8785 (JCS).
//!
//! A document is a JSON object. The journal records SHA-256 of its canonical form, and the
//! canonical bytes are what graven stores and returns, so anyone holding a document can
//! recompute the hash. Parsing is strict where JSON is ambiguous: duplicate member names
//! and integers that an IEEE double cannot hold exactly are refused rather than silently
//! changed.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The largest integer magnitude a double holds exactly (2^53). RFC 8785 numbers are
/// doubles; larger integers would change silently, so they are refused.
const MAX_SAFE_INTEGER: u64 = 1 << 53;

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError(pub String);

impl std::error::Error for JsonError {}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A JSON value parsed with duplicate member names refused.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if members.insert(key.clone(), value).is_some() {
                return Err(de::Error::custom(format!(
                    "duplicate member name {}",
                    crate::error::Quote(&key)
                )));
            }
        }
        Ok(Value::Object(members))
    }
}

/// Parses a document: UTF-8 JSON text whose top level is an object, no duplicate member
/// names, no integer beyond ±2^53, at most 128 levels deep.
pub fn parse_document(text: &[u8]) -> Result<Value, JsonError> {
    let text = std::str::from_utf8(text).map_err(|e| JsonError(format!("not UTF-8: {e}")))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let Strict(value) =
        Strict::deserialize(&mut de).map_err(|e| JsonError(format!("invalid JSON: {e}")))?;
    de.end()
        .map_err(|e| JsonError(format!("invalid JSON: {e}")))?;
    if !value.is_object() {
        return Err(JsonError("a document must be a JSON object".into()));
    }
    // Only a double beyond 2^53 can have come from such a literal: look at the text only
    // then (the common document has none, and pays for a walk of its values, not a scan
    // of its bytes).
    if has_large_double(&value)
        && let Some(literal) = unsafe_integer_literal(text)
    {
        let shown: String = literal.chars().take(40).collect();
        let more = if shown.len() < literal.len() {
            "..."
        } else {
            ""
        };
        return Err(JsonError(format!(
            "number {shown}{more} is an integer beyond ±2^53, which JSON cannot carry \
             exactly (RFC 8785); send it as a string"
        )));
    }
    Ok(value)
}

/// Whether a value holds a number parsed as a double of magnitude beyond 2^53 (every such
/// double is an integer).
fn has_large_double(value: &Value) -> bool {
    match value {
        Value::Number(n) => {
            !n.is_u64()
                && !n.is_i64()
                && n.as_f64()
                    .is_some_and(|f| f.abs() > MAX_SAFE_INTEGER as f64)
        }
        Value::Array(items) => items.iter().any(has_large_double),
        Value::Object(members) => members.values().any(has_large_double),
        _ => false,
    }
}

/// The first integer literal (no fraction, no exponent) beyond ±2^53 in JSON text that
/// parsed. serde_json reads an integer beyond the 64-bit range as a double, rounding it,
/// so [`write_number`] cannot tell it from a number written with an exponent.
fn unsafe_integer_literal(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Skip the string (the text is valid JSON: it is terminated).
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            // Outside strings, only numbers hold digits or '-'.
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let literal = &text[start..i];
                if is_unsafe_integer_text(literal) {
                    return Some(literal);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// The RFC 8785 canonical form of a value.
pub fn canonical(value: &Value) -> Result<Vec<u8>, JsonError> {
    let mut out = Vec::new();
    write_value(value, &mut out, &Path::Root)?;
    Ok(out)
}

/// Parses a document and returns its canonical bytes.
pub fn canonicalize_document(text: &[u8]) -> Result<Vec<u8>, JsonError> {
    canonical(&parse_document(text)?)
}

/// Where a value sits in its document (`$.a[2].b`), for error messages: a chain of stack
/// frames, turned into text only when an error needs it.
enum Path<'a> {
    Root,
    Index(&'a Path<'a>, usize),
    Member(&'a Path<'a>, &'a str),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => f.write_str("$"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
            Path::Member(parent, key) => write!(f, "{parent}.{key}"),
        }
    }
}

/// RFC 8785 §3.2.3: member names compare as UTF-16 code units. UTF-8 bytes sort as code
/// points, which is the same order unless a name holds a character beyond U+FFFF (a lead
/// byte of 0xF0 or more, a surrogate pair in UTF-16), so only then is UTF-16 needed.
fn utf16_order(a: &str, b: &str) -> std::cmp::Ordering {
    let astral = |s: &str| s.bytes().any(|b| b >= 0xf0);
    if astral(a) || astral(b) {
        a.encode_utf16().cmp(b.encode_utf16())
    } else {
        a.as_bytes().cmp(b.as_bytes())
    }
}

fn write_value(value: &Value, out: &mut Vec<u8>, path: &Path<'_>) -> Result<(), JsonError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out, path)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out, &Path::Index(path, i))?;
            }
            out.push(b']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|a, b| utf16_order(a.0, b.0));
            out.push(b'{');
            for (i, (key, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_value(item, out, &Path::Member(path, key))?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// RFC 8785 §3.2.2.3: numbers are serialized as ECMAScript serializes doubles.
fn write_number(n: &Number, out: &mut Vec<u8>, path: &Path<'_>) -> Result<(), JsonError> {
    if let Some(u) = n.as_u64() {
        if u > MAX_SAFE_INTEGER {
            return Err(unsafe_integer(path));
        }
        out.extend_from_slice(itoa::Buffer::new().format(u).as_bytes());
    } else if let Some(i) = n.as_i64() {
        if i.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(unsafe_integer(path));
        }
        out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
    } else {
        let f = n
            .as_f64()
            .ok_or_else(|| JsonError(format!("number at {path} is not finite")))?;
        if f == 0.0 {
            // Both zeros serialize as "0" in ECMAScript.
            out.push(b'0');
        } else {
            let mut buf = ryu_js::Buffer::new();
            let text = buf.format_finite(f);
            // A double below 1e21 is written as an integer when it is one (1e20 is
            // 100000000000000000000): beyond ±2^53 that text would be refused when sent
            // back, so refuse the number now (the canonical form must itself be accepted).
            if is_unsafe_integer_text(text) {
                return Err(unsafe_integer(path));
            }
            out.extend_from_slice(text.as_bytes());
        }
    }
    Ok(())
}

/// Whether a number's text is an integer (no fraction, no exponent) beyond ±2^53.
fn is_unsafe_integer_text(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    digits.len() >= 16
        && digits.bytes().all(|b| b.is_ascii_digit())
        && digits
            .parse::<u128>()
            .map_or(true, |v| v > u128::from(MAX_SAFE_INTEGER))
}

fn unsafe_integer(path: &Path<'_>) -> JsonError {
    JsonError(format!(
        "number at {path} is an integer beyond ±2^53, which JSON cannot carry exactly \
         (RFC 8785); send it as a string"
    ))
}

/// RFC 8785 §3.2.2.2: minimal escaping, lower-case hex for other control characters.
/// Runs of bytes that need no escape (everything but `"`, `\\` and controls; the bytes of
/// multi-byte UTF-8 characters are all at least 0x80) are copied in one go.
fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut unicode = *b"\\u00xx";
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1f => {
                unicode[4] = HEX[usize::from(b >> 4)];
                unicode[5] = HEX[usize::from(b & 0xf)];
                &unicode
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        String::from_utf8(canonicalize_document(text.as_bytes()).expect("valid document"))
            .expect("canonical JSON is UTF-8")
    }

    #[test]
    fn rfc8785_example_canonicalizes() {
        // The example of RFC 8785 §3.2.2 (input) and §3.2.3 (output).
        let input = r#"{
            "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#;
        let expected = r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#;
        assert_eq!(canon(input), expected);
    }

    #[test]
    fn members_sort_by_utf16_code_units() {
        // RFC 8785 §3.2.3's sorting example: keys ordered by UTF-16, not by UTF-8 or chars.
        let input = r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#;
        let out = canon(input);
        let order: Vec<&str> = [
            "Carriage Return",
            "One",
            "Control",
            "Latin Small",
            "Euro Sign",
            "Emoji",
            "Hebrew",
        ]
        .into_iter()
        .collect();
        let mut last = 0;
        for name in order {
            let at = out.find(name).expect("member present");
            assert!(at > last, "{name} out of order in {out}");
            last = at;
        }
    }

    #[test]
    fn strictness() {
        for (bad, why) in [
            ("[1,2]", "object"),
            ("\"s\"", "object"),
            ("{\"a\":1,\"a\":2}", "duplicate"),
            ("{\"a\":9007199254740993}", "2^53"),
            ("{\"a\":-9007199254740993}", "2^53"),
            // Beyond the 64-bit range, which serde_json would read as a rounded double.
            ("{\"a\":18446744073709551616}", "2^53"),
            ("{\"a\":[1,{\"b\":-9223372036854775809}]}", "2^53"),
            ("{\"a\":123456789012345678901234567890123456789012}", "2^53"),
            ("{\"a\":1} x", "invalid JSON"),
            ("{\"a\":", "invalid JSON"),
            ("", "invalid JSON"),
        ] {
            let err = canonicalize_document(bad.as_bytes()).expect_err(bad);
            assert!(err.0.contains(why), "{bad}: {err}");
        }
        assert!(canonicalize_document(&[b'{', 0xff, b'}']).is_err());
        let err = canonicalize_document(br#"{"a":[1,{"b":9007199254740993}]}"#).expect_err("big");
        assert!(err.0.starts_with("number at $.a[1].b is"), "{err}");
        assert_eq!(
            canon("{\"a\":9007199254740992}"),
            "{\"a\":9007199254740992}"
        );
        assert_eq!(canon("{\"z\":-0.0,\"a\":1.0}"), "{\"a\":1,\"z\":0}");
        // Large numbers with exponents are doubles, as RFC 8785 says; digits in strings
        // and names are text.
        assert_eq!(
            canon(
                "{\"e\":1e30,\"f\":1e21,\"s\":\"18446744073709551616\\\"1\",\"18446744073709551616\":-1E300}"
            ),
            "{\"18446744073709551616\":-1e+300,\"e\":1e+30,\"f\":1e+21,\"s\":\"18446744073709551616\\\"1\"}"
        );
        // A double whose canonical form is an integer beyond 2^53 is refused too: that
        // form could not be sent back (found by fuzzing the fixed point).
        for bad in [
            "{\"a\":1e20}",
            "{\"a\":-1.8e19}",
            "{\"a\":18446744073709551616.0}",
            "{\"a\":9007199254740994.0}",
        ] {
            let err = canonicalize_document(bad.as_bytes()).expect_err(bad);
            assert!(
                err.0.contains("number at $.a is an integer beyond ±2^53"),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            canon("{\"a\":9007199254740992.0,\"b\":1e15}"),
            "{\"a\":9007199254740992,\"b\":1000000000000000}"
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(canonicalize_document(deep.as_bytes()).is_err());
    }

    #[test]
    fn canonical_form_is_a_fixed_point() {
        let once = canon(r#"{"b":[1,{"y":2,"x":1}],"a":"\u00e9"}"#);
        assert_eq!(canon(&once), once);
        assert_eq!(once, r#"{"a":"é","b":[1,{"x":1,"y":2}]}"#);
    }
}
