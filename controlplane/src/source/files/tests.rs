use std::fs;

use super::*;

const CLUSTER: &str = r#"
"@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
name: backend
type: STATIC
connect_timeout: 1s
load_assignment:
  cluster_name: backend
  endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8080 } } } } ] } ]
"#;

const ROUTES: &str = r#"
"@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
name: local_routes
virtual_hosts: [ { name: all, domains: ["*"], routes: [ { match: { prefix: "/" }, route: { cluster: backend } } ] } ]
"#;

/// A resource document as an item of a `resources:` list.
fn item(doc: &str) -> String {
    let lines: Vec<String> = doc.trim().lines().map(|l| format!("  {l}")).collect();
    format!("- {}", lines.join("\n").trim_start())
}

fn names(group: &GroupFiles) -> Vec<String> {
    group
        .resources
        .iter()
        .map(|r| xds_types::resource::name_of(&r.any).unwrap())
        .collect()
}

#[test]
fn resources_list_documents_and_json_all_load() {
    let dir = tempfile::tempdir().unwrap();
    // Envoy's file-xDS shape (a DiscoveryResponse: version_info is accepted and unused).
    let list = format!("version_info: \"1\"\nresources:\n{}\n", item(CLUSTER));
    fs::write(dir.path().join("a.yaml"), list).unwrap();
    fs::write(
        dir.path().join("b.yml"),
        format!(
            "{ROUTES}\n---\n{}",
            ROUTES.replace("local_routes", "second")
        ),
    )
    .unwrap();
    let json =
        xds_types::format::yaml_to_json_value(&ROUTES.replace("local_routes", "third")).unwrap();
    fs::write(dir.path().join("c.json"), json.to_string()).unwrap();
    let groups = read_dir(dir.path()).unwrap();
    assert_eq!(groups.keys().collect::<Vec<_>>(), vec![DEFAULT_GROUP]);
    let group = &groups[DEFAULT_GROUP];
    assert!(group.selector.is_default());
    assert_eq!(
        names(group),
        vec!["backend", "local_routes", "second", "third"]
    );
    let locations: Vec<&str> = group
        .resources
        .iter()
        .map(|r| r.location.as_str())
        .collect();
    assert_eq!(
        locations,
        vec!["resources[0]", "document 0", "document 1", "resource"]
    );
    assert!(group.resources[1].file.ends_with("b.yml"));
}

#[test]
fn temporaries_dotfiles_and_other_extensions_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("routes.yaml"), ROUTES).unwrap();
    for junk in [
        ".routes.yaml.swp",
        ".hidden.yaml",
        "routes.yaml~",
        "notes.txt",
        "4913",
        "x.yaml.bak",
    ] {
        fs::write(dir.path().join(junk), "this: is [not valid").unwrap();
    }
    fs::create_dir(dir.path().join("sub.yaml")).unwrap();
    let groups = read_dir(dir.path()).unwrap();
    assert_eq!(names(&groups[DEFAULT_GROUP]), vec!["local_routes"]);
}

#[test]
fn node_groups_by_key_or_by_document() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("default.yaml"), ROUTES).unwrap();
    let canary = format!(
        "node_group: {{ name: canary, node_ids: [\"edge-*\"], node_clusters: [canary] }}\nresources:\n{}\n",
        item(CLUSTER)
    );
    fs::write(dir.path().join("canary.yaml"), canary).unwrap();
    let canary_routes = format!(
        "node_group: {{ name: canary, node_ids: [\"edge-*\"], node_clusters: [canary] }}\n---\n{ROUTES}"
    );
    fs::write(dir.path().join("canary-routes.yaml"), canary_routes).unwrap();
    let groups = read_dir(dir.path()).unwrap();
    assert_eq!(
        groups.keys().collect::<Vec<_>>(),
        vec!["canary", DEFAULT_GROUP]
    );
    let canary = &groups["canary"];
    assert_eq!(canary.selector.node_ids, vec!["edge-*"]);
    assert_eq!(canary.selector.node_clusters, vec!["canary"]);
    assert_eq!(names(canary), vec!["local_routes", "backend"]);
    assert_eq!(names(&groups[DEFAULT_GROUP]), vec!["local_routes"]);
}

#[test]
fn node_group_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.yaml");
    fs::write(&path, "node_group: { name: canary, node_id: [x] }\n").unwrap();
    let err = read_file(&path).unwrap_err();
    assert_eq!(
        err,
        vec![format!(
            "{}: node_group: unknown field \"node_id\" (expected name, node_ids, node_clusters)",
            path.display()
        )]
    );
    fs::write(&path, "node_group: { name: canary }\n").unwrap();
    assert!(
        read_file(&path).unwrap_err()[0]
            .ends_with("group \"canary\" selects no node: give node_ids or node_clusters")
    );
    // Two files, one group name, two selectors.
    fs::write(&path, "node_group: { name: canary, node_ids: [a] }\n").unwrap();
    fs::write(
        dir.path().join("h.yaml"),
        "node_group: { name: canary, node_ids: [b] }\n",
    )
    .unwrap();
    let err = read_dir(dir.path()).unwrap_err();
    assert!(
        err[0].contains("h.yaml: node_group \"canary\" selects"),
        "{err:?}"
    );
}

#[test]
fn errors_name_the_file_the_resource_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("clusters.yaml");
    let text = format!(
        "resources:\n{}\n{}\n",
        item(ROUTES),
        item(&CLUSTER.replace("port_value: 8080", "port_value: eighty"))
    );
    fs::write(&bad, text).unwrap();
    let err = read_dir(dir.path()).unwrap_err();
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(
        err[0].starts_with(&format!(
            "{}: resources[1] (Cluster \"backend\"): ",
            bad.display()
        )),
        "{}",
        err[0]
    );
    assert!(err[0].contains("load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value"), "{}", err[0]);

    fs::write(&bad, "resources: [ { \"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster, name: x, no_such_field: 1 } ]\n").unwrap();
    let err = read_dir(dir.path()).unwrap_err();
    assert!(
        err[0].contains("resources[0] (Cluster \"x\")") && err[0].contains("no_such_field"),
        "{err:?}"
    );

    fs::write(&bad, "resources: [ {name: x\n").unwrap();
    let err = read_dir(dir.path()).unwrap_err();
    assert!(
        err[0].starts_with(&format!("{}: invalid YAML: ", bad.display())),
        "{err:?}"
    );

    fs::write(
        &bad,
        "\"@type\": type.googleapis.com/envoy.config.core.v3.Node\nid: x\n",
    )
    .unwrap();
    let err = read_dir(dir.path()).unwrap_err();
    assert!(err[0].contains("is not an xDS resource type"), "{err:?}");

    fs::write(&bad, "clusters: []\n").unwrap();
    let err = read_dir(dir.path()).unwrap_err();
    assert!(
        err[0].contains("document 0: expected \"resources\", \"@type\" or \"node_group\""),
        "{err:?}"
    );
}
