use super::*;
use crate::config::{Cluster, LoadAssignment};
use crate::upstream::UpstreamCluster;

/// A STATIC round-robin cluster of `hosts` (127.0.0.1:1, :2, ...) with this
/// `outlier_detection`, and its runtime cluster.
fn cluster(hosts: u16, outlier: &str) -> (Arc<Cluster>, LoadAssignment, UpstreamCluster) {
    let endpoints: Vec<String> = (1..=hosts)
        .map(|p| {
            format!(
                "{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {p} }} }} }} }}"
            )
        })
        .collect();
    let yaml = format!(
        "name: c\noutlier_detection: {{ {outlier} }}\nload_assignment: {{ cluster_name: c, endpoints: [ {{ lb_endpoints: [ {} ] }} ] }}",
        endpoints.join(", ")
    );
    let xds: xds_types::pb::envoy::config::cluster::v3::Cluster =
        xds_types::format::from_yaml_str(&yaml).expect("a cluster");
    let config = Arc::new(Cluster::try_from(&xds).expect("valid"));
    let crate::config::cluster::Discovery::Static(la) = &config.discovery else {
        panic!("static");
    };
    let la = la.clone();
    let upstream = UpstreamCluster::new(config.clone(), &la, None, &Arc::default());
    (config, la, upstream)
}

fn detector(c: &UpstreamCluster) -> &Detector {
    c.outlier.as_deref().expect("a detector")
}

fn counter(d: &Detector, name: &str) -> u64 {
    let i = COUNTERS.iter().position(|n| *n == name).expect("a counter");
    d.counters.0[i].load(Ordering::Relaxed)
}

/// Hosts picked by 20 picks (round robin), by port.
fn picked(c: &UpstreamCluster) -> std::collections::BTreeSet<u16> {
    (0..20)
        .filter_map(|_| c.pick(None, 0).map(|h| h.addr.port()))
        .collect()
}

#[test]
fn consecutive_5xx_ejects_and_the_rebuilt_cluster_skips_the_host() {
    let (config, la, c) = cluster(2, "consecutive_5xx: 3, max_ejection_percent: 50");
    let d = detector(&c);
    let bad = c.all[0].clone();
    let now = Instant::now();
    d.report(&bad, 503);
    d.report(&bad, 500);
    // A success in between starts the count again.
    d.report(&bad, 200);
    d.report(&bad, 502);
    d.report(&bad, 503);
    assert!(!d.process(&c.all, now), "two in a row is not three");
    d.report(&bad, 504);
    assert!(d.process(&c.all, now));
    assert!(bad.outlier.is_ejected());
    assert_eq!(counter(d, "ejections_detected_consecutive_5xx"), 1);
    assert_eq!(counter(d, "ejections_enforced_consecutive_5xx"), 1);
    assert_eq!(counter(d, "ejections_enforced_total"), 1);
    assert_eq!(Detector::ejections_active(&c.all), 1);
    // Gateway failures are counted (3 of 502-504 in a row) but not enforced by default.
    assert_eq!(
        counter(d, "ejections_detected_consecutive_gateway_failure"),
        0
    );
    // Applied by the runtime, then the cluster rebuilt (Runtime::health_changed).
    c.all.iter().for_each(|h| h.apply_health());
    let rebuilt = UpstreamCluster::new(config, &la, Some(&c), &Arc::default());
    assert!(Arc::ptr_eq(
        rebuilt.outlier.as_ref().expect("kept"),
        c.outlier.as_ref().expect("a detector")
    ));
    assert_eq!(picked(&rebuilt), [2].into());
}

#[test]
fn max_ejection_percent_holds_unless_one_host_may_always_go() {
    // Envoy's default 10%: one host of two is 50%, over it: counted as an overflow.
    let (_, _, c) = cluster(2, "consecutive_5xx: 1");
    let d = detector(&c);
    d.report(&c.all[0], 500);
    assert!(!d.process(&c.all, Instant::now()));
    assert!(!c.all[0].outlier.is_ejected());
    assert_eq!(counter(d, "ejections_overflow"), 1);
    assert_eq!(counter(d, "ejections_detected_consecutive_5xx"), 1);

    let (_, _, c) = cluster(2, "consecutive_5xx: 1, always_eject_one_host: true");
    let d = detector(&c);
    d.report(&c.all[0], 500);
    d.report(&c.all[1], 500);
    assert!(d.process(&c.all, Instant::now()));
    assert_eq!(Detector::ejections_active(&c.all), 1, "only the first one");
    assert_eq!(counter(d, "ejections_overflow"), 1);
}

