//! The reference values of `scripts/torch_families.py` (PyTorch, float64; mpmath for
//! trigamma), committed in `tests/data/torch_families.json`, for the tests that compare
//! against them.

/// The whole reference file.
pub fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/torch_families.json"
    ))
    .expect("tests/data/torch_families.json");
    serde_json::from_str(&text).expect("valid JSON")
}

/// One column of numbers (JSON has no NaN or infinities: those are the strings `NaN`,
/// `inf`, `-inf`).
pub fn column(v: &serde_json::Value, key: &str) -> Vec<f64> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no column {key}"))
        .iter()
        .map(|x| match x.as_str() {
            Some(name) => name.parse::<f64>().expect("NaN, inf or -inf"),
            None => x.as_f64().expect("a number"),
        })
        .collect()
}
