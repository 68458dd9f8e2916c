//! The pgwire frontend messages a client can send Bowman, decoded as Bowman's server decodes
//! them (pgwire's `PgWireFrontendMessage::decode` with the connection's state, as its server
//! codec does): SSL/GSS negotiation, startup (and its parameters, which become the client's
//! date and interval styles), SASL initial and continuation responses fed to pgwire's SCRAM
//! server, simple query, Parse/Bind (and the decoding of the bound parameters by their types,
//! as Bowman's extended-query handler does it with arrow-pg), Describe, Execute, Close and COPY
//! data. Any byte stream must end in messages or errors, never a panic: a panic here is a
//! connection dropped without an ErrorResponse.
//!
//! The first byte picks where the stream starts (a fresh connection, after an SSLRequest was
//! answered, or an authenticated session); the rest is the stream.
#![no_main]

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use libfuzzer_sys::fuzz_target;
use pgwire::api::Type;
use pgwire::api::auth::Password;
use pgwire::api::auth::sasl::scram::{ScramServerAuth, ScramServerAuthWaitingForClientFinal, gen_salted_password};
use pgwire::api::portal::Portal;
use pgwire::api::stmt::StoredStatement;
use pgwire::messages::{DecodeContext, PgWireFrontendMessage, ProtocolVersion, SslNegotiationMetaMessage};
use pgwire::types::format::FormatOptions;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    AwaitingSsl,
    AwaitingStartup,
    Authenticating,
    Ready,
}

/// The salted password the SCRAM exchange checks proofs against (hashed once: 4096 rounds).
fn expected_password() -> Password {
    static SALTED: std::sync::LazyLock<Vec<u8>> =
        std::sync::LazyLock::new(|| gen_salted_password("fuzz-password", b"bowman-fuzz-salt", 4096));
    Password::new(Some(b"bowman-fuzz-salt".to_vec()), SALTED.clone())
}

thread_local! {
    static IN_PGWIRE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs pgwire's own code (decoding a message, SASL and SCRAM) as Bowman's server runs it: a
/// panic there is caught and answered with FATAL 08P01, and the connection closed (`Startup`
/// in server/src/pgwire.rs for authentication, `protocol_violation` for the connection's
/// decoder and everything else in the connection task). `None` is that answer. Panics
/// anywhere else still abort the fuzzer. pgwire 0.41.1 does panic on a Bind or
/// SASLInitialResponse whose lengths run past the message, and on a Bind with fewer parameter
/// formats than parameters (fuzz/corpus/pgwire_frontend/crash-*).
fn in_pgwire<T>(f: impl FnOnce() -> T) -> Option<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        // libFuzzer's hook aborts on every panic; let the ones Bowman catches unwind.
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_PGWIRE.with(|c| c.get()) {
                report(info)
            }
        }));
    });
    IN_PGWIRE.with(|c| c.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    IN_PGWIRE.with(|c| c.set(false));
    result.ok()
}

/// The types DataFusion would infer for parameters the client sent no type for.
const INFERRED: &[DataType] = &[
    DataType::Int64,
    DataType::Utf8,
    DataType::Float64,
    DataType::Boolean,
    DataType::Date32,
    DataType::Timestamp(TimeUnit::Microsecond, None),
    DataType::Int32,
    DataType::Decimal128(38, 10),
    DataType::Binary,
];

