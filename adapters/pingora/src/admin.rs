//! The admin listener:
//!
//! | path | answer |
//! |---|---|
//! | `GET /healthz` | `200 ok`: the process runs |
//! | `GET /ready` | `200` once the listeners serve with their plugins started, `503` before and while shutting down |
//! | `GET /metrics` | Prometheus text |
//! | `GET /plugins` | JSON: each plugin of the current generation, generations still draining, the last reload |
//! | `GET /config` | the running config file, secrets redacted |
//! | `POST /reload` | reloads the config file: `200` with the new generation, or `500` with every error |
//!
//! With `admin.token` set, every request but `/healthz` and `/ready` needs
//! `Authorization: Bearer <token>` (`401` otherwise).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use async_trait::async_trait;
use http::{Method, Response};
use pingora::apps::http_app::{HttpServer, ServeHttp};
use pingora::protocols::http::ServerSession;
use pingora::services::listening::Service;
use prometheus::{Encoder, TextEncoder};
use serde_json::{Value, json};
use wasmbridge_config::AdminConfig;

use crate::reload::Reloader;

struct Admin {
    reloader: Arc<Reloader>,
    token: Option<String>,
}

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_default()
}

fn text(status: u16, body: impl Into<String>) -> Response<Vec<u8>> {
    reply(status, "text/plain", body.into().into_bytes())
}

fn json_reply(status: u16, value: &Value) -> Response<Vec<u8>> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    reply(status, "application/json", body)
}

/// Seconds since the Unix epoch, for JSON.
fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Compares without stopping at the first difference, so the time taken says nothing
/// about how much of the token a guess got right.
fn same_token(given: &[u8], token: &[u8]) -> bool {
    given.len() == token.len() && given.iter().zip(token).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}

impl Admin {
    fn authorized(&self, session: &ServerSession) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .is_some_and(|given| same_token(given, token.as_bytes()))
    }

    fn metrics(&self) -> Response<Vec<u8>> {
        let mut out = Vec::new();
        let encoder = TextEncoder::new();
        let registry = self.reloader.registry();
        match encoder.encode(&registry.gather(), &mut out) {
            Ok(()) => reply(200, encoder.format_type(), out),
            Err(e) => text(500, format!("cannot encode metrics: {e}\n")),
        }
    }

    fn plugins(&self) -> Response<Vec<u8>> {
        let current = self.reloader.current();
        let plugins: Vec<Value> = current
            .plugins
            .iter()
            .map(|p| {
                let info = p.module_info();
                let pool = p.pool_state();
                let (failures, last_error) = p.failures();
                let config = current.config.plugin(p.name());
                json!({
                    "name": p.name(),
                    "root_id": config.map(|c| c.root_id.as_str()),
                    "vm_id": config.map(|c| c.vm_id.as_str()),
                    "module": {
                        "source": p.module_path().display().to_string(),
                        "sha256": p.module_sha256(),
                    },
                    "abi": info.abi.to_string(),
                    "isolation": format!("{:?}", p.isolation()).to_lowercase(),
                    "failure_policy": p.failure_policy().to_string(),
                    "replicas": pool.replicas,
                    "busy": pool.busy,
                    "streams": pool.each.iter().map(|r| r.streams).sum::<usize>(),
                    "served": pool.each.iter().map(|r| r.served).sum::<u64>(),
                    "failures": failures,
                    "last_error": last_error,
                    "shares_vm_with": p.vm_tenants().into_iter().filter(|t| *t != p.name()).collect::<Vec<_>>(),
                })
            })
            .collect();
        let status = self.reloader.status();
        json_reply(
            200,
            &json!({
                "generation": current.id,
                "loaded_at": unix(current.loaded_at),
                "config": current.config.source.display().to_string(),
                "plugins": plugins,
                "draining_generations": self.reloader.draining(),
                "last_reload": {
                    "at": status.at.map(unix),
                    "trigger": status.trigger,
                    "ok": status.at.is_some() && status.errors.is_empty(),
                    "errors": status.errors,
                    "succeeded": status.succeeded,
                    "failed": status.failed,
                },
            }),
        )
    }

    fn config(&self) -> Response<Vec<u8>> {
        let current = self.reloader.current();
        let Some(source) = &current.text else {
            return text(
                404,
                format!(
                    "{}: the configuration was not read from a file\n",
                    current.config.source.display()
                ),
            );
        };
        match redacted(source) {
            Ok(yaml) => reply(200, "application/yaml", yaml.into_bytes()),
            Err(e) => text(500, format!("cannot render the configuration: {e}\n")),
        }
    }

    async fn reload(&self) -> Response<Vec<u8>> {
        let reloader = self.reloader.clone();
        let done = tokio::task::spawn_blocking(move || reloader.reload("admin")).await;
        match done {
            Ok(Ok(reloaded)) => json_reply(
                200,
                &json!({"ok": true, "generation": reloaded.generation, "plugins": reloaded.plugins}),
            ),
            Ok(Err(errors)) => json_reply(
                500,
                &json!({
                    "ok": false,
                    "generation": self.reloader.current().id,
                    "errors": errors,
                }),
            ),
            Err(e) => json_reply(500, &json!({"ok": false, "errors": [e.to_string()]})),
        }
    }
}

