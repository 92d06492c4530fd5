//! Cluster `outlier_detection` -> [`OutlierDetection`]: Envoy's passive health checking
//! (outlier_detection.proto), with its defaults filled in.
//!
//! Local-origin errors (connect failures, resets, timeouts) are counted as the 5xx codes
//! Envoy maps them to, as it does without `split_external_local_origin_errors`; a split is
//! refused. The local-origin thresholds only act with the split, so they are read and inert,
//! as in Envoy.

use std::time::Duration;

use xds_types::pb::envoy::config::cluster::v3::OutlierDetection as XdsOutlierDetection;

use xds_types::pb::google::protobuf::UInt32Value;

use super::{FieldError, FieldResult, duration, only_fields};

#[derive(Debug, Clone, PartialEq)]
pub struct OutlierDetection {
    /// How often ejections are reviewed: ejected hosts come back and success rates are
    /// judged (`interval`, 10 s).
    pub interval: Duration,
    /// An ejection lasts this times the host's ejection count (`base_ejection_time`, 30 s)...
    pub base_ejection_time: Duration,
    /// ...up to this (`max_ejection_time`: 300 s, or `base_ejection_time` if longer)...
    pub max_ejection_time: Duration,
    /// ...plus a random part up to this (`max_ejection_time_jitter`, 0).
    pub max_ejection_time_jitter: Duration,
    /// At most this percent of the cluster's hosts are ejected at once (10).
    pub max_ejection_percent: u32,
    /// One host may always be ejected, whatever `max_ejection_percent` says (false).
    pub always_eject_one_host: bool,
    /// Consecutive 5xx answers that eject a host (5), and the percent chance that a
    /// detection is enforced (100).
    pub consecutive_5xx: u32,
    pub enforcing_consecutive_5xx: u32,
    /// Consecutive 502, 503 and 504 answers (5); enforced 0% of the time by default: counted,
    /// not ejected.
    pub consecutive_gateway_failure: u32,
    pub enforcing_consecutive_gateway_failure: u32,
    /// Success-rate ejection, judged each interval over the hosts with enough requests.
    pub success_rate_minimum_hosts: u32,
    pub success_rate_request_volume: u32,
    /// A host is an outlier below mean - factor/1000 x stdev (1900).
    pub success_rate_stdev_factor: u32,
    pub enforcing_success_rate: u32,
    /// Failure-percentage ejection (enforced 0% by default).
    pub failure_percentage_threshold: u32,
    pub failure_percentage_minimum_hosts: u32,
    pub failure_percentage_request_volume: u32,
    pub enforcing_failure_percentage: u32,
    /// A passing active health check brings an ejected host back (true).
    pub successful_active_health_check_uneject_host: bool,
}

impl Default for OutlierDetection {
    /// Envoy's defaults (outlier_detection.proto, outlier_detection_impl.h).
    fn default() -> Self {
        OutlierDetection {
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_time_jitter: Duration::ZERO,
            max_ejection_percent: 10,
            always_eject_one_host: false,
            consecutive_5xx: 5,
            enforcing_consecutive_5xx: 100,
            consecutive_gateway_failure: 5,
            enforcing_consecutive_gateway_failure: 0,
            success_rate_minimum_hosts: 5,
            success_rate_request_volume: 100,
            success_rate_stdev_factor: 1900,
            enforcing_success_rate: 100,
            failure_percentage_threshold: 85,
            failure_percentage_minimum_hosts: 5,
            failure_percentage_request_volume: 50,
            enforcing_failure_percentage: 0,
            successful_active_health_check_uneject_host: true,
        }
    }
}

