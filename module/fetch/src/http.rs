//! One HTTP exchange with bounded retries: connection errors, timeouts, and 5xx, 408 and
//! 429 answers are retried with a doubling back-off; every other answer is returned as is.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Client, RequestBuilder, StatusCode};

use crate::{FetchError, FetchErrorKind, FetchOptions};

/// The HTTP client of one fetch or push.
pub(crate) struct Http {
    client: Client,
    retries: u32,
    backoff: Duration,
    max_bytes: u64,
    pub(crate) insecure: bool,
}

/// A whole answer.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Whether an answer with this status is worth asking again: server errors (5xx), request
/// timeouts (408) and rate limiting (429). Other client errors (4xx) are final.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// Whether a failed request is worth sending again: it could not connect, timed out, or
/// broke off while sending or reading. A request that could not be built is final.
fn is_retryable_error(err: &reqwest::Error) -> bool {
    !err.is_builder() && (err.is_connect() || err.is_timeout() || err.is_request() || err.is_body())
}

/// Whether a failure is the server's certificate being refused: asking again would not
/// help.
fn is_certificate_error(text: &str) -> bool {
    text.contains("certificate")
}

/// An error and its sources on one line.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

impl Http {
    pub(crate) fn new(
        options: &FetchOptions,
        ca_pem: Option<&[u8]>,
    ) -> Result<Http, FetchErrorKind> {
        let mut builder = Client::builder()
            .use_rustls_tls()
            .user_agent(concat!("wasmbridge/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout);
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                FetchErrorKind::Tls(format!("the CA file is not PEM: {}", chain(&e)))
            })?;
            if certs.is_empty() {
                return Err(FetchErrorKind::Tls(
                    "the CA file holds no certificate".into(),
                ));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| {
            FetchErrorKind::Tls(format!("cannot make the HTTP client: {}", chain(&e)))
        })?;
        Ok(Http {
            client,
            retries: options.retries,
            backoff: options.backoff,
            max_bytes: options.max_bytes,
            insecure: options.insecure,
        })
    }

    /// The largest answer accepted.
    pub(crate) fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Sends the request `make` builds (again at each retry) and reads the whole answer.
    pub(crate) async fn exchange(
        &self,
        url: &str,
        make: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Reply, FetchErrorKind> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt > self.retries;
            let failure = match self.once(make(&self.client)).await {
                Ok(reply) if last || !is_retryable_status(reply.status.as_u16()) => {
                    return Ok(reply);
                }
                Ok(reply) => format!("answered {}", reply.status),
                Err(Failure::Final(kind)) => return Err(kind),
                Err(Failure::Retryable(message)) if last => {
                    return Err(FetchErrorKind::Network {
                        url: url.to_string(),
                        attempts: attempt,
                        message,
                    });
                }
                Err(Failure::Retryable(message)) => message,
            };
            let wait = self.backoff.saturating_mul(1 << (attempt - 1).min(16));
            tracing::warn!(
                url,
                attempt,
                retry_in_ms = wait.as_millis() as u64,
                "{failure}; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    async fn once(&self, request: RequestBuilder) -> Result<Reply, Failure> {
        let failed = |e: reqwest::Error| {
            let text = chain(&e);
            if is_certificate_error(&text) {
                Failure::Final(FetchErrorKind::Tls(format!(
                    "{text} (a private CA is trusted through `server.module_ca_file`, \
                     `--ca-file` or WASMBRIDGE_CA_FILE)"
                )))
            } else if is_retryable_error(&e) {
                Failure::Retryable(text)
            } else {
                Failure::Final(FetchErrorKind::Refused(text))
            }
        };
        let mut response = request.send().await.map_err(failed)?;
        let too_large = || {
            Failure::Final(FetchErrorKind::Unsupported(format!(
                "the answer is larger than the {} bytes accepted",
                self.max_bytes
            )))
        };
        if response
            .content_length()
            .is_some_and(|n| n > self.max_bytes)
        {
            return Err(too_large());
        }
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() as u64 + chunk.len() as u64 > self.max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// The body of a plain GET that must succeed.
    pub(crate) async fn download(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let reply = self
            .exchange(url, |c| c.get(url))
            .await
            .map_err(|kind| FetchError::new(url, kind))?;
        match reply.status {
            StatusCode::OK => Ok(reply.body),
            StatusCode::NOT_FOUND => Err(FetchError::new(
                url,
                FetchErrorKind::NotFound(format!("{url} answered 404")),
            )),
            status => Err(FetchError::new(url, status_error(url, status, &reply.body))),
        }
    }
}

enum Failure {
    Retryable(String),
    Final(FetchErrorKind),
}

/// An unexpected answer, with the start of its body.
pub(crate) fn status_error(url: &str, status: StatusCode, body: &[u8]) -> FetchErrorKind {
    let text = String::from_utf8_lossy(body);
    let text: String = text.trim().chars().take(300).collect();
    FetchErrorKind::Status {
        url: url.to_string(),
        status: status.as_u16(),
        detail: if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_and_rate_limits_are_retried_client_errors_are_not() {
        for status in [500, 502, 503, 504, 599, 408, 429] {
            assert!(is_retryable_status(status), "{status}");
        }
        for status in [200, 201, 301, 400, 401, 403, 404, 409, 410, 413] {
            assert!(!is_retryable_status(status), "{status}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_retried_then_reported_with_the_attempts() {
        // A port nothing listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let mut options = FetchOptions::new(std::env::temp_dir());
        options.retries = 2;
        options.backoff = Duration::from_millis(1);
        let http = Http::new(&options, None).expect("client");
        let url = format!("http://127.0.0.1:{port}/m.wasm");
        let err = http.download(&url).await.expect_err("nothing listens");
        match err.kind() {
            FetchErrorKind::Network { attempts, .. } => assert_eq!(*attempts, 3),
            other => panic!("{other:?}"),
        }
    }
}
