//! The path examples table of the Kubernetes Ingress concept page, one test per row.

use super::*;

fn table(paths: &[(&str, &str)]) -> Output {
    let mut b = ingress("default", "t");
    for (i, (ty, p)) in paths.iter().enumerate() {
        // Each rule gets its own service name so the answer says which rule matched.
        b = b.path("", p, ty, backend(&format!("rule{i}"), 80));
    }
    run(&world(vec![b.build()]))
}

fn matches(out: &Output, path: &str) -> Option<String> {
    served_by(out, "any.host", path).map(|s| s.trim_end_matches(":80").to_string())
}

#[test]
fn row_prefix_root_matches_all_paths() {
    let out = table(&[("Prefix", "/")]);
    for p in ["/", "/foo", "/foo/bar"] {
        assert_eq!(matches(&out, p).as_deref(), Some("rule0"), "{p}");
    }
}

#[test]
fn row_exact_foo_matches_foo() {
    assert_eq!(
        matches(&table(&[("Exact", "/foo")]), "/foo").as_deref(),
        Some("rule0")
    );
}

#[test]
fn row_exact_foo_does_not_match_bar() {
    assert_eq!(matches(&table(&[("Exact", "/foo")]), "/bar"), None);
}

#[test]
fn row_exact_foo_does_not_match_foo_slash() {
    assert_eq!(matches(&table(&[("Exact", "/foo")]), "/foo/"), None);
}

#[test]
fn row_exact_foo_slash_does_not_match_foo() {
    assert_eq!(matches(&table(&[("Exact", "/foo/")]), "/foo"), None);
}

#[test]
fn row_prefix_foo_matches_foo_and_foo_slash() {
    let out = table(&[("Prefix", "/foo")]);
    assert_eq!(matches(&out, "/foo").as_deref(), Some("rule0"));
    assert_eq!(matches(&out, "/foo/").as_deref(), Some("rule0"));
}

#[test]
fn row_prefix_foo_slash_matches_foo_and_foo_slash() {
    let out = table(&[("Prefix", "/foo/")]);
    assert_eq!(matches(&out, "/foo").as_deref(), Some("rule0"));
    assert_eq!(matches(&out, "/foo/").as_deref(), Some("rule0"));
}

#[test]
fn row_prefix_aaa_bb_does_not_match_aaa_bbb() {
    assert_eq!(matches(&table(&[("Prefix", "/aaa/bb")]), "/aaa/bbb"), None);
}

#[test]
fn row_prefix_aaa_bbb_matches_aaa_bbb() {
    assert_eq!(
        matches(&table(&[("Prefix", "/aaa/bbb")]), "/aaa/bbb").as_deref(),
        Some("rule0")
    );
}

#[test]
fn row_prefix_aaa_bbb_slash_matches_aaa_bbb() {
    assert_eq!(
        matches(&table(&[("Prefix", "/aaa/bbb/")]), "/aaa/bbb").as_deref(),
        Some("rule0")
    );
}

#[test]
fn row_prefix_aaa_bbb_matches_aaa_bbb_slash() {
    assert_eq!(
        matches(&table(&[("Prefix", "/aaa/bbb")]), "/aaa/bbb/").as_deref(),
        Some("rule0")
    );
}

#[test]
fn row_prefix_aaa_bbb_matches_aaa_bbb_ccc() {
    assert_eq!(
        matches(&table(&[("Prefix", "/aaa/bbb")]), "/aaa/bbb/ccc").as_deref(),
        Some("rule0")
    );
}

#[test]
fn row_prefix_aaa_bbb_does_not_match_aaa_bbbxyz() {
    assert_eq!(
        matches(&table(&[("Prefix", "/aaa/bbb")]), "/aaa/bbbxyz"),
        None
    );
}

#[test]
fn row_prefix_root_and_aaa_match_aaa_ccc_by_aaa() {
    let out = table(&[("Prefix", "/"), ("Prefix", "/aaa")]);
    assert_eq!(matches(&out, "/aaa/ccc").as_deref(), Some("rule1"));
}

#[test]
fn row_prefix_root_aaa_aaa_bbb_match_aaa_bbb_by_aaa_bbb() {
    let out = table(&[("Prefix", "/"), ("Prefix", "/aaa"), ("Prefix", "/aaa/bbb")]);
    assert_eq!(matches(&out, "/aaa/bbb").as_deref(), Some("rule2"));
}

#[test]
fn row_prefix_root_aaa_aaa_bbb_match_ccc_by_root() {
    let out = table(&[("Prefix", "/"), ("Prefix", "/aaa"), ("Prefix", "/aaa/bbb")]);
    assert_eq!(matches(&out, "/ccc").as_deref(), Some("rule0"));
}

#[test]
fn row_prefix_aaa_does_not_match_ccc() {
    assert_eq!(matches(&table(&[("Prefix", "/aaa")]), "/ccc"), None);
    // "No match, uses default backend".
    let out = run(&world(vec![ingress("default", "t")
        .path("", "/aaa", "Prefix", backend("rule0", 80))
        .default_backend(backend("fallback", 80))
        .build()]));
    assert_eq!(
        served_by(&out, "any.host", "/ccc").as_deref(),
        Some("fallback:80")
    );
}

#[test]
fn row_mixed_prefix_and_exact_foo_match_foo_by_exact() {
    let out = table(&[("Prefix", "/foo"), ("Exact", "/foo")]);
    assert_eq!(matches(&out, "/foo").as_deref(), Some("rule1"));
}

// The hostname wildcard examples of the same page, one test per row.

fn wildcard_table() -> Output {
    run(&world(vec![ingress("default", "w")
        .rule("*.foo.com", "/", backend("web", 80))
        .build()]))
}

#[test]
fn row_wildcard_foo_com_matches_bar_foo_com() {
    assert_eq!(
        served_by(&wildcard_table(), "bar.foo.com", "/").as_deref(),
        Some("web:80")
    );
}

#[test]
fn row_wildcard_foo_com_does_not_match_baz_bar_foo_com() {
    assert_eq!(served_by(&wildcard_table(), "baz.bar.foo.com", "/"), None);
}

#[test]
fn row_wildcard_foo_com_does_not_match_foo_com() {
    assert_eq!(served_by(&wildcard_table(), "foo.com", "/"), None);
}
