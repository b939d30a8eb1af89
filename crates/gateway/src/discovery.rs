//! How known clients are listed for Prometheus: `/clients` in http_sd's format.

use promsd_common::labels::is_label_name;
use serde_json::{Map, Value, json};

use crate::coordinator::Known;

/// The target groups of one client. PushProx's clients: `{"targets":["<fqdn>"],"labels":null}`, as PushProx
/// lists them. An agent that announced its modules: a group per module, `<fqdn>:<port>` scraped at
/// `/proxy?module=<module>`, with the module's labels (invalid names dropped, reserved `__` ones too).
pub fn groups(client: &Known) -> Vec<Value> {
    let Some(announce) = client.announce.as_ref().filter(|a| !a.modules.is_empty()) else {
        return vec![json!({ "targets": [client.name], "labels": null })];
    };
    announce
        .modules
        .iter()
        .map(|(module, settings)| {
            let mut labels = Map::new();
            for (name, value) in &settings.labels {
                if is_label_name(name) && !name.starts_with("__") {
                    labels.insert(name.clone(), Value::from(value.as_str()));
                }
            }
            labels.insert("__metrics_path__".into(), "/proxy".into());
            labels.insert("__param_module".into(), Value::from(module.as_str()));
            labels.insert("__meta_promsd_client".into(), Value::from(client.name.as_str()));
            labels.insert("__meta_promsd_module".into(), Value::from(module.as_str()));
            json!({ "targets": [format!("{}:{}", client.name, announce.port)], "labels": labels })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use promsd_pushprox::{Announce, AnnouncedModule};

    use super::*;

    #[test]
    fn pushprox_clients_are_listed_as_pushprox_lists_them() {
        let client = Known { name: "host1.example.org".into(), token: None, announce: None };
        assert_eq!(Value::Array(groups(&client)).to_string(), r#"[{"labels":null,"targets":["host1.example.org"]}]"#);
    }

    #[test]
    fn agents_are_listed_per_module() {
        let labels = BTreeMap::from([
            ("site".to_string(), "a".to_string()),
            ("__address__".to_string(), "evil:1".to_string()),
            ("bad-name".to_string(), "x".to_string()),
        ]);
        let modules = BTreeMap::from([
            ("node".to_string(), AnnouncedModule { labels, scheme: None }),
            ("mysql".to_string(), AnnouncedModule::default()),
        ]);
        let client = Known {
            name: "host1.site-a.example.org".into(),
            token: Some("site-a".into()),
            announce: Some(Arc::new(Announce { port: 9998, modules })),
        };
        let listed = groups(&client);
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[1]["targets"][0], "host1.site-a.example.org:9998");
        assert_eq!(listed[1]["labels"]["__param_module"], "node");
        assert_eq!(listed[1]["labels"]["site"], "a");
        assert_eq!(listed[1]["labels"]["__meta_promsd_client"], "host1.site-a.example.org");
        assert!(listed[1]["labels"].get("__address__").is_none() && listed[1]["labels"].get("bad-name").is_none());
        assert_eq!(listed[0]["labels"]["__param_module"], "mysql");
    }
}
