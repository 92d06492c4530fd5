use super::*;
use crate::cache::Snapshot;
use std::collections::HashMap;
use xds_types::Resource;
use xds_types::pb::envoy::config::cluster::v3::Cluster;
use xds_types::pb::google::rpc::Status;

fn snapshot(version: &str, clusters: &[(&str, i64)]) -> std::sync::Arc<Snapshot> {
    let anys = clusters
        .iter()
        .map(|(c, t)| {
            Cluster {
                name: c.to_string(),
                connect_timeout: Some(xds_types::pb::google::protobuf::Duration {
                    seconds: *t,
                    nanos: 0,
                }),
                ..Default::default()
            }
            .to_any()
        })
        .collect();
    std::sync::Arc::new(Snapshot::new(version, anys).unwrap())
}

fn req(sub: &[&str], unsub: &[&str], nonce: &str) -> DeltaRequest {
    DeltaRequest {
        type_url: CDS.into(),
        resource_names_subscribe: sub.iter().map(|s| s.to_string()).collect(),
        resource_names_unsubscribe: unsub.iter().map(|s| s.to_string()).collect(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

fn names(r: &DeltaResponse) -> Vec<&str> {
    r.resources.iter().map(|r| r.name.as_str()).collect()
}

const CDS: &str = type_url::CLUSTER;

#[test]
fn implicit_wildcard_then_only_changes_and_removals() {
    let s1 = snapshot("1", &[("a", 1), ("b", 1)]);
    let mut st = DeltaState::default();
    let (o, r) = st.on_request(&req(&[], &[], ""), Some(&s1));
    assert_eq!(o, Outcome::Initial);
    let r = r.unwrap();
    assert_eq!(names(&r), ["a", "b"]);
    assert!(r.resources.iter().all(|x| !x.version.is_empty()));
    let (o, none) = st.on_request(&req(&[], &[], &r.nonce), Some(&s1));
    assert_eq!(
        (o, none.is_none()),
        (
            Outcome::Ack {
                version: "1".into()
            },
            true
        )
    );
    let s2 = snapshot("2", &[("a", 2)]);
    let r = st.on_snapshot(&s2).remove(0);
    assert_eq!(names(&r), ["a"]);
    assert_eq!(r.removed_resources, ["b"]);
    assert!(st.on_snapshot(&s2).is_empty());
}

#[test]
fn explicit_subscribe_and_unsubscribe() {
    let s = snapshot("1", &[("a", 1), ("b", 1), ("c", 1)]);
    let mut st = DeltaState::default();
    let r = st.on_request(&req(&["a"], &[], ""), Some(&s)).1.unwrap();
    assert_eq!(names(&r), ["a"]);
    let r = st
        .on_request(&req(&["b"], &[], &r.nonce), Some(&s))
        .1
        .unwrap();
    assert_eq!(names(&r), ["b"]);
    assert!(
        st.on_request(&req(&[], &["a"], &r.nonce), Some(&s))
            .1
            .is_none()
    );
    // Re-subscribing to an unsubscribed name sends it again.
    let r = st
        .on_request(&req(&["a"], &[], &r.nonce), Some(&s))
        .1
        .unwrap();
    assert_eq!(names(&r), ["a"]);
}

#[test]
fn reconnect_with_initial_resource_versions_sends_only_differences() {
    let s1 = snapshot("1", &[("a", 1), ("b", 1)]);
    let mut first = DeltaState::default();
    let r = first
        .on_request(&req(&["*"], &[], ""), Some(&s1))
        .1
        .unwrap();
    let versions: HashMap<String, String> = r
        .resources
        .iter()
        .map(|x| (x.name.clone(), x.version.clone()))
        .collect();
    // The server moved on while the client was away: "a" changed, "b" left, "gone" is unknown.
    let s2 = snapshot("2", &[("a", 5), ("b", 1)]);
    let mut again = DeltaState::default();
    let mut initial = versions.clone();
    initial.insert("gone".into(), "old".into());
    let rq = DeltaRequest {
        initial_resource_versions: initial,
        ..req(&["*"], &[], "")
    };
    let r = again.on_request(&rq, Some(&s2)).1.unwrap();
    assert_eq!(names(&r), ["a"]);
    assert_eq!(r.removed_resources, ["gone"]);
}

#[test]
fn nack_recorded_without_resend_and_stale_ignored() {
    let s1 = snapshot("1", &[("a", 1)]);
    let mut st = DeltaState::default();
    let r = st.on_request(&req(&[], &[], ""), Some(&s1)).1.unwrap();
    let nack = DeltaRequest {
        error_detail: Some(Status {
            code: 3,
            message: "cluster a: bad".into(),
            details: vec![],
        }),
        ..req(&[], &[], &r.nonce)
    };
    let (o, again) = st.on_request(&nack, Some(&s1));
    assert_eq!(
        o,
        Outcome::Nack {
            version: "1".into(),
            nonce: r.nonce.clone(),
            detail: "cluster a: bad".into()
        }
    );
    assert!(again.is_none());
    assert!(st.on_snapshot(&s1).is_empty());
    let (o, _) = st.on_request(&req(&[], &[], "999"), Some(&s1));
    assert_eq!(o, Outcome::Stale);
}

#[test]
fn unsubscribing_the_wildcard_keeps_explicit_names() {
    let s = snapshot("1", &[("a", 1), ("b", 1)]);
    let mut st = DeltaState::default();
    let r = st
        .on_request(&req(&["*", "a"], &[], ""), Some(&s))
        .1
        .unwrap();
    assert_eq!(names(&r), ["a", "b"]);
    st.on_request(&req(&[], &["*"], &r.nonce), Some(&s));
    let s2 = snapshot("2", &[("a", 2), ("b", 2)]);
    let r = st.on_snapshot(&s2).remove(0);
    assert_eq!(names(&r), ["a"]);
}
