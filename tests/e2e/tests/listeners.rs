//! TLS and HTTP/2 listeners served to real clients, and clusters with several endpoints:
//! load-balancing policies, active health checks, retries, a total timeout and TLS to the
//! endpoints — all through the real gateway and real servers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use wasmbridge_e2e::{Gateway, Proto, Reply, filter, free_port, get, scratch, send, serve};

/// A self-signed certificate for `localhost` and 127.0.0.1, written as `<stem>.pem` and
/// `<stem>.key` into `dir`.
fn certificate(dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf, Vec<u8>)> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
    let (pem, key) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&pem, cert.cert.pem())?;
    std::fs::write(&key, cert.key_pair.serialize_pem())?;
    Ok((pem, key, cert.cert.der().to_vec()))
}

/// A rustls client that trusts only `der` and offers `alpn`.
fn client(der: &[u8], alpn: &[&[u8]]) -> Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(der.to_vec()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// One GET over TLS to `addr`; returns the negotiated ALPN protocol and the reply.
async fn get_tls(
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    path: &str,
) -> Result<(Option<Vec<u8>>, Reply)> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let tls = connector.connect(name, tcp).await?;
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let io = TokioIo::new(tls);
    let url = format!("https://localhost:{}{path}", addr.port());
    let resp = if alpn.as_deref() == Some(b"h2") {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        sender.send_request(get(&url, &[])).await?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        sender.send_request(get(&url, &[])).await?
    };
    let version = resp.version();
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_bytes();
    let mut headers = parts.headers;
    headers.insert("x-test-version", format!("{version:?}").parse()?);
    Ok((
        alpn,
        Reply {
            status: parts.status,
            headers,
            body,
            trailers: None,
        },
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listeners_serve_http1_and_h2_and_renew_their_certificate_on_reload() -> Result<()> {
    let dir = scratch("tls-listener-certs");
    let (pem, key, first) = certificate(&dir, "first")?;
    let (live_pem, live_key) = (dir.join("live.pem"), dir.join("live.key"));
    std::fs::copy(&pem, &live_pem)?;
    std::fs::copy(&key, &live_key)?;
    let yaml = format!(
        r#"
server: {{threads: 1, watch: false}}
listeners:
  - address: "{{listen}}"
    tls: {{cert: {}, key: {}}}
admin: {{address: "{{admin}}"}}
plugins:
  - name: stamp
    root_id: add_header
    module: {}
    configuration: {{headers: {{x-served: tls}}}}
routes:
  - match: {{prefix: /}}
    direct_response: {{status: 200, body: "hello over tls\n"}}
    plugins: [stamp]
"#,
        live_pem.display(),
        live_key.display(),
        filter("add_header")
    );
    let gw = Gateway::start("tls-listener", &yaml, None).await?;

    // HTTP/2 by ALPN, and HTTP/1.1 for a client that offers only that.
    let h2 = client(&first, &[b"h2", b"http/1.1"])?;
    let (alpn, reply) = get_tls(gw.addr, &h2, "/a").await?;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "{}", gw.log_text());
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-test-version"), "HTTP/2.0");
    assert_eq!(reply.header("x-served"), "tls");
    assert_eq!(&reply.body[..], b"hello over tls\n");
    let h1 = client(&first, &[b"http/1.1"])?;
    let (alpn, reply) = get_tls(gw.addr, &h1, "/b").await?;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(
        (reply.status.as_u16(), reply.header("x-test-version")),
        (200, "HTTP/1.1")
    );
    assert_eq!(reply.header("x-served"), "tls");
    // Cleartext to a TLS listener gets no HTTP answer.
    assert!(
        send(gw.addr, Proto::H1, get(&gw.url("/"), &[]))
            .await
            .is_err()
    );

    // A renewed certificate is served after a reload; the old one no longer.
    let (pem2, key2, second) = certificate(&dir, "second")?;
    std::fs::copy(&pem2, &live_pem)?;
    std::fs::copy(&key2, &live_key)?;
    let reload = gw.admin("POST", "/reload", None).await?;
    assert_eq!(
        reload.status,
        200,
        "{}",
        String::from_utf8_lossy(&reload.body)
    );
    let (_, reply) = get_tls(gw.addr, &client(&second, &[b"h2"])?, "/c").await?;
    assert_eq!(reply.status, 200);
    // (A new client: one that resumes an earlier session skips the certificate.)
    let fresh = client(&first, &[b"h2"])?;
    assert!(
        get_tls(gw.addr, &fresh, "/d").await.is_err(),
        "the old certificate is still served"
    );

    // A key that does not match fails the reload, and the listener keeps its certificate.
    std::fs::copy(&key, &live_key)?;
    let reload = gw.admin("POST", "/reload", None).await?;
    assert_eq!(reload.status, 500);
    assert!(
        reload.json()["errors"]
            .to_string()
            .contains("listeners[0].tls"),
        "{:?}",
        reload.json()
    );
    let (_, reply) = get_tls(gw.addr, &client(&second, &[b"h2"])?, "/e").await?;
    assert_eq!(reply.status, 200);
    Ok(())
}

/// An upstream that names itself in `x-endpoint` and answers `/healthz` with 200 while
/// `healthy` holds, 503 otherwise.
async fn endpoint(name: &'static str, healthy: Arc<AtomicBool>) -> Result<SocketAddr> {
    let (addr, _task) = serve(move |req: Request<Incoming>| {
        let healthy = healthy.clone();
        async move {
            let status = if req.uri().path() == "/healthz" && !healthy.load(Ordering::Relaxed) {
                503
            } else {
                200
            };
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .header("x-endpoint", name)
                    .body(Full::new(Bytes::from_static(b"ok\n")))
                    .expect("response"),
            )
        }
    })
    .await?;
    Ok(addr)
}

fn clusters_yaml(clusters: &str, routes: &str) -> String {
    format!(
        r#"
server: {{threads: 1, watch: false}}
listeners: [{{address: "{{listen}}"}}]
admin: {{address: "{{admin}}"}}
clusters:
{clusters}
routes:
{routes}
"#
    )
}

async fn endpoint_of(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Result<String> {
    let reply = send(gw.addr, Proto::H1, get(&gw.url(path), headers)).await?;
    ensure!(
        reply.status == 200,
        "{path}: {} {}",
        reply.status,
        gw.log_text()
    );
    Ok(reply.header("x-endpoint").to_string())
}

/// Sends requests until `n` in a row satisfy `done`, or fails after 20 s.
async fn until_in_a_row(
    gw: &Gateway,
    n: usize,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut run = 0;
    while run < n {
        ensure!(
            Instant::now() < deadline,
            "{what}: not reached\n{}",
            gw.log_text()
        );
        let e = endpoint_of(gw, "/", &[]).await?;
        run = if done(&e) { run + 1 } else { 0 };
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_endpoint_leaves_the_rotation_and_comes_back() -> Result<()> {
    let b_healthy = Arc::new(AtomicBool::new(true));
    let a = endpoint("a", Arc::new(AtomicBool::new(true))).await?;
    let b = endpoint("b", b_healthy.clone()).await?;
    let yaml = clusters_yaml(
        &format!(
            "  - name: backend\n    endpoints: [\"{a}\", \"{b}\"]\n    health_check: {{path: /healthz, interval_ms: 50, timeout_ms: 500}}"
        ),
        "  - match: {prefix: /}\n    cluster: backend",
    );
    let gw = Gateway::start("health-checks", &yaml, None).await?;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        seen.insert(endpoint_of(&gw, "/", &[]).await?);
    }
    assert_eq!(seen.len(), 2, "round robin over both: {seen:?}");

    b_healthy.store(false, Ordering::Relaxed);
    // Once a check saw b fail, every request goes to a.
    until_in_a_row(&gw, 20, "b taken out", |e| e == "a").await?;
    b_healthy.store(true, Ordering::Relaxed);
    until_in_a_row(&gw, 1, "b brought back", |e| e == "b").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_retried_on_the_next_endpoint() -> Result<()> {
    let live = endpoint("live", Arc::new(AtomicBool::new(true))).await?;
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let yaml = clusters_yaml(
        &format!(
            "  - name: retried\n    endpoints: [\"{dead}\", \"{live}\"]\n    retries: 1\n  - name: once\n    endpoints: [\"{dead}\", \"{live}\"]"
        ),
        "  - match: {prefix: /retried}\n    cluster: retried\n  - match: {prefix: /once}\n    cluster: once",
    );
    let gw = Gateway::start("retries", &yaml, None).await?;
    for _ in 0..10 {
        assert_eq!(endpoint_of(&gw, "/retried", &[]).await?, "live");
    }
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let reply = send(gw.addr, Proto::H1, get(&gw.url("/once"), &[])).await?;
        statuses.push(reply.status.as_u16());
    }
    // Round robin without retries: every other request meets the dead endpoint.
    assert!(
        statuses.contains(&502) && statuses.contains(&200),
        "{statuses:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hashing_keeps_a_key_on_one_endpoint_and_random_spreads() -> Result<()> {
    let up = Arc::new(AtomicBool::new(true));
    let (a, b, c) = (
        endpoint("a", up.clone()).await?,
        endpoint("b", up.clone()).await?,
        endpoint("c", up.clone()).await?,
    );
    let yaml = clusters_yaml(
        &format!(
            "  - name: sticky\n    endpoints: [\"{a}\", \"{b}\", \"{c}\"]\n    lb_policy: consistent_hash\n    hash_on: {{header: x-user}}\n  - name: spread\n    endpoints: [\"{a}\", \"{b}\", \"{c}\"]\n    lb_policy: random\n  - name: by_path\n    endpoints: [\"{a}\", \"{b}\", \"{c}\"]\n    lb_policy: consistent_hash\n    hash_on: {{path: true}}"
        ),
        "  - match: {prefix: /sticky}\n    cluster: sticky\n  - match: {prefix: /spread}\n    cluster: spread\n  - match: {prefix: /by_path}\n    cluster: by_path",
    );
    let gw = Gateway::start("lb-policies", &yaml, None).await?;
    let mut used = std::collections::BTreeSet::new();
    for user in 0..12 {
        let user = format!("user-{user}");
        let first = endpoint_of(&gw, "/sticky", &[("x-user", &user)]).await?;
        for _ in 0..4 {
            assert_eq!(
                endpoint_of(&gw, "/sticky", &[("x-user", &user)]).await?,
                first,
                "{user}"
            );
        }
        used.insert(first);
    }
    assert!(used.len() >= 2, "twelve keys all hashed to {used:?}");
    let mut spread = std::collections::BTreeSet::new();
    for _ in 0..60 {
        spread.insert(endpoint_of(&gw, "/spread", &[]).await?);
    }
    assert_eq!(spread.len(), 3, "{spread:?}");
    // Hashing the path (with its query): one path, one endpoint; many paths, several.
    let mut by_path = std::collections::BTreeSet::new();
    for n in 0..12 {
        let path = format!("/by_path/item?id={n}");
        let first = endpoint_of(&gw, &path, &[]).await?;
        for _ in 0..3 {
            assert_eq!(endpoint_of(&gw, &path, &[]).await?, first, "{path}");
        }
        by_path.insert(first);
    }
    assert!(by_path.len() >= 2, "twelve paths all hashed to {by_path:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_exchange_past_its_total_timeout_gets_504() -> Result<()> {
    let (slow, _task) = serve(|req: Request<Incoming>| async move {
        if req.uri().path() == "/slow" {
            // The upstream takes its time; the gateway's clock decides.
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"late\n"))))
    })
    .await?;
    let yaml = clusters_yaml(
        &format!("  - name: slow\n    endpoints: [\"{slow}\"]\n    total_timeout_ms: 100"),
        "  - match: {prefix: /}\n    cluster: slow",
    );
    let gw = Gateway::start("total-timeout", &yaml, None).await?;
    let fast = send(gw.addr, Proto::H1, get(&gw.url("/fast"), &[])).await?;
    assert_eq!(fast.status, 200);
    let late = send(gw.addr, Proto::H1, get(&gw.url("/slow"), &[])).await?;
    assert_eq!(late.status, 504, "{}", gw.log_text());
    Ok(())
}

/// An HTTPS upstream (HTTP/1.1 and h2 by ALPN) with a certificate from [`certificate`].
async fn tls_upstream(dir: &Path) -> Result<(SocketAddr, PathBuf)> {
    let (pem, key, _) = certificate(dir, "upstream")?;
    let certs = rustls_pem_certs(&std::fs::read(&pem)?)?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(&key)?)?.serialize_der(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("x-upstream-version", format!("{:?}", req.version()))
                            .body(Full::new(Bytes::from_static(b"secure\n")))
                            .expect("response"),
                    )
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok((addr, pem))
}

fn rustls_pem_certs(pem: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .context("certificate PEM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_speak_tls_and_h2_to_their_endpoints() -> Result<()> {
    let dir = scratch("upstream-tls");
    let (upstream, ca) = tls_upstream(&dir).await?;
    let yaml = clusters_yaml(
        &format!(
            "  - name: trusted\n    endpoints: [\"{upstream}\"]\n    tls: {{sni: localhost, ca: {}}}\n  - name: h2\n    endpoints: [\"{upstream}\"]\n    http2: true\n    tls: {{sni: localhost, ca: {}}}\n  - name: untrusted\n    endpoints: [\"{upstream}\"]\n    tls: {{sni: localhost}}\n  - name: unverified\n    endpoints: [\"{upstream}\"]\n    tls: {{verify: false}}",
            ca.display(),
            ca.display()
        ),
        "  - match: {prefix: /trusted}\n    cluster: trusted\n  - match: {prefix: /h2}\n    cluster: h2\n  - match: {prefix: /untrusted}\n    cluster: untrusted\n  - match: {prefix: /unverified}\n    cluster: unverified",
    );
    let gw = Gateway::start("upstream-tls", &yaml, None).await?;
    let trusted = send(gw.addr, Proto::H1, get(&gw.url("/trusted"), &[])).await?;
    assert_eq!(trusted.status, 200, "{}", gw.log_text());
    assert_eq!(&trusted.body[..], b"secure\n");
    assert_eq!(trusted.header("x-upstream-version"), "HTTP/1.1");
    let h2 = send(gw.addr, Proto::H1, get(&gw.url("/h2"), &[])).await?;
    assert_eq!(
        (h2.status.as_u16(), h2.header("x-upstream-version")),
        (200, "HTTP/2.0")
    );
    // A certificate nobody vouches for is refused, unless verification is off.
    let untrusted = send(gw.addr, Proto::H1, get(&gw.url("/untrusted"), &[])).await?;
    assert_eq!(untrusted.status, 502);
    let unverified = send(gw.addr, Proto::H1, get(&gw.url("/unverified"), &[])).await?;
    assert_eq!(unverified.status, 200);
    Ok(())
}
