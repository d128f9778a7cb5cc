//! Rate limits per client address (`limit-rps`, `limit-rpm`, `limit-connections`), per
//! replica, as ingress-nginx's `limit_req`/`limit_conn` zones are per nginx instance.
//!
//! Requests: GCRA (a leaky bucket of one timestamp per client), which allows `burst` requests
//! above the rate at once, like nginx's `limit_req ... burst=N nodelay`. Connections: the
//! requests of a client being processed at once (until their answer has been sent).
//!
//! The state is a fixed number of mutex-guarded shards, each holding at most
//! [`SHARD_CAPACITY`] clients: a flood of distinct source addresses evicts idle clients
//! first, then the one closest to idle, so memory stays bounded. A shard whose clients all
//! have requests in flight refuses new clients (counted as limited).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::client_addr::TrustedProxies;

pub const SHARDS: usize = 32;
/// Clients tracked per shard (so at most `SHARDS * SHARD_CAPACITY` per route).
pub const SHARD_CAPACITY: usize = 512;

/// A rate as GCRA sees it: one request per `interval`, `burst` more at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    interval: u64,
    tolerance: u64,
}

impl Rate {
    /// `count` requests per `per`, with `burst` requests above it allowed at once.
    pub fn new(count: u32, per: Duration, burst: u32) -> Option<Rate> {
        if count == 0 {
            return None;
        }
        let interval = (per.as_nanos() / u128::from(count)).max(1) as u64;
        Some(Rate {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst)),
        })
    }

    /// The new theoretical arrival time, or `None` when the request is over the limit.
    fn admit(self, tat: u64, now: u64) -> Option<u64> {
        let tat = tat.max(now);
        (tat - now <= self.tolerance).then(|| tat + self.interval)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Client {
    tat_second: u64,
    tat_minute: u64,
    in_flight: u32,
}

impl Client {
    fn idle(&self, now: u64) -> bool {
        self.in_flight == 0 && self.tat_second <= now && self.tat_minute <= now
    }
}

/// The per-client state of one zone (an Ingress's limits). It outlives configuration
/// changes: a new snapshot's limits with the same zone name take over the same state, so
/// counts are not reset each time anything in the cluster changes.
#[derive(Debug)]
struct Zone {
    epoch: Instant,
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<IpAddr, Client>>]>,
}

impl Zone {
    fn new() -> Zone {
        Zone {
            epoch: Instant::now(),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, client: IpAddr) -> &Mutex<HashMap<IpAddr, Client>> {
        let i = (self.hasher.hash_one(client) as usize) % self.shards.len();
        &self.shards[i]
    }
}

/// Live zones by name; an entry dies with the last snapshot using it.
static ZONES: LazyLock<Mutex<HashMap<String, Weak<Zone>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn zone(name: Option<&str>) -> Arc<Zone> {
    let Some(name) = name else {
        return Arc::new(Zone::new());
    };
    let Ok(mut zones) = ZONES.lock() else {
        return Arc::new(Zone::new());
    };
    if let Some(z) = zones.get(name).and_then(Weak::upgrade) {
        return z;
    }
    zones.retain(|_, z| z.strong_count() > 0);
    let z = Arc::new(Zone::new());
    zones.insert(name.to_string(), Arc::downgrade(&z));
    z
}

/// The limits of one route and their per-client state.
#[derive(Debug)]
pub struct RateLimit {
    pub per_second: Option<Rate>,
    pub per_minute: Option<Rate>,
    pub connections: Option<u32>,
    /// Clients never limited (`limit-whitelist`).
    pub exempt: Option<TrustedProxies>,
    /// The status of a refused request (503 as ingress-nginx, or 429).
    pub status: StatusCode,
    zone: Arc<Zone>,
}

/// A request admitted under `limit-connections`; the client's count drops with it.
#[derive(Debug)]
pub struct InFlight {
    zone: Arc<Zone>,
    client: IpAddr,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let shard = self.zone.shard(self.client);
        if let Ok(mut map) = shard.lock() {
            if let Some(c) = map.get_mut(&self.client) {
                c.in_flight = c.in_flight.saturating_sub(1);
            }
        }
    }
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Rate,
    Connections,
    /// No room to track one more client.
    Full,
}

impl RateLimit {
    /// Limits whose state lives in the zone `zone` (shared with every other live
    /// `RateLimit` of that name); `None`: state of its own.
    pub fn new(
        zone_name: Option<&str>,
        per_second: Option<Rate>,
        per_minute: Option<Rate>,
        connections: Option<u32>,
        exempt: Option<TrustedProxies>,
        status: StatusCode,
    ) -> RateLimit {
        RateLimit {
            per_second,
            per_minute,
            connections,
            exempt,
            status,
            zone: zone(zone_name),
        }
    }

    fn now(&self) -> u64 {
        self.zone.epoch.elapsed().as_nanos() as u64
    }

