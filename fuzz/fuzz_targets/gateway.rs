//! What promsd-gateway and the agent read from the network: PushProx's messages (a poll's scrape request, a
//! pushed response), the agent's announcement, remote_write's and Loki's bodies, and the token file. No input
//! may panic; what parses must write back to what parses the same, and the tenant rewrite is idempotent.
//!
//! Input: one byte choosing the reader (its value modulo 5), then the bytes it reads.

#![no_main]

use libfuzzer_sys::fuzz_target;
use promsd_gateway::remote_write::enforce_tenant;
use promsd_pushprox::{Announce, ScrapeRequest, ScrapeResponse};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 5 {
        0 => {
            if let Ok(request) = ScrapeRequest::parse(rest) {
                let again = ScrapeRequest::parse(&request.encode()).expect("a written request parses");
                assert_eq!((&again.method, &again.uri, &again.body), (&request.method, &request.uri, &request.body));
            }
        }
        1 => {
            if let Ok(response) = ScrapeResponse::parse(rest) {
                let again = ScrapeResponse::parse(&response.encode()).expect("a written response parses");
                assert_eq!((again.status, &again.body), (response.status, &response.body));
                assert_eq!(again.id(), response.id());
            }
        }
        2 => {
            if let Ok((rewritten, series)) = enforce_tenant(rest, "tenant", "site-a") {
                let (again, count) = enforce_tenant(&rewritten, "tenant", "site-a").expect("a rewritten body reads");
                assert_eq!((&again, count), (&rewritten, series), "the rewrite is idempotent");
            }
        }
        3 => {
            use promsd_gateway::loki::{json_with, parse_selector, protobuf_with, render_selector};
            if let Ok((rewritten, streams)) = protobuf_with(rest, "tenant", "site-a") {
                let (again, count) = protobuf_with(&rewritten, "tenant", "site-a").expect("a rewritten push reads");
                assert_eq!((&again, count), (&rewritten, streams), "the Loki rewrite is idempotent");
            }
            let _ = json_with(rest, "tenant", "site-a");
            if let Ok(text) = std::str::from_utf8(rest)
                && let Ok(labels) = parse_selector(text)
            {
                assert_eq!(parse_selector(&render_selector(&labels)).ok(), Some(labels), "a selector writes back");
            }
        }
        _ => {
            if let Ok(announce) = Announce::from_header(rest) {
                assert_eq!(Announce::from_header(announce.to_header().as_bytes()).ok(), Some(announce));
            }
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = promsd_gateway::tokens::Tokens::parse(std::path::Path::new("tokens.yml"), text);
            }
        }
    }
});
