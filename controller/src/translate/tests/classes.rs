//! IngressClass selection.

use super::*;

#[test]
fn class_selection() {
    let ours = "portico.dev/ingress-controller";
    let mk = |name: &str, f: fn(IngressBuilder) -> IngressBuilder| {
        f(ingress("default", name))
            .rule(&format!("{name}.com"), "/", backend("web", 80))
            .build()
    };
    let ingresses = vec![
        mk("ours", |b| b.class("portico")),
        mk("theirs", |b| b.class("nginx")),
        mk("unknown", |b| b.class("nope")),
        mk("legacy", |b| {
            b.annotation(LEGACY_CLASS_ANNOTATION, "portico")
        }),
        mk("legacy-theirs", |b| {
            b.annotation(LEGACY_CLASS_ANNOTATION, "nginx")
        }),
        mk("classless", |b| b),
    ];
    let mut inputs = world(ingresses);
    inputs.ingress_classes = vec![
        class("portico", ours, false),
        class("nginx", "k8s.io/ingress-nginx", false),
    ]
    .into();
    let served = |out: &Output| -> Vec<&str> {
        [
            "ours",
            "theirs",
            "unknown",
            "legacy",
            "legacy-theirs",
            "classless",
        ]
        .into_iter()
        .filter(|n| hit(out, &format!("{n}.com"), "/").is_some())
        .collect()
    };
    // Manifest mode serves class-less Ingresses.
    assert_eq!(served(&run(&inputs)), vec!["ours", "legacy", "classless"]);
    // A cluster serves them only when our class is the default.
    let strict = Options {
        serve_classless: false,
        ..options()
    };
    assert_eq!(served(&translate(&inputs, &strict)), vec!["ours", "legacy"]);
    inputs.ingress_classes.to_mut()[0] = class("portico", ours, true);
    assert_eq!(
        served(&translate(&inputs, &strict)),
        vec!["ours", "legacy", "classless"]
    );
}
