//! The Helm chart, rendered for every `ci/*-values.yaml` scenario. The
//! tests cover lint, the API-type round trip
//! of every manifest, and the rendered server.toml through the real
//! `check-config`. They check ports and probes against that config, and
//! cover secure defaults, cgroups modes, the memory budget, NOTES.txt and
//! values the chart must reject.

use std::net::SocketAddr;
use std::sync::OnceLock;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Probe, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use remote_gopls_deploy_tests::manifest::{self, Manifest};
use remote_gopls_deploy_tests::{chart_dir, ci_values_files, helm, server};

/// The scenarios CI must cover, by file name.
const SCENARIOS: [&str; 4] = [
    "defaults-values.yaml",
    "ingress-tls-values.yaml",
    "cgroups-delegated-values.yaml",
    "existing-secret-values.yaml",
];

/// Names of the objects of the `rg` release.
const FULLNAME: &str = "rg-remote-gopls";
const HEADLESS: &str = "rg-remote-gopls-headless";

/// One rendering of the chart.
struct Rendering {
    /// The values file name.
    scenario: String,
    manifests: Vec<Manifest>,
}

impl Rendering {
    fn find(&self, kind: &str, name: &str) -> Option<&Manifest> {
        self.manifests
            .iter()
            .find(|m| m.kind == kind && m.name == name)
    }

    fn get<T: serde::de::DeserializeOwned>(&self, kind: &str, name: &str) -> T {
        self.find(kind, name)
            .unwrap_or_else(|| panic!("{}: no {kind} {name}", self.scenario))
            .to_typed()
            .unwrap()
    }

    fn pod(&self) -> PodSpec {
        let statefulset: StatefulSet = self.get("StatefulSet", FULLNAME);
        statefulset.spec.unwrap().template.spec.unwrap()
    }

    fn server_container(&self) -> Container {
        self.pod()
            .containers
            .into_iter()
            .find(|c| c.name == "server")
            .unwrap_or_else(|| panic!("{}: no server container", self.scenario))
    }

    fn server_toml_text(&self) -> String {
        let config: ConfigMap = self.get("ConfigMap", FULLNAME);
        config
            .data
            .and_then(|mut data| data.remove("server.toml"))
            .unwrap_or_else(|| panic!("{}: ConfigMap has no server.toml", self.scenario))
    }

    fn server_toml(&self) -> toml::Table {
        self.server_toml_text()
            .parse()
            .unwrap_or_else(|e| panic!("{}: server.toml is not TOML: {e}", self.scenario))
    }

    /// Returns the port of a listen address in the rendered config, if the key is set.
    fn config_port(&self, key: &str) -> Option<u16> {
        let config = self.server_toml();
        let address = config.get(key)?.as_str()?;
        let parsed: SocketAddr = address
            .parse()
            .unwrap_or_else(|e| panic!("{}: {key} {address:?}: {e}", self.scenario));
        Some(parsed.port())
    }
}

fn render(values_file: &str) -> Rendering {
    let path = chart_dir().join("ci").join(values_file);
    let text = helm::template(Some(&path), &[]).unwrap_or_else(|e| panic!("{values_file}: {e:#}"));
    let manifests = manifest::parse(&text).unwrap_or_else(|e| panic!("{values_file}: {e:#}"));
    Rendering {
        scenario: values_file.to_owned(),
        manifests,
    }
}

/// Renders every CI scenario once.
fn renderings() -> &'static [Rendering] {
    static RENDERINGS: OnceLock<Vec<Rendering>> = OnceLock::new();
    RENDERINGS.get_or_init(|| {
        ci_values_files()
            .iter()
            .map(|path| render(path.file_name().unwrap().to_str().unwrap()))
            .collect()
    })
}

fn scenario(name: &str) -> &'static Rendering {
    renderings()
        .iter()
        .find(|r| r.scenario == name)
        .unwrap_or_else(|| panic!("no rendering {name}"))
}

