//! `registrar ls`: the registrations under the base path, as a table for people or JSON for scripts.

use promsd_common::Service;
use serde::Serialize;

use promsd_registration::Location;
use promsd_registration::store::Listed;

#[derive(Debug, Serialize)]
pub struct Row {
    pub key: String,
    pub name: Option<String>,
    pub service: String,
    pub instance: String,
    #[serde(flatten)]
    pub value: Option<Service>,
    #[serde(skip_serializing_if = "is_zero")]
    pub lease: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

pub fn rows(location: &Location, listed: Vec<Listed>) -> Vec<Row> {
    listed
        .into_iter()
        .map(|kv| {
            let (service, instance) = location.split_key(&kv.key).unwrap_or_default();
            let (value, error) = match Service::parse(&kv.value) {
                Ok(value) => (Some(value), None),
                Err(e) => (None, Some(e.to_string())),
            };
            Row {
                name: location.prefix.name_for_key(&kv.key),
                key: kv.key,
                service,
                instance,
                value,
                lease: kv.lease,
                error,
            }
        })
        .collect()
}

pub fn table(rows: &[Row]) -> String {
    let mut lines = vec![["SERVICE", "INSTANCE", "HOST", "PORT", "TTL", "LEASE", "NAME"].map(String::from).to_vec()];
    for row in rows {
        let (host, port, ttl) = match (&row.value, &row.error) {
            (Some(v), _) => (
                v.host.clone(),
                if v.port == 0 { "-".into() } else { v.port.to_string() },
                if v.ttl == 0 { "-".into() } else { v.ttl.to_string() },
            ),
            (None, error) => (format!("<invalid: {}>", error.as_deref().unwrap_or("?")), "-".into(), "-".into()),
        };
        let lease = if row.lease == 0 { "-".into() } else { format!("{:x}", row.lease) };
        lines.push(vec![
            row.service.clone(),
            row.instance.clone(),
            host,
            port,
            ttl,
            lease,
            row.name.clone().unwrap_or_else(|| row.key.clone()),
        ]);
    }
    let widths: Vec<usize> = (0..lines[0].len()).map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for line in lines {
        let cells: Vec<String> = line.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
