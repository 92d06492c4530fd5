//! Listener -> [`Listener`]: address, listener filters (tls_inspector), filter chains with
//! their match (destination port, server names, transport and application protocols), TLS
//! transport socket, and network filter (http_connection_manager or tcp_proxy).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use xds_types::pb::envoy::config::listener::v3::{
    FilterChain as XdsFilterChain, Listener as XdsListener, ListenerFilter, filter, listener_filter,
};
use xds_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager,
    http_connection_manager::{CodecType, RouteSpecifier},
    http_filter,
};
use xds_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy as XdsTcpProxy, tcp_proxy,
};

use super::access_log::access_logs;
use super::tls::ServerTls;
use super::{
    ConfigError, FieldError, FieldResult, RouteTable, ads_config_source, duration, only_fields,
    socket_addr, unpack, validate,
};
use crate::observe::access_log::AccessLogs;
use chain_match::{chain_match, check_distinct};

mod chain_match;

const HCM: &str =
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const TCP_PROXY: &str = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
const ROUTER: &str = "envoy.extensions.filters.http.router.v3.Router";
const TLS_INSPECTOR: &str = "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector";
const HTTP_INSPECTOR: &str = "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector";
/// Envoy's default `listener_filters_timeout`.
const LISTENER_FILTERS_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    pub chains: Vec<FilterChain>,
    pub default_chain: Option<FilterChain>,
    /// The `envoy.filters.listener.tls_inspector` listener filter is configured: the
    /// ClientHello's SNI and ALPN feed filter chain matching.
    pub tls_inspector: bool,
    /// `listener_filters_timeout` (default 15 s; `None`: disabled by 0). Bounds the listener
    /// filters and the TLS handshake, so a client that stalls is closed.
    pub filters_timeout: Option<Duration>,
    /// The prefix of its stats: `stat_prefix`, else the address as Envoy writes it
    /// (`127.0.0.1_10000`).
    pub stat_prefix: String,
    /// `enable_reuse_port` (default true): with several workers, a socket per worker bound
    /// with SO_REUSEPORT; false, one socket all the workers accept on.
    pub reuse_port: bool,
}

#[derive(Debug, Clone)]
pub struct FilterChain {
    pub name: String,
    pub matcher: ChainMatch,
    /// TLS termination (`transport_socket` envoy.transport_sockets.tls).
    pub tls: Option<Arc<ServerTls>>,
    /// `transport_socket_connect_timeout`: bounds the TLS handshake (else the listener's
    /// filters timeout does).
    pub handshake_timeout: Option<Duration>,
    pub filter: NetworkFilter,
}

/// `filter_chain_match`, for the criteria we support (Envoy's order: destination port, then
/// server name, then transport protocol, then application protocols).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainMatch {
    pub destination_port: Option<u16>,
    /// Lowercased; exact names or `*.` wildcards.
    pub server_names: Vec<String>,
    /// "tls" or "raw_buffer"; `None` matches any.
    pub transport_protocol: Option<String>,
    pub application_protocols: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum NetworkFilter {
    Http(Arc<HttpManager>),
    Tcp(TcpProxy),
}

#[derive(Debug, Clone)]
pub struct HttpManager {
    pub stat_prefix: String,
    pub codec: Codec,
    pub routes: RouteSource,
    pub use_remote_address: bool,
    pub xff_num_trusted_hops: u32,
    pub skip_xff_append: bool,
    pub generate_request_id: bool,
    pub websocket: bool,
    /// `server_name` as the `server` header's value, made once (`None`: not a valid value,
    /// no `server` header).
    pub server_name: Option<http::HeaderValue>,
    pub idle_timeout: Option<Duration>,
    /// How long the listener warms waiting for its RDS routes (`rds.config_source`'s
    /// `initial_fetch_timeout`; `None`: forever).
    pub rds_fetch_timeout: Option<Duration>,
    /// `access_log`; `None` when there is none.
    pub access_log: Option<Arc<AccessLogs>>,
    /// What our HTTP/1 codec needs of the fields above, made once: every connection shares
    /// it rather than keeping a copy (issue 5's memory per idle connection).
    pub http1: Arc<crate::http1::server::Options>,
    /// `http.<stat_prefix>.*`, shared by every manager with the prefix.
    pub stats: Arc<crate::observe::http_stats::HttpStats>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Auto,
    Http1,
    Http2,
}

