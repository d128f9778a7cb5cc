//! Patching the last translation after a few Ingress changes gives what a full translation
//! gives: random change sequences over shared hosts, wildcards, TLS, canaries, conflicts and
//! the features that reach across hosts.

use std::fmt::Write as _;

use super::*;

const NGINX: &str = "nginx.ingress.kubernetes.io";

/// A small deterministic generator (xorshift64*): the sequences repeat run after run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const HOSTS: [&str; 16] = [
    "a.com",
    "b.com",
    "c.com",
    "d.com",
    "x.a.com",
    "y.a.com",
    "*.a.com",
    "www.c.com",
    "",
    "e.com",
    "f.com",
    "g.com",
    "h.com",
    "i.com",
    "z.a.com",
    "www.b.com",
];

fn random_ingress(rng: &mut Rng, ns: &str, name: &str) -> Arc<Ingress> {
    let mut b = ingress(ns, name).created(1_000 + rng.below(50) as i64);
    for _ in 0..1 + rng.below(2) {
        // Mostly hosts no other Ingress names, as in a real cluster; sometimes shared ones.
        let own = format!("own{}.{name}.net", rng.below(3));
        let host = if rng.chance(50) {
            own.as_str()
        } else {
            rng.pick(&HOSTS)
        };
        let path = rng.pick(&["/", "/api", "/x", "/api/v1"]);
        let kind = rng.pick(&["Prefix", "Exact", "ImplementationSpecific"]);
        let svc = rng.pick(&["web", "api", "api", "missing"]);
        b = b.path(host, path, kind, backend(svc, 80));
    }
    if rng.chance(40) {
        let tls_hosts: Vec<&str> = (0..1 + rng.below(2))
            .map(|_| rng.pick(&HOSTS[..15]))
            .collect();
        let secret = match rng.below(4) {
            0 => None,
            1 => Some("s-a"),
            2 => Some("s-b"),
            _ => Some("s-bad"),
        };
        b = b.tls(&tls_hosts, secret);
    }
    if rng.chance(15) {
        b = b
            .annotation(&format!("{NGINX}/canary"), "true")
            .annotation(&format!("{NGINX}/canary-by-header"), "X-Beta");
    }
    if rng.chance(10) {
        b = b.annotation(&format!("{NGINX}/use-regex"), "true");
    }
    if rng.chance(10) {
        b = b.annotation(&format!("{NGINX}/ssl-redirect"), "false");
    }
    if rng.chance(3) {
        b = b.annotation(&format!("{NGINX}/server-alias"), "alias.a.com");
    }
    if rng.chance(3) {
        b = b.annotation(&format!("{NGINX}/from-to-www-redirect"), "true");
    }
    if rng.chance(2) {
        b = b.default_backend(backend("web", 80));
    }
    if rng.chance(5) {
        b = b.class("someone-else");
    }
    if rng.chance(5) {
        b = b.annotation(&format!("{NGINX}/proxy-body-size"), "nonsense");
    }
    b.build()
}

/// Everything a translation produces, in a comparable, ordered text.
fn describe(out: &Output) -> String {
    let mut s = String::new();
    for (host, routes) in out.snapshot.routes.hosts() {
        let _ = writeln!(s, "route {host}: {routes:?}");
    }
    let _ = writeln!(s, "default: {:?}", out.snapshot.routes.default);
    for (host, cert) in out.snapshot.tls.hosts() {
        let _ = writeln!(s, "tls {host}: {cert:?}");
    }
    let _ = writeln!(
        s,
        "default cert: {:?}",
        out.snapshot.tls.default_certificate()
    );
    let _ = writeln!(s, "client auth: {:?}", out.snapshot.client_auth);
    let _ = writeln!(s, "passthrough: {:?}", out.snapshot.passthrough);
    let _ = writeln!(
        s,
        "problems ({}): {:#?}",
        out.snapshot.problems, out.problems
    );
    let _ = writeln!(s, "served: {:?}", out.served);
    let _ = writeln!(s, "policies: {:?}", out.route_policy_status);
    s
}

