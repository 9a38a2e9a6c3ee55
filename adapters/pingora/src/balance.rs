//! A cluster's endpoints behind one of Pingora's load balancers — round robin, random or
//! consistent (Ketama) hashing — with optional active HTTP health checks that take an
//! endpoint out of rotation and bring it back, and the upstream connection settings
//! (timeouts, HTTP/2, TLS) every peer of the cluster gets.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use pingora::lb::health_check::HttpHealthCheck;
use pingora::lb::selection::{Consistent, Random, RoundRobin};
use pingora::lb::{Backend, LoadBalancer};
use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{WrappedX509, parse_x509};
use wasmbridge_config::{ClusterConfig, HealthCheck, LbPolicy};

/// Endpoints found by a search that gives up after this many candidates.
const MAX_ITERATIONS: usize = 256;

/// A cluster's load balancer, of the policy its config names.
#[derive(Clone)]
pub enum Balancer {
    /// `round_robin`.
    RoundRobin(Arc<LoadBalancer<RoundRobin>>),
    /// `random`.
    Random(Arc<LoadBalancer<Random>>),
    /// `consistent_hash`.
    Hash(Arc<LoadBalancer<Consistent>>),
}

impl Balancer {
    /// The balancer of `cluster`'s endpoints, with its health check set when it has one
    /// (checks run from [`Balancer::check_every`]). The error names the endpoint.
    pub fn new(cluster: &ClusterConfig) -> Result<Balancer, String> {
        let endpoints = cluster.endpoints.iter().map(String::as_str);
        fn with_check<S>(
            lb: std::io::Result<LoadBalancer<S>>,
            cluster: &ClusterConfig,
        ) -> Result<Arc<LoadBalancer<S>>, String>
        where
            S: pingora::lb::selection::BackendSelection + 'static,
            S::Iter: pingora::lb::selection::BackendIter,
        {
            let mut lb = lb.map_err(|e| e.to_string())?;
            if let Some(hc) = &cluster.health_check {
                lb.set_health_check(health_check(hc, cluster));
            }
            Ok(Arc::new(lb))
        }
        Ok(match &cluster.lb_policy {
            LbPolicy::RoundRobin => {
                Balancer::RoundRobin(with_check(LoadBalancer::try_from_iter(endpoints), cluster)?)
            }
            LbPolicy::Random => {
                Balancer::Random(with_check(LoadBalancer::try_from_iter(endpoints), cluster)?)
            }
            LbPolicy::ConsistentHash(_) => {
                Balancer::Hash(with_check(LoadBalancer::try_from_iter(endpoints), cluster)?)
            }
        })
    }

    /// The endpoint for a request: the first healthy one by the policy (`key` is what a
    /// consistent hash hashes; the others ignore it) that `skip` does not refuse.
    pub fn select(&self, key: &[u8], skip: impl Fn(&SocketAddr) -> bool) -> Option<SocketAddr> {
        let accept =
            |b: &Backend, healthy: bool| healthy && b.addr.as_inet().is_some_and(|a| !skip(a));
        let backend = match self {
            Balancer::RoundRobin(lb) => lb.select_with(key, MAX_ITERATIONS, accept),
            Balancer::Random(lb) => lb.select_with(key, MAX_ITERATIONS, accept),
            Balancer::Hash(lb) => lb.select_with(key, MAX_ITERATIONS, accept),
        }?;
        backend.addr.as_inet().copied()
    }

    /// Checks every endpoint once.
    async fn check(&self) {
        match self {
            Balancer::RoundRobin(lb) => lb.backends().run_health_check(true).await,
            Balancer::Random(lb) => lb.backends().run_health_check(true).await,
            Balancer::Hash(lb) => lb.backends().run_health_check(true).await,
        }
    }

    /// A handle that does not keep the balancer alive (health-check tasks hold it).
    fn downgrade(&self) -> WeakBalancer {
        match self {
            Balancer::RoundRobin(lb) => WeakBalancer::RoundRobin(Arc::downgrade(lb)),
            Balancer::Random(lb) => WeakBalancer::Random(Arc::downgrade(lb)),
            Balancer::Hash(lb) => WeakBalancer::Hash(Arc::downgrade(lb)),
        }
    }

    /// Health-checks the endpoints every `interval` on `runtime`, for as long as the
    /// balancer is in use; the first round runs at once.
    pub fn check_every(&self, interval: Duration, runtime: &tokio::runtime::Handle) {
        let weak = self.downgrade();
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(lb) = weak.upgrade() else { return };
                lb.check().await;
            }
        });
    }
}

enum WeakBalancer {
    RoundRobin(Weak<LoadBalancer<RoundRobin>>),
    Random(Weak<LoadBalancer<Random>>),
    Hash(Weak<LoadBalancer<Consistent>>),
}

impl WeakBalancer {
    fn upgrade(&self) -> Option<Balancer> {
        Some(match self {
            WeakBalancer::RoundRobin(w) => Balancer::RoundRobin(w.upgrade()?),
            WeakBalancer::Random(w) => Balancer::Random(w.upgrade()?),
            WeakBalancer::Hash(w) => Balancer::Hash(w.upgrade()?),
        })
    }
}

