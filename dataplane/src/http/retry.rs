//! The router's retry policy: which answers and failures are retried (Envoy's `retry_on`),
//! and the back-off between tries.

use std::time::Duration;

use http::StatusCode;
use rand::Rng;

use super::error::ProxyError;
use crate::config::route::RetryPolicy;

/// Whether an upstream's answer with this status is retried.
pub(super) fn retry_status(p: &RetryPolicy, status: StatusCode) -> bool {
    let code = status.as_u16();
    (p.on_5xx && code >= 500)
        || (p.on_gateway_error && matches!(code, 502..=504))
        || (p.on_retriable_4xx && code == 409)
        || p.retriable_status_codes.contains(&code)
}

/// Whether a try that got no answer is retried.
pub(super) fn retry_error(p: &RetryPolicy, e: &ProxyError) -> bool {
    match e {
        ProxyError::ConnectFailure(_) => p.on_connect_failure || p.on_5xx || p.on_gateway_error,
        ProxyError::Reset(_) | ProxyError::Protocol(_) => {
            p.on_reset || p.on_5xx || p.on_gateway_error
        }
        ProxyError::Timeout(_) => p.on_5xx || p.on_gateway_error,
        _ => false,
    }
}

/// Envoy's retry back-off: a random time up to base * 2^attempt, capped at max_interval.
pub(super) async fn backoff(retry: Option<&RetryPolicy>, attempt: u32) {
    let Some(r) = retry else { return };
    let ceiling = r
        .base_interval
        .saturating_mul(1u32 << attempt.min(10))
        .min(r.max_interval);
    let ms = rand::rng().random_range(0..=ceiling.as_millis().max(1) as u64);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
