//! Evaluating expressions over JSON values, with PartiQL's semantics as QLDB had them
//! (permissive mode): a value may be MISSING (`None` here) as well as `null`; an
//! operation on the wrong types gives MISSING rather than an error; `=` between values of
//! different types is false; comparisons and logic are three-valued, and `WHERE` keeps a
//! row only when its condition is exactly `true`.
//!
//! Numbers are IEEE doubles, as JSON documents hold them (`json.rs`): `1` and `1.0` are
//! the same number.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use super::ast::{Aggregate, BinaryOp, Expr, UnaryOp};
use crate::error::{Error, Result};

/// A value or MISSING.
pub type Val = Option<Value>;

/// The variables a row binds, and the statement's parameters.
#[derive(Debug, Clone)]
pub struct Env<'p> {
    /// Variables, later ones shadowing earlier ones of the same name.
    pub vars: Vec<(String, Value)>,
    /// How many of the first `vars` are documents (`FROM` variables), whose fields an
    /// unqualified name may mean.
    pub documents: Vec<usize>,
    /// The parameters, by number.
    pub params: &'p [Value],
}

impl<'p> Env<'p> {
    /// No variables.
    pub fn new(params: &'p [Value]) -> Env<'p> {
        Env {
            vars: Vec::new(),
            documents: Vec::new(),
            params,
        }
    }

    /// Binds `name`; `document` marks a `FROM` variable.
    pub fn bind(&mut self, name: &str, value: Value, document: bool) {
        if document {
            self.documents.push(self.vars.len());
        }
        self.vars.push((name.to_owned(), value));
    }

    /// Removes the last `n` bindings.
    pub fn unbind(&mut self, n: usize) {
        let keep = self.vars.len().saturating_sub(n);
        self.vars.truncate(keep);
        self.documents.retain(|&i| i < keep);
    }

    /// The value of a name: a variable, or else the field of that name of the only
    /// document variable.
    pub fn lookup(&self, name: &str) -> Val {
        self.lookup_ref(name).cloned()
    }

    /// [`Env::lookup`], borrowed.
    pub fn lookup_ref(&self, name: &str) -> Option<&Value> {
        if let Some((_, v)) = self.vars.iter().rev().find(|(n, _)| n == name) {
            return Some(v);
        }
        match self.documents.as_slice() {
            [only] => self.vars.get(*only)?.1.get(name),
            _ => None,
        }
    }
}

/// The value a path of literal steps (`x.a.b[0]`) names, borrowed: `Some(None)` when it
/// is MISSING, `None` when `expr` is not such a path (or reaches a null, whose fields are
/// null, not borrowed) and must be evaluated. Evaluating a path this way copies only the
/// value it ends at, not the document it starts from.
fn path_ref<'e>(expr: &Expr, env: &'e Env<'_>) -> Option<Option<&'e Value>> {
    match expr {
        Expr::Name(name, _) => Some(env.lookup_ref(name)),
        Expr::Field(base, name) => match path_ref(base, env)? {
            None => Some(None),
            Some(Value::Object(m)) => Some(m.get(name)),
            Some(Value::Null) => None,
            Some(_) => Some(None),
        },
        Expr::Index(base, index) => {
            let Expr::Literal(Value::Number(n)) = index.as_ref() else {
                return None;
            };
            match path_ref(base, env)? {
                None => Some(None),
                Some(Value::Array(items)) => Some(
                    n.as_f64()
                        .filter(|i| *i >= 0.0 && i.fract() == 0.0)
                        .and_then(|i| items.get(i as usize)),
                ),
                Some(_) => None,
            }
        }
        _ => None,
    }
}

/// The JSON number of `x`: an integer when it is one (and exact), MISSING when not finite.
pub fn number(x: f64) -> Val {
    if x.is_finite() && x.fract() == 0.0 && x.abs() <= 9_007_199_254_740_992.0 {
        // Exact: |x| <= 2^53.
        return Some(Value::Number(Number::from(x as i64)));
    }
    Number::from_f64(x).map(Value::Number)
}

/// Evaluates `expr` in `env`. Errors only for what no row can fix (a parameter that was
/// not given, an unknown function); everything else is a value or MISSING.
pub fn eval(expr: &Expr, env: &Env<'_>) -> Result<Val> {
    if let Some(found) = path_ref(expr, env) {
        return Ok(found.cloned());
    }
    Ok(match expr {
        Expr::Literal(v) => Some(v.clone()),
        Expr::Missing => None,
        Expr::Param(n, _) => Some(
            env.params
                .get(*n)
                .cloned()
                .ok_or_else(|| Error::invalid(format!("parameter {} was not given", n + 1)))?,
        ),
        Expr::Name(name, _) => env.lookup(name),
        // A field of null is null (so that the columns of a LEFT JOIN's missing side are
        // null, as SQL has them); of anything else that is not a struct, MISSING.
        Expr::Field(base, name) => eval(base, env)?.and_then(|v| match v {
            Value::Object(mut m) => m.remove(name),
            Value::Null => Some(Value::Null),
            _ => None,
        }),
        Expr::Index(base, index) => {
            let (base, index) = (eval(base, env)?, eval(index, env)?);
            match (base, index) {
                (Some(Value::Array(mut items)), Some(Value::Number(n))) => n
                    .as_f64()
                    .filter(|i| *i >= 0.0 && i.fract() == 0.0 && (*i as usize) < items.len())
                    .map(|i| items.swap_remove(i as usize)),
                (Some(Value::Object(mut m)), Some(Value::String(k))) => m.remove(&k),
                _ => None,
            }
        }
        Expr::Struct(fields) => {
            let mut m = Map::new();
            for (k, v) in fields {
                let (Some(Value::String(k)), Some(v)) = (eval(k, env)?, eval(v, env)?) else {
                    continue;
                };
                m.insert(k, v);
            }
            Some(Value::Object(m))
        }
        Expr::List(items) | Expr::Bag(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                // MISSING elements are left out, as PartiQL does.
                out.extend(eval(item, env)?);
            }
            Some(Value::Array(out))
        }
        Expr::Unary(op, e) => {
            let v = eval(e, env)?;
            match op {
                UnaryOp::Not => not(truth(&v)),
                UnaryOp::Neg => match v {
                    Some(Value::Number(n)) => number(-n.as_f64().unwrap_or(0.0)),
                    Some(Value::Null) => Some(Value::Null),
                    _ => None,
                },
                UnaryOp::Plus => match v {
                    Some(Value::Number(_) | Value::Null) => v,
                    _ => None,
                },
            }
        }
        Expr::Binary(op, a, b) => binary(*op, a, b, env)?,
        Expr::Like {
            expr,
            pattern,
            escape,
            negated,
        } => {
            let (v, p) = (eval(expr, env)?, eval(pattern, env)?);
            let esc = match escape {
                None => None,
                Some(e) => match eval(e, env)? {
                    Some(Value::String(s)) if s.chars().count() == 1 => s.chars().next(),
                    _ => return Ok(None),
                },
            };
            match (v, p) {
                (Some(Value::String(s)), Some(Value::String(p))) => {
                    let m = like(&s, &p, esc);
                    Some(Value::Bool(m != *negated))
                }
                (Some(Value::Null), _) | (_, Some(Value::Null)) => Some(Value::Null),
                _ => None,
            }
        }
        Expr::Between {
            expr,
            low,
            high,
            negated,
        } => {
            let v = eval(expr, env)?;
            let (lo, hi) = (eval(low, env)?, eval(high, env)?);
            let ge = compare_op(BinaryOp::Ge, &v, &lo);
            let le = compare_op(BinaryOp::Le, &v, &hi);
            let both = and(truth(&ge), truth(&le));
            if *negated {
                not(both)
            } else {
                from_truth(both)
            }
        }
        Expr::In {
            expr,
            list,
            negated,
        } => {
            let v = eval(expr, env)?;
            let candidates = match eval(list, env)? {
                Some(Value::Array(items)) => items,
                _ => return Ok(None),
            };
            let found = match &v {
                None => Truth::Missing,
                Some(Value::Null) => Truth::Null,
                Some(v) => {
                    if candidates.iter().any(|c| equal(v, c)) {
                        Truth::True
                    } else if candidates.iter().any(Value::is_null) {
                        Truth::Null
                    } else {
                        Truth::False
                    }
                }
            };
            if *negated {
                not(found)
            } else {
                from_truth(found)
            }
        }
        Expr::Is {
            expr,
            missing,
            negated,
        } => {
            let v = eval(expr, env)?;
            let is = if *missing {
                v.is_none()
            } else {
                // MISSING IS NULL is true in PartiQL.
                v.as_ref().is_none_or(Value::is_null)
            };
            Some(Value::Bool(is != *negated))
        }
        Expr::Call { name, args, .. } => {
            let mut values = Vec::with_capacity(args.len());
            for a in args {
                values.push(eval(a, env)?);
            }
            call(name, values)?
        }
        Expr::Cast { expr, to, .. } => cast(eval(expr, env)?, to)?,
        Expr::Case {
            operand,
            arms,
            otherwise,
        } => {
            let subject = operand.as_ref().map(|o| eval(o, env)).transpose()?;
            for (when, then) in arms {
                let w = eval(when, env)?;
                let hit = match &subject {
                    Some(s) => truth(&compare_op(BinaryOp::Eq, s, &w)) == Truth::True,
                    None => truth(&w) == Truth::True,
                };
                if hit {
                    return eval(then, env);
                }
            }
            match otherwise {
                Some(e) => eval(e, env)?,
                None => Some(Value::Null),
            }
        }
        Expr::Aggregate { pos, .. } => {
            return Err(Error::invalid(format!(
                "line {}, column {}: an aggregate may only be used in the SELECT list",
                pos.line, pos.column
            )));
        }
    })
}