/// Pingora's HTTP health check for `hc`: `GET path` with the cluster's TLS; a 2xx passes.
fn health_check(
    hc: &HealthCheck,
    cluster: &ClusterConfig,
) -> Box<dyn pingora::lb::health_check::HealthCheck + Send + Sync + 'static> {
    let tls = cluster.tls.as_ref();
    let host = tls
        .and_then(|t| t.sni.clone())
        .unwrap_or_else(|| "localhost".to_string());
    let mut check = HttpHealthCheck::new(&host, tls.is_some());
    if let Ok(req) = pingora::http::RequestHeader::build("GET", hc.path.as_bytes(), None) {
        let mut req = req;
        let _ = req.append_header("host", host.as_str());
        let _ = req.append_header("user-agent", "wasmbridge-health-check");
        check.req = req;
    }
    check.peer_template.options.connection_timeout = Some(hc.timeout.min(cluster.connect_timeout));
    check.peer_template.options.read_timeout = Some(hc.timeout);
    check.peer_template.options.total_connection_timeout = Some(hc.timeout);
    if let Some(tls) = tls {
        check.peer_template.options.verify_cert = tls.verify;
        check.peer_template.options.verify_hostname = tls.verify;
    }
    check.consecutive_success = hc.healthy_threshold as usize;
    check.consecutive_failure = hc.unhealthy_threshold as usize;
    check.validator = Some(Box::new(|resp: &pingora::http::ResponseHeader| {
        if resp.status.is_success() {
            Ok(())
        } else {
            pingora::Error::e_explain(
                pingora::ErrorType::CustomCode("health check status", resp.status.as_u16()),
                "the endpoint answered the health check with a non-2xx status",
            )
        }
    }));
    Box::new(check)
}

/// A cluster as requests and callouts reach it: its balancer, its settings and the CA
/// certificates its TLS trusts. Cheap to clone.
#[derive(Clone)]
pub struct Endpoints {
    /// The load balancer over the endpoints.
    pub balancer: Balancer,
    /// The cluster's settings.
    pub config: Arc<ClusterConfig>,
    ca: Option<Arc<CaType>>,
    /// Keeps the cluster's pooled connections to itself: Pingora's reuse key leaves the
    /// CA out, so two clusters of one address with different trust must not share them.
    group: u64,
}

impl Endpoints {
    /// The balancer and TLS trust of `cluster`; the error says what could not be loaded.
    pub fn new(cluster: &ClusterConfig) -> Result<Endpoints, String> {
        let ca = match cluster.tls.as_ref().and_then(|t| t.ca.as_ref()) {
            None => None,
            Some(path) => Some(load_ca(path)?),
        };
        let group = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            cluster.name.hash(&mut h);
            format!("{:?}", cluster.tls).hash(&mut h);
            cluster.http2.hash(&mut h);
            h.finish()
        };
        Ok(Endpoints {
            balancer: Balancer::new(cluster)?,
            config: Arc::new(cluster.clone()),
            ca,
            group,
        })
    }

    /// The peer of one connection attempt to `addr`: the cluster's timeouts, HTTP version
    /// and TLS.
    pub fn peer(&self, addr: SocketAddr) -> HttpPeer {
        let cluster = &self.config;
        let (tls, sni) = match &cluster.tls {
            Some(tls) => (
                true,
                tls.sni.clone().unwrap_or_else(|| addr.ip().to_string()),
            ),
            None => (false, String::new()),
        };
        let mut peer = HttpPeer::new(addr, tls, sni);
        peer.group_key = self.group;
        peer.options.connection_timeout = Some(cluster.connect_timeout);
        peer.options.read_timeout = Some(cluster.read_timeout);
        if let Some(tls) = &cluster.tls {
            peer.options.verify_cert = tls.verify;
            peer.options.verify_hostname = tls.verify;
            peer.options.ca = self.ca.clone();
            if cluster.http2 {
                // Over TLS, HTTP/2 when the endpoint offers it by ALPN.
                peer.options.set_http_version(2, 1);
            }
        } else if cluster.http2 {
            peer.options.set_http_version(2, 2);
        }
        peer
    }
}

/// The certificates of a PEM file, as the upstream TLS's trust anchors.
fn load_ca(path: &std::path::Path) -> Result<Arc<CaType>, String> {
    let mut certs = Vec::new();
    for der in crate::tls::pem_certificates(path).map_err(|e| format!("tls.ca {e}"))? {
        let raw = der.as_ref().to_vec();
        // Pingora's parser panics on a malformed certificate; refuse it instead.
        let parsed = std::panic::catch_unwind(|| WrappedX509::new(raw, parse_x509))
            .map_err(|_| format!("tls.ca {}: a certificate is malformed", path.display()))?;
        certs.push(parsed);
    }
    Ok(Arc::from(certs))
}
