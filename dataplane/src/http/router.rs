//! The router: from a request to a response. Route, then act: a direct response, a redirect,
//! or forward to a cluster's host with the route's timeout and retry policy.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Body as _;
use rand::Rng;

use super::Downstream;
use super::error::{ProxyError, classify};
use super::hash::{self, RequestHash};
use super::headers;
use super::idle::IdleBody;
use super::reply::{fail, full, set_server};
use super::retry::{backoff, retry_error, retry_status};
use super::rewrite::{redirect_reply, rewritten_path};
use crate::config::listener::{HttpManager, RouteSource};
use crate::config::route::{Action, ClusterTarget, Forward, Route, RouteTable, VirtualHost};
use crate::http1::server::BodyRefusal;
use crate::http1::upgrade::OnUpgrade;
use crate::observe::access_log::body::{Counted, Pending};
use crate::observe::access_log::entry::Probe;
use crate::observe::access_log::{BodyCount, Entry};
use crate::runtime::{Runtime, Snapshot};
use crate::upstream::cluster::{ActiveRequest, Slot};
use crate::upstream::outlier;
use crate::upstream::pool::{self, Body};

/// The largest request body kept for retries (Envoy's default per-connection buffer limit).
const RETRY_BUFFER_LIMIT: u64 = 1024 * 1024;

/// Handles one request; never fails: errors become Envoy's local replies. With access logs,
/// what happens is recorded in an [`Entry`] that is written when the response body ends.
pub async fn handle(
    req: Request<Body>,
    downstream: Downstream,
    hcm: &HttpManager,
    runtime: &Runtime,
) -> Response<Body> {
    let Some(logs) = &hcm.access_log else {
        return respond(req, downstream, hcm, runtime, &mut None).await;
    };
    let body_refusal = req.extensions().get::<BodyRefusal>().cloned();
    let mut pending = Pending::new(Entry::new(downstream.clone()), logs.clone(), body_refusal);
    let response = respond(req, downstream, hcm, runtime, &mut pending.entry).await;
    pending.respond(response)
}

/// What the access log is told as the request goes (nothing without access logs).
pub(super) type Log = Option<Box<Entry>>;

