//! Idle keep-alive HTTP/1 connections of one client (a module's backend, the gateway), handed out newest
//! first; closed ones are dropped as they are found.

use std::sync::Mutex;

use hyper::client::conn::http1::SendRequest;

pub struct Idle<B> {
    connections: Mutex<Vec<SendRequest<B>>>,
    max: usize,
}

impl<B> Idle<B> {
    pub fn new(max: usize) -> Self {
        Self { connections: Mutex::new(Vec::new()), max }
    }

    /// An idle connection not known to be closed. Not `is_ready()`: right after a response the connection
    /// task may not have signalled readiness yet; the caller waits for it with `ready()`.
    pub fn take(&self) -> Option<SendRequest<B>> {
        let mut idle = self.connections.lock().ok()?;
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    /// Keeps `sender` for the next request, unless enough are kept already.
    pub fn give_back(&self, sender: SendRequest<B>) {
        if let Ok(mut idle) = self.connections.lock()
            && idle.len() < self.max
            && !sender.is_closed()
        {
            idle.push(sender);
        }
    }
}