/// Returns the container port that a named or numbered port refers to.
fn resolve_port(container: &Container, port: &IntOrString) -> i32 {
    match port {
        IntOrString::Int(number) => *number,
        IntOrString::String(name) => {
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name))
                .unwrap_or_else(|| panic!("no container port named {name}"))
                .container_port
        }
    }
}

#[test]
fn ci_scenarios_exist() {
    let names: Vec<String> = ci_values_files()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in SCENARIOS {
        assert!(
            names.iter().any(|n| n == want),
            "missing ci/{want} in {names:?}"
        );
    }
}

#[test]
fn lint_passes_every_scenario() {
    helm::lint(None).unwrap();
    for file in ci_values_files() {
        helm::lint(Some(&file)).unwrap_or_else(|e| panic!("{}: {e:#}", file.display()));
    }
}

#[test]
fn manifests_survive_round_trip() {
    let mut problems = Vec::new();
    for rendering in renderings() {
        for manifest in &rendering.manifests {
            let label = format!(
                "{}: {} {}",
                rendering.scenario, manifest.kind, manifest.name
            );
            if manifest.kind == "ServiceMonitor" {
                // A custom resource: k8s-openapi has no type for it.
                continue;
            }
            match manifest::round_trip(manifest) {
                Ok(differences) => {
                    problems.extend(differences.iter().map(|d| format!("{label}{d}")))
                }
                Err(e) => problems.push(format!("{label}: {e:#}")),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_scenario_renders_core_objects() {
    for rendering in renderings() {
        for (kind, name) in [
            ("StatefulSet", FULLNAME),
            ("Service", FULLNAME),
            ("Service", HEADLESS),
            ("ConfigMap", FULLNAME),
        ] {
            assert!(
                rendering.find(kind, name).is_some(),
                "{}: no {kind} {name}",
                rendering.scenario
            );
        }
        let kinds: Vec<&str> = rendering
            .manifests
            .iter()
            .map(|m| m.kind.as_str())
            .collect();
        assert!(
            kinds.contains(&"PodDisruptionBudget"),
            "{}: {kinds:?}",
            rendering.scenario
        );
    }
}

#[test]
fn service_monitor_scrapes_http_port() {
    let rendering = scenario("ingress-tls-values.yaml");
    let monitor = rendering
        .find("ServiceMonitor", FULLNAME)
        .expect("ingress-tls-values.yaml enables the ServiceMonitor");
    let value = &monitor.value;
    assert_eq!(value["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(value["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(value["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        value["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"],
        "rg"
    );
    // The headless Service selects the same pod; the monitor must skip it.
    let headless: Service = rendering.get("Service", HEADLESS);
    let headless_label = headless.metadata.labels.unwrap();
    let excluded = &value["spec"]["selector"]["matchExpressions"][0];
    assert_eq!(excluded["operator"], "DoesNotExist");
    assert!(headless_label.contains_key(excluded["key"].as_str().unwrap()));
    let service: Service = rendering.get("Service", FULLNAME);
    assert!(!service
        .metadata
        .labels
        .unwrap()
        .contains_key(excluded["key"].as_str().unwrap()));
}

#[test]
fn rendered_config_passes_check_config() {
    for rendering in renderings() {
        let output = server::check_config(&rendering.server_toml_text(), &[]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}: check-config rejected the rendered server.toml:\n{}\n{}",
            rendering.scenario,
            String::from_utf8_lossy(&output.stderr),
            rendering.server_toml_text()
        );
        assert!(
            stdout.contains(": valid: "),
            "{}: {stdout}",
            rendering.scenario
        );
    }
}

#[test]
fn container_ports_match_config() {
    for rendering in renderings() {
        let container = rendering.server_container();
        let port_named = |name: &str| {
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name))
                .map(|p| p.container_port)
        };

        for (name, key) in [("grpc", "listen"), ("http", "http_listen")] {
            let configured = rendering.config_port(key).map(i32::from);
            assert!(configured.is_some(), "{}: no {key}", rendering.scenario);
            assert_eq!(
                port_named(name),
                configured,
                "{}: port {name}",
                rendering.scenario
            );
        }
    }
}

#[test]
fn probes_target_config_ports() {
    for rendering in renderings() {
        let container = rendering.server_container();
        let http = i32::from(rendering.config_port("http_listen").unwrap());
        let probes: [(&str, Option<Probe>, &str); 3] = [
            ("startup", container.startup_probe.clone(), "/healthz"),
            ("liveness", container.liveness_probe.clone(), "/healthz"),
            ("readiness", container.readiness_probe.clone(), "/readyz"),
        ];

        for (kind, probe, path) in probes {
            let label = format!("{}: {kind} probe", rendering.scenario);
            let probe = probe.unwrap_or_else(|| panic!("{label} is missing"));
            let get = probe
                .http_get
                .unwrap_or_else(|| panic!("{label} is not an HTTP GET"));
            assert_eq!(get.path.as_deref(), Some(path), "{label}");
            assert_eq!(resolve_port(&container, &get.port), http, "{label}");
        }
    }
}

#[test]
fn service_ports_match_config() {
    for rendering in renderings() {
        let container = rendering.server_container();
        let expected = vec![
            ("grpc".to_owned(), rendering.config_port("listen").unwrap()),
            (
                "http".to_owned(),
                rendering.config_port("http_listen").unwrap(),
            ),
        ];

        for name in [FULLNAME, HEADLESS] {
            let label = format!("{}: Service {name}", rendering.scenario);
            let service: Service = rendering.get("Service", name);
            let ports = service.spec.unwrap().ports.unwrap();
            let actual: Vec<(String, u16)> = ports
                .iter()
                .map(|p| (p.name.clone().unwrap(), u16::try_from(p.port).unwrap()))
                .collect();
            assert_eq!(actual, expected, "{label}");

            for port in &ports {
                let target = port.target_port.clone().expect("targetPort is set");
                assert_eq!(
                    resolve_port(&container, &target),
                    port.port,
                    "{label}: port {:?}",
                    port.name
                );
                assert!(port.app_protocol.is_some(), "{label}: port {:?}", port.name);
            }
        }
    }
}

#[test]
fn ingress_backends_exist() {
    let rendering = scenario("ingress-tls-values.yaml");
    let service: Service = rendering.get("Service", FULLNAME);
    let service_ports: Vec<String> = service
        .spec
        .unwrap()
        .ports
        .unwrap()
        .into_iter()
        .filter_map(|p| p.name)
        .collect();

    for (name, port, annotation) in [
        (
            FULLNAME,
            "http",
            "nginx.ingress.kubernetes.io/proxy-read-timeout",
        ),
        (
            "rg-remote-gopls-grpc",
            "grpc",
            "nginx.ingress.kubernetes.io/backend-protocol",
        ),
    ] {
        let ingress: Ingress = rendering.get("Ingress", name);
        assert!(
            ingress
                .metadata
                .annotations
                .unwrap()
                .contains_key(annotation),
            "Ingress {name}: no {annotation}"
        );
        let spec = ingress.spec.unwrap();
        assert!(
            spec.tls.is_some_and(|tls| !tls.is_empty()),
            "Ingress {name}: no TLS"
        );
        for rule in spec.rules.unwrap() {
            for path in rule.http.unwrap().paths {
                let backend = path.backend.service.unwrap();
                assert_eq!(backend.name, FULLNAME, "Ingress {name}");
                let backend_port = backend.port.unwrap().name.unwrap();
                assert_eq!(backend_port, port, "Ingress {name}");
                assert!(service_ports.contains(&backend_port), "Ingress {name}");
            }
        }
    }
}

#[test]
fn pods_run_with_secure_defaults() {
    for rendering in renderings() {
        let pod = rendering.pod();
        let pod_security = pod.security_context.clone().unwrap();
        assert_eq!(
            pod_security.run_as_non_root,
            Some(true),
            "{}",
            rendering.scenario
        );
        assert_eq!(
            pod_security.seccomp_profile.unwrap().type_,
            "RuntimeDefault",
            "{}",
            rendering.scenario
        );
        assert_eq!(pod.automount_service_account_token, Some(false));

        let containers = pod
            .containers
            .iter()
            .chain(pod.init_containers.iter().flatten());
        for container in containers {
            let label = format!("{}: container {}", rendering.scenario, container.name);
            let security = container.security_context.clone().unwrap();
            assert_eq!(security.read_only_root_filesystem, Some(true), "{label}");
            assert_eq!(security.allow_privilege_escalation, Some(false), "{label}");
            assert_ne!(security.privileged, Some(true), "{label}");
            let drop = security.capabilities.unwrap().drop.unwrap();
            assert_eq!(drop, ["ALL"], "{label}");
        }

        let container = rendering.server_container();
        let memory_limit = container
            .resources
            .and_then(|r| r.limits)
            .and_then(|mut limits| limits.remove("memory"));
        assert!(
            memory_limit.is_some(),
            "{}: no memory limit",
            rendering.scenario
        );
    }
}

#[test]
fn writable_mounts_cover_data_and_tmp() {
    for rendering in renderings() {
        let mounts = rendering.server_container().volume_mounts.unwrap();
        for path in ["/data", "/tmp"] {
            let mount = mounts
                .iter()
                .find(|m| m.mount_path == path)
                .unwrap_or_else(|| panic!("{}: nothing mounted at {path}", rendering.scenario));
            assert_ne!(
                mount.read_only,
                Some(true),
                "{}: {path}",
                rendering.scenario
            );
        }
    }
}

#[test]
fn cgroups_modes_configure_pod() {
    let cases = [
        ("defaults-values.yaml", true, false),
        ("cgroups-delegated-values.yaml", true, true),
        ("existing-secret-values.yaml", false, false),
    ];
    for (name, enabled, delegated) in cases {
        let rendering = scenario(name);
        let config = rendering.server_toml();
        assert_eq!(
            config["cgroup"]["enabled"].as_bool(),
            Some(enabled),
            "{name}: [cgroup] enabled"
        );

        let statefulset: StatefulSet = rendering.get("StatefulSet", FULLNAME);
        let template = statefulset.spec.unwrap().template;
        let pod = template.spec.unwrap();
        let init_names: Vec<String> = pod
            .init_containers
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect();
        let annotations = template.metadata.unwrap().annotations.unwrap_or_default();
        let crio = annotations.get("io.kubernetes.cri-o.cgroup2-mount-hierarchy-rw");
        if delegated {
            assert_eq!(pod.host_users, Some(false), "{name}");
            assert_eq!(
                pod.runtime_class_name.as_deref(),
                Some("runc-cgroup-writable"),
                "{name}"
            );
            assert!(
                init_names.contains(&"check-cgroup".to_owned()),
                "{name}: {init_names:?}"
            );
            assert_eq!(crio.map(String::as_str), Some("true"), "{name}");
        } else {
            assert_eq!(pod.host_users, None, "{name}");
            assert_eq!(pod.runtime_class_name, None, "{name}");
            assert!(
                !init_names.contains(&"check-cgroup".to_owned()),
                "{name}: {init_names:?}"
            );
            assert_eq!(crio, None, "{name}");
        }
    }
}

#[test]
fn memory_budget_follows_pod_limit() {
    let budget = |name: &str| {
        scenario(name).server_toml()["controller"]["memory_budget"]
            .as_str()
            .map(str::to_owned)
    };
    // 80% of the 8Gi default limit, in whole MiB.
    assert_eq!(budget("defaults-values.yaml").as_deref(), Some("6553MiB"));
    // 80% of 16Gi.
    assert_eq!(
        budget("ingress-tls-values.yaml").as_deref(),
        Some("13107MiB")
    );
    // Set explicitly.
    assert_eq!(
        budget("cgroups-delegated-values.yaml").as_deref(),
        Some("12GiB")
    );
}

#[test]
fn tokens_secret_and_mount_agree() {
    for rendering in renderings() {
        let pod = rendering.pod();
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "tokens")
            .unwrap_or_else(|| panic!("{}: no tokens volume", rendering.scenario));
        let secret_volume = volume.secret.clone().unwrap();
        let secret_name = secret_volume.secret_name.unwrap();
        let item = &secret_volume.items.unwrap()[0];

        let existing = rendering.scenario == "existing-secret-values.yaml";
        if existing {
            assert_eq!(secret_name, "team-gopls-tokens");
            assert_eq!(item.key, "tokens.txt");
            assert!(rendering.find("Secret", &secret_name).is_none());
        } else {
            let secret: k8s_openapi::api::core::v1::Secret = rendering.get("Secret", &secret_name);
            let data = secret.data.unwrap();
            let tokens = String::from_utf8(data[&item.key].0.clone()).unwrap();
            for line in tokens.lines() {
                let (token, workspaces) = line.split_once(' ').unwrap();
                assert!(token.len() >= 16, "{}: short token", rendering.scenario);
                assert!(!workspaces.is_empty(), "{}", rendering.scenario);
            }
        }

        let mount = rendering
            .server_container()
            .volume_mounts
            .unwrap()
            .into_iter()
            .find(|m| m.name == "tokens")
            .unwrap();
        let tokens_file = format!("{}/{}", mount.mount_path, item.path);
        assert_eq!(
            rendering.server_toml()["tokens_file"].as_str(),
            Some(tokens_file.as_str()),
            "{}",
            rendering.scenario
        );
    }
}

#[test]
fn notes_show_vs_code_settings() {
    let cases = [
        (
            "defaults-values.yaml",
            "\"REMOTE_GOPLS_SERVER\": \"http://127.0.0.1:7443\"",
        ),
        (
            "ingress-tls-values.yaml",
            "\"REMOTE_GOPLS_SERVER\": \"wss://gopls.example.com\"",
        ),
    ];
    for (name, server_line) in cases {
        let notes = helm::notes(Some(&chart_dir().join("ci").join(name))).unwrap();
        for want in [
            "\"go.alternateTools\": { \"gopls\":",
            "\"go.toolsEnvVars\": {",
            server_line,
            "\"REMOTE_GOPLS_TOKEN\":",
            "\"REMOTE_GOPLS_WORKSPACE\":",
            "remote-gopls-server status",
            "kubectl logs",
            "/metrics",
        ] {
            assert!(
                notes.contains(want),
                "{name}: NOTES lack {want:?}:\n{notes}"
            );
        }
    }
}

#[test]
fn bad_values_fail_rendering() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["cgroups.mode=privileged"],
            "invalid cgroups.mode \"privileged\"",
        ),
        (
            &["resources.limits.memory=2Gi"],
            "does not fit in the memory budget",
        ),
        (
            &["resources.limits.memory=lots"],
            "invalid resources.limits.memory \"lots\"",
        ),
        (
            &["resources.limits=null"],
            "resources.limits.memory is required",
        ),
        (
            &["server.controller.budgetFraction=1.5"],
            "invalid server.controller.budgetFraction 1.5",
        ),
        (
            &[
                "auth.tokens[0].token=short",
                "auth.tokens[0].workspaces={*}",
            ],
            "invalid auth.tokens[0].token",
        ),
    ];
    for (sets, want) in cases {
        let error = helm::template(None, sets)
            .map(|_| "rendered".to_owned())
            .unwrap_or_else(|e| format!("{e:#}"));
        assert!(
            error.contains(want),
            "{sets:?}: expected {want:?}, got {error}"
        );
    }
}