async fn respond(
    req: Request<Body>,
    downstream: Downstream,
    hcm: &HttpManager,
    runtime: &Runtime,
    log: &mut Log,
) -> Response<Body> {
    let snapshot = runtime.load();
    let table = match &hcm.routes {
        RouteSource::Rds(name) => snapshot.config.routes.get(name).cloned(),
        RouteSource::Inline(t) => Some(t.clone()),
    };
    let (mut parts, body) = req.into_parts();
    // The connection manager's own headers come before routing, as in Envoy (a route may
    // match on x-forwarded-proto; the access log sees the x-request-id).
    if let Some(e) = log {
        e.downstream.peer = headers::client_address(&parts.headers, &downstream, hcm);
    }
    headers::forwarded(&mut parts.headers, &downstream, hcm);
    if let Some(e) = log {
        let wanted = hcm
            .access_log
            .as_ref()
            .map_or(&[][..], |l| &l.request_headers[..]);
        e.capture_request(&parts, wanted);
        if body.is_end_stream() {
            e.request_end = Some(e.elapsed());
        }
        e.request_length = body.size_hint().exact();
    }
    // Borrowed from shared copies (a reference count each), not copied into a String.
    let host_header = parts.headers.get(http::header::HOST).cloned();
    let authority = parts.uri.authority().cloned();
    let host: &str = host_header
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .or(authority.as_ref().map(|a| a.as_str()))
        .unwrap_or_default();
    let Some(table) = table else {
        return fail(hcm, &ProxyError::NoRoute, &[], &downstream, log);
    };
    let Some(vhost) = table.vhost(host) else {
        return fail(hcm, &ProxyError::NoRoute, &[], &downstream, log);
    };
    let Some(route) = vhost.route(&parts) else {
        return fail(hcm, &ProxyError::NoRoute, &[], &downstream, log);
    };
    if let Some(e) = log {
        e.route_name = Some(route.name.clone()).filter(|n| !n.is_empty());
        e.details = Some("via_upstream".into());
    }
    let levels = [&route.headers, &vhost.headers, &table.headers];
    let mut response = match &route.action {
        Action::Direct { status, body } => {
            if let Some(e) = log {
                e.details = Some("direct_response".into());
            }
            let mut r = Response::new(full(body.clone()));
            *r.status_mut() = *status;
            if !body.is_empty() {
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain"),
                );
            }
            r
        }
        Action::Redirect(redirect) => {
            if let Some(e) = log {
                e.details = Some("direct_response".into());
            }
            redirect_reply(redirect, &parts, host, route, &downstream)
        }
        Action::Forward(fwd) => {
            let request = Request::from_parts(parts, body);
            match forward(
                request,
                &downstream,
                hcm,
                &snapshot,
                &table,
                vhost,
                route,
                fwd,
                log,
            )
            .await
            {
                Ok(r) => r,
                Err(e) => return fail(hcm, &e, &levels, &downstream, log),
            }
        }
    };
    headers::apply_response(response.headers_mut(), &levels, &downstream);
    set_server(response.headers_mut(), hcm);
    response
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    req: Request<Body>,
    downstream: &Downstream,
    hcm: &HttpManager,
    snapshot: &Snapshot,
    table: &Arc<RouteTable>,
    vhost: &VirtualHost,
    route: &Route,
    fwd: &Forward,
    log: &mut Log,
) -> Result<Response<Body>, ProxyError> {
    let started = Instant::now();
    let cluster_name: &str = match &fwd.target {
        ClusterTarget::Name(n) => n,
        ClusterTarget::Weighted(list) => weighted(list),
        ClusterTarget::Header(h) => match req.headers().get(h).and_then(|v| v.to_str().ok()) {
            Some(v) => v,
            None => return Err(ProxyError::NoRoute),
        },
    };
    let cluster = snapshot
        .clusters
        .get(cluster_name)
        .ok_or_else(|| ProxyError::NoCluster(cluster_name.to_string()))?;
    if let Some(e) = log {
        e.upstream_cluster = Some(cluster_name.to_string());
    }
    let (mut parts, body) = req.into_parts();
    let upgrade = hcm.websocket && parts.headers.get(http::header::UPGRADE).is_some();
    // The downstream half of an upgrade; taken out of the extensions before they are cloned
    // per try (it is not Clone), spliced to the upstream half once both sides said 101.
    let mut downstream_upgrade = parts.extensions.remove::<OnUpgrade>().filter(|_| upgrade);
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    headers::apply_request(
        &mut parts.headers,
        &[&route.headers, &vhost.headers, &table.headers],
        downstream,
    );
    // Hashed on the request as it arrived (before rewrites), as Envoy's router does.
    let request_hash = if fwd.hash_policy.is_empty() {
        RequestHash::default()
    } else {
        hash::compute(
            &fwd.hash_policy,
            &parts.headers,
            parts.uri.path_and_query().map_or("/", |p| p.as_str()),
            downstream.peer,
            downstream.local,
        )
    };
    let path_and_query = rewritten_path(&parts, route, fwd)?;
    if let Some(h) = &fwd.host_rewrite
        && let Ok(v) = HeaderValue::from_str(h)
    {
        parts.headers.insert(http::header::HOST, v);
    }
    if let Some(t) = &fwd.timeout_header {
        parts
            .headers
            .insert(headers::X_ENVOY_EXPECTED_RQ_TIMEOUT_MS, t.clone());
    }
    // A streamed body can be sent once. With a retry policy, a body of known length up to
    // RETRY_BUFFER_LIMIT is kept so every try can send it again (Envoy buffers for retries up
    // to the connection's buffer limit, 1 MiB by default); a larger or chunked one is
    // streamed and the request is not retried.
    let keep = fwd.retry.is_some()
        && !body.is_end_stream()
        && body
            .size_hint()
            .upper()
            .is_some_and(|n| n <= RETRY_BUFFER_LIMIT);
    let (buffered, body) = if keep {
        let collected = body
            .collect()
            .await
            .map_err(|e| ProxyError::BadRequest(format!("downstream body: {e}")))?;
        // Its trailers (HTTP/2) are kept and sent again with every try, as Envoy's router does.
        let trailers = collected.trailers().cloned();
        let bytes = collected.to_bytes();
        if let Some(e) = log {
            e.bytes_received = bytes.len() as u64;
            e.request_end = Some(e.elapsed());
        }
        (Some((bytes, trailers)), None)
    } else {
        (None, Some(body))
    };
    let replayable = buffered.is_some() || body.as_ref().is_some_and(|b| b.is_end_stream());
    // A streamed body is counted, to know whether it ended when the response came (and for
    // the access log).
    let mut streamed = None;
    let mut body = body.map(|b| {
        if b.is_end_stream() {
            return b;
        }
        let count = BodyCount::new();
        streamed = Some(count.clone());
        let started = match log {
            Some(e) => {
                e.request_body = Some(count.clone());
                e.started
            }
            None => Instant::now(),
        };
        Counted::new(b, count, started).map_err(Into::into).boxed()
    });
    let retry = fwd.retry.as_ref().filter(|_| replayable);
    let attempts = retry.map_or(1, |r| r.num_retries + 1);
    let deadline = fwd.timeout.map(|t| started + t);
    let mut last_err = ProxyError::NoHealthyUpstream;
    let breakers = cluster.config.breakers;
    // The retry in flight holds its slot until the next retry or the end.
    let mut retry_slot: Option<Slot> = None;
    for attempt in 0..attempts {
        // Envoy counts the attempt even when no host can be picked.
        if let Some(e) = log {
            e.attempts = attempt + 1;
        }
        let host = cluster
            .pick(request_hash.hash, attempt)
            .ok_or(ProxyError::NoHealthyUpstream)?
            .clone();
        if let Some(e) = log {
            e.upstream_host = Some(host.addr);
        }
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(http::uri::Scheme::HTTP);
        uri.authority = Some(host.authority.clone());
        uri.path_and_query = Some(path_and_query.clone());
        let uri = Uri::from_parts(uri).map_err(|e| ProxyError::BadRequest(e.to_string()))?;
        // The request head is cloned only when another try may need it.
        let head = if attempt + 1 == attempts {
            std::mem::replace(&mut parts, Request::new(()).into_parts().0)
        } else {
            parts.clone()
        };
        let mut upstream = Request::from_parts(
            head,
            match &buffered {
                Some((b, None)) => full(b.clone()),
                Some((b, Some(t))) => Full::new(b.clone())
                    .map_err(|never| match never {})
                    .with_trailers(std::future::ready(Some(Ok(t.clone()))))
                    .boxed(),
                None => body
                    .take()
                    .unwrap_or_else(|| Empty::new().map_err(|never| match never {}).boxed()),
            },
        );
        *upstream.uri_mut() = uri;
        if fwd.auto_host_rewrite
            && let Ok(v) = HeaderValue::from_str(host.authority.as_str())
        {
            upstream.headers_mut().insert(http::header::HOST, v);
        }
        let client = upstream_client(cluster, snapshot, upstream.headers(), host.addr.ip())?;
        if cluster.config.http2 {
            *upstream.version_mut() = http::Version::HTTP_2;
            upstream.headers_mut().remove(http::header::HOST);
        } else {
            *upstream.version_mut() = http::Version::HTTP_11;
        }
        if let Some(e) = log {
            e.upstream_local_probe = Some(upstream_local(&mut upstream, cluster.config.http2));
        }
        // Counted until the response headers (Envoy counts until the stream ends: a response
        // whose body is still streaming is not in flight here).
        let Some(_request_slot) = cluster.in_flight.request(breakers.max_requests) else {
            return Err(ProxyError::Overflow);
        };
        let _active = ActiveRequest::new(host.clone());
        let sent = Instant::now();
        let per_try = retry.and_then(|r| r.per_try_timeout);
        let limit = match (deadline.map(|d| d.saturating_duration_since(sent)), per_try) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // The route's idle timeout also runs while waiting for the response headers (nothing
        // moves then); whichever of the two passes first decides the answer.
        let (limit, idle_first) = match (limit, fwd.idle_timeout) {
            (Some(l), Some(i)) if i < l => (Some(i), true),
            (None, Some(i)) => (Some(i), true),
            (l, _) => (l, false),
        };
        let result = match limit {
            Some(limit) => {
                match tokio::time::timeout(limit, client.request(host.addr, upstream)).await {
                    Ok(r) => r.map_err(classify),
                    Err(_) if idle_first => return Err(ProxyError::StreamIdle),
                    Err(_) => Err(ProxyError::Timeout(limit)),
                }
            }
            None => client.request(host.addr, upstream).await.map_err(classify),
        };
        let last = attempt + 1 == attempts || deadline.is_some_and(|d| Instant::now() >= d);
        if let Some(detector) = &cluster.outlier {
            match &result {
                Ok(resp) => detector.report(&host, resp.status().as_u16()),
                Err(e) => detector.report(
                    &host,
                    outlier::status_of_failure(matches!(e, ProxyError::Timeout(_))),
                ),
            }
        }
        match result {
            Ok(mut resp) => {
                if let Some(e) = log {
                    e.response_start = Some(e.elapsed());
                    if last && attempts > 1 && retry.is_some_and(|r| retry_status(r, resp.status()))
                    {
                        e.flags.insert("URX");
                    }
                }
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS
                    && let Some(down) = downstream_upgrade.take()
                    && let Some(up) = resp.extensions_mut().remove::<OnUpgrade>()
                {
                    splice_upgrade(down, up);
                }
                if !last
                    && retry.is_some_and(|r| retry_status(r, resp.status()))
                    && let Some(slot) = cluster.in_flight.retry(breakers.max_retries)
                {
                    drop(retry_slot.replace(slot));
                    backoff(retry, attempt).await;
                    continue;
                }
                let (mut rparts, rbody) = resp.into_parts();
                headers::strip_hop_by_hop(
                    &mut rparts.headers,
                    rparts.status == StatusCode::SWITCHING_PROTOCOLS,
                );
                // Envoy's router measures it from the end of the request: a response that
                // came before (an upstream answering early) has none.
                if streamed.as_ref().is_none_or(|c| c.has_ended()) {
                    rparts.headers.insert(
                        headers::X_ENVOY_UPSTREAM_SERVICE_TIME,
                        headers::number(sent.elapsed().as_millis() as u64),
                    );
                }
                if let Some(cookie) = &request_hash.set_cookie
                    && let Ok(v) = HeaderValue::from_str(cookie)
                {
                    rparts.headers.append(http::header::SET_COOKIE, v);
                }
                let body = match fwd.idle_timeout {
                    Some(t) => IdleBody::new(rbody, t).boxed(),
                    None => rbody,
                };
                return Ok(Response::from_parts(rparts, body));
            }
            Err(e) => {
                host.failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let may_retry = retry.is_some_and(|r| retry_error(r, &e));
                // The overall route timeout is final; a per-try timeout may be retried.
                if matches!(e, ProxyError::Timeout(_))
                    && deadline.is_some_and(|d| Instant::now() >= d)
                {
                    return Err(ProxyError::Timeout(fwd.timeout.unwrap_or_default()));
                }
                last_err = e;
                if last || !may_retry {
                    return Err(last_err);
                }
                // Past max_retries the retry is not made (Envoy's retry overflow).
                match cluster.in_flight.retry(breakers.max_retries) {
                    Some(slot) => drop(retry_slot.replace(slot)),
                    None => return Err(last_err),
                }
                backoff(retry, attempt).await;
            }
        }
    }
    Err(last_err)
}