/// Keys whose values `/config` hides, wherever they appear (plugin configurations too):
/// the name contains one of these, case-insensitively.
const SECRET_KEYS: [&str; 7] = [
    "token",
    "secret",
    "password",
    "passwd",
    "authorization",
    "api_key",
    "credential",
];

/// The YAML text with the values of secret-looking keys and of environment variables
/// replaced by `<redacted>`.
fn redacted(source: &str) -> Result<String, serde_yaml::Error> {
    fn walk(value: &mut serde_yaml::Value, hide: bool) {
        match value {
            serde_yaml::Value::Mapping(map) => {
                for (k, v) in map.iter_mut() {
                    let key = k.as_str().unwrap_or_default().to_ascii_lowercase();
                    let secret = hide || SECRET_KEYS.iter().any(|s| key.contains(s));
                    // Environment values given to plugins are often credentials.
                    if key == "key_values" || (secret && !v.is_mapping() && !v.is_sequence()) {
                        *v = serde_yaml::Value::String("<redacted>".into());
                    } else {
                        walk(v, secret);
                    }
                }
            }
            serde_yaml::Value::Sequence(items) => items.iter_mut().for_each(|v| walk(v, hide)),
            serde_yaml::Value::Tagged(tagged) => walk(&mut tagged.value, hide),
            other if hide => *other = serde_yaml::Value::String("<redacted>".into()),
            _ => {}
        }
    }
    let mut value: serde_yaml::Value = serde_yaml::from_str(source)?;
    walk(&mut value, false);
    serde_yaml::to_string(&value)
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        let method = session.req_header().method.clone();
        match path.as_str() {
            "/healthz" => return text(200, "ok\n"),
            "/ready" => {
                let current = self.reloader.current();
                return if self.reloader.ready.load(Ordering::Acquire) {
                    text(200, format!("ready (generation {})\n", current.id))
                } else {
                    text(503, "not ready\n")
                };
            }
            _ => {}
        }
        if !self.authorized(session) {
            return Response::builder()
                .status(401)
                .header("www-authenticate", "Bearer")
                .header("content-type", "text/plain")
                .header("content-length", 13)
                .body(b"unauthorized\n".to_vec())
                .unwrap_or_default();
        }
        match (method, path.as_str()) {
            (Method::GET, "/metrics") => self.metrics(),
            (Method::GET, "/plugins") => self.plugins(),
            (Method::GET, "/config") => self.config(),
            (Method::POST, "/reload") => self.reload().await,
            (_, "/metrics" | "/plugins" | "/config") => text(405, "use GET\n"),
            (_, "/reload") => text(405, "use POST\n"),
            _ => text(
                404,
                "not found; try /healthz, /ready, /metrics, /plugins, /config or POST /reload\n",
            ),
        }
    }
}

/// The admin service of `admin`, over the gateway's `reloader`.
pub(crate) fn admin_service(
    admin: AdminConfig,
    reloader: Arc<Reloader>,
) -> Service<HttpServer<impl ServeHttp + Send + Sync>> {
    let mut service = Service::new(
        "wasmbridge-admin".to_string(),
        HttpServer::new_app(Admin {
            reloader,
            token: admin.token,
        }),
    );
    service.add_tcp(&admin.address.to_string());
    service.threads = Some(1);
    service
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_environment_values_are_redacted() {
        let yaml = "admin: {address: 127.0.0.1:9901, token: hunter2}\n\
                    plugins:\n\
                    - name: auth\n\
                    \x20 configuration: {api_key: abc, nested: {client_secret: s, user: u}, headers: [x]}\n\
                    \x20 environment_variables: {key_values: {DB_URL: postgres://u:p@h}}\n";
        let out = redacted(yaml).expect("yaml");
        for secret in ["hunter2", "abc", "client_secret: s", "postgres"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("user: u"), "{out}");
        assert!(out.contains("address: 127.0.0.1:9901"), "{out}");
        assert!(out.matches("<redacted>").count() >= 4, "{out}");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token(b"abc", b"abc"));
        assert!(!same_token(b"abd", b"abc"));
        assert!(!same_token(b"ab", b"abc"));
        assert!(!same_token(b"", b"abc"));
    }
}
