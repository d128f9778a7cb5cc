//! Prints Portico's CRDs as one YAML stream, for installs without Helm:
//! `cargo run -p portico-crds --bin crdgen | kubectl apply --server-side -f -`.

fn main() -> anyhow::Result<()> {
    let mut out = String::new();
    for crd in portico_crds::crds() {
        out.push_str("---\n");
        out.push_str(&portico_crds::crd_yaml(&crd)?);
    }
    print!("{out}");
    Ok(())
}
