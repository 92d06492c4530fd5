use super::*;
use crate::cache::Snapshot;
use xds_types::Resource;
use xds_types::pb::envoy::config::cluster::v3::Cluster;
use xds_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use xds_types::pb::google::rpc::Status;

fn snapshot(version: &str, clusters: &[&str], cla_tag: &str) -> std::sync::Arc<Snapshot> {
    let mut anys: Vec<_> = clusters
        .iter()
        .map(|c| {
            Cluster {
                name: c.to_string(),
                ..Default::default()
            }
            .to_any()
        })
        .collect();
    anys.extend(clusters.iter().map(|c| {
        ClusterLoadAssignment {
            cluster_name: c.to_string(),
            policy: None,
            endpoints: vec![],
            named_endpoints: [(cla_tag.to_string(), Default::default())].into(),
        }
        .to_any()
    }));
    std::sync::Arc::new(Snapshot::new(version, anys).unwrap())
}

/// A request as Envoy sends it, read as the server reads it.
fn req(url: &str, names: &[&str], version: &str, nonce: &str) -> SotwRequest {
    use prost::Message;
    let sent = xds_types::pb::envoy::service::discovery::v3::DiscoveryRequest {
        type_url: url.into(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        version_info: version.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    };
    SotwRequest::decode(bytes::Bytes::from(sent.encode_to_vec())).unwrap()
}

fn nack(r: SotwRequest, msg: &str) -> SotwRequest {
    SotwRequest {
        error_detail: Some(Status {
            code: 3,
            message: msg.into(),
            details: vec![],
        }),
        ..r
    }
}

const CDS: &str = type_url::CLUSTER;
const EDS: &str = type_url::ENDPOINT;

#[test]
fn wildcard_cds_gets_the_full_set_then_ack_sends_nothing() {
    let s1 = snapshot("1", &["a", "b"], "x");
    let mut st = SotwState::default();
    let (o, r) = st.on_request(&req(CDS, &[], "", ""), Some(&s1));
    assert_eq!(o, Outcome::Initial);
    let r = r.unwrap();
    assert_eq!((r.version_info.as_str(), r.resources.len()), ("1", 2));
    let (o, r2) = st.on_request(&req(CDS, &[], "1", &r.nonce), Some(&s1));
    assert_eq!(
        o,
        Outcome::Ack {
            version: "1".into()
        }
    );
    assert!(r2.is_none());
    // A change to one cluster still sends the whole CDS set.
    let s2 = snapshot("2", &["a"], "x");
    let rs = st.on_snapshot(&s2);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].resources.len(), 1);
    assert_eq!(rs[0].version_info, "2");
}

#[test]
fn empty_snapshot_still_answers_the_first_wildcard_request() {
    let s = std::sync::Arc::new(Snapshot::new("0", vec![]).unwrap());
    let mut st = SotwState::default();
    let (_, r) = st.on_request(&req(type_url::LISTENER, &[], "", ""), Some(&s));
    assert_eq!(r.unwrap().resources.len(), 0);
}

#[test]
fn nack_is_recorded_and_not_resent() {
    let s1 = snapshot("1", &["a"], "x");
    let mut st = SotwState::default();
    let r = st.on_request(&req(CDS, &[], "", ""), Some(&s1)).1.unwrap();
    let (o, again) = st.on_request(
        &nack(req(CDS, &[], "", &r.nonce), "bad cluster a"),
        Some(&s1),
    );
    assert_eq!(
        o,
        Outcome::Nack {
            version: "1".into(),
            nonce: r.nonce.clone(),
            detail: "bad cluster a".into()
        }
    );
    assert!(again.is_none(), "a NACK is not a request for a resend");
    assert!(
        st.on_snapshot(&s1).is_empty(),
        "same content, nothing to send"
    );
    let s2 = snapshot("2", &["a", "b"], "x");
    assert_eq!(st.on_snapshot(&s2).len(), 1, "a new version is sent");
}

#[test]
fn stale_nonce_is_ignored() {
    let s1 = snapshot("1", &["a"], "x");
    let mut st = SotwState::default();
    let r1 = st.on_request(&req(CDS, &[], "", ""), Some(&s1)).1.unwrap();
    let s2 = snapshot("2", &["a", "b"], "x");
    let r2 = st.on_snapshot(&s2).remove(0);
    let (o, r) = st.on_request(&req(CDS, &[], "1", &r1.nonce), Some(&s2));
    assert_eq!((o, r.is_none()), (Outcome::Stale, true));
    let (o, _) = st.on_request(&req(CDS, &[], "2", &r2.nonce), Some(&s2));
    assert_eq!(
        o,
        Outcome::Ack {
            version: "2".into()
        }
    );
}

