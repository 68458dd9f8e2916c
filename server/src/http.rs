//! The HTTP endpoint: `GET /health` for load balancers and orchestrators, `GET /metrics` for
//! Prometheus (text exposition format 0.0.4; see docs/observability.md).

use std::convert::Infallible;
use std::sync::Arc;

use bowman_sql::Engine;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What Prometheus expects a text exposition to be served as.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn handle(engine: Arc<Engine>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/metrics" {
        let (status, body) = match req.method() {
            &Method::GET => (StatusCode::OK, bowman_sql::metrics::render(&engine)),
            _ => (StatusCode::METHOD_NOT_ALLOWED, "use GET\n".to_string()),
        };
        return Ok(Response::builder()
            .status(status)
            .header("content-type", METRICS_CONTENT_TYPE)
            .body(Full::new(Bytes::from(body)))
            .expect("valid response"));
    }
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/health") => match engine.catalog().store().version().await {
            Ok(v) => (StatusCode::OK, format!("{{\"status\":\"ok\",\"catalog_version\":{v}}}\n")),
            Err(e) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{{\"status\":\"unavailable\",\"error\":{}}}\n", json_string(&e.to_string())),
            ),
        },
        (_, "/health") => (StatusCode::METHOD_NOT_ALLOWED, "{\"error\":\"use GET\"}\n".to_string()),
        _ => (StatusCode::NOT_FOUND, "{\"error\":\"not found\"}\n".to_string()),
    };
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("valid response"))
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Serve until `shutdown` flips to true.
pub async fn serve(listener: TcpListener, engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let engine = engine.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(engine.clone(), req));
                    if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                        tracing::debug!(error = %e, "http connection ended");
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
}