    /// Admits or refuses one request of `client`. An admitted request under
    /// `limit-connections` holds an [`InFlight`] until it is answered.
    pub fn admit(&self, client: IpAddr) -> Result<Option<InFlight>, Refused> {
        if self.exempt.as_ref().is_some_and(|e| e.contains(client)) {
            return Ok(None);
        }
        let now = self.now();
        let Ok(mut map) = self.zone.shard(client).lock() else {
            return Err(Refused::Full);
        };
        if !map.contains_key(&client) && map.len() >= SHARD_CAPACITY {
            map.retain(|_, c| !c.idle(now));
            if map.len() >= SHARD_CAPACITY {
                let victim = map
                    .iter()
                    .filter(|(_, c)| c.in_flight == 0)
                    .min_by_key(|(_, c)| c.tat_second.max(c.tat_minute))
                    .map(|(k, _)| *k);
                match victim {
                    Some(k) => {
                        map.remove(&k);
                    }
                    None => return Err(Refused::Full),
                }
            }
        }
        let c = map.entry(client).or_default();
        let second = match self.per_second {
            Some(r) => Some(r.admit(c.tat_second, now).ok_or(Refused::Rate)?),
            None => None,
        };
        let minute = match self.per_minute {
            Some(r) => Some(r.admit(c.tat_minute, now).ok_or(Refused::Rate)?),
            None => None,
        };
        if let Some(max) = self.connections {
            if c.in_flight >= max {
                return Err(Refused::Connections);
            }
        }
        if let Some(t) = second {
            c.tat_second = t;
        }
        if let Some(t) = minute {
            c.tat_minute = t;
        }
        if self.connections.is_none() {
            return Ok(None);
        }
        c.in_flight += 1;
        Ok(Some(InFlight {
            zone: self.zone.clone(),
            client,
        }))
    }

    /// Clients tracked now.
    pub fn tracked(&self) -> usize {
        self.zone
            .shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rps: Option<u32>, burst: u32, conns: Option<u32>) -> Arc<RateLimit> {
        Arc::new(RateLimit::new(
            None,
            rps.and_then(|r| Rate::new(r, Duration::from_secs(1), burst)),
            None,
            conns,
            Some(TrustedProxies::parse("10.9.0.0/16").unwrap()),
            StatusCode::SERVICE_UNAVAILABLE,
        ))
    }

    #[test]
    fn burst_then_refused() {
        // One request an hour, four more at once: five pass, the sixth is refused.
        let l = Arc::new(RateLimit::new(
            None,
            None,
            Rate::new(1, Duration::from_secs(3600), 4),
            None,
            None,
            StatusCode::TOO_MANY_REQUESTS,
        ));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..5 {
            assert!(l.admit(ip).is_ok());
        }
        assert_eq!(l.admit(ip).unwrap_err(), Refused::Rate);
        assert!(l.admit("192.0.2.2".parse().unwrap()).is_ok(), "per client");
    }

    #[test]
    fn a_zone_outlives_a_configuration_change() {
        let make = || {
            RateLimit::new(
                Some("test/zone"),
                None,
                Rate::new(1, Duration::from_secs(3600), 0),
                Some(1),
                None,
                StatusCode::SERVICE_UNAVAILABLE,
            )
        };
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let old = make();
        let held = old.admit(ip).unwrap();
        // The next snapshot's limits, built while the old ones still serve.
        let new = make();
        drop(old);
        assert_eq!(
            new.admit(ip).unwrap_err(),
            Refused::Rate,
            "the count carried over"
        );
        drop(held);
        drop(new);
        let fresh = make();
        assert!(
            fresh.admit(ip).is_ok(),
            "no snapshot kept the zone: a new one"
        );
    }

    #[test]
    fn gcra_refills() {
        let r = Rate::new(10, Duration::from_secs(1), 0).unwrap();
        let t = r.admit(0, 0).unwrap();
        assert!(r.admit(t, 1).is_none());
        assert!(r.admit(t, t).is_some());
        assert!(Rate::new(0, Duration::from_secs(1), 5).is_none());
    }

    #[test]
    fn exempt_clients_and_connections() {
        let l = limit(None, 0, Some(2));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = l.admit(ip).unwrap();
        let b = l.admit(ip).unwrap();
        assert_eq!(l.admit(ip).unwrap_err(), Refused::Connections);
        drop(a);
        let c = l.admit(ip).unwrap();
        drop((b, c));
        let exempt: IpAddr = "10.9.1.1".parse().unwrap();
        let held: Vec<_> = (0..10).map(|_| l.admit(exempt).unwrap()).collect();
        assert!(held.iter().all(Option::is_none));
    }

    #[test]
    fn a_flood_of_addresses_stays_bounded() {
        let l = limit(Some(1), 5, None);
        for i in 0..50_000u32 {
            let ip = IpAddr::from(std::net::Ipv6Addr::from(u128::from(i) << 16));
            let _ = l.admit(ip);
        }
        assert!(l.tracked() <= SHARDS * SHARD_CAPACITY, "{}", l.tracked());
        // Clients with requests in flight are never evicted; with every slot held, new
        // clients are refused instead of growing the map.
        let l = limit(None, 0, Some(1));
        let mut held = Vec::new();
        let mut full = 0;
        for i in 0..(SHARDS * SHARD_CAPACITY * 2) as u32 {
            match l.admit(IpAddr::from(std::net::Ipv4Addr::from(i))) {
                Ok(g) => held.push(g),
                Err(Refused::Full) => full += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(full > 0);
        assert!(l.tracked() <= SHARDS * SHARD_CAPACITY);
    }
}