#[test]
fn eds_sends_only_names_asked_for_and_only_what_changed() {
    let s1 = snapshot("1", &["a", "b", "c"], "x");
    let mut st = SotwState::default();
    let r = st
        .on_request(&req(EDS, &["a", "b", "missing"], "", ""), Some(&s1))
        .1
        .unwrap();
    assert_eq!(r.resources.len(), 2);
    st.on_request(&req(EDS, &["a", "b", "missing"], "1", &r.nonce), Some(&s1));
    // Only "a" changes.
    let mut anys: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|c| {
            Cluster {
                name: c.to_string(),
                ..Default::default()
            }
            .to_any()
        })
        .collect();
    anys.push(
        ClusterLoadAssignment {
            cluster_name: "a".into(),
            named_endpoints: [("y".to_string(), Default::default())].into(),
            ..Default::default()
        }
        .to_any(),
    );
    for c in ["b", "c"] {
        anys.push(
            ClusterLoadAssignment {
                cluster_name: c.into(),
                named_endpoints: [("x".to_string(), Default::default())].into(),
                ..Default::default()
            }
            .to_any(),
        );
    }
    let s2 = std::sync::Arc::new(Snapshot::new("2", anys).unwrap());
    let rs = st.on_snapshot(&s2);
    assert_eq!(rs.len(), 1);
    assert_eq!(
        xds_types::resource::name_of(&rs[0].resources[0].any).unwrap(),
        "a"
    );
    assert_eq!(rs[0].resources.len(), 1);
}

#[test]
fn resource_names_change_is_answered_at_once() {
    let s1 = snapshot("1", &["a", "b"], "x");
    let mut st = SotwState::default();
    let r = st
        .on_request(&req(EDS, &["a"], "", ""), Some(&s1))
        .1
        .unwrap();
    let (o, r2) = st.on_request(&req(EDS, &["a", "b"], "1", &r.nonce), Some(&s1));
    assert_eq!(
        o,
        Outcome::Ack {
            version: "1".into()
        }
    );
    let r2 = r2.unwrap();
    assert_eq!(
        r2.resources.len(),
        1,
        "only the newly asked name: 'a' is unchanged"
    );
    assert_eq!(
        xds_types::resource::name_of(&r2.resources[0].any).unwrap(),
        "b"
    );
}

#[test]
fn only_changed_types_are_pushed() {
    let s1 = snapshot("1", &["a"], "x");
    let mut st = SotwState::default();
    let r = st.on_request(&req(CDS, &[], "", ""), Some(&s1)).1.unwrap();
    st.on_request(&req(CDS, &[], "1", &r.nonce), Some(&s1));
    let r = st
        .on_request(&req(EDS, &["a"], "", ""), Some(&s1))
        .1
        .unwrap();
    st.on_request(&req(EDS, &["a"], "1", &r.nonce), Some(&s1));
    let s2 = snapshot("2", &["a"], "changed");
    let rs = st.on_snapshot(&s2);
    assert_eq!(
        rs.iter().map(|r| r.type_url.as_str()).collect::<Vec<_>>(),
        [EDS]
    );
}

/// An EDS cluster named `name` whose connect timeout is `secs`.
fn eds_cluster(name: &str, secs: i64) -> xds_types::Any {
    use xds_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
    Cluster {
        name: name.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        connect_timeout: Some(xds_types::pb::google::protobuf::Duration {
            seconds: secs,
            nanos: 0,
        }),
        ..Default::default()
    }
    .to_any()
}

fn assignment(name: &str) -> xds_types::Any {
    ClusterLoadAssignment {
        cluster_name: name.into(),
        ..Default::default()
    }
    .to_any()
}

/// Clusters `a` (connect timeout `a_secs`) and `b`, both EDS, and their assignments.
fn two_eds_clusters(version: &str, a_secs: i64) -> Snapshot {
    let resources = vec![
        eds_cluster("a", a_secs),
        eds_cluster("b", 1),
        assignment("a"),
        assignment("b"),
    ];
    Snapshot::new(version, resources).unwrap()
}

