//! NOTIFY (RFC 1996): when a zone's records change, every `--transfer.notify` secondary is told at once, but
//! at most once a second (changes within the second after a round are told together at its end), and told
//! again with the shared backoff until it answers, a few times. The secondary then asks for the zone's SOA
//! and IXFR.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, RecordType};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::Transfers;
use crate::store::{Changes, Store};

/// At most one round of NOTIFYs per this.
const EVERY: Duration = Duration::from_secs(1);
/// How long a secondary has to answer one NOTIFY, and how many are sent before giving up on this change.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);
const ATTEMPTS: u32 = 5;

/// Sends NOTIFYs for every change the store publishes, until `shutdown`.
pub async fn run(store: Arc<Store>, transfers: Arc<Transfers>, shutdown: CancellationToken) {
    if transfers.config.notify.is_empty() {
        return;
    }
    let mut publications = store.publications();
    let mut seen = *publications.borrow_and_update();
    let mut last_round: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = publications.changed() => if changed.is_err() { return },
        }
        // Within a second of the last round, what else changes until the second is over goes with this one.
        if let Some(wait) = last_round.map(|at| EVERY.saturating_sub(at.elapsed())).filter(|w| !w.is_zero()) {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        last_round = Some(tokio::time::Instant::now());
        let now = *publications.borrow_and_update();
        let zones = changed_zones(&store, seen);
        seen = now;
        for zone in zones {
            for target in transfers.config.notify.clone() {
                let (store, transfers, shutdown) = (store.clone(), transfers.clone(), shutdown.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = notify(&store, &transfers, zone, target) => {}
                    }
                });
            }
        }
    }
}

/// The zones (by index) with a key changed after `generation`.
fn changed_zones(store: &Store, generation: u64) -> BTreeSet<usize> {
    let catalog = store.catalog();
    match store.changes_since(generation) {
        Changes::All => (0..catalog.zones().len()).collect(),
        Changes::Keys(keys) => keys
            .iter()
            .filter_map(|key| catalog.prefix.name_for_key(key))
            .filter_map(|name| catalog.zone_index_for(&name).map(|(index, _)| index))
            .collect(),
    }
}

/// Tells `target` that zone `zone` changed, until it answers or the attempts run out.
async fn notify(store: &Store, transfers: &Transfers, zone: usize, target: SocketAddr) {
    let origin = store.catalog().zones()[zone].origin.clone();
    let local: IpAddr = if target.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
    let Ok(socket) = UdpSocket::bind((local, 0)).await else { return };
    let mut backoff = promsd_backoff::Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
    for attempt in 1..=ATTEMPTS {
        let id: u16 = rand_id();
        let mut message = Message::new(id, MessageType::Query, OpCode::Notify);
        message.metadata.authoritative = true;
        let mut query = Query::query(origin.clone(), RecordType::SOA);
        query.set_query_class(DNSClass::IN);
        message.add_query(query);
        let Ok(bytes) = message.to_vec() else { return };
        transfers.notifies.fetch_add(1, Ordering::Relaxed);
        if socket.send_to(&bytes, target).await.is_ok() && answered(&socket, target, id).await {
            tracing::debug!(%target, zone = %origin, "secondary notified");
            return;
        }
        transfers.notify_failures.fetch_add(1, Ordering::Relaxed);
        if attempt == ATTEMPTS {
            tracing::warn!(%target, zone = %origin, attempts = ATTEMPTS, "secondary did not answer NOTIFY");
            return;
        }
        backoff.wait().await;
    }
}

/// Whether `target` answers NOTIFY `id` in time.
async fn answered(socket: &UdpSocket, target: SocketAddr, id: u16) -> bool {
    let mut buf = [0u8; 4096];
    let wait = async {
        loop {
            let Ok((len, from)) = socket.recv_from(&mut buf).await else { return false };
            let reply = &buf[..len];
            if from == target && len >= 12 && u16::from_be_bytes([reply[0], reply[1]]) == id && reply[2] & 0x80 != 0 {
                return true;
            }
        }
    };
    tokio::time::timeout(ANSWER_WITHIN, wait).await.unwrap_or(false)
}

/// A message ID nobody can guess from the last one.
fn rand_id() -> u16 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 2];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    u16::from_be_bytes(bytes)
}