#[derive(Debug, Clone)]
pub enum RouteSource {
    /// A route configuration by name, from RDS.
    Rds(String),
    Inline(Arc<RouteTable>),
}

#[derive(Debug, Clone)]
pub struct TcpProxy {
    pub stat_prefix: String,
    pub cluster: String,
    pub idle_timeout: Option<Duration>,
    /// `access_log`, written when the connection ends; `None` when there is none.
    pub access_log: Option<Arc<AccessLogs>>,
}

impl TryFrom<&XdsListener> for Listener {
    type Error = ConfigError;

    fn try_from(l: &XdsListener) -> Result<Self, ConfigError> {
        translate(l).map_err(|e| e.of("listener", &l.name))
    }
}

fn translate(l: &XdsListener) -> FieldResult<Listener> {
    validate(l)?;
    only_fields(
        l,
        &[
            "name",
            "address",
            "filter_chains",
            "default_filter_chain",
            "stat_prefix",
            "listener_filters",
            "listener_filters_timeout",
            "enable_reuse_port",
        ],
    )?;
    let address = socket_addr(l.address.as_ref()).map_err(|e| e.within("address"))?;
    let chains = l
        .filter_chains
        .iter()
        .enumerate()
        .map(|(i, c)| {
            chain(c).map_err(|e| named(e, &c.name).within(&format!("filter_chains[{i}]")))
        })
        .collect::<FieldResult<Vec<_>>>()?;
    let default_chain = l
        .default_filter_chain
        .as_ref()
        .map(chain)
        .transpose()
        .map_err(|e| e.within("default_filter_chain"))?;
    let uses_alpn = chains
        .iter()
        .any(|c| !c.matcher.application_protocols.is_empty());
    let mut tls_inspector = false;
    for (i, f) in l.listener_filters.iter().enumerate() {
        let at = format!("listener_filters[{i}]");
        match listener_filter_type(f).map_err(|e| e.within(&at))? {
            TLS_INSPECTOR => tls_inspector = true,
            // http_inspector only tells HTTP versions apart for application_protocols
            // matching on plaintext connections, which we do not do.
            HTTP_INSPECTOR if !uses_alpn => {}
            other => {
                return Err(FieldError::new(
                    at,
                    format!("listener filter {other} is not supported"),
                ));
            }
        }
    }
    check_distinct(&chains)?;
    let filters_timeout = match &l.listener_filters_timeout {
        None => Some(LISTENER_FILTERS_TIMEOUT),
        Some(d) => Some(duration(d)).filter(|d| !d.is_zero()),
    };
    Ok(Listener {
        name: l.name.clone(),
        address,
        chains,
        default_chain,
        tls_inspector,
        filters_timeout,
        stat_prefix: if l.stat_prefix.is_empty() {
            format!("{}_{}", address.ip(), address.port())
        } else {
            l.stat_prefix.clone()
        },
        reuse_port: l.enable_reuse_port.as_ref().is_none_or(|b| b.value),
    })
}

/// Names the filter chain in the reason when it has a name (the path has its index).
fn named(mut e: FieldError, chain: &str) -> FieldError {
    if !chain.is_empty() {
        e.reason = format!("{} (filter chain \"{chain}\")", e.reason);
    }
    e
}

