//! The Helm chart, rendered by Helm's own engine (the `helm-python-sdk`
//! package binds Helm 4's Go SDK; the test command installs it with
//! `kubernetes-validate` into `target/py`), for the defaults and the
//! overrides operators use. Every rendered object passes `helm lint
//! --strict` and strict validation against the Kubernetes API schemas of an
//! old and a new Kubernetes; bad values are refused at install naming the
//! key; the rendered configuration and environment pass the gateway's own
//! `--check`, and the gateway started with them serves the rendered probe
//! and scrape paths; the PrometheusRule carries the rule file promtool
//! checks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, bail, ensure};
use herald_tests::{Gateway, GatewayOptions, gateway_binary, scratch_dir, wait_until};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The oldest Kubernetes the chart supports and the newest schemas known.
const KUBE_VERSIONS: [&str; 2] = ["1.29.0", "1.37.0"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What Helm rendered for some values, or why it refused them.
#[derive(Debug)]
enum Outcome {
    Refused(String),
    Rendered(Rendered),
}

#[derive(Debug)]
struct Rendered {
    lint: Vec<String>,
    notes: String,
    objects: Vec<Value>,
    /// `helm/herald/files/alerts.yml`, parsed by the same YAML reader.
    alert_file: Value,
}

impl Rendered {
    fn kinds(&self) -> Vec<&str> {
        self.objects
            .iter()
            .filter_map(|o| o["kind"].as_str())
            .collect()
    }

    fn one(&self, kind: &str) -> &Value {
        let found: Vec<&Value> = self.objects.iter().filter(|o| o["kind"] == kind).collect();
        assert_eq!(
            found.len(),
            1,
            "one {kind} expected, rendered: {:?}",
            self.kinds()
        );
        found[0]
    }

    fn has(&self, kind: &str) -> bool {
        self.objects.iter().any(|o| o["kind"] == kind)
    }

    fn pod(&self) -> &Value {
        &self.one("Deployment")["spec"]["template"]
    }

    fn container(&self) -> &Value {
        &self.pod()["spec"]["containers"][0]
    }

    /// The container's environment: plain values, and `secret/key` for
    /// secret references.
    fn env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for var in self.container()["env"].as_array().into_iter().flatten() {
            let name = var["name"].as_str().unwrap_or_default().to_owned();
            let value = match (&var["value"], &var["valueFrom"]["secretKeyRef"]) {
                (Value::String(v), _) => v.clone(),
                (_, Value::Object(r)) => {
                    assert!(
                        r.get("optional").is_none_or(|o| o == false),
                        "{name}: a secret reference must fail fast, not be optional"
                    );
                    format!(
                        "secret:{}/{}",
                        r["name"].as_str().unwrap_or_default(),
                        r["key"].as_str().unwrap_or_default()
                    )
                }
                _ => panic!("{name}: neither a value nor a secret reference: {var}"),
            };
            env.insert(name, value);
        }
        env
    }
}