/// A truth value of three-valued logic, with MISSING beside NULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    /// `true`.
    True,
    /// `false`.
    False,
    /// `null` (or a value that is not a boolean).
    Null,
    /// MISSING.
    Missing,
}

/// How a value counts as a condition.
pub fn truth(v: &Val) -> Truth {
    match v {
        None => Truth::Missing,
        Some(Value::Bool(true)) => Truth::True,
        Some(Value::Bool(false)) => Truth::False,
        Some(_) => Truth::Null,
    }
}

fn from_truth(t: Truth) -> Val {
    match t {
        Truth::True => Some(Value::Bool(true)),
        Truth::False => Some(Value::Bool(false)),
        Truth::Null => Some(Value::Null),
        Truth::Missing => None,
    }
}

fn not(t: Truth) -> Val {
    from_truth(match t {
        Truth::True => Truth::False,
        Truth::False => Truth::True,
        other => other,
    })
}

fn and(a: Truth, b: Truth) -> Truth {
    match (a, b) {
        (Truth::False, _) | (_, Truth::False) => Truth::False,
        (Truth::True, Truth::True) => Truth::True,
        (Truth::Missing, _) | (_, Truth::Missing) => Truth::Missing,
        _ => Truth::Null,
    }
}

fn or(a: Truth, b: Truth) -> Truth {
    match (a, b) {
        (Truth::True, _) | (_, Truth::True) => Truth::True,
        (Truth::False, Truth::False) => Truth::False,
        (Truth::Missing, _) | (_, Truth::Missing) => Truth::Missing,
        _ => Truth::Null,
    }
}

