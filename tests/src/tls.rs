//! Test certificates made with openssl: a CA, a server certificate for 127.0.0.1, and client certificates.

use std::path::Path;
use std::process::Command;

use crate::{output_of, require};

fn openssl(dir: &Path, args: &[&str]) {
    if let Err(e) = output_of(Command::new("openssl").current_dir(dir).args(args)) {
        panic!("openssl {args:?}: {e}");
    }
}

/// Writes `ca.pem`/`ca.key`, `server.pem`/`server.key` (for IP 127.0.0.1) and, for each `(name, san)`,
/// `NAME.pem`/`NAME.key`, a client certificate with that subjectAltName (e.g. `DNS:prometheus.example`).
pub fn make_certificates(dir: &Path, clients: &[(&str, &str)]) {
    make_certificates_for(dir, "IP:127.0.0.1", clients);
}

/// As [`make_certificates`], with the server certificate's subjectAltName given (`DNS:a.example,IP:...`).
pub fn make_certificates_for(dir: &Path, server_san: &str, clients: &[(&str, &str)]) {
    require("openssl");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=promsd test CA",
        ],
    );
    let mut certs = vec![("server".to_string(), format!("subjectAltName={server_san}\nextendedKeyUsage=serverAuth"))];
    certs.extend(
        clients
            .iter()
            .map(|(name, san)| (name.to_string(), format!("subjectAltName={san}\nextendedKeyUsage=clientAuth"))),
    );
    for (name, ext) in certs {
        std::fs::write(dir.join(format!("{name}.ext")), ext).expect("write ext");
        let (key, csr, pem, ext) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
        openssl(
            dir,
            &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &format!("/CN={name}")],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "1",
                "-extfile",
                &ext,
            ],
        );
    }
}