fn random_world(rng: &mut Rng) -> Inputs {
    let mut ingresses = Vec::new();
    for k in 0..12 {
        let ns = if k % 4 == 3 { "other" } else { "default" };
        ingresses.push(random_ingress(rng, ns, &format!("i{k}")));
    }
    with_certs(
        world(ingresses),
        &[
            ("s-a", Ok(cert(&["a.com", "*.a.com"]))),
            ("s-b", Ok(cert(&["b.com", "www.c.com"]))),
            ("s-bad", Err("the Secret has no tls.crt".into())),
        ],
    )
}

/// Replaces, adds or removes one or two Ingresses.
fn change(rng: &mut Rng, inputs: &mut Inputs, serial: &mut usize) {
    for _ in 0..1 + usize::from(rng.chance(20)) {
        let n = inputs.ingresses.len();
        match rng.below(10) {
            0..=5 if n > 0 => {
                let at = rng.below(n);
                let (ns, name) = {
                    let m = &inputs.ingresses[at].metadata;
                    (
                        m.namespace.clone().unwrap_or_default(),
                        m.name.clone().unwrap_or_default(),
                    )
                };
                inputs.ingresses.to_mut()[at] = random_ingress(rng, &ns, &name);
            }
            6 | 7 => {
                *serial += 1;
                let ns = if rng.chance(30) { "other" } else { "default" };
                inputs
                    .ingresses
                    .push(random_ingress(rng, ns, &format!("new{serial}")));
            }
            _ if n > 0 => {
                inputs.ingresses.to_mut().remove(rng.below(n));
            }
            _ => {}
        }
    }
    // The cluster source hands Ingresses over sorted by namespace and name.
    inputs.ingresses.to_mut().sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
}

#[test]
fn patching_after_random_changes_equals_translating_in_full() {
    let options = options();
    let mut patched = 0;
    let mut steps = 0;
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut inputs = random_world(&mut rng);
        let mut memo = Memo::default();
        translate_with(&inputs, &options, &mut memo);
        let mut serial = 0;
        for step in 0..25 {
            change(&mut rng, &mut inputs, &mut serial);
            let got = translate_with(&inputs, &options, &mut memo);
            patched += usize::from(memo.patched_hosts().is_some());
            steps += 1;
            let want = translate(&inputs, &options);
            assert_eq!(
                describe(&got),
                describe(&want),
                "seed {seed}, step {step}, patched {:?}",
                memo.patched_hosts()
            );
        }
    }
    // The comparison means something only if many translations were patches.
    assert!(patched * 3 > steps, "{patched} of {steps} patched");
}

#[test]
fn a_new_host_is_patched_in_and_other_hosts_keep_their_tables() {
    let options = options();
    let mut inputs = world(vec![
        ingress("default", "a")
            .rule("a.com", "/", backend("web", 80))
            .build(),
        ingress("default", "b")
            .rule("b.com", "/", backend("api", 80))
            .build(),
    ]);
    let mut memo = Memo::default();
    let first = translate_with(&inputs, &options, &mut memo);
    assert_eq!(memo.patched_hosts(), None);
    inputs.ingresses.push(
        ingress("default", "c")
            .rule("c.com", "/", backend("web", 80))
            .build(),
    );
    let second = translate_with(&inputs, &options, &mut memo);
    assert_eq!(memo.patched_hosts(), Some(1));
    assert_eq!(served_by(&second, "c.com", "/").as_deref(), Some("web:80"));
    let target = |o: &Output| o.snapshot.routes.find("a.com", "/").unwrap().target.clone();
    assert!(Arc::ptr_eq(&target(&first), &target(&second)));

    // A change to another kind of object translates in full.
    inputs
        .services
        .push(service("default", "more", &[(None, 80)]));
    translate_with(&inputs, &options, &mut memo);
    assert_eq!(memo.patched_hosts(), None);
}