/// A listener filter's typed config name (or the config its well-known name stands for).
fn listener_filter_type(f: &ListenerFilter) -> FieldResult<&'static str> {
    only_fields(f, &["name", "typed_config"])?;
    let ty = match &f.config_type {
        Some(listener_filter::ConfigType::TypedConfig(any)) => {
            xds_types::type_url::message_name(&any.type_url).to_string()
        }
        _ => match f.name.as_str() {
            "envoy.filters.listener.tls_inspector" => TLS_INSPECTOR.to_string(),
            "envoy.filters.listener.http_inspector" => HTTP_INSPECTOR.to_string(),
            other => other.to_string(),
        },
    };
    match ty.as_str() {
        TLS_INSPECTOR => {
            if let Some(listener_filter::ConfigType::TypedConfig(any)) = &f.config_type {
                use xds_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
                let t: TlsInspector = unpack(any).map_err(|e| e.within("typed_config"))?;
                only_fields(&t, &[]).map_err(|e| e.within("typed_config"))?;
            }
            Ok(TLS_INSPECTOR)
        }
        HTTP_INSPECTOR => Ok(HTTP_INSPECTOR),
        _ => Err(FieldError::new(
            "typed_config",
            format!("listener filter \"{}\" ({ty}) is not supported", f.name),
        )),
    }
}

fn chain(c: &XdsFilterChain) -> FieldResult<FilterChain> {
    only_fields(
        c,
        &[
            "filter_chain_match",
            "filters",
            "name",
            "transport_socket",
            "transport_socket_connect_timeout",
        ],
    )?;
    let matcher = match &c.filter_chain_match {
        Some(m) => chain_match(m).map_err(|e| e.within("filter_chain_match"))?,
        None => ChainMatch::default(),
    };
    let tls = match &c.transport_socket {
        Some(ts) => super::tls::downstream(ts).map_err(|e| e.within("transport_socket"))?,
        None => None,
    };
    let [f] = c.filters.as_slice() else {
        return Err(FieldError::new(
            "filters",
            "exactly one network filter (http_connection_manager or tcp_proxy) is supported",
        ));
    };
    let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        return Err(FieldError::new("filters[0].typed_config", "required"));
    };
    let at = "filters[0].typed_config";
    let filter = match xds_types::type_url::message_name(&any.type_url) {
        HCM => NetworkFilter::Http(Arc::new(
            hcm(&unpack(any).map_err(|e| e.within(at))?).map_err(|e| e.within(at))?,
        )),
        TCP_PROXY => NetworkFilter::Tcp(
            tcp(&unpack(any).map_err(|e| e.within(at))?).map_err(|e| e.within(at))?,
        ),
        other => {
            return Err(FieldError::new(
                at,
                format!("network filter {other} is not supported"),
            ));
        }
    };
    Ok(FilterChain {
        name: c.name.clone(),
        matcher,
        tls,
        handshake_timeout: c
            .transport_socket_connect_timeout
            .as_ref()
            .map(duration)
            .filter(|d| !d.is_zero()),
        filter,
    })
}