#[test]
fn an_updated_eds_cluster_resends_its_unchanged_assignment() {
    // Envoy warms an updated EDS cluster until its assignment comes again (or 15 s pass), so
    // the assignment follows the cluster even when its own bytes did not change.
    let s1 = std::sync::Arc::new(two_eds_clusters("1", 1));
    let mut st = SotwState::default();
    let (_, r) = st.on_request(&req(CDS, &[], "", ""), Some(&s1));
    st.on_request(&req(CDS, &[], "1", &r.unwrap().nonce), Some(&s1));
    let (_, r) = st.on_request(&req(EDS, &["a", "b"], "", ""), Some(&s1));
    assert_eq!(r.as_ref().unwrap().resources.len(), 2);
    st.on_request(&req(EDS, &["a", "b"], "1", &r.unwrap().nonce), Some(&s1));
    let s2 = std::sync::Arc::new(two_eds_clusters("2", 2).with_parent(&s1));
    let rs = st.on_snapshot(&s2);
    let sent: Vec<(&str, Vec<&str>)> = rs
        .iter()
        .map(|r| {
            (
                r.type_url.as_str(),
                r.resources.iter().map(|e| e.name.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(sent, [(CDS, vec!["a", "b"]), (EDS, vec!["a"])]);
    // Nothing about the clusters changed: nothing is sent.
    let s3 = std::sync::Arc::new(two_eds_clusters("3", 2).with_parent(&s2));
    assert!(st.on_snapshot(&s3).is_empty());
}

#[test]
fn an_ack_naming_the_same_set_in_another_order_is_not_a_change() {
    let s1 = snapshot("1", &["a", "b", "c"], "x");
    let mut st = SotwState::default();
    let (_, r) = st.on_request(&req(EDS, &["b", "a"], "", ""), Some(&s1));
    let r = r.unwrap();
    assert_eq!(r.resources.len(), 2);
    // The same names, reordered and repeated: an ACK, nothing to send.
    let (o, none) = st.on_request(&req(EDS, &["a", "b", "a"], "1", &r.nonce), Some(&s1));
    assert_eq!(
        (o, none.is_none()),
        (
            Outcome::Ack {
                version: "1".into()
            },
            true
        )
    );
    assert_eq!(
        st.subscription(EDS)
            .map(|(w, n)| (w, n.iter().cloned().collect::<Vec<_>>())),
        Some((false, vec!["a".to_string(), "b".to_string()]))
    );
    // One name more is a change, answered at once with what the client lacks.
    let (_, r2) = st.on_request(&req(EDS, &["a", "c", "b"], "1", &r.nonce), Some(&s1));
    let r2 = r2.unwrap();
    assert_eq!(
        r2.resources
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["c"]
    );
    // As many names as before with one repeated in place of another is a change too.
    st.on_request(&req(EDS, &["a", "b", "b"], "1", &r2.nonce), Some(&s1));
    assert_eq!(
        st.subscription(EDS).map(|(_, n)| n.len()),
        Some(2),
        "the subscription is a and b again"
    );
}

#[test]
fn an_ack_listing_the_recorded_order_is_no_change_but_the_wildcard_still_counts() {
    let s1 = snapshot("1", &["order-a", "order-b"], "x");
    // Stream A's first request records its list for the set {order-a, order-b}.
    let mut a = SotwState::default();
    let listed = ["order-b", "order-a", "order-b"];
    let ra = a
        .on_request(&req(EDS, &listed, "", ""), Some(&s1))
        .1
        .unwrap();
    let (o, none) = a.on_request(&req(EDS, &listed, "1", &ra.nonce), Some(&s1));
    assert_eq!(
        o,
        Outcome::Ack {
            version: "1".into()
        }
    );
    assert!(none.is_none(), "the same list again is no change");
    // Stream B holds the same set, and lists it with the wildcard added: that is a change.
    let mut b = SotwState::default();
    let r = b
        .on_request(&req(EDS, &["order-a", "order-b"], "", ""), Some(&s1))
        .1
        .unwrap();
    assert_eq!(b.subscription(EDS).map(|s| s.0), Some(false));
    let with_wildcard = ["order-b", "order-a", "order-b", "*"];
    b.on_request(&req(EDS, &with_wildcard, "1", &r.nonce), Some(&s1));
    assert_eq!(b.subscription(EDS).map(|s| s.0), Some(true));
    // And A listing one name fewer, in the recorded order otherwise, is a change too.
    let (o, _) = a.on_request(
        &req(EDS, &["order-b", "order-b"], "1", &ra.nonce),
        Some(&s1),
    );
    assert_eq!(
        o,
        Outcome::Ack {
            version: "1".into()
        }
    );
    let names = a
        .subscription(EDS)
        .map(|s| s.1.iter().cloned().collect::<Vec<_>>());
    assert_eq!(names, Some(vec!["order-b".to_string()]));
}