fn binary(op: BinaryOp, a: &Expr, b: &Expr, env: &Env<'_>) -> Result<Val> {
    // AND and OR look at their right side only when the left does not decide.
    if op == BinaryOp::And || op == BinaryOp::Or {
        let left = truth(&eval(a, env)?);
        if (op == BinaryOp::And && left == Truth::False)
            || (op == BinaryOp::Or && left == Truth::True)
        {
            return Ok(from_truth(left));
        }
        let right = truth(&eval(b, env)?);
        return Ok(from_truth(if op == BinaryOp::And {
            and(left, right)
        } else {
            or(left, right)
        }));
    }
    let (x, y) = (eval(a, env)?, eval(b, env)?);
    Ok(match op {
        BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
            compare_op(op, &x, &y)
        }
        BinaryOp::Concat => match (x, y) {
            (Some(Value::String(mut s)), Some(Value::String(t))) => {
                s.push_str(&t);
                Some(Value::String(s))
            }
            (Some(Value::Null), Some(_)) | (Some(_), Some(Value::Null)) => Some(Value::Null),
            _ => None,
        },
        _ => match (&x, &y) {
            (Some(Value::Number(m)), Some(Value::Number(n))) => {
                let (m, n) = (m.as_f64().unwrap_or(0.0), n.as_f64().unwrap_or(0.0));
                match op {
                    BinaryOp::Add => number(m + n),
                    BinaryOp::Sub => number(m - n),
                    BinaryOp::Mul => number(m * n),
                    BinaryOp::Div if n != 0.0 => number(m / n),
                    BinaryOp::Mod if n != 0.0 => number(m % n),
                    _ => None,
                }
            }
            (Some(Value::Null), Some(_)) | (Some(_), Some(Value::Null)) => Some(Value::Null),
            _ => None,
        },
    })
}

