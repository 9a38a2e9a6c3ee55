//! The admin listener: `/metrics` (Prometheus text) and `/healthz`.

use std::net::SocketAddr;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::{HttpServer, ServeHttp};
use pingora::protocols::http::ServerSession;
use pingora::services::listening::Service;
use prometheus::{Encoder, Registry, TextEncoder};

struct Admin {
    registry: Registry,
}

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/healthz" => reply(200, "text/plain", b"ok\n".to_vec()),
            "/metrics" => {
                let mut out = Vec::new();
                let encoder = TextEncoder::new();
                match encoder.encode(&self.registry.gather(), &mut out) {
                    Ok(()) => reply(200, encoder.format_type(), out),
                    Err(e) => reply(
                        500,
                        "text/plain",
                        format!("cannot encode metrics: {e}\n").into_bytes(),
                    ),
                }
            }
            _ => reply(
                404,
                "text/plain",
                b"not found; try /metrics or /healthz\n".to_vec(),
            ),
        }
    }
}

/// The admin service on `address`, exposing `registry`.
pub(crate) fn admin_service(
    address: SocketAddr,
    registry: Registry,
) -> Service<HttpServer<impl ServeHttp + Send + Sync>> {
    let mut service = Service::new(
        "wasmbridge-admin".to_string(),
        HttpServer::new_app(Admin { registry }),
    );
    service.add_tcp(&address.to_string());
    service.threads = Some(1);
    service
}