#[test]
fn an_ejection_ends_at_an_interval_and_lasts_longer_each_time() {
    let (_, _, c) = cluster(
        2,
        "consecutive_5xx: 1, max_ejection_percent: 100, interval: 1s, base_ejection_time: 10s",
    );
    let d = detector(&c);
    let host = &c.all[0];
    let t0 = Instant::now();
    d.report(host, 500);
    assert!(d.process(&c.all, t0));
    // Still out before 10 s; back at the first interval after.
    assert!(!d.process(&c.all, t0 + Duration::from_secs(9)));
    assert!(host.outlier.is_ejected());
    assert!(d.process(&c.all, t0 + Duration::from_secs(10)));
    assert!(!host.outlier.is_ejected());
    // The second ejection lasts 2 x 10 s.
    let t1 = t0 + Duration::from_secs(10);
    d.report(host, 500);
    assert!(d.process(&c.all, t1));
    assert!(!d.process(&c.all, t1 + Duration::from_secs(19)));
    assert!(d.process(&c.all, t1 + Duration::from_secs(20)));
    assert!(!host.outlier.is_ejected());
}

#[test]
fn a_low_success_rate_ejects_at_the_interval() {
    let (_, _, c) = cluster(
        5,
        "success_rate_request_volume: 10, max_ejection_percent: 50, consecutive_5xx: 1000",
    );
    let d = detector(&c);
    for (i, host) in c.all.iter().enumerate() {
        for n in 0..20 {
            // Host 0 fails half its requests; the others none.
            d.report(host, if i == 0 && n % 2 == 0 { 503 } else { 200 });
        }
    }
    let now = Instant::now();
    assert!(!d.process(&c.all, now), "judged at the interval only");
    assert!(d.process(&c.all, now + Duration::from_secs(10)));
    assert!(c.all[0].outlier.is_ejected());
    assert_eq!(Detector::ejections_active(&c.all), 1);
    assert_eq!(counter(d, "ejections_enforced_success_rate"), 1);
    // mean 90, stdev 20: the threshold is 90 - 1.9 x 20 = 52; 50 is under it.
    let h: Vec<(&Arc<HostState>, f64)> = c
        .all
        .iter()
        .zip([50.0, 100.0, 100.0, 100.0, 100.0])
        .collect();
    assert!((success_rate_threshold(&h, 1900) - 52.0).abs() < 1e-9);
}

#[test]
fn failure_percentage_ejects_only_when_enforced() {
    let outlier = "failure_percentage_request_volume: 10, failure_percentage_minimum_hosts: 2, \
                   max_ejection_percent: 50, consecutive_5xx: 1000, success_rate_minimum_hosts: 100";
    for (enforcing, ejected) in [("", false), (", enforcing_failure_percentage: 100", true)] {
        let (_, _, c) = cluster(2, &format!("{outlier}{enforcing}"));
        let d = detector(&c);
        for n in 0..20 {
            d.report(&c.all[0], if n < 18 { 500 } else { 200 });
            d.report(&c.all[1], 200);
        }
        d.process(&c.all, Instant::now() + Duration::from_secs(10));
        assert_eq!(c.all[0].outlier.is_ejected(), ejected);
        assert_eq!(counter(d, "ejections_detected_failure_percentage"), 1);
    }
}

#[test]
fn a_changed_cluster_config_starts_afresh() {
    let (_, la, c) = cluster(2, "consecutive_5xx: 1, max_ejection_percent: 50");
    detector(&c).report(&c.all[0], 500);
    assert!(detector(&c).process(&c.all, Instant::now()));
    let (config, _, _) = cluster(2, "consecutive_5xx: 2, max_ejection_percent: 50");
    let changed = UpstreamCluster::new(config, &la, Some(&c), &Arc::default());
    assert!(!changed.all[0].outlier.is_ejected());
    assert_eq!(picked(&changed), [1, 2].into());
}

#[test]
fn config_defaults_and_refusals() {
    let o = |yaml: &str| {
        let x: xds_types::pb::envoy::config::cluster::v3::OutlierDetection =
            xds_types::format::from_yaml_str(yaml).expect("outlier detection");
        crate::config::outlier::translate(&x)
    };
    let d = o("{}").expect("valid");
    assert_eq!(d, OutlierDetection::default());
    assert_eq!(
        o("base_ejection_time: 400s")
            .expect("valid")
            .max_ejection_time,
        Duration::from_secs(400),
        "the maximum is at least the base"
    );
    for (yaml, field) in [
        (
            "split_external_local_origin_errors: true",
            "split_external_local_origin_errors",
        ),
        (
            "base_ejection_time: 60s\nmax_ejection_time: 30s",
            "max_ejection_time",
        ),
        ("interval: 0s", "interval"),
        (
            "monitors: [ { name: m, typed_config: { \"@type\": type.googleapis.com/envoy.config.cluster.v3.OutlierDetection } } ]",
            "monitors",
        ),
    ] {
        let e = o(yaml).expect_err(yaml);
        assert!(format!("{e:?}").contains(field), "{yaml}: {e:?}");
    }
}