/// The pooled client for a cluster's host: plaintext, or TLS with the cluster's current
/// rustls config and the server name for this request (`sni`, or the Host with auto_sni).
fn upstream_client(
    cluster: &crate::upstream::UpstreamCluster,
    snapshot: &Snapshot,
    headers: &http::HeaderMap,
    ip: std::net::IpAddr,
) -> Result<pool::Upstream, ProxyError> {
    let c = &cluster.config;
    let Some(tls) = &c.tls else {
        return Ok(pool::client(c.connect_timeout, c.http2, None));
    };
    // No usable TLS config (its SDS secret has not arrived): no connection can be made.
    let config = crate::tls::client::config(tls, &snapshot.config.secrets)
        .map_err(|e| ProxyError::ConnectFailure(format!("TLS: {e}")))?;
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok());
    let origination = crate::tls::client::Origination {
        config,
        name: crate::tls::client::server_name(tls, host, ip),
        stats: tls.stats.clone(),
    };
    Ok(pool::client(c.connect_timeout, c.http2, Some(origination)))
}

/// Where the access log reads the local address of the connection a request goes out on
/// (it is known once connected, even if the response never comes).
fn upstream_local(request: &mut Request<Body>, http2: bool) -> Probe {
    if !http2 {
        // Our HTTP/1 client records the address of the connection it sends on.
        let slot = crate::http1::client::LocalAddr::default();
        request.extensions_mut().insert(slot.clone());
        return Probe(Box::new(move || slot.get()));
    }
    use hyper_util::client::legacy::connect::{HttpInfo, capture_connection};
    let captured = capture_connection(request);
    Probe(Box::new(move || {
        let connected = captured.connection_metadata();
        let mut extensions = http::Extensions::new();
        connected.as_ref()?.get_extras(&mut extensions);
        extensions.get::<HttpInfo>().map(|i| i.local_addr())
    }))
}

/// Once the downstream connection has sent the 101 on and the upstream one received it,
/// copies bytes both ways until either side closes (Envoy's upgrade handling: after the
/// switch the router is a TCP proxy for the connection).
fn splice_upgrade(downstream: OnUpgrade, upstream: OnUpgrade) {
    tokio::spawn(async move {
        let (mut down, mut up) = match tokio::try_join!(downstream.get(), upstream.get()) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
            tracing::debug!(error = %e, "upgraded connection ended with an error");
        }
    });
}

fn weighted(list: &[(String, u32)]) -> &str {
    let total: u64 = list.iter().map(|(_, w)| u64::from(*w)).sum();
    let mut r = rand::rng().random_range(0..total.max(1));
    for (name, w) in list {
        if r < u64::from(*w) {
            return name;
        }
        r -= u64::from(*w);
    }
    list.last().map_or("", |(n, _)| n.as_str())
}