fn hcm(h: &HttpConnectionManager) -> FieldResult<HttpManager> {
    only_fields(
        h,
        &[
            "codec_type",
            "stat_prefix",
            "http_filters",
            "route_specifier",
            "rds",
            "route_config",
            "use_remote_address",
            "xff_num_trusted_hops",
            "skip_xff_append",
            "generate_request_id",
            "upgrade_configs",
            "server_name",
            "common_http_protocol_options",
            "access_log",
        ],
    )?;
    let codec = match CodecType::try_from(h.codec_type) {
        Ok(CodecType::Auto) => Codec::Auto,
        Ok(CodecType::Http1) => Codec::Http1,
        Ok(CodecType::Http2) => Codec::Http2,
        _ => {
            return Err(FieldError::new(
                "codec_type",
                "only AUTO, HTTP1 and HTTP2 are supported",
            ));
        }
    };
    for (i, f) in h.http_filters.iter().enumerate() {
        let ty = match &f.config_type {
            Some(http_filter::ConfigType::TypedConfig(any)) => {
                xds_types::type_url::message_name(&any.type_url).to_string()
            }
            _ => String::new(),
        };
        if ty != ROUTER {
            return Err(FieldError::new(
                format!("http_filters[{i}]"),
                format!("HTTP filter \"{}\" ({ty}) is not supported yet", f.name),
            ));
        }
    }
    if h.http_filters.last().is_none() {
        return Err(FieldError::new(
            "http_filters",
            "the router filter is required",
        ));
    }
    let mut rds_fetch_timeout = None;
    let routes = match &h.route_specifier {
        Some(RouteSpecifier::Rds(rds)) => {
            only_fields(rds, &["route_config_name", "config_source"])
                .map_err(|e| e.within("rds"))?;
            let source = rds
                .config_source
                .as_ref()
                .ok_or_else(|| FieldError::new("rds.config_source", "required"))?;
            rds_fetch_timeout =
                ads_config_source(source).map_err(|e| e.within("rds.config_source"))?;
            RouteSource::Rds(rds.route_config_name.clone())
        }
        Some(RouteSpecifier::RouteConfig(rc)) => RouteSource::Inline(Arc::new(
            RouteTable::try_from(rc).map_err(|e| FieldError::new("route_config", e.to_string()))?,
        )),
        _ => {
            return Err(FieldError::new(
                "route_specifier",
                "rds or route_config is required",
            ));
        }
    };
    let mut websocket = false;
    for (i, u) in h.upgrade_configs.iter().enumerate() {
        if !u.upgrade_type.eq_ignore_ascii_case("websocket") {
            return Err(FieldError::new(
                format!("upgrade_configs[{i}].upgrade_type"),
                "only websocket is supported",
            ));
        }
        websocket = u.enabled.as_ref().is_none_or(|e| e.value);
    }
    let idle_timeout = h
        .common_http_protocol_options
        .as_ref()
        .and_then(|o| o.idle_timeout.as_ref())
        .map(duration);
    let server_name = if h.server_name.is_empty() {
        Some(http::HeaderValue::from_static("envoy"))
    } else {
        http::HeaderValue::from_str(&h.server_name).ok()
    };
    // Envoy's default connection idle timeout is 1 hour.
    let idle_timeout = idle_timeout
        .or(Some(Duration::from_secs(3600)))
        .filter(|d| !d.is_zero());
    let access_log = access_logs(&h.access_log)?;
    let http1 = Arc::new(crate::http::http1_options(
        server_name.clone(),
        idle_timeout,
        websocket,
        access_log.is_some(),
    ));
    Ok(HttpManager {
        stat_prefix: h.stat_prefix.clone(),
        codec,
        routes,
        use_remote_address: h.use_remote_address.as_ref().is_some_and(|b| b.value),
        xff_num_trusted_hops: h.xff_num_trusted_hops,
        skip_xff_append: h.skip_xff_append,
        generate_request_id: h.generate_request_id.as_ref().is_none_or(|b| b.value),
        websocket,
        server_name,
        idle_timeout,
        rds_fetch_timeout,
        access_log,
        http1,
        stats: crate::observe::http_stats::for_prefix(&h.stat_prefix),
    })
}

fn tcp(t: &XdsTcpProxy) -> FieldResult<TcpProxy> {
    only_fields(
        t,
        &[
            "stat_prefix",
            "cluster_specifier",
            "cluster",
            "idle_timeout",
            "access_log",
        ],
    )?;
    let cluster = match &t.cluster_specifier {
        Some(tcp_proxy::ClusterSpecifier::Cluster(c)) => c.clone(),
        _ => {
            return Err(FieldError::new(
                "cluster",
                "a cluster is required (weighted_clusters is not supported yet)",
            ));
        }
    };
    let idle_timeout = match &t.idle_timeout {
        // Envoy's default tcp_proxy idle timeout is 1 hour; 0 disables it.
        None => Some(Duration::from_secs(3600)),
        Some(d) => Some(duration(d)).filter(|d| !d.is_zero()),
    };
    Ok(TcpProxy {
        stat_prefix: t.stat_prefix.clone(),
        cluster,
        idle_timeout,
        access_log: access_logs(&t.access_log)?,
    })
}