async fn render(values: Value) -> Result<Outcome> {
    let python = repo().join("target/py/bin/python");
    ensure!(
        python.exists(),
        "{} is missing: run ./scripts/test.sh, which installs helm-python-sdk and \
         kubernetes-validate into target/py",
        python.display()
    );
    let request = json!({
        "chart": repo().join("helm/herald"),
        "values": values,
        "release": "herald",
        "namespace": "realtime",
        "kube_versions": KUBE_VERSIONS,
        "load_yaml": [repo().join("helm/herald/files/alerts.yml")],
    });
    let mut child = Command::new(&python)
        .arg(repo().join("tests/chart/render.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("run tests/chart/render.py")?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(request.to_string().as_bytes()).await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    ensure!(
        out.status.success(),
        "render.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).context("render.py's answer")?;
    if let Some(message) = answer["refused"].as_str() {
        return Ok(Outcome::Refused(message.to_owned()));
    }
    let errors = &answer["lint_errors"];
    ensure!(
        errors.as_array().is_some_and(Vec::is_empty),
        "helm lint --strict: {errors}"
    );
    let mut objects = Vec::new();
    for entry in answer["objects"].as_array().context("objects")? {
        let invalid = &entry["invalid"];
        ensure!(
            invalid.as_object().is_some_and(|m| m.is_empty()),
            "{} ({}) is not a valid Kubernetes object: {invalid}",
            entry["object"]["kind"],
            entry["template"]
        );
        let kind = entry["object"]["kind"].as_str().unwrap_or_default();
        if entry["schema"] == "no schema" {
            ensure!(
                ["ServiceMonitor", "PrometheusRule"].contains(&kind),
                "{kind} was not validated against a Kubernetes schema"
            );
        }
        objects.push(entry["object"].clone());
    }
    Ok(Outcome::Rendered(Rendered {
        lint: answer["lint"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m.as_str().map(str::to_owned))
            .collect(),
        notes: answer["notes"].as_str().unwrap_or_default().to_owned(),
        objects,
        alert_file: answer["loaded"][0].clone(),
    }))
}

async fn rendered(values: Value) -> Result<Rendered> {
    match render(values.clone()).await? {
        Outcome::Rendered(r) => Ok(r),
        Outcome::Refused(why) => bail!("values refused: {why}\n{values:#}"),
    }
}

async fn refused(values: Value) -> Result<String> {
    match render(values.clone()).await? {
        Outcome::Refused(why) => Ok(why),
        Outcome::Rendered(r) => bail!("accepted {values}: rendered {:?}", r.kinds()),
    }
}

/// `herald-gateway --check` with the ConfigMap's file and the Deployment's
/// plain environment: the chart only passes settings the gateway accepts.
async fn gateway_accepts(r: &Rendered) -> Result<()> {
    let dir = scratch_dir("chart-check");
    let config = r.one("ConfigMap")["data"]["herald.toml"]
        .as_str()
        .context("herald.toml in the ConfigMap")?;
    let path = dir.join("herald.toml");
    std::fs::write(&path, config)?;
    let mut cmd = Command::new(gateway_binary());
    cmd.arg("--check").arg("--config").arg(&path).env_clear();
    for (name, value) in r.env() {
        if !value.starts_with("secret:") {
            cmd.env(name, value);
        }
    }
    let out = cmd.output().await?;
    ensure!(
        out.status.success(),
        "the gateway refuses what the chart rendered: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The gateway started as the pod would be, from the rendered ConfigMap and
/// environment, serves the rendered probe paths and the scrape path on the
/// port the probes and annotations name. Only the listen address is moved
/// to loopback (its port checked against the container's first).
async fn pod_serves_its_probes(r: &Rendered) -> Result<()> {
    let container = r.container();
    let port = container["ports"][0]["containerPort"]
        .as_i64()
        .context("containerPort")?;
    assert_eq!(container["ports"][0]["name"], "http");
    let env = r.env();
    assert_eq!(env["HERALD_LISTEN"], format!("0.0.0.0:{port}"));
    let annotations = &r.pod()["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"], port.to_string());
    let config = r.one("ConfigMap")["data"]["herald.toml"]
        .as_str()
        .context("herald.toml")?;
    let gw = Gateway::start(GatewayOptions {
        config: Some(config.to_owned()),
        env: env
            .into_iter()
            .filter(|(name, value)| name != "HERALD_LISTEN" && !value.starts_with("secret:"))
            .collect(),
        ..Default::default()
    })
    .await?;
    for probe in ["livenessProbe", "readinessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["port"], "http", "{probe} targets the named port");
        let path = get["path"].as_str().context("probe path")?.to_owned();
        wait_until(&format!("{probe} {path} answers 200"), || async {
            matches!(gw.get(&path).await, Ok((200, _)))
        })
        .await?;
    }
    let path = annotations["prometheus.io/path"]
        .as_str()
        .context("scrape path")?;
    let (status, text) = gw.get(path).await?;
    assert!(
        status == 200 && text.contains("herald_build_info"),
        "{status}"
    );
    Ok(())
}

#[tokio::test]
async fn the_defaults_render_valid_objects_for_a_single_replica() -> Result<()> {
    let r = rendered(json!({})).await?;
    assert!(
        r.lint.iter().all(|m| m == "icon is recommended"),
        "lint findings: {:?}",
        r.lint
    );
    for kind in [
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "ServiceAccount",
    ] {
        assert!(r.has(kind), "no {kind}: {:?}", r.kinds());
    }
    for kind in [
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Ingress",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
    ] {
        assert!(!r.has(kind), "{kind} rendered by default");
    }
    let pod = r.pod();
    assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
    assert_eq!(pod["spec"]["serviceAccountName"], "herald");
    // One replica: nothing to spread.
    assert!(
        pod["spec"]["affinity"].is_null() && pod["spec"]["topologySpreadConstraints"].is_null()
    );
    assert_eq!(
        pod["metadata"]["annotations"]["prometheus.io/scrape"],
        "true"
    );
    // (unreadyMs + drainMs) / 1000 + 10, the same in the object and the notes.
    assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 17);
    assert!(
        r.notes.contains("terminationGracePeriodSeconds is 17 s"),
        "{}",
        r.notes
    );
    assert_eq!(r.container()["image"], "herald:0.1.0");
    let env = r.env();
    // No credential set: no reference to a key the Secret does not hold.
    assert!(
        !env.keys()
            .any(|k| k.starts_with("HERALD_JWT") || k.starts_with("HERALD_ADMIN")),
        "{env:?}"
    );
    gateway_accepts(&r).await?;
    pod_serves_its_probes(&r).await?;

    let digest = format!("sha256:{}", "ab".repeat(32));
    let r = rendered(json!({"image": {"repository": "registry.example/herald", "digest": digest}}))
        .await?;
    assert_eq!(
        r.container()["image"],
        format!("registry.example/herald@{digest}")
    );
    Ok(())
}

#[tokio::test]
async fn several_replicas_are_spread_protected_and_scaled_down_gently() -> Result<()> {
    let r = rendered(json!({
        "replicaCount": 3,
        "redis": {"url": "redis://redis-master.data:6379"},
    }))
    .await?;
    let spec = &r.pod()["spec"];
    let anti =
        &spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(
        anti["podAffinityTerm"]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(
        anti["podAffinityTerm"]["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"],
        "herald"
    );
    assert_eq!(
        spec["topologySpreadConstraints"][0]["topologyKey"],
        "topology.kubernetes.io/zone"
    );
    assert_eq!(r.one("PodDisruptionBudget")["spec"]["maxUnavailable"], 1);
    let strategy = &r.one("Deployment")["spec"]["strategy"]["rollingUpdate"];
    assert_eq!(strategy["maxUnavailable"], 0, "{strategy}");
    assert_eq!(
        r.env()["HERALD_REDIS_URL"],
        "redis://redis-master.data:6379"
    );
    gateway_accepts(&r).await?;

    let r = rendered(json!({
        "redis": {"url": "redis://redis:6379"},
        "highAvailability": {"podAntiAffinity": "hard"},
        "autoscaling": {"enabled": true, "minReplicas": 3, "maxReplicas": 12, "connectionsPerPod": 8000},
    }))
    .await?;
    assert!(
        r.one("Deployment")["spec"]["replicas"].is_null(),
        "the HPA owns replicas"
    );
    assert!(
        r.pod()["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            .is_array()
    );
    let hpa = &r.one("HorizontalPodAutoscaler")["spec"];
    assert_eq!(
        (hpa["minReplicas"].clone(), hpa["maxReplicas"].clone()),
        (json!(3), json!(12))
    );
    let pods = &hpa["metrics"][1]["pods"];
    assert_eq!(pods["metric"]["name"], "herald_connections");
    assert_eq!(pods["target"]["averageValue"], "8000");
    let down = &hpa["behavior"]["scaleDown"];
    assert_eq!(
        down["policies"][0],
        json!({"type": "Pods", "value": 1, "periodSeconds": 120})
    );
    assert_eq!(down["stabilizationWindowSeconds"], 600);
    Ok(())
}

#[tokio::test]
async fn credentials_come_from_existing_secrets_and_fail_fast() -> Result<()> {
    let r = rendered(json!({
        "secrets": {
            "existingSecret": "herald-credentials",
            "keys": {"jwtSecret": "jwt", "adminKey": "", "apiKey": "operator-key"},
        },
        "console": {"enabled": true},
        "redis": {
            "existingSecret": "redis-connection",
            "existingSecretKey": "url",
            "username": "herald",
            "password": {"existingSecret": "redis-auth", "key": "password"},
        },
    }))
    .await?;
    assert!(!r.has("Secret"), "an existing Secret is used, none created");
    let env = r.env();
    assert_eq!(env["HERALD_JWT_SECRET"], "secret:herald-credentials/jwt");
    assert_eq!(
        env["HERALD_API_KEY"],
        "secret:herald-credentials/operator-key"
    );
    assert!(
        !env.contains_key("HERALD_ADMIN_KEY"),
        "an unnamed key is not referenced"
    );
    assert_eq!(env["HERALD_API_CONSOLE"], "true");
    assert_eq!(env["HERALD_REDIS_URL"], "secret:redis-connection/url");
    assert_eq!(env["HERALD_REDIS_USERNAME"], "herald");
    assert_eq!(env["HERALD_REDIS_PASSWORD"], "secret:redis-auth/password");
    assert!(r.pod()["metadata"]["annotations"]["checksum/secret"].is_null());

    // Values the chart stores itself: the Secret holds exactly the keys the
    // pod references, and its checksum rolls the pods when it changes.
    let with_key = |key: &str| json!({"secrets": {"jwtSecret": "j", "apiKey": key}, "console": {"enabled": true}});
    let r = rendered(with_key("k1")).await?;
    let secret = r.one("Secret");
    let mut keys: Vec<&String> = secret["data"].as_object().context("data")?.keys().collect();
    keys.sort();
    assert_eq!(keys, ["api-key", "jwt-secret"]);
    let env = r.env();
    assert_eq!(env["HERALD_API_KEY"], "secret:herald/api-key");
    assert_eq!(env["HERALD_JWT_SECRET"], "secret:herald/jwt-secret");
    let checksum = |r: &Rendered| r.pod()["metadata"]["annotations"]["checksum/secret"].clone();
    let other = rendered(with_key("k2")).await?;
    assert_ne!(checksum(&r), checksum(&other));
    Ok(())
}

#[tokio::test]
async fn tls_sentinel_and_cluster_redis_are_configured_from_values() -> Result<()> {
    let r = rendered(json!({
        "replicaCount": 2,
        "redis": {
            "nodes": ["redis.example.net:6380"],
            "tls": {"enabled": true, "caSecret": "redis-ca", "clientCertSecret": "herald-redis-client"},
            "password": {"existingSecret": "redis-auth"},
        },
    }))
    .await?;
    let env = r.env();
    assert_eq!(env["HERALD_REDIS_NODES"], "redis.example.net:6380");
    assert_eq!(env["HERALD_REDIS_TLS"], "true");
    assert_eq!(
        env["HERALD_REDIS_PASSWORD"],
        "secret:redis-auth/redis-password"
    );
    let ca = &env["HERALD_REDIS_TLS_CA_FILE"];
    let cert = &env["HERALD_REDIS_TLS_CERT_FILE"];
    let mounts = r.container()["volumeMounts"].as_array().context("mounts")?;
    for file in [ca, cert, &env["HERALD_REDIS_TLS_KEY_FILE"]] {
        assert!(
            mounts.iter().any(|m| {
                file.starts_with(&format!("{}/", m["mountPath"].as_str().unwrap_or("-")))
                    && m["name"] != "config"
            }),
            "{file} is on no mounted Secret: {mounts:?}"
        );
    }
    let volumes = r.pod()["spec"]["volumes"].as_array().context("volumes")?;
    let secrets: Vec<&str> = volumes
        .iter()
        .filter_map(|v| v["secret"]["secretName"].as_str())
        .collect();
    assert_eq!(secrets, ["redis-ca", "herald-redis-client"]);

    let r = rendered(json!({
        "replicaCount": 2,
        "redis": {
            "mode": "sentinel",
            "nodes": ["sentinel-0.sentinel:26379", "sentinel-1.sentinel:26379", "sentinel-2.sentinel:26379"],
            "serviceName": "mymaster",
        },
    }))
    .await?;
    let env = r.env();
    assert_eq!(env["HERALD_REDIS_MODE"], "sentinel");
    assert_eq!(env["HERALD_REDIS_SERVICE_NAME"], "mymaster");
    assert_eq!(env["HERALD_REDIS_NODES"].split(',').count(), 3);
    gateway_accepts(&r).await?;

    let cluster =
        "redis-cluster://redis-0.redis:6379?node=redis-1.redis:6379&node=redis-2.redis:6379";
    let r = rendered(json!({"replicaCount": 2, "redis": {"url": cluster}})).await?;
    assert_eq!(r.env()["HERALD_REDIS_URL"], cluster);
    gateway_accepts(&r).await?;
    Ok(())
}

#[tokio::test]
async fn ingress_network_policy_and_prometheus_operator_objects() -> Result<()> {
    let r = rendered(json!({
        "replicaCount": 2,
        "redis": {"url": "redis://redis:6379"},
        "ingress": {
            "enabled": true,
            "className": "nginx",
            "hosts": [{"host": "rt.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
            "tls": [{"hosts": ["rt.example.com"], "secretName": "rt-tls"}],
        },
        "networkPolicy": {
            "enabled": true,
            "ingressFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
        },
        "serviceMonitor": {"enabled": true, "labels": {"release": "kube-prometheus"}},
        "prometheusRule": {"enabled": true},
    }))
    .await?;
    let ingress = r.one("Ingress");
    let annotations = &ingress["metadata"]["annotations"];
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"],
        "3600"
    );
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/proxy-buffering"],
        "off"
    );
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], "herald");
    assert_eq!(backend["port"]["name"], "http");
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");

    let policy = &r.one("NetworkPolicy")["spec"];
    assert_eq!(policy["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        policy["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "ingress-nginx"
    );
    let egress_ports: Vec<i64> = policy["egress"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|rule| rule["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["port"].as_i64())
        .collect();
    assert_eq!(egress_ports, [53, 53, 6379, 26379]);

    // The ServiceMonitor scrapes, so the pods carry no scrape annotations:
    // nothing is scraped twice.
    let monitor = r.one("ServiceMonitor");
    assert_eq!(monitor["metadata"]["labels"]["release"], "kube-prometheus");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    assert!(r.pod()["metadata"]["annotations"]["prometheus.io/scrape"].is_null());

    // The PrometheusRule is the rule file Prometheus loads elsewhere, and
    // promtool accepts it as rendered.
    let rule = r.one("PrometheusRule");
    assert_eq!(rule["spec"], r.alert_file);
    let alerts = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .context("rules")?;
    assert!(alerts.len() >= 7, "{alerts:?}");
    let dir = scratch_dir("chart-rules");
    // JSON is YAML to promtool.
    let path = dir.join("rendered-rules.yml");
    std::fs::write(&path, rule["spec"].to_string())?;
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .await
        .context("run promtool (the test command installs it)")?;
    ensure!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn bad_values_are_refused_at_install_naming_the_key() -> Result<()> {
    let cases = [
        (json!({"replicas": 3}), "replicas"),
        (json!({"drainMs": "5s"}), "/drainMs"),
        (json!({"redis": {"tls": {"enabld": true}}}), "enabld"),
        (json!({"redis": {"url": "http://redis:6379"}}), "/redis/url"),
        (json!({"image": {"digest": "latest"}}), "/image/digest"),
        (
            json!({"highAvailability": {"podAntiAffinity": "always"}}),
            "/highAvailability/podAntiAffinity",
        ),
        (
            json!({"replicaCount": 3}),
            "more than one replica needs Redis",
        ),
        (json!({"console": {"enabled": true}}), "console.enabled"),
        (
            json!({"redis": {"url": "redis://r:6379", "nodes": ["r:6379"]}}),
            "redis.nodes",
        ),
        (
            json!({"redis": {"mode": "sentinel", "nodes": ["s:26379"]}}),
            "redis.serviceName",
        ),
        (
            json!({"redis": {"url": "redis://r:6379", "tls": {"caSecret": "ca"}}}),
            "rediss://",
        ),
    ];
    for (values, named) in cases {
        let why = refused(values.clone()).await?;
        assert!(
            why.contains(named),
            "{values}: the refusal does not name {named}: {why}"
        );
    }
    Ok(())
}
