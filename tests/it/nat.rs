//! Hosts behind NAT, scraped through promsd-gateway: a site namespace (node exporter and agents) reaches the
//! central one (gateway and Prometheus) only through a masquerading router, so nothing central can open a
//! connection to the site. Real Prometheus scrapes through `proxy_url`, both with the one-job http_sd list
//! of the gateway and with PushProx-style static targets; tokens that are wrong, expired, out of scope or
//! revoked leave their targets down.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use promsd_tests::{Netns, Process, eventually, require, workspace_bin};

const GATEWAY: &str = "10.2.0.2:8080";

/// A token file entry; the secret of each token is `<id>-secret`.
fn token(id: &str, expires: &str, clients: &str) -> String {
    let hash: String = ring::digest::digest(&ring::digest::SHA256, format!("{id}-secret").as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "  - id: {id}\n    secret_sha256: {hash}\n    expires: {expires}\n    clients: [\"{clients}\"]\n    tenant: {id}\n"
    )
}

fn write_tokens(path: &Path, entries: &[String]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("tokens:\n{}", entries.concat())).expect("write tokens");
    std::fs::rename(&tmp, path).expect("rename tokens");
}

/// Three namespaces: `site` (10.1.0.2) behind `router` (10.1.0.1 / 10.2.0.1), which masquerades what it
/// forwards to `central` (10.2.0.2). `central` has no route to the site at all.
struct Topology {
    central: Netns,
    router: Netns,
    site: Netns,
}

impl Topology {
    /// With `routed`, the site's default route is the router (NAT); without, the site reaches only the
    /// router itself (and so the central network only through a proxy there).
    fn new(dir: &Path, routed: bool) -> Self {
        let (central, router, site) = (Netns::new("127.0.0.1"), Netns::new("127.0.0.1"), Netns::new("127.0.0.1"));
        router.link(("r-site", "10.1.0.1/24"), &site, ("site0", "10.1.0.2/24"));
        router.link(("r-central", "10.2.0.1/24"), &central, ("central0", "10.2.0.2/24"));
        if routed {
            site.run("ip", &["route", "add", "default", "via", "10.1.0.1"]);
        }
        router.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        let rules = dir.join("nat.nft");
        std::fs::write(
            &rules,
            "table ip nat {\n  chain postrouting {\n    type nat hook postrouting priority srcnat;\n    oifname \"r-central\" masquerade\n  }\n}\n",
        )
        .expect("write nft rules");
        router.run("nft", &["-f", rules.to_str().expect("path")]);
        Self { central, router, site }
    }
}

/// `up` by (job, instance): its value and the series' labels.
type Up = BTreeMap<(String, String), (f64, BTreeMap<String, String>)>;

/// `up` from Prometheus's API inside `central`.
fn up(central: &Netns) -> Option<Up> {
    let output = central
        .command("curl")
        .args(["-sf", "--max-time", "5", "http://127.0.0.1:9090/api/v1/query?query=up"])
        .output()
        .ok()?;
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    let mut out = BTreeMap::new();
    for series in json["data"]["result"].as_array()? {
        let labels: BTreeMap<String, String> = series["metric"]
            .as_object()?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let value: f64 = series["value"][1].as_str()?.parse().ok()?;
        out.insert((labels.get("job")?.clone(), labels.get("instance")?.clone()), (value, labels));
    }
    Some(out)
}