pub fn translate(o: &XdsOutlierDetection) -> FieldResult<OutlierDetection> {
    only_fields(
        o,
        &[
            "consecutive_5xx",
            "interval",
            "base_ejection_time",
            "max_ejection_percent",
            "enforcing_consecutive_5xx",
            "enforcing_success_rate",
            "success_rate_minimum_hosts",
            "success_rate_request_volume",
            "success_rate_stdev_factor",
            "consecutive_gateway_failure",
            "enforcing_consecutive_gateway_failure",
            "split_external_local_origin_errors",
            "consecutive_local_origin_failure",
            "enforcing_consecutive_local_origin_failure",
            "enforcing_local_origin_success_rate",
            "failure_percentage_threshold",
            "enforcing_failure_percentage",
            "enforcing_failure_percentage_local_origin",
            "failure_percentage_minimum_hosts",
            "failure_percentage_request_volume",
            "max_ejection_time",
            "max_ejection_time_jitter",
            "successful_active_health_check_uneject_host",
            "always_eject_one_host",
        ],
    )?;
    if o.split_external_local_origin_errors {
        return Err(FieldError::new(
            "split_external_local_origin_errors",
            "only false is supported: connect failures, resets and timeouts count as the 503 \
             and 504 Envoy maps them to",
        ));
    }
    let d = OutlierDetection::default();
    let base_ejection_time = o
        .base_ejection_time
        .as_ref()
        .map_or(d.base_ejection_time, duration);
    let max_ejection_time = o
        .max_ejection_time
        .as_ref()
        .map_or(d.max_ejection_time.max(base_ejection_time), duration);
    if max_ejection_time < base_ejection_time {
        // Envoy's words (DetectorImpl::create).
        return Err(FieldError::new(
            "max_ejection_time",
            "outlier detector's max_ejection_time cannot be smaller than base_ejection_time",
        ));
    }
    let interval = o.interval.as_ref().map_or(d.interval, duration);
    if interval.is_zero() {
        return Err(FieldError::new("interval", "must be greater than 0"));
    }
    let or = |v: &Option<UInt32Value>, default: u32| v.as_ref().map_or(default, |v| v.value);
    Ok(OutlierDetection {
        interval,
        base_ejection_time,
        max_ejection_time,
        max_ejection_time_jitter: o
            .max_ejection_time_jitter
            .as_ref()
            .map_or(d.max_ejection_time_jitter, duration),
        max_ejection_percent: or(&o.max_ejection_percent, d.max_ejection_percent).min(100),
        always_eject_one_host: o.always_eject_one_host.as_ref().is_some_and(|b| b.value),
        consecutive_5xx: or(&o.consecutive_5xx, d.consecutive_5xx),
        enforcing_consecutive_5xx: or(&o.enforcing_consecutive_5xx, d.enforcing_consecutive_5xx),
        consecutive_gateway_failure: or(
            &o.consecutive_gateway_failure,
            d.consecutive_gateway_failure,
        ),
        enforcing_consecutive_gateway_failure: or(
            &o.enforcing_consecutive_gateway_failure,
            d.enforcing_consecutive_gateway_failure,
        ),
        success_rate_minimum_hosts: or(&o.success_rate_minimum_hosts, d.success_rate_minimum_hosts),
        success_rate_request_volume: or(
            &o.success_rate_request_volume,
            d.success_rate_request_volume,
        ),
        success_rate_stdev_factor: or(&o.success_rate_stdev_factor, d.success_rate_stdev_factor),
        enforcing_success_rate: or(&o.enforcing_success_rate, d.enforcing_success_rate),
        failure_percentage_threshold: or(
            &o.failure_percentage_threshold,
            d.failure_percentage_threshold,
        ),
        failure_percentage_minimum_hosts: or(
            &o.failure_percentage_minimum_hosts,
            d.failure_percentage_minimum_hosts,
        ),
        failure_percentage_request_volume: or(
            &o.failure_percentage_request_volume,
            d.failure_percentage_request_volume,
        ),
        enforcing_failure_percentage: or(
            &o.enforcing_failure_percentage,
            d.enforcing_failure_percentage,
        ),
        successful_active_health_check_uneject_host: o
            .successful_active_health_check_uneject_host
            .as_ref()
            .is_none_or(|b| b.value),
    })
}