/// A comparison: MISSING if either side is, NULL if either is null; `=` and `<>` of
/// values of different types are false and true; an order comparison of them is MISSING.
pub fn compare_op(op: BinaryOp, x: &Val, y: &Val) -> Val {
    let (Some(x), Some(y)) = (x, y) else {
        return None;
    };
    if x.is_null() || y.is_null() {
        return Some(Value::Null);
    }
    let result = match op {
        BinaryOp::Eq => equal(x, y),
        BinaryOp::Ne => !equal(x, y),
        _ => {
            let ord = order_within_type(x, y)?;
            match op {
                BinaryOp::Lt => ord == Ordering::Less,
                BinaryOp::Le => ord != Ordering::Greater,
                BinaryOp::Gt => ord == Ordering::Greater,
                _ => ord != Ordering::Less,
            }
        }
    };
    Some(Value::Bool(result))
}

/// Deep equality, numbers by value.
pub fn equal(x: &Value, y: &Value) -> bool {
    match (x, y) {
        (Value::Number(m), Value::Number(n)) => m.as_f64() == n.as_f64(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| equal(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => x == y,
    }
}

/// The order of two values of one type that has one (booleans, numbers, strings by code
/// point); `None` otherwise.
pub fn order_within_type(x: &Value, y: &Value) -> Option<Ordering> {
    match (x, y) {
        (Value::Number(m), Value::Number(n)) => m.as_f64()?.partial_cmp(&n.as_f64()?),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// The total order `ORDER BY` sorts by: MISSING and null, then booleans, numbers,
/// strings, lists, structs (PartiQL's order of types); lists and structs element by
/// element.
pub fn total_order(x: &Val, y: &Val) -> Ordering {
    fn rank(v: &Val) -> u8 {
        match v {
            None | Some(Value::Null) => 0,
            Some(Value::Bool(_)) => 1,
            Some(Value::Number(_)) => 2,
            Some(Value::String(_)) => 3,
            Some(Value::Array(_)) => 4,
            Some(Value::Object(_)) => 5,
        }
    }
    match (x, y) {
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            for (a, b) in a.iter().zip(b) {
                let o = total_order(&Some(a.clone()), &Some(b.clone()));
                if o != Ordering::Equal {
                    return o;
                }
            }
            a.len().cmp(&b.len())
        }
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut a: Vec<_> = a.iter().collect();
            let mut b: Vec<_> = b.iter().collect();
            a.sort_by(|p, q| p.0.cmp(q.0));
            b.sort_by(|p, q| p.0.cmp(q.0));
            for ((ka, va), (kb, vb)) in a.iter().zip(&b) {
                let o = ka
                    .cmp(kb)
                    .then_with(|| total_order(&Some((*va).clone()), &Some((*vb).clone())));
                if o != Ordering::Equal {
                    return o;
                }
            }
            a.len().cmp(&b.len())
        }
        (Some(a), Some(b)) if rank(x) == rank(y) && rank(x) > 0 => {
            order_within_type(a, b).unwrap_or(Ordering::Equal)
        }
        _ => rank(x).cmp(&rank(y)),
    }
}

/// SQL's LIKE: `%` any run of characters, `_` any one, `esc` makes the next literal.
/// Linear in the text for each `%` (the usual backtrack to the last `%`), never
/// exponential.
pub fn like(text: &str, pattern: &str, esc: Option<char>) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum P {
        Any,
        One,
        Char(char),
    }
    let mut pat = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        pat.push(match c {
            c if Some(c) == esc => match chars.next() {
                Some(next) => P::Char(next),
                None => P::Char(c),
            },
            '%' => P::Any,
            '_' => P::One,
            c => P::Char(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    let (mut t, mut p) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pat.get(p) {
            Some(P::Any) => {
                star = Some((p, t));
                p += 1;
            }
            Some(P::One) => {
                t += 1;
                p += 1;
            }
            Some(P::Char(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|q| *q == P::Any)
}

/// The functions graven knows, by lowercase name, with how many arguments each takes.
pub const FUNCTIONS: &[(&str, usize, usize)] = &[
    ("lower", 1, 1),
    ("upper", 1, 1),
    ("char_length", 1, 1),
    ("character_length", 1, 1),
    ("substring", 2, 3),
    ("trim", 1, 1),
    ("coalesce", 1, usize::MAX),
    ("nullif", 2, 2),
    ("size", 1, 1),
    ("cardinality", 1, 1),
    ("abs", 1, 1),
    ("exists", 1, 1),
    ("utcnow", 0, 0),
];

/// Checks a call's name and argument count.
pub fn check_call(name: &str, args: usize) -> std::result::Result<(), String> {
    match FUNCTIONS.iter().find(|(n, _, _)| *n == name) {
        None => Err(format!(
            "function {name} is not supported (graven has {})",
            FUNCTIONS
                .iter()
                .map(|(n, _, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Some((_, lo, hi)) if args < *lo || args > *hi => Err(format!(
            "function {name} takes {}",
            match (lo, hi) {
                (lo, hi) if lo == hi => format!("{lo} argument(s), not {args}"),
                (lo, &usize::MAX) => format!("at least {lo} argument(s)"),
                (lo, hi) => format!("{lo} to {hi} arguments, not {args}"),
            }
        )),
        Some(_) => Ok(()),
    }
}

fn call(name: &str, args: Vec<Val>) -> Result<Val> {
    let mut args = args.into_iter();
    let mut next = || args.next().flatten();
    let text = |v: Option<Value>| match v {
        Some(Value::String(s)) => Ok(s),
        other => Err(other),
    };
    Ok(match name {
        "lower" | "upper" | "trim" | "char_length" | "character_length" => match text(next()) {
            Ok(s) => Some(match name {
                "lower" => Value::String(s.to_lowercase()),
                "upper" => Value::String(s.to_uppercase()),
                "trim" => Value::String(s.trim().to_owned()),
                _ => Value::from(s.chars().count() as u64),
            }),
            Err(Some(Value::Null)) => Some(Value::Null),
            Err(_) => None,
        },
        "substring" => {
            let (s, start, len) = (next(), next(), next());
            let Ok(s) = text(s) else { return Ok(None) };
            let Some(start) = start.as_ref().and_then(Value::as_f64) else {
                return Ok(None);
            };
            // 1-based; positions before 1 shorten the length, as SQL says.
            let chars: Vec<char> = s.chars().collect();
            let first = start.floor() as i64;
            let last = match len.as_ref().and_then(Value::as_f64) {
                Some(l) if l < 0.0 => return Ok(None),
                Some(l) => first.saturating_add(l.floor() as i64),
                None => i64::MAX,
            };
            let from = first.max(1) as usize - 1;
            let to = (last.max(1) as usize - 1).min(chars.len());
            Some(Value::String(if from < to {
                chars[from..to].iter().collect()
            } else {
                String::new()
            }))
        }
        "coalesce" => {
            let mut found = Some(Value::Null);
            for v in args.by_ref() {
                if let Some(v) = v.filter(|v| !v.is_null()) {
                    found = Some(v);
                    break;
                }
            }
            found
        }
        "nullif" => {
            let (a, b) = (next(), next());
            match (&a, &b) {
                (Some(x), Some(y)) if equal(x, y) => Some(Value::Null),
                _ => a,
            }
        }
        "size" | "cardinality" => match next() {
            Some(Value::Array(a)) => Some(Value::from(a.len() as u64)),
            Some(Value::Object(m)) => Some(Value::from(m.len() as u64)),
            Some(Value::Null) => Some(Value::Null),
            _ => None,
        },
        "abs" => match next() {
            Some(Value::Number(n)) => number(n.as_f64().unwrap_or(0.0).abs()),
            Some(Value::Null) => Some(Value::Null),
            _ => None,
        },
        "exists" => match next() {
            Some(Value::Array(a)) => Some(Value::Bool(!a.is_empty())),
            _ => Some(Value::Bool(false)),
        },
        "utcnow" => Some(Value::String(rfc3339(now_micros()))),
        other => return Err(Error::invalid(format!("function {other} is not supported"))),
    })
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The type names `CAST` takes.
pub const CAST_TYPES: &[&str] = &[
    "string",
    "varchar",
    "char",
    "int",
    "integer",
    "bigint",
    "smallint",
    "decimal",
    "numeric",
    "float",
    "real",
    "double precision",
    "bool",
    "boolean",
];

fn cast(v: Val, to: &str) -> Result<Val> {
    let Some(v) = v else { return Ok(None) };
    if v.is_null() {
        return Ok(Some(Value::Null));
    }
    Ok(match to {
        "string" | "varchar" | "char" => Some(Value::String(match v {
            Value::String(s) => s,
            other => String::from_utf8(crate::json::canonical(&other).unwrap_or_default())
                .unwrap_or_default(),
        })),
        "int" | "integer" | "bigint" | "smallint" => match to_f64(&v) {
            Some(x) => number(x.trunc()),
            None => None,
        },
        "decimal" | "numeric" | "float" | "real" | "double precision" => {
            to_f64(&v).and_then(number)
        }
        "bool" | "boolean" => match v {
            Value::Bool(b) => Some(Value::Bool(b)),
            Value::Number(n) => Some(Value::Bool(n.as_f64() != Some(0.0))),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Some(Value::Bool(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Some(Value::Bool(false)),
            _ => None,
        },
        other => {
            return Err(Error::invalid(format!(
                "CAST to {other} is not supported (graven casts to {})",
                CAST_TYPES.join(", ")
            )));
        }
    })
}

fn to_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

/// A time in microseconds since the Unix epoch as RFC 3339 UTC with microseconds
/// (`2026-12-03T11:40:00.123456Z`): how statements see commit times.
pub fn rfc3339(micros: u64) -> String {
    let secs = micros / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        micros % 1_000_000
    )
}

/// Folds the values of an aggregate's argument over a group of rows.
pub fn aggregate(func: Aggregate, values: Vec<Value>, rows: usize, star: bool) -> Val {
    if star {
        return Some(Value::from(rows as u64));
    }
    let values: Vec<Value> = values.into_iter().filter(|v| !v.is_null()).collect();
    match func {
        Aggregate::Count => Some(Value::from(values.len() as u64)),
        Aggregate::Sum | Aggregate::Avg => {
            let numbers: Vec<f64> = values.iter().filter_map(Value::as_f64).collect();
            if numbers.is_empty() {
                return Some(Value::Null);
            }
            let sum: f64 = numbers.iter().sum();
            if func == Aggregate::Sum {
                number(sum)
            } else {
                number(sum / numbers.len() as f64)
            }
        }
        Aggregate::Min | Aggregate::Max => {
            let pick = values.into_iter().reduce(|a, b| {
                let o = total_order(&Some(a.clone()), &Some(b.clone()));
                match (func, o) {
                    (Aggregate::Min, Ordering::Greater) | (Aggregate::Max, Ordering::Less) => b,
                    _ => a,
                }
            });
            Some(pick.unwrap_or(Value::Null))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env() -> Env<'static> {
        let mut e = Env::new(&[]);
        e.bind(
            "d",
            json!({"a": 1, "s": "abc", "n": null, "l": [1, 2]}),
            true,
        );
        e
    }

    fn name(n: &str) -> Box<Expr> {
        Box::new(Expr::Name(n.into(), Default::default()))
    }

    fn lit(v: Value) -> Box<Expr> {
        Box::new(Expr::Literal(v))
    }

    #[test]
    fn comparisons_are_three_valued_and_typed() {
        let e = env();
        let cmp = |op, a: Box<Expr>, b: Box<Expr>| eval(&Expr::Binary(op, a, b), &e).expect("ok");
        assert_eq!(
            cmp(BinaryOp::Eq, name("a"), lit(json!(1.0))),
            Some(json!(true))
        );
        assert_eq!(
            cmp(BinaryOp::Eq, name("a"), lit(json!("1"))),
            Some(json!(false))
        );
        assert_eq!(cmp(BinaryOp::Lt, name("a"), lit(json!("1"))), None);
        assert_eq!(
            cmp(BinaryOp::Eq, name("n"), lit(json!(1))),
            Some(json!(null))
        );
        assert_eq!(cmp(BinaryOp::Eq, name("zz"), lit(json!(1))), None);
        assert_eq!(
            cmp(BinaryOp::Or, name("zz"), lit(json!(true))),
            Some(json!(true))
        );
        assert_eq!(
            cmp(BinaryOp::And, lit(json!(false)), name("zz")),
            Some(json!(false))
        );
        assert_eq!(
            cmp(BinaryOp::Add, name("a"), lit(json!(1.5))),
            Some(json!(2.5))
        );
        assert_eq!(cmp(BinaryOp::Div, name("a"), lit(json!(0))), None);
    }

    #[test]
    fn like_matches_sql_patterns() {
        assert!(like("abc", "a%", None));
        assert!(like("abc", "%c", None));
        assert!(like("abc", "a_c", None));
        assert!(!like("abc", "a_", None));
        assert!(like("a%c", "a\\%c", Some('\\')));
        assert!(!like("abc", "a\\%c", Some('\\')));
        assert!(like("", "%", None));
        assert!(like("mississippi", "%iss%pi", None));
        assert!(!like(
            &"a".repeat(5000),
            &format!("{}b", "%a".repeat(50)),
            None
        ));
    }

    #[test]
    fn total_order_ranks_types() {
        let vals = [
            None,
            Some(json!(false)),
            Some(json!(-1)),
            Some(json!("a")),
            Some(json!([1])),
        ];
        for w in vals.windows(2) {
            assert_eq!(total_order(&w[0], &w[1]), Ordering::Less);
        }
    }

    #[test]
    fn times_print_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339(1_780_000_000_123_456),
            "2026-05-28T20:26:40.123456Z"
        );
    }
}