#[test]
fn prometheus_scrapes_hosts_behind_nat_through_the_gateway_and_refused_tokens_stay_down() {
    for program in ["prometheus", "prometheus-node-exporter", "nft", "curl"] {
        require(program);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let Topology { central, router: _router, site } = Topology::new(d, true);

    let site_a = token("site-a", "2999-01-01T00:00:00Z", "*.site-a.example.org");
    let entries = vec![site_a.clone(), token("old", "2001-01-01T00:00:00Z", "*.site-a.example.org")];
    let tokens = d.join("tokens.yml");
    write_tokens(&tokens, &entries);
    let mut command = central.command(workspace_bin("promsd-gateway").to_str().expect("path"));
    command.args(["--web.listen-address", ":8080", "--token.file", tokens.to_str().expect("path")]);
    command.args(["--scrape.default-timeout", "5s"]);
    let gateway = Process::spawn("gateway", command, &d.join("gateway.log"));

    let mut node = site.command("prometheus-node-exporter");
    node.args(["--web.listen-address=127.0.0.1:9100", "--collector.disable-defaults", "--collector.loadavg"]);
    let _node = Process::spawn("node", node, &d.join("node.log"));
    // host1 polls with site-a's token; host2 with a wrong secret; host3 with an expired token; host4 with
    // site-a's token but a name outside its scope.
    for (id, secret) in [("site-a", "site-a-secret"), ("wrong", "not-the-secret"), ("old", "old-secret")] {
        std::fs::write(d.join(format!("{id}.secret")), format!("{secret}\n")).expect("write secret");
    }
    std::fs::write(
        d.join("agent.yml"),
        "labels: {site: a}\nmodules:\n  node:\n    method: http\n    http: {port: 9100}\n",
    )
    .expect("write agent config");
    let agent = |fqdn: &str, token_id: &str, secret: &str| {
        let mut command = site.command(workspace_bin("registrar").to_str().expect("path"));
        command.args(["agent", "--config", d.join("agent.yml").to_str().expect("path")]);
        command.args(["--proxy-url", &format!("http://{GATEWAY}/"), "--proxy.fqdn", fqdn]);
        command.args(["--proxy.token-id", token_id, "--proxy.token-secret-file"]);
        command.arg(d.join(format!("{secret}.secret")));
        command.env_remove("HTTP_PROXY").env_remove("http_proxy");
        Process::spawn(fqdn, command, &d.join(format!("{fqdn}.log")))
    };
    let host1 = agent("host1.site-a.example.org", "site-a", "site-a");
    let host2 = agent("host2.site-a.example.org", "site-a", "wrong");
    let host3 = agent("host3.site-a.example.org", "old", "old");
    let host4 = agent("host4.site-b.example.org", "site-a", "site-a");

    std::fs::write(
        d.join("prometheus.yml"),
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\nscrape_configs:\n  - job_name: nat\n    proxy_url: http://127.0.0.1:8080/\n    http_sd_configs: [{url: 'http://127.0.0.1:8080/clients', refresh_interval: 1s}]\n  - job_name: pushprox\n    proxy_url: http://127.0.0.1:8080/\n    static_configs:\n      - targets: [host1.site-a.example.org:9100, host2.site-a.example.org:9100, host3.site-a.example.org:9100, host4.site-b.example.org:9100]\n",
    )
    .expect("write prometheus.yml");
    let mut command = central.command("prometheus");
    command.arg(format!("--config.file={}", d.join("prometheus.yml").display()));
    command.arg(format!("--storage.tsdb.path={}", d.join("tsdb").display()));
    command.arg("--web.listen-address=127.0.0.1:9090");
    let _prometheus = Process::spawn("prometheus", command, &d.join("prometheus.log"));

    // The topology is what it claims: the site reaches the gateway, nothing central reaches the site.
    let reach = |netns: &Netns, url: &str| {
        netns
            .command("curl")
            .args(["-s", "-o", "/dev/null", "--max-time", "2", url])
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(reach(&site, &format!("http://{GATEWAY}/-/healthy")), "the site reaches the gateway:\n{}", gateway.log());
    assert!(!reach(&central, "http://10.1.0.2:9100/metrics"), "the central namespace must not reach the site");

    let wanted = |up: &Up, job: &str, instance: &str| {
        up.get(&(job.to_string(), instance.to_string())).map(|(value, labels)| (*value, labels.clone()))
    };
    let logs = || format!("gateway:\n{}\nhost1:\n{}\nhost2:\n{}", gateway.log(), host1.log(), host2.log());
    let up_now =
        eventually("Prometheus to scrape host1 through the gateway, both ways", Duration::from_secs(90), || {
            let up = up(&central)?;
            let listed = wanted(&up, "nat", "host1.site-a.example.org:9998")?;
            let static_target = wanted(&up, "pushprox", "host1.site-a.example.org:9100")?;
            (listed.0 == 1.0 && static_target.0 == 1.0).then_some(up)
        });
    let (_, labels) = wanted(&up_now, "nat", "host1.site-a.example.org:9998").expect("listed");
    assert_eq!(
        labels.get("site").map(String::as_str),
        Some("a"),
        "the agent's labels come with its listing: {labels:?}"
    );
    let targets_listed: Vec<&(String, String)> = up_now.keys().filter(|(job, _)| job == "nat").collect();
    assert_eq!(targets_listed.len(), 1, "refused clients are not listed: {targets_listed:?}\n{}", logs());
    for host in ["host2.site-a.example.org", "host3.site-a.example.org", "host4.site-b.example.org"] {
        let instance = format!("{host}:9100");
        let (value, _) = eventually(&format!("{host} to be scraped and down"), Duration::from_secs(30), || {
            wanted(&up(&central)?, "pushprox", &instance)
        });
        assert_eq!(value, 0.0, "{host} polls with a refused token, so it is down");
    }
    host2.wait_for_log("the gateway refused the poll: 401", Duration::from_secs(10));
    host3.wait_for_log("the gateway refused the poll: 401", Duration::from_secs(10));
    host4.wait_for_log("the gateway refused the poll: 403", Duration::from_secs(10));
    assert!(!gateway.log().contains("site-a-secret") && !host1.log().contains("site-a-secret"), "{}", logs());

    // Revoked without a restart: host1 goes down (its static target) and out of the listing.
    write_tokens(&tokens, &entries[1..]);
    eventually("host1 to go down once its token is revoked", Duration::from_secs(60), || {
        let up = up(&central)?;
        let static_target = wanted(&up, "pushprox", "host1.site-a.example.org:9100")?;
        let listed = wanted(&up, "nat", "host1.site-a.example.org:9998");
        (static_target.0 == 0.0 && listed.is_none_or(|(v, _)| v == 0.0)).then_some(())
    });
    host1.wait_for_log("the gateway refused the poll: 401", Duration::from_secs(10));
    // And back, once the token is there again: the agent kept polling with backoff.
    write_tokens(&tokens, &[site_a]);
    eventually("host1 to be up again with its token restored", Duration::from_secs(60), || {
        (wanted(&up(&central)?, "pushprox", "host1.site-a.example.org:9100")?.0 == 1.0).then_some(())
    });
}

/// TLS on every hop, through a forward proxy: the site reaches nothing but its router, where tinyproxy
/// runs; the agent reaches the TLS gateway with CONNECT through it (HTTPS_PROXY) and checks the gateway's
/// certificate against its own CA; Prometheus scrapes through the gateway over TLS too (`proxy_url: https`).
#[test]
fn an_agent_reaches_a_tls_gateway_through_https_proxy_and_prometheus_scrapes_it() {
    for program in ["prometheus", "prometheus-node-exporter", "nft", "curl", "tinyproxy"] {
        require(program);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let Topology { central, router, site } = Topology::new(d, false);
    promsd_tests::tls::make_certificates_for(d, "IP:10.2.0.2,IP:127.0.0.1", &[]);
    std::fs::write(d.join("web.yml"), "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n")
        .expect("web.yml");
    write_tokens(&d.join("tokens.yml"), &[token("site-a", "2999-01-01T00:00:00Z", "*.site-a.example.org")]);
    std::fs::write(d.join("site-a.secret"), "site-a-secret\n").expect("write secret");
    let mut command = central.command(workspace_bin("promsd-gateway").to_str().expect("path"));
    command.args(["--web.listen-address", ":8443", "--web.config.file"]).arg(d.join("web.yml"));
    command.arg("--token.file").arg(d.join("tokens.yml"));
    let gateway = Process::spawn("gateway", command, &d.join("gateway.log"));

    std::fs::write(
        d.join("tinyproxy.conf"),
        format!(
            "Port 8888\nListen 10.1.0.1\nAllow 10.1.0.0/24\nConnectPort 8443\nLogLevel Connect\nLogFile \"{}\"\n",
            d.join("tinyproxy.log").display()
        ),
    )
    .expect("tinyproxy.conf");
    let mut command = router.command("tinyproxy");
    command.args(["-d", "-c"]).arg(d.join("tinyproxy.conf"));
    let _tinyproxy = Process::spawn("tinyproxy", command, &d.join("tinyproxy.out"));
    let reach = |netns: &Netns, url: &str, proxy: Option<&str>| {
        let mut command = netns.command("curl");
        command.args(["-s", "-o", "/dev/null", "--max-time", "2", "--cacert"]).arg(d.join("ca.pem")).arg(url);
        if let Some(proxy) = proxy {
            command.args(["--proxy", proxy]);
        }
        command.status().is_ok_and(|s| s.success())
    };
    assert!(
        !reach(&site, "https://10.2.0.2:8443/-/healthy", None),
        "the site reaches the gateway only through the proxy"
    );
    eventually("the gateway through the proxy", Duration::from_secs(20), || {
        reach(&site, "https://10.2.0.2:8443/-/healthy", Some("http://10.1.0.1:8888")).then_some(())
    });

    let mut node = site.command("prometheus-node-exporter");
    node.args(["--web.listen-address=127.0.0.1:9100", "--collector.disable-defaults", "--collector.loadavg"]);
    let _node = Process::spawn("node", node, &d.join("node.log"));
    std::fs::write(d.join("agent.yml"), "modules:\n  node:\n    method: http\n    http: {port: 9100}\n")
        .expect("agent.yml");
    let mut command = site.command(workspace_bin("registrar").to_str().expect("path"));
    command.args(["agent", "--config", d.join("agent.yml").to_str().expect("path")]);
    command.args(["--proxy-url", "https://10.2.0.2:8443/", "--proxy.fqdn", "host1.site-a.example.org"]);
    command.args(["--proxy.token-id", "site-a", "--proxy.token-secret-file"]).arg(d.join("site-a.secret"));
    command.arg("--proxy.cacert").arg(d.join("ca.pem"));
    command.env("HTTPS_PROXY", "http://10.1.0.1:8888").env_remove("NO_PROXY").env_remove("no_proxy");
    let agent = Process::spawn("agent", command, &d.join("agent.log"));
    agent.wait_for_log("reaching the gateway through a forward proxy", Duration::from_secs(10));

    let ca = d.join("ca.pem");
    std::fs::write(
        d.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nscrape_configs:\n  - job_name: nat\n    proxy_url: https://127.0.0.1:8443/\n    tls_config: {{ca_file: {ca}}}\n    http_sd_configs:\n      - url: https://127.0.0.1:8443/clients\n        refresh_interval: 1s\n        tls_config: {{ca_file: {ca}}}\n",
            ca = ca.display()
        ),
    )
    .expect("write prometheus.yml");
    let mut command = central.command("prometheus");
    command.arg(format!("--config.file={}", d.join("prometheus.yml").display()));
    command.arg(format!("--storage.tsdb.path={}", d.join("tsdb").display()));
    command.arg("--web.listen-address=127.0.0.1:9090");
    let prometheus = Process::spawn("prometheus", command, &d.join("prometheus.log"));
    let logs = || format!("gateway:\n{}\nagent:\n{}\nprometheus:\n{}", gateway.log(), agent.log(), prometheus.log());
    let found = promsd_tests::eventually_or(
        "Prometheus to scrape host1 over TLS through the gateway",
        Duration::from_secs(90),
        || {
            let up = up(&central)?;
            let (value, _) = up.get(&("nat".to_string(), "host1.site-a.example.org:9998".to_string()))?;
            (*value == 1.0).then_some(())
        },
    );
    assert!(found.is_some(), "{}", logs());
    let proxied = std::fs::read_to_string(d.join("tinyproxy.log")).unwrap_or_default();
    assert!(proxied.contains("10.2.0.2:8443") || proxied.contains("10.2.0.2"), "tinyproxy saw the CONNECT:\n{proxied}");
}

/// Discovery in etcd: with `--registry.zone`, every module an agent announces is a SkyDNS record under the
/// gateway's lease, so dnsd answers it and lists it for http_sd; a revoked token takes its records away, and
/// so does the gateway when it stops.
#[test]
fn clients_of_the_gateway_are_registered_in_etcd_and_answered_by_dnsd() {
    let stack = crate::stack::Stack::start();
    let d = stack.dir.path();
    let tokens = d.join("tokens.yml");
    let site_a = token("site-a", "2999-01-01T00:00:00Z", "*.site-a.example.org");
    write_tokens(&tokens, std::slice::from_ref(&site_a));
    std::fs::write(d.join("site-a.secret"), "site-a-secret\n").expect("write secret");
    let mut command = stack.netns.command(workspace_bin("promsd-gateway").to_str().expect("path"));
    command.args(["--web.listen-address", "127.0.0.1:8080", "--token.file", tokens.to_str().expect("path")]);
    command.args(["--registry.zone", "prom.local", "--endpoints", crate::stack::ETCD]);
    command.env_remove("ETCDCTL_ENDPOINTS");
    let mut gateway = Process::spawn("gateway", command, &d.join("gateway.log"));
    std::fs::write(
        d.join("agent.yml"),
        "labels: {site: a}\nmodules:\n  node:\n    method: http\n    http: {port: 9100}\n",
    )
    .expect("agent.yml");
    let mut command = stack.registrar();
    command.args(["agent", "--config", d.join("agent.yml").to_str().expect("path")]);
    command.args(["--proxy-url", "http://127.0.0.1:8080/", "--proxy.fqdn", "host1.site-a.example.org"]);
    command.args(["--proxy.token-id", "site-a", "--proxy.token-secret-file"]).arg(d.join("site-a.secret"));
    let _agent = Process::spawn("agent", command, &d.join("agent.log"));

    let srv = || stack.dig(&["SRV", "node.nat.prom.local"]).answer_sorted();
    let answer = eventually("the agent's module in DNS", Duration::from_secs(30), || {
        let answer = srv();
        (!answer.is_empty()).then_some(answer)
    });
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert!(answer[0].contains("9998 host1.site-a.example.org."), "{answer:?}\n{}", gateway.log());
    let listed = stack.curl("http://127.0.0.1:9153/sd/v1/prom.local?service=nat").expect("http_sd");
    let groups: serde_json::Value = serde_json::from_str(&listed).expect("JSON");
    let labels = &groups[0]["labels"];
    assert_eq!(groups[0]["targets"][0], "host1.site-a.example.org:9998", "{listed}");
    assert_eq!(
        (&labels["__param_module"], &labels["__metrics_path__"], &labels["site"]),
        (&"node".into(), &"/proxy".into(), &"a".into()),
        "{listed}"
    );

    // Its token revoked: the client and its record go.
    write_tokens(&tokens, &[]);
    eventually("the record to go with the token", Duration::from_secs(30), || srv().is_empty().then_some(()));
    write_tokens(&tokens, &[site_a]);
    eventually("the record back with the token", Duration::from_secs(30), || (!srv().is_empty()).then_some(()));
    // Someone deletes it in etcd: written again.
    let key = "/skydns/local/prom/nat/node/org/example/site-a/host1";
    assert!(stack.etcd.get(key).is_some(), "{key} in etcd");
    stack.etcd.del(key);
    eventually("the deleted record written again", Duration::from_secs(60), || stack.etcd.get(key));
    // The gateway stops: its lease and every record under it go at once.
    gateway.signal("TERM");
    assert!(gateway.wait_timeout(Duration::from_secs(10)).is_some(), "the gateway stops:\n{}", gateway.log());
    assert_eq!(stack.etcd.get(key), None, "the record goes with the gateway's lease");
}
