//! A zone as a secondary receives it: for every name that exists in the zone, the records dnsd answers for
//! it, so a secondary that loads them answers as dnsd does. SkyDNS answers that no zone can hold are
//! resolved as docs/zone-transfers.md says: a name whose own data is one CNAME is that CNAME alone; CNAMEs
//! beside other data (a name with children of both kinds) are left out; names with a `*` or `any` label are
//! wildcards to SkyDNS and are not transferred; an RRset larger than one DNS message (SkyDNS gives the apex
//! every SRV target of the zone) is the records of it that fit in one, in answer order, as dnsd's own
//! answer over TCP is: no secondary can send an RRset that does not fit in a message.

use std::collections::HashSet;
use std::ops::ControlFlow;

use hickory_proto::op::Query;
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;

use crate::answer::Resolver;
use crate::config::{Catalog, Zone};
use crate::store::View;

/// An RRset's records, at two bytes for the compressed owner and ten for type, class, TTL and length each
/// plus their data, stop before this: with the header and question it fits in one 64 KiB message.
const MAX_RRSET_BYTES: usize = 65_535 - 1024;

/// The types whose answers make a name's records, besides NS at the apex (and PTR in reverse zones).
const TYPES: [RecordType; 5] = [RecordType::A, RecordType::AAAA, RecordType::TXT, RecordType::SRV, RecordType::MX];

/// Calls `each` with every name of `zone` that exists in `view` (the apex first, then in key order, each
/// parent before its children; names of a more specific zone dnsd serves are that zone's), until it breaks.
pub fn each_name(catalog: &Catalog, view: &View, zone: &Zone, mut each: impl FnMut(&str) -> ControlFlow<()>) {
    if each(&zone.name).is_break() {
        return;
    }
    let zone_key = catalog.prefix.key_for_name(&zone.name);
    let mut previous: Vec<String> = Vec::new();
    for entry in view.below(&zone_key) {
        let Some(relative) = entry.key.get(zone_key.len() + 1..) else { continue };
        let segments: Vec<&str> = relative.split('/').collect();
        // Keys below one name are contiguous in key order: the names this key shares with the one before it
        // were given already.
        let shared = previous.iter().zip(&segments).take_while(|(a, b)| a.as_str() == **b).count();
        for depth in shared + 1..=segments.len() {
            let labels = &segments[..depth];
            if labels.iter().any(|l| *l == "*" || *l == "any") {
                break;
            }
            let mut name: String = labels.iter().rev().flat_map(|l| [*l, "."]).collect();
            name.push_str(&zone.name);
            if catalog.zone_for(&name).is_some_and(|z| z.name == zone.name) && each(&name).is_break() {
                return;
            }
        }
        previous = segments.iter().map(|s| s.to_string()).collect();
    }
}

/// The records of `lname` (lowercase, no trailing dot) in its zone: each type's answer records owned by the
/// name itself (not CNAME targets or glue), grouped by type.
pub fn records(resolver: &Resolver<'_>, zone: &Zone, lname: &str) -> Vec<Record> {
    records_asking(resolver, zone, lname, |rtype| resolver.may_have(lname, rtype))
}

