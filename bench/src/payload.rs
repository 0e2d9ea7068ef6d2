//! The payloads the scenarios publish.

use serde_json::{Value, json};

/// Payload `i` of a run: about `bytes` of JSON. It carries its index, so a
/// target whose frames have no position of their own (no seq) can read the
/// order from the payload.
pub fn payload(i: usize, bytes: usize) -> Value {
    let base = json!({"i": i, "pad": ""}).to_string().len();
    json!({"i": i, "pad": "x".repeat(bytes.saturating_sub(base))})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_padded_to_the_asked_size() {
        assert_eq!(payload(7, 100).to_string().len(), 100);
        assert_eq!(payload(7, 100)["i"], 7);
        // Smaller than the bare object: no padding, never truncated.
        assert_eq!(payload(12345, 3).to_string(), r#"{"i":12345,"pad":""}"#);
    }
}
