//! The bench's load generators on their own, for profiling a proxy under a fixed load:
//!
//! ```text
//! loadgen http1 ADDR HOST[,HOST…] CONNS SECONDS        closed loop, keep-alive
//! loadgen open ADDR HOST CONNS RATE SECONDS            open loop, prints p50/p99/p99.9
//! loadgen tls ADDR SNI[,SNI…] CLIENTS SECONDS [resume] handshakes
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use portico_bench::http1::{self, Window};
use portico_bench::stats::quantile;
use portico_bench::tls;
use rustls::pki_types::ServerName;

fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| {
        a.get(i)
            .ok_or_else(|| anyhow!("missing argument {i}; see the source"))
    };
    let addr: SocketAddr = arg(1)?.parse()?;
    let names: Vec<String> = arg(2)?.split(',').map(str::to_string).collect();
    let conns: usize = arg(3)?.parse()?;
    match arg(0)?.as_str() {
        "http1" => {
            let secs: f64 = arg(4)?.parse()?;
            let reqs = Arc::new(names.iter().map(|h| http1::request(h)).collect());
            let w = Window::new(Duration::ZERO, Duration::from_secs_f64(secs));
            let c = http1::closed_loop(addr, reqs, conns, w)?;
            println!("{c:?}: {:.0} answers/s", c.ok as f64 / secs);
        }
        "open" => {
            let rate: f64 = arg(4)?.parse()?;
            let secs: f64 = arg(5)?.parse()?;
            let w = Window::new(Duration::from_millis(500), Duration::from_secs_f64(secs));
            let r = http1::open_loop(addr, Arc::new(http1::request(&names[0])), conns, rate, w)?;
            let q = |x| quantile(&r.latencies_us, x).unwrap_or(0);
            println!(
                "{:?}: {:.0} answers/s; latency µs p50 {} p99 {} p99.9 {} max {}",
                r.counts,
                r.latencies_us.len() as f64 / secs,
                q(0.5),
                q(0.99),
                q(0.999),
                q(1.0)
            );
        }
        "tls" => {
            let secs: f64 = arg(4)?.parse()?;
            let resume = a.get(5).is_some_and(|s| s == "resume");
            let names = names
                .into_iter()
                .map(ServerName::try_from)
                .collect::<Result<Vec<_>, _>>()?;
            let w = Window::new(Duration::ZERO, Duration::from_secs_f64(secs));
            let h = tls::handshakes(addr, Arc::new(names), resume, conns, w)?;
            println!("{h:?}: {:.0} handshakes/s", h.total() as f64 / secs);
        }
        other => bail!("unknown mode {other}"),
    }
    Ok(())
}
