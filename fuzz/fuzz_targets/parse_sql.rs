//! Bowman's SQL dialect parser (`bowman_sql::parse_sql`) on any text, as the pgwire and Flight
//! SQL front ends call it on a client's statement: it must answer with statements or with an
//! error that has a SQLSTATE (and a position inside the text), never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Front ends only ever hand the parser UTF-8 (pgwire decodes the message first).
    let Ok(sql) = std::str::from_utf8(data) else { return };
    // How front ends tell a query from a command before parsing.
    let _ = bowman_sql::parser::leading_keyword(sql);
    match bowman_sql::parse_sql(sql) {
        Ok(statements) => {
            for s in &statements {
                // Statements are logged and shown (EXPLAIN, errors) through Debug and Display.
                let _ = format!("{s:?}");
                if let bowman_sql::Statement::Standard(s) = s {
                    let _ = s.to_string();
                }
            }
        }
        Err(e) => {
            // What the ErrorResponse is built from.
            let code = e.code();
            assert_eq!(code.len(), 5, "SQLSTATE {code:?} for {e:?}");
            assert_ne!(code, "XX000", "a statement that does not parse is not an internal error: {e:?}");
            let _ = e.message();
            if let Some(p) = e.position() {
                assert!(p >= 1 && p <= sql.chars().count() + 1, "position {p} outside the statement: {e:?}");
            }
        }
    }
});
