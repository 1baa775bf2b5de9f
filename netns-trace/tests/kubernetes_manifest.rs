//! deploy/kubernetes/*.yaml against the Kubernetes OpenAPI schemas (PyPI `kubernetes-validate`,
//! installed by `cargo xtask bootstrap`), plus the properties the schemas cannot express:
//! host PID, the capabilities, read-only host paths, and HostToContainer propagation on
//! /var/run/netns so the agent never holds a private copy of a pod's nsfs bind mount.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn daemonset_yaml() -> PathBuf {
    deploy_dir().join("kubernetes/daemonset.yaml")
}

/// `kubernetes-validate --strict [-k VERSION] FILE`. Panics when the tool is missing.
fn validate(file: &Path, kubernetes_version: Option<&str>) -> Output {
    let mut cmd = Command::new("kubernetes-validate");
    cmd.arg("--strict");
    if let Some(v) = kubernetes_version {
        cmd.args(["-k", v]);
    }
    cmd.arg(file).output().unwrap_or_else(|e| {
        panic!("cannot run kubernetes-validate ({e}); install it with `cargo xtask bootstrap` (pip package kubernetes-validate)")
    })
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every YAML document of `file` as JSON (PyYAML comes with kubernetes-validate).
fn yaml_documents(file: &Path) -> Vec<Value> {
    let out = Command::new("python3")
        .args(["-c", "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))"])
        .arg(file)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "parse {}: {}",
        file.display(),
        text(&out)
    );
    serde_json::from_slice(&out.stdout).expect("python printed JSON")
}

#[test]
fn the_daemonset_validates_against_the_kubernetes_schemas() {
    // The newest schemas the tool ships, and an older release still in wide use.
    for version in [None, Some("1.28")] {
        let out = validate(&daemonset_yaml(), version);
        let said = text(&out);
        assert!(
            out.status.success(),
            "kubernetes-validate {version:?}: {said}"
        );
        for kind in [
            "namespace/netns-trace",
            "serviceaccount/netns-trace",
            "daemonset/netns-trace",
        ] {
            assert!(
                said.contains(&format!("passed for resource {kind}")),
                "{kind} was not validated ({version:?}): {said}"
            );
        }
    }
}

#[test]
fn a_broken_manifest_is_rejected() {
    let good = std::fs::read_to_string(daemonset_yaml()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let breakages = [
        // A misspelt field: without --strict this would silently mean "no propagation".
        (
            "mountPropagation: HostToContainer",
            "mountPropogation: HostToContainer",
            "mountPropogation",
        ),
        ("hostPID: true", "hostPID: \"yes\"", "hostPID"),
        (
            "containerPort: 9469",
            "containerPort: metrics",
            "containerPort",
        ),
    ];
    for (from, to, field) in breakages {
        assert!(
            good.contains(from),
            "the manifest no longer contains {from:?}"
        );
        let bad = dir.path().join(format!("broken-{field}.yaml"));
        std::fs::write(&bad, good.replacen(from, to, 1)).unwrap();
        let out = validate(&bad, None);
        let said = text(&out);
        assert!(
            !out.status.success(),
            "the broken copy ({to:?}) passed: {said}"
        );
        assert!(
            said.contains("did not validate for resource daemonset/netns-trace")
                && said.contains(field),
            "{said}"
        );
    }
}

#[test]
fn the_daemonset_has_what_the_tracer_needs_and_never_pins_a_namespace() {
    let docs = yaml_documents(&daemonset_yaml());
    let ds = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("a DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    let c = &pod["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "watch");
    assert!(args.contains(&"--metrics-addr=0.0.0.0:9469"), "{args:?}");

    let sc = &c["securityContext"];
    let caps: Vec<&str> = sc["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    if sc["privileged"] != true {
        for needed in ["BPF", "PERFMON", "SYS_ADMIN", "SYS_PTRACE", "SYS_RESOURCE"] {
            assert!(caps.contains(&needed), "{needed} missing from {caps:?}");
        }
    }

    let volume_path = |name: &str| {
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .and_then(|v| v["hostPath"]["path"].as_str())
    };
    let mount_of = |host: &str| {
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| volume_path(m["name"].as_str().unwrap()) == Some(host))
            .unwrap_or_else(|| panic!("host {host} is not mounted"))
    };
    assert_eq!(mount_of("/sys/kernel/btf")["readOnly"], true);
    // Nothing the agent does not use: it reads /proc through hostPID, pins nothing in bpffs.
    for unused in ["/proc", "/sys/fs/bpf"] {
        assert!(
            c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| volume_path(m["name"].as_str().unwrap()) != Some(unused)),
            "{unused} is mounted but unused"
        );
    }
    // The runtime's default AppArmor profile blinds it (other processes' /proc/PID/ns).
    assert_eq!(
        ds["spec"]["template"]["metadata"]["annotations"]["container.apparmor.security.beta.kubernetes.io/netns-trace"],
        "unconfined"
    );
    let netns = mount_of("/var/run/netns");
    assert_eq!(
        netns["mountPropagation"], "HostToContainer",
        "host umounts must reach the agent's copy: {netns}"
    );
    assert_eq!(netns["readOnly"], true);
    // Bidirectional would also push the agent's mounts back to the host; nothing may.
    for m in c["volumeMounts"].as_array().unwrap() {
        assert_ne!(m["mountPropagation"], "Bidirectional", "{m}");
    }

    let port = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "metrics")
        .expect("a metrics port");
    let annotations = &ds["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(
        annotations["prometheus.io/port"],
        port["containerPort"].to_string().as_str()
    );

    let monitor = yaml_documents(&deploy_dir().join("kubernetes/podmonitor.yaml"));
    let endpoint = &monitor[0]["spec"]["podMetricsEndpoints"][0];
    assert_eq!(
        endpoint["port"], "metrics",
        "the PodMonitor scrapes the named port"
    );
    assert_eq!(
        monitor[0]["spec"]["selector"]["matchLabels"],
        ds["spec"]["selector"]["matchLabels"]
    );

    let containerfile = std::fs::read_to_string(deploy_dir().join("Containerfile")).unwrap();
    assert!(
        containerfile.contains(&format!("EXPOSE {}", port["containerPort"])),
        "the image exposes the metrics port"
    );
}

/// The metrics carry every tenant's pod names and UIDs without authentication: the shipped
/// NetworkPolicy lets only the monitoring namespace reach the agents' metrics port.
#[test]
fn the_network_policy_admits_only_scrapes_of_the_metrics_port() {
    let file = deploy_dir().join("kubernetes/networkpolicy.yaml");
    let out = validate(&file, None);
    assert!(out.status.success(), "{}", text(&out));
    let policy = &yaml_documents(&file)[0];
    let ds_docs = yaml_documents(&daemonset_yaml());
    let ds = ds_docs.iter().find(|d| d["kind"] == "DaemonSet").unwrap();
    assert_eq!(policy["metadata"]["namespace"], ds["metadata"]["namespace"]);
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        ds["spec"]["selector"]["matchLabels"]
    );
    let ingress = policy["spec"]["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 1);
    assert_eq!(ingress[0]["ports"][0]["port"], "metrics");
    assert!(ingress[0]["from"][0]["namespaceSelector"].is_object());
    assert_eq!(policy["spec"]["egress"], serde_json::json!([]));
}