fuzz_target!(|data: &[u8]| {
    let Some((&start, stream)) = data.split_first() else { return };
    let mut state = match start % 3 {
        0 => State::AwaitingSsl,
        1 => State::AwaitingStartup,
        _ => State::Ready,
    };
    let mut buf = BytesMut::from(stream);
    let mut ctx = DecodeContext::default();
    let mut metadata: HashMap<String, String> = HashMap::new();
    let mut scram: Option<ScramServerAuthWaitingForClientFinal> = None;
    let mut parameter_types: Vec<Option<Type>> = Vec::new();
    for _ in 0..256 {
        ctx.awaiting_frontend_ssl = state == State::AwaitingSsl;
        ctx.awaiting_frontend_startup = matches!(state, State::AwaitingSsl | State::AwaitingStartup);
        let message = match in_pgwire(|| PgWireFrontendMessage::decode(&mut buf, &ctx)) {
            Some(Ok(Some(m))) => m,
            // Incomplete (the server waits for more), refused or answered with 08P01 (the
            // server closes).
            Some(Ok(None) | Err(_)) | None => return,
        };
        match message {
            PgWireFrontendMessage::SslNegotiation(m) => {
                // A refused or accepted SSLRequest and a bare startup all lead to the startup.
                if matches!(m, SslNegotiationMetaMessage::None) && state != State::AwaitingSsl {
                    return;
                }
                state = State::AwaitingStartup;
            }
            PgWireFrontendMessage::Startup(startup) => {
                match ProtocolVersion::from_version_number(startup.protocol_number_major, startup.protocol_number_minor) {
                    Some(v) => ctx.protocol_version = v,
                    None if startup.protocol_number_major == 3 => ctx.protocol_version = ProtocolVersion::default(),
                    None => return,
                }
                metadata.extend(startup.parameters.clone());
                // Bowman formats dates, intervals and floats by the client's startup settings.
                let _ = FormatOptions::from_client_metadata(&metadata);
                state = State::Authenticating;
            }
            PgWireFrontendMessage::CancelRequest(_) => return,
            PgWireFrontendMessage::PasswordMessageFamily(p) => {
                if state != State::Authenticating {
                    return;
                }
                match scram.take() {
                    None => {
                        let first = in_pgwire(|| {
                            let initial = p.into_sasl_initial_response().ok()?;
                            let client_first = initial.data.as_ref()?;
                            ScramServerAuth::new().on_client_first_message(client_first, expected_password()).ok()
                        });
                        let Some(Some((server_first, waiting))) = first else { return };
                        assert!(server_first.starts_with("r="), "server-first {server_first:?}");
                        scram = Some(waiting);
                    }
                    Some(waiting) => {
                        let accepted = in_pgwire(|| {
                            let response = p.into_sasl_response().ok()?;
                            waiting.on_client_final_message(&response.data).ok().map(|_| response.data)
                        });
                        // A forged proof must be refused; the fuzzer cannot know the password.
                        if let Some(Some(data)) = accepted {
                            panic!("SCRAM accepted a client-final without the password: {data:?}");
                        }
                        return;
                    }
                }
            }
            _ if state != State::Ready => return,
            PgWireFrontendMessage::Query(q) => {
                let _ = bowman_sql::parser::leading_keyword(&q.query);
            }
            PgWireFrontendMessage::Parse(parse) => {
                parameter_types = parse.type_oids.iter().map(|oid| Type::from_oid(*oid)).collect();
                let _ = bowman_sql::parser::leading_keyword(&parse.query);
            }
            PgWireFrontendMessage::Bind(bind) => {
                let statement = Arc::new(StoredStatement::new(
                    bind.statement_name.clone().unwrap_or_default(),
                    (),
                    parameter_types.clone(),
                ));
                let Ok(portal) = Portal::try_new(&bind, statement) else { continue };
                let inferred: Vec<Option<&DataType>> =
                    (0..portal.parameters.len()).map(|i| Some(&INFERRED[i % INFERRED.len()])).collect();
                // Bowman's extended-query handler decodes the parameters with arrow-pg, which
                // indexes pgwire's per-parameter formats: a Bind with fewer format codes than
                // parameters (but more than one) panics in pgwire (Format::format_for), inside
                // the connection task, so the server's catch answers it with FATAL 08P01
                // (fuzz/corpus/pgwire_frontend/crash-bind-fewer-formats-than-parameters).
                // Binary arrays are checked first, as the server checks them: postgres-types
                // reserves room for the element count a header declares, and a failed
                // allocation aborts the process (fuzz/corpus/pgwire_frontend/oom-bind-array-*).
                if bowman_server::pgwire::check_array_parameters(&portal, &inferred).is_err() {
                    continue;
                }
                let _ = in_pgwire(|| arrow_pg::datatypes::df::deserialize_parameters(&portal, &inferred));
            }
            PgWireFrontendMessage::CopyData(copy) => {
                let _ = copy.data.len();
            }
            PgWireFrontendMessage::Terminate(_) => return,
            _ => {}
        }
    }
});
