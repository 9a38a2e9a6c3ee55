//! Encoding `configuration` and `vm_configuration` into the bytes a plugin receives, the way
//! Envoy encodes its `Any`: a string raw, structured values as JSON text.

use serde::ser::{Error as _, Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_yaml::Value;

/// Where in the value something cannot be encoded (relative to the value) and why.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PayloadError {
    pub key_path: String,
    pub message: String,
}

/// Serializes a YAML value as JSON with mapping keys in file order (a `serde_json::Value`
/// would sort them).
struct AsJson<'a>(&'a Value);

/// The bytes passed to the plugin for a `configuration`-like value.
pub(crate) fn encode(value: Option<&Value>) -> Result<Vec<u8>, PayloadError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(text.clone().into_bytes()),
        Some(value) => {
            check_json(value, &mut String::new())?;
            serde_json::to_vec(&AsJson(value)).map_err(|err| PayloadError {
                key_path: String::new(),
                message: format!("cannot be encoded as JSON: {err}"),
            })
        }
    }
}

/// Finds the first part of `value` JSON cannot express, naming its path so the error
/// points at it; `AsJson` then never fails.
fn check_json(value: &Value, path: &mut String) -> Result<(), PayloadError> {
    let fail = |path: &str, message: String| {
        Err(PayloadError {
            key_path: path.to_owned(),
            message,
        })
    };
    match value {
        Value::Null | Value::Bool(_) | Value::String(_) => Ok(()),
        Value::Number(number) => {
            if number.is_f64() && number.as_f64().is_some_and(|f| !f.is_finite()) {
                fail(path, format!("`{number}` cannot be represented in JSON"))
            } else {
                Ok(())
            }
        }
        Value::Sequence(items) => {
            for (index, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{index}]"));
                check_json(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Mapping(mapping) => {
            for (key, item) in mapping {
                let Value::String(key) = key else {
                    return fail(
                        path,
                        format!(
                            "mapping key `{}` is not a string; JSON needs string keys (quote it)",
                            describe(key)
                        ),
                    );
                };
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                check_json(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Tagged(tagged) => fail(
            path,
            format!("YAML tag `{}` cannot be represented in JSON", tagged.tag),
        ),
    }
}

/// A short rendering of a YAML value for messages.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Sequence(_) => "[...]".to_owned(),
        Value::Mapping(_) => "{...}".to_owned(),
        Value::Tagged(tagged) => format!("{} ...", tagged.tag),
    }
}

impl Serialize for AsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Number(number) => {
                if let Some(n) = number.as_u64() {
                    serializer.serialize_u64(n)
                } else if let Some(n) = number.as_i64() {
                    serializer.serialize_i64(n)
                } else if let Some(n) = number.as_f64() {
                    serializer.serialize_f64(n)
                } else {
                    Err(S::Error::custom(format!("unsupported number `{number}`")))
                }
            }
            Value::String(s) => serializer.serialize_str(s),
            Value::Sequence(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&AsJson(item))?;
                }
                seq.end()
            }
            Value::Mapping(mapping) => {
                let mut map = serializer.serialize_map(Some(mapping.len()))?;
                for (key, item) in mapping {
                    let Value::String(key) = key else {
                        return Err(S::Error::custom("mapping key is not a string"));
                    };
                    map.serialize_entry(key, &AsJson(item))?;
                }
                map.end()
            }
            Value::Tagged(_) => Err(S::Error::custom("YAML tags cannot be represented in JSON")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap_or_else(|err| panic!("bad test YAML: {err}"))
    }

    fn encoded(text: &str) -> String {
        let bytes = encode(Some(&yaml(text))).unwrap_or_else(|err| panic!("{err:?}"));
        String::from_utf8(bytes).unwrap_or_else(|err| panic!("{err}"))
    }

    #[test]
    fn scalars() {
        assert_eq!(encode(None), Ok(Vec::new()));
        assert_eq!(encoded("~"), "");
        assert_eq!(encoded("''"), "");
        assert_eq!(encoded("plain text"), "plain text");
        assert_eq!(encoded("'{\"raw\": 1}'"), "{\"raw\": 1}");
        assert_eq!(encoded("42"), "42");
        assert_eq!(encoded("-7"), "-7");
        assert_eq!(encoded("1.5"), "1.5");
        assert_eq!(encoded("true"), "true");
    }

    #[test]
    fn structures_keep_file_order_and_escape() {
        assert_eq!(
            encoded("{zeta: 1, alpha: [x, 2, null, false], \"q\\\"uote\": \"é\\n\"}"),
            r#"{"zeta":1,"alpha":["x",2,null,false],"q\"uote":"é\n"}"#
        );
    }

    #[test]
    fn non_string_key_names_its_path() {
        let err = encode(Some(&yaml("{outer: [{ok: 1}, {1: x}]}")));
        assert_eq!(
            err,
            Err(PayloadError {
                key_path: "outer[1]".into(),
                message: "mapping key `1` is not a string; JSON needs string keys (quote it)"
                    .into(),
            })
        );
        let err = encode(Some(&yaml("{true: x}"))).map_err(|e| e.key_path);
        assert_eq!(err, Err(String::new()));
    }

    #[test]
    fn tags_and_non_finite_numbers_are_rejected() {
        let err = encode(Some(&yaml("{a: !env HOME}"))).map_err(|e| e.key_path);
        assert_eq!(err, Err("a".into()));
        let err = encode(Some(&yaml("[1, .nan]"))).map_err(|e| e.key_path);
        assert_eq!(err, Err("[1]".into()));
        let err = encode(Some(&yaml("{b: .inf}"))).map_err(|e| e.key_path);
        assert_eq!(err, Err("b".into()));
    }
}