/// [`records`] from the questions `ask` lets through.
fn records_asking(resolver: &Resolver<'_>, zone: &Zone, lname: &str, ask: impl Fn(RecordType) -> bool) -> Vec<Record> {
    let Ok(owner) = Name::from_ascii(format!("{lname}.")) else { return Vec::new() };
    let apex = lname == zone.name;
    let reverse = zone.name.ends_with("in-addr.arpa") || zone.name.ends_with("ip6.arpa");
    let extra = [(apex, RecordType::NS), (reverse, RecordType::PTR)];
    let types = extra.into_iter().filter_map(|(wanted, t)| wanted.then_some(t)).chain(TYPES).filter(|t| ask(*t));
    let mut records: Vec<Record> = Vec::new();
    let mut cnames: Vec<Record> = Vec::new();
    // CNAMEs come with the answers of several types: each record once.
    let mut seen = HashSet::new();
    for rtype in types {
        let answer = resolver.resolve(&Query::query(owner.clone(), rtype));
        let mut bytes = 0;
        for record in answer.answers {
            if record.name != owner {
                continue;
            }
            let list = match record.record_type() {
                t if t == rtype => &mut records,
                RecordType::CNAME => &mut cnames,
                _ => continue,
            };
            let data = record.data.to_bytes().unwrap_or_default();
            bytes += 12 + data.len();
            if bytes > MAX_RRSET_BYTES {
                break;
            }
            if seen.insert((record.record_type(), data)) {
                list.push(record);
            }
        }
    }
    let addresses = records.iter().any(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA));
    if cnames.len() == 1 && !addresses && !apex {
        return cnames; // the name is an alias: nothing may stand beside its CNAME
    }
    records
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use promsd_common::{KeyPrefix, Service};

    use super::*;
    use crate::config::LeaseBounds;
    use crate::store::{Entry, LeaseTable};

    fn view(entries: &[(&str, &str)]) -> View {
        let mut view = View::new(1);
        for (key, value) in entries {
            let service = Service::parse(value.as_bytes()).expect("value");
            view.insert(Arc::new(Entry { key: (*key).into(), service, lease: 0 }));
        }
        view
    }

    #[test]
    fn names_are_every_key_and_its_parents_once() {
        let catalog = Catalog::new(
            vec![Zone::new("prom.local").expect("zone"), Zone::new("sub.prom.local").expect("zone")],
            KeyPrefix::new("/skydns"),
        );
        let view = view(&[
            ("/skydns/local/prom/a/node/h1", r#"{"host":"10.0.0.1"}"#),
            ("/skydns/local/prom/a/node/h2", r#"{"host":"10.0.0.2"}"#),
            ("/skydns/local/prom/b", r#"{"host":"10.0.0.3"}"#),
            ("/skydns/local/prom/sub/x", r#"{"host":"10.0.0.4"}"#),
            ("/skydns/local/prom/wild/*/y", r#"{"host":"10.0.0.5"}"#),
        ]);
        let mut names = Vec::new();
        each_name(&catalog, &view, &catalog.zones()[1], |name| {
            names.push(name.to_string());
            ControlFlow::Continue(())
        });
        assert_eq!(
            names,
            ["prom.local", "a.prom.local", "node.a.prom.local", "h1.node.a.prom.local"]
                .into_iter()
                .chain(["h2.node.a.prom.local", "b.prom.local", "wild.prom.local"])
                .collect::<Vec<_>>()
        );
    }

    /// Asking only the questions that can add records gives the records all questions give.
    #[test]
    fn skipped_questions_would_have_added_nothing() {
        let catalog = Catalog::new(vec![Zone::new("prom.local").expect("zone")], KeyPrefix::new("/skydns"));
        let values = [
            r#"{"host":"10.0.0.1","port":9100}"#,
            r#"{"host":"2001:db8::1","port":9100,"text":"t"}"#,
            r#"{"host":"target.example.org"}"#,
            r#"{"host":"target.prom.local","port":80,"text":"x"}"#,
            r#"{"host":"10.0.0.2","mail":true,"priority":5}"#,
            r#"{"host":"10 5 8443 lb.example.org."}"#,
            r#"{"host":"10 mail.example.org."}"#,
            r#"{"text":"only text"}"#,
            r#"{"host":"10.0.0.3","port":-1,"group":"g"}"#,
            r#"{}"#,
        ];
        let mut entries = Vec::new();
        for (i, value) in values.iter().enumerate() {
            entries.push((format!("/skydns/local/prom/s{}/i{i}", i % 3), *value));
            entries.push((format!("/skydns/local/prom/solo{i}"), *value));
        }
        entries.push(("/skydns/local/prom/target".into(), r#"{"host":"10.0.0.9"}"#));
        entries.push(("/skydns/local/prom/dns/ns/ns1".into(), r#"{"host":"10.0.0.10"}"#));
        let view = view(&entries.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>());
        let leases = LeaseTable::default();
        let resolver = Resolver::new(&catalog, &view, &leases, LeaseBounds::default());
        let zone = &catalog.zones()[0];
        let mut names = Vec::new();
        each_name(&catalog, &view, zone, |name| {
            names.push(name.to_string());
            ControlFlow::Continue(())
        });
        assert!(names.len() > 25, "{names:?}");
        for name in names {
            assert_eq!(records(&resolver, zone, &name), records_asking(&resolver, zone, &name, |_| true), "{name}");
        }
    }

    #[test]
    fn an_alias_is_its_cname_alone() {
        let catalog = Catalog::new(vec![Zone::new("prom.local").expect("zone")], KeyPrefix::new("/skydns"));
        let view = view(&[
            ("/skydns/local/prom/alias", r#"{"host":"target.example.org"}"#),
            ("/skydns/local/prom/node/h1", r#"{"host":"10.0.0.1","port":9100,"text":"t"}"#),
        ]);
        let leases = LeaseTable::default();
        let resolver = Resolver::new(&catalog, &view, &leases, LeaseBounds::default());
        let zone = &catalog.zones()[0];
        let types = |name: &str| -> Vec<RecordType> {
            records(&resolver, zone, name).iter().map(|r| r.record_type()).collect()
        };
        assert_eq!(types("alias.prom.local"), [RecordType::CNAME]);
        assert_eq!(types("h1.node.prom.local"), [RecordType::A, RecordType::TXT, RecordType::SRV]);
        assert_eq!(types("node.prom.local"), [RecordType::A, RecordType::TXT, RecordType::SRV]);
    }
}
