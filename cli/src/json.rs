//! JSON output through serde: one compact object per line, and maps that keep their order.

use serde::ser::{Serialize, SerializeMap, Serializer};

/// `value` as one line of compact JSON.
pub fn json_line(value: &impl Serialize) -> String {
    // The command's structs (string keys, no floats, no maps with other keys) cannot fail to
    // serialize.
    let mut line = serde_json::to_string(value).unwrap_or_default();
    line.push('\n');
    line
}

/// A JSON object with these keys in this order (serde_json's own map would sort them).
pub struct OrderedMap<K, V>(pub Vec<(K, V)>);

impl<K: Serialize, V: Serialize> Serialize for OrderedMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// `impl Serialize` as the string `self.name()`: enums that appear in JSON by the names the
/// table shows (TCP states, roles, verdicts).
macro_rules! serialize_by_name {
    ($($type:ty),+) => {
        $(impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.name())
            }
        })+
    };
}
pub(crate) use serialize_by_name;
