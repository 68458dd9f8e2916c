//! Bowman's type parser (`bowman_sql::types::parse_type`) on any text: the column types of
//! CREATE TABLE, CAST targets and the types stored in the catalog all go through it. It must
//! answer with a type or an error, never panic, and the canonical text it returns (what the
//! catalog stores and SHOW CREATE TABLE prints) must parse back to the same type.
#![no_main]

use bowman_sql::types::parse_type;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse_type(text) {
        Ok((data_type, canonical)) => {
            let (again, canonical_again) = parse_type(&canonical)
                .unwrap_or_else(|e| panic!("canonical text {canonical:?} of {text:?} does not parse: {e:?}"));
            assert_eq!(canonical, canonical_again, "canonical text of {text:?} is not stable");
            // The stored form reads back as the same Arrow type (field names and nesting included).
            assert_eq!(again, data_type, "{text:?} stored as {canonical:?} reads back as another type");
        }
        Err(e) => {
            let code = e.code();
            assert_ne!(code, "XX000", "a bad type is not an internal error: {text:?} -> {e:?}");
        }
    }
});
