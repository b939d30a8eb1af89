//! The units in systemd/ pass `systemd-analyze verify` (with the binaries where this build put them).

use promsd_tests::{require, workspace_bin};

#[test]
fn units_verify() {
    require("systemd-analyze");
    let dir = tempfile::tempdir().expect("temp dir");
    let units = concat!(env!("CARGO_MANIFEST_DIR"), "/../systemd");
    let bin_dir = workspace_bin("registrar").parent().expect("bin dir").display().to_string();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(units).expect("systemd/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "service") {
            let text = std::fs::read_to_string(&path).expect("read unit");
            assert!(text.contains("/usr/local/bin/"), "{} runs promsd from /usr/local/bin", path.display());
            let name = path.file_name().expect("name").to_string_lossy().into_owned();
            std::fs::write(dir.path().join(&name), text.replace("/usr/local/bin", &bin_dir)).expect("write unit");
            names.push(name);
        }
    }
    names.sort();
    assert_eq!(names, ["dnsd.service", "prom-run@.service", "prom@.service", "registrar-agent.service"]);
    // Verify template instances the way they are started.
    let instances = ["dnsd.service", "prom-run@node.service", "prom@node.service", "registrar-agent.service"];
    for (template, instance) in names.iter().zip(instances) {
        if template != instance {
            std::os::unix::fs::symlink(dir.path().join(template), dir.path().join(instance)).expect("link instance");
        }
    }
    let output = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .args(instances.iter().map(|i| dir.path().join(i)))
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let problems: Vec<&str> = stderr.lines().filter(|l| !l.contains("Failed to connect to bus")).collect();
    assert!(problems.is_empty(), "systemd-analyze verify reported:\n{}", problems.join("\n"));
}
